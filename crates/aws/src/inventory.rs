//! An account's inventory: the network it calls AWS from and its IAM principals.
//!
//! Read from the JSON the AWS CLI prints (`describe-nat-gateways`, `describe-vpcs`,
//! `describe-vpc-endpoints`, `get-account-authorization-details`), recognised by top-level
//! key, or collected live ([`crate::live`]). Both paths fill the same model, so every command
//! behaves the same whichever the user has.
//!
//! Missing data is never mistaken for absence: a paginated file saved with `IsTruncated:
//! true` is flagged incomplete, and a policy document that does not parse is reported with
//! the principal and policy it belongs to rather than silently skipped.

use std::collections::BTreeMap;
use std::path::Path;

use iam::Policy;
use serde_json::Value;

use crate::error::InventoryError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatGateway {
    pub id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub state: String,
    pub public_ips: Vec<String>,
    pub private_ips: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub cidrs: Vec<String>,
    pub ipv6_cidrs: Vec<String>,
    pub is_default: bool,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VpcEndpoint {
    pub id: String,
    pub vpc_id: String,
    pub service_name: String,
    pub endpoint_type: String,
    pub state: String,
}

/// A role, user or group with its policies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Principal {
    pub name: String,
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// (policy name, document)
    pub inline: Vec<(String, Policy)>,
    /// ARNs of attached managed policies.
    pub attached: Vec<String>,
    pub boundary: Option<String>,
    /// Roles: the trust policy.
    pub trust: Option<Policy>,
    /// Roles: instance profile ARNs. Users: group names.
    pub instance_profiles: Vec<String>,
    pub groups: Vec<String>,
    /// Inline policies that could not be read (name: reason): this principal cannot be
    /// judged from the inventory alone.
    pub unreadable: Vec<String>,
    /// `CreateDate` as AWS printed it (RFC 3339).
    pub created: Option<String>,
    /// `Path` (`/aws-service-role/…` marks service-linked roles).
    pub path: String,
    /// Roles: IAM's `RoleLastUsed`.
    pub last_used: LastUsed,
}

/// IAM's `RoleLastUsed` (tracked for the trailing 400 days).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LastUsed {
    /// The inventory does not say (an older CLI, or not a role).
    #[default]
    NotReported,
    /// Reported empty: not used within IAM's tracking period.
    Never,
    /// `LastUsedDate` (ms).
    At(i64),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ManagedPolicy {
    pub name: String,
    pub arn: String,
    /// The default version's document.
    pub document: Option<Policy>,
}

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub nat_gateways: Vec<NatGateway>,
    pub vpcs: Vec<Vpc>,
    pub vpc_endpoints: Vec<VpcEndpoint>,
    pub roles: Vec<Principal>,
    pub users: Vec<Principal>,
    pub groups: Vec<Principal>,
    pub managed_policies: Vec<ManagedPolicy>,
    /// What is known to be missing or unreadable, one sentence each.
    pub problems: Vec<String>,
    /// Regions whose network was read live, and regions that could not be read (a lock built
    /// from an inventory missing a region must not be applied).
    pub network_regions: Vec<String>,
    pub unread_regions: Vec<String>,
    /// Member accounts that could not be reached or read (their network is missing too).
    pub unread_accounts: Vec<String>,
    /// Which parts were present at all: ("network", "iam").
    pub has_network: bool,
    pub has_iam: bool,
}

const KEYS: [&str; 6] = [
    "NatGateways",
    "Vpcs",
    "VpcEndpoints",
    "RoleDetailList",
    "UserDetailList",
    "Policies",
];

impl Inventory {
    /// Add another account's (or source's) inventory to this one. Every field is named, so a
    /// field added to `Inventory` does not compile until it is merged too.
    pub fn merge(&mut self, other: Inventory) {
        let Inventory {
            nat_gateways,
            vpcs,
            vpc_endpoints,
            roles,
            users,
            groups,
            managed_policies,
            problems,
            network_regions,
            unread_regions,
            unread_accounts,
            has_network,
            has_iam,
        } = other;
        self.nat_gateways.extend(nat_gateways);
        self.vpcs.extend(vpcs);
        self.vpc_endpoints.extend(vpc_endpoints);
        self.roles.extend(roles);
        self.users.extend(users);
        self.groups.extend(groups);
        self.managed_policies.extend(managed_policies);
        self.problems.extend(problems);
        self.network_regions.extend(network_regions);
        self.unread_regions.extend(unread_regions);
        self.unread_accounts.extend(unread_accounts);
        self.has_network |= has_network;
        self.has_iam |= has_iam;
    }

    /// Read and merge inventory files.
    pub fn from_files<P: AsRef<Path>>(paths: &[P]) -> Result<Inventory, InventoryError> {
        let mut inv = Inventory::default();
        for p in paths {
            let p = p.as_ref();
            let bytes = std::fs::read(p).map_err(|source| InventoryError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|source| InventoryError::Json {
                    path: p.to_path_buf(),
                    source,
                })?;
            inv.absorb_json(&p.display().to_string(), &value)?;
        }
        Ok(inv)
    }

    /// Merge one AWS CLI JSON document (`origin` names it in problems and errors).
    pub fn absorb_json(&mut self, origin: &str, v: &Value) -> Result<(), InventoryError> {
        let obj = v
            .as_object()
            .filter(|o| KEYS.iter().any(|k| o.contains_key(*k)))
            .ok_or_else(|| InventoryError::NotInventory(origin.to_owned()))?;
        if obj.get("IsTruncated").and_then(Value::as_bool) == Some(true)
            || obj.get("NextToken").is_some_and(|t| !t.is_null())
        {
            self.problems.push(format!("{origin}: one page of a paginated result (IsTruncated/NextToken): the rest of the account is missing"));
        }
        for n in list(obj.get("NatGateways")) {
            self.has_network = true;
            let addrs = list(n.get("NatGatewayAddresses"));
            self.nat_gateways.push(NatGateway {
                id: text(n, "NatGatewayId"),
                vpc_id: text(n, "VpcId"),
                subnet_id: text(n, "SubnetId"),
                state: text(n, "State"),
                public_ips: addrs
                    .iter()
                    .filter_map(|a| a.get("PublicIp").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect(),
                private_ips: addrs
                    .iter()
                    .filter_map(|a| a.get("PrivateIp").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect(),
            });
        }
        for v in list(obj.get("Vpcs")) {
            self.has_network = true;
            let mut cidrs: Vec<String> = list(v.get("CidrBlockAssociationSet"))
                .iter()
                .filter_map(|c| c.get("CidrBlock").and_then(Value::as_str))
                .map(str::to_owned)
                .collect();
            if cidrs.is_empty() {
                cidrs.extend(
                    v.get("CidrBlock")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
            }
            self.vpcs.push(Vpc {
                id: text(v, "VpcId"),
                cidrs,
                ipv6_cidrs: list(v.get("Ipv6CidrBlockAssociationSet"))
                    .iter()
                    .filter_map(|c| c.get("Ipv6CidrBlock").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect(),
                is_default: v.get("IsDefault").and_then(Value::as_bool).unwrap_or(false),
                tags: tags(v.get("Tags")),
            });
        }
        for e in list(obj.get("VpcEndpoints")) {
            self.has_network = true;
            self.vpc_endpoints.push(VpcEndpoint {
                id: text(e, "VpcEndpointId"),
                vpc_id: text(e, "VpcId"),
                service_name: text(e, "ServiceName"),
                endpoint_type: text(e, "VpcEndpointType"),
                state: text(e, "State"),
            });
        }
        for r in list(obj.get("RoleDetailList")) {
            self.has_iam = true;
            let mut p = self.principal(origin, r, "RoleName", "RolePolicyList");
            p.trust = r
                .get("AssumeRolePolicyDocument")
                .and_then(|d| self.document(origin, &format!("role {} trust policy", p.name), d));
            p.instance_profiles = list(r.get("InstanceProfileList"))
                .iter()
                .map(|i| text(i, "Arn"))
                .collect();
            self.roles.push(p);
        }
        for u in list(obj.get("UserDetailList")) {
            self.has_iam = true;
            let mut p = self.principal(origin, u, "UserName", "UserPolicyList");
            p.groups = list(u.get("GroupList"))
                .iter()
                .filter_map(|g| g.as_str())
                .map(str::to_owned)
                .collect();
            self.users.push(p);
        }
        for g in list(obj.get("GroupDetailList")) {
            self.has_iam = true;
            let p = self.principal(origin, g, "GroupName", "GroupPolicyList");
            self.groups.push(p);
        }
        for m in list(obj.get("Policies")) {
            self.has_iam = true;
            let name = text(m, "PolicyName");
            let default = list(m.get("PolicyVersionList"))
                .into_iter()
                .find(|v| v.get("IsDefaultVersion").and_then(Value::as_bool) == Some(true));
            let document = default
                .and_then(|v| v.get("Document"))
                .and_then(|d| self.document(origin, &format!("managed policy {name}"), d));
            self.managed_policies.push(ManagedPolicy {
                name,
                arn: text(m, "Arn"),
                document,
            });
        }
        Ok(())
    }

    fn principal(
        &mut self,
        origin: &str,
        v: &Value,
        name_key: &str,
        inline_key: &str,
    ) -> Principal {
        let name = text(v, name_key);
        let mut inline = Vec::new();
        let mut unreadable = Vec::new();
        for p in list(v.get(inline_key)) {
            let pname = text(p, "PolicyName");
            match p
                .get("PolicyDocument")
                .and_then(|d| self.document(origin, &format!("{name} inline policy {pname}"), d))
            {
                Some(doc) => inline.push((pname, doc)),
                None => unreadable.push(pname),
            }
        }
        Principal {
            arn: text(v, "Arn"),
            tags: tags(v.get("Tags")),
            inline,
            attached: list(v.get("AttachedManagedPolicies"))
                .iter()
                .map(|a| text(a, "PolicyArn"))
                .collect(),
            boundary: v
                .get("PermissionsBoundary")
                .and_then(|b| b.get("PermissionsBoundaryArn"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            name,
            unreadable,
            created: v
                .get("CreateDate")
                .and_then(Value::as_str)
                .map(str::to_owned),
            path: text(v, "Path"),
            last_used: match v.get("RoleLastUsed") {
                None | Some(Value::Null) => LastUsed::NotReported,
                Some(u) => match u.get("LastUsedDate") {
                    None | Some(Value::Null) => LastUsed::Never,
                    Some(d) => d
                        .as_str()
                        .and_then(iam::condition::parse_date)
                        .map_or(LastUsed::NotReported, LastUsed::At),
                },
            },
            ..Default::default()
        }
    }

    /// A policy document as the CLI prints it (an object) or the SDK returns it (URL-encoded
    /// text). An unreadable one becomes a problem naming its owner.
    fn document(&mut self, origin: &str, what: &str, v: &Value) -> Option<Policy> {
        let parsed = match v {
            Value::String(s) => Policy::parse_encoded(s),
            other => Policy::from_value(other),
        };
        match parsed {
            Ok(p) => Some(p),
            Err(e) => {
                self.problems.push(format!("{origin}: {what}: {e}"));
                None
            }
        }
    }

    /// The managed policy with this ARN.
    pub fn managed(&self, arn: &str) -> Option<&ManagedPolicy> {
        self.managed_policies.iter().find(|m| m.arn == arn)
    }

    pub fn role(&self, name_or_arn: &str) -> Option<&Principal> {
        self.roles
            .iter()
            .find(|r| r.name == name_or_arn || r.arn == name_or_arn)
    }

    /// Every public NAT address of a gateway that is, or is about to be, in service
    /// (`available`, `pending`, or of unknown state); deleted and failed ones are not ours.
    pub fn nat_public_ips(&self) -> Vec<String> {
        let live = |s: &str| {
            s.is_empty() || s.eq_ignore_ascii_case("available") || s.eq_ignore_ascii_case("pending")
        };
        let mut v: Vec<String> = self
            .nat_gateways
            .iter()
            .filter(|n| live(&n.state))
            .flat_map(|n| n.public_ips.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

fn list(v: Option<&Value>) -> Vec<&Value> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn tags(v: Option<&Value>) -> BTreeMap<String, String> {
    list(v)
        .iter()
        .map(|t| (text(t, "Key"), text(t, "Value")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shared_authorization_details_samples() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpora/iam");
        let inv = Inventory::from_files(&[
            dir.join("get-account-authorization-details.awscli-example.json")
        ])
        .unwrap();
        assert!(inv.has_iam && !inv.has_network);
        assert_eq!(inv.roles.len(), 1);
        assert_eq!(inv.users.len(), 3);
        assert!(
            inv.problems.iter().any(|p| p.contains("paginated")),
            "{:?}",
            inv.problems
        );
        assert!(inv.managed_policies.iter().all(|m| m.document.is_some()));
        let demo = Inventory::from_files(&[
            dir.join("get-account-authorization-details.cloudmapper-demo.json")
        ])
        .unwrap();
        assert!(!demo.roles.is_empty());
        assert!(
            demo.roles.iter().all(|r| r.trust.is_some()),
            "{:?}",
            demo.problems
        );
    }

    #[test]
    fn network_outputs_and_encoded_documents() {
        let mut inv = Inventory::default();
        inv.absorb_json(
            "nat.json",
            &json!({"NatGateways": [
                {"NatGatewayId": "nat-1", "VpcId": "vpc-1", "SubnetId": "subnet-1", "State": "available",
                 "NatGatewayAddresses": [{"PublicIp": "198.51.100.10", "PrivateIp": "10.0.0.5"}]},
                {"NatGatewayId": "nat-2", "VpcId": "vpc-1", "State": "deleted", "NatGatewayAddresses": [{"PublicIp": "198.51.100.99"}]}]}),
        )
        .unwrap();
        inv.absorb_json(
            "vpcs.json",
            &json!({"Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16", "IsDefault": false, "Tags": [{"Key": "Name", "Value": "prod"}]}]}),
        )
        .unwrap();
        inv.absorb_json(
            "roles.json",
            &json!({"RoleDetailList": [{"RoleName": "app", "Arn": "arn:aws:iam::1:role/app",
                "AssumeRolePolicyDocument": "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22ec2.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D",
                "RolePolicyList": [{"PolicyName": "bad", "PolicyDocument": {"Statement": {"Effect": "Maybe", "Action": "s3:*"}}}]}]}),
        )
        .unwrap();
        assert_eq!(
            inv.nat_public_ips(),
            ["198.51.100.10"],
            "deleted gateways do not count"
        );
        assert_eq!(inv.vpcs[0].cidrs, ["10.0.0.0/16"]);
        assert_eq!(inv.vpcs[0].tags["Name"], "prod");
        assert!(inv.roles[0].trust.is_some());
        assert!(inv.roles[0].inline.is_empty());
        assert_eq!(inv.roles[0].unreadable, ["bad"]);
        assert!(
            inv.problems
                .iter()
                .any(|p| p.contains("roles.json: app inline policy bad") && p.contains("Effect")),
            "{:?}",
            inv.problems
        );
        assert!(matches!(
            inv.absorb_json("x.json", &json!({"Something": []})),
            Err(InventoryError::NotInventory(_))
        ));
    }
}
