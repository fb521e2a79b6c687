//! Inventory options shared by every command that needs an account's inventory (the DESIGN
//! contract: `--inventory FILE…` with AWS CLI JSON outputs, or `--live` through the AWS SDK
//! with `--endpoint-url` and the usual AWS environment), and the role ownership `detect`
//! derives from owner tags.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use aws::{Inventory, LiveOptions, Session};

/// Where an account's inventory comes from.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct InventoryArgs {
    /// AWS CLI JSON outputs: describe-nat-gateways, describe-vpcs, describe-vpc-endpoints, get-account-authorization-details.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub inventory: Vec<PathBuf>,
    /// Read the inventory from the account through the AWS SDK (credentials and region from the usual AWS environment).
    #[arg(long)]
    pub live: bool,
    /// With --live: read the network of these regions only (comma-separated) [default: every
    /// region enabled for the account].
    #[arg(long = "regions", value_name = "REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

/// How to reach AWS.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AwsArgs {
    /// Send every AWS call to this endpoint (a VPC endpoint, an emulator).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: AWS_REGION / the profile's region).
    #[arg(long)]
    pub region: Option<String>,
}

impl AwsArgs {
    pub fn connect(&self) -> Result<Session> {
        Ok(Session::connect(&LiveOptions {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
            regions: Vec::new(),
        })?)
    }
}

impl InventoryArgs {
    /// Load the inventory; problems (truncated files, unreadable documents) go to `warn`.
    pub fn load(&self, warn: &mut dyn std::io::Write) -> Result<Inventory> {
        if self.inventory.is_empty() && !self.live {
            bail!("this command needs an inventory: --inventory FILE… (AWS CLI JSON) or --live");
        }
        let mut inv = Inventory::from_files(&self.inventory)?;
        if self.live {
            let session = Session::connect(&LiveOptions {
                endpoint_url: self.aws.endpoint_url.clone(),
                region: self.aws.region.clone(),
                regions: self.regions.clone(),
            })?;
            let live = session.inventory()?;
            writeln!(
                warn,
                "inventory: network read in {} region(s): {}",
                live.network_regions.len(),
                live.network_regions.join(", ")
            )?;
            merge(&mut inv, live);
        }
        for p in &inv.problems {
            writeln!(warn, "warning: inventory: {p}")?;
        }
        Ok(inv)
    }
}

fn merge(into: &mut Inventory, from: Inventory) {
    into.nat_gateways.extend(from.nat_gateways);
    into.vpcs.extend(from.vpcs);
    into.vpc_endpoints.extend(from.vpc_endpoints);
    into.roles.extend(from.roles);
    into.users.extend(from.users);
    into.groups.extend(from.groups);
    into.managed_policies.extend(from.managed_policies);
    into.problems.extend(from.problems);
    into.network_regions.extend(from.network_regions);
    into.unread_regions.extend(from.unread_regions);
    into.has_network |= from.has_network;
    into.has_iam |= from.has_iam;
}

/// Ownership learned from tags: (role and instance-profile ARN → application,
/// principal ARN → application). A role's own principal acts for its application.
pub type TagOwnership = (Vec<(String, String)>, Vec<(String, String)>);

pub fn ownership_from_tags(paths: &[impl AsRef<Path>], tag_key: &str) -> Result<TagOwnership> {
    let inv = Inventory::from_files(paths)?;
    let (mut roles, mut principals) = (Vec::new(), Vec::new());
    for r in &inv.roles {
        if let Some(app) = r.tags.get(tag_key) {
            for ip in &r.instance_profiles {
                roles.push((ip.clone(), app.clone()));
            }
            roles.push((r.arn.clone(), app.clone()));
            principals.push((r.arn.clone(), app.clone()));
        }
    }
    for u in &inv.users {
        if let Some(app) = u.tags.get(tag_key) {
            principals.push((u.arn.clone(), app.clone()));
        }
    }
    Ok((roles, principals))
}
