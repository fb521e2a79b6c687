//! Inventory files (the DESIGN contract: AWS CLI JSON outputs recognised by their top-level
//! key). `detect` reads the IAM part — `RoleDetailList` / `UserDetailList` from
//! `aws iam get-account-authorization-details` — for role ownership by tag; the network part
//! (`NatGateways`, `Vpcs`, `VpcEndpoints`) is recognised and left to the policy commands.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Inventory {
    #[serde(rename = "RoleDetailList")]
    roles: Option<Vec<Role>>,
    #[serde(rename = "UserDetailList")]
    users: Option<Vec<User>>,
    #[serde(rename = "NatGateways")]
    nat_gateways: Option<serde::de::IgnoredAny>,
    #[serde(rename = "Vpcs")]
    vpcs: Option<serde::de::IgnoredAny>,
    #[serde(rename = "VpcEndpoints")]
    vpc_endpoints: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Deserialize)]
struct Role {
    #[serde(rename = "Arn")]
    arn: String,
    #[serde(rename = "Tags", default)]
    tags: Option<Vec<Tag>>,
    #[serde(rename = "InstanceProfileList", default)]
    instance_profiles: Option<Vec<InstanceProfile>>,
}

#[derive(Deserialize)]
struct InstanceProfile {
    #[serde(rename = "Arn")]
    arn: String,
}

#[derive(Deserialize)]
struct User {
    #[serde(rename = "Arn")]
    arn: String,
    #[serde(rename = "Tags", default)]
    tags: Option<Vec<Tag>>,
}

/// Ownership learned from tags: (role and instance-profile ARN → application,
/// principal ARN → application). A role's own principal acts for its application.
pub type TagOwnership = (Vec<(String, String)>, Vec<(String, String)>);

pub fn ownership_from_tags(paths: &[impl AsRef<Path>], tag_key: &str) -> Result<TagOwnership> {
    let (mut roles, mut principals) = (Vec::new(), Vec::new());
    for p in paths {
        let p = p.as_ref();
        let text = std::fs::read(p).with_context(|| format!("cannot read inventory {}", p.display()))?;
        let inv: Inventory = serde_json::from_slice(&text).with_context(|| format!("inventory {}", p.display()))?;
        if inv.roles.is_none() && inv.users.is_none() && inv.nat_gateways.is_none() && inv.vpcs.is_none() && inv.vpc_endpoints.is_none() {
            bail!("{}: not an inventory file (expected the JSON of aws iam get-account-authorization-details, or of ec2 describe-nat-gateways / describe-vpcs / describe-vpc-endpoints)", p.display());
        }
        let owner = |tags: &Option<Vec<Tag>>| tags.as_ref().and_then(|t| t.iter().find(|t| t.key == tag_key)).map(|t| t.value.clone());
        for r in inv.roles.unwrap_or_default() {
            if let Some(app) = owner(&r.tags) {
                for ip in r.instance_profiles.unwrap_or_default() {
                    roles.push((ip.arn, app.clone()));
                }
                roles.push((r.arn.clone(), app.clone()));
                principals.push((r.arn, app));
            }
        }
        for u in inv.users.unwrap_or_default() {
            if let Some(app) = owner(&u.tags) {
                principals.push((u.arn, app));
            }
        }
    }
    Ok((roles, principals))
}
