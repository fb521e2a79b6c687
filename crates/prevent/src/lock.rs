//! The environment lock: credentials that only work from where the company runs.
//!
//! **Network form** (the seeds' "API protect"): one Deny statement on every action unless
//! the call comes from a NAT public address (`aws:SourceIp`), from one of our VPCs
//! (`aws:SourceVpc`) or through one of our VPC endpoints (`aws:SourceVpce`), with calls an
//! AWS service makes on the principal's behalf (`aws:ViaAWSService`) exempt. The conditions
//! of one statement are ANDed, and a negated operator is true when its key is absent, so the
//! statement denies exactly when *every* inside route fails — a call through our endpoint
//! has no public source address, and a call through the NAT has no VPC keys.
//!
//! **Instance form** (newer, for EC2 instance credentials only — `ec2:SourceInstanceARN`
//! present): deny unless the call comes from the instance's own VPC
//! (`aws:Ec2InstanceSourceVpc` = `${aws:SourceVpc}`) and its own private address
//! (`aws:Ec2InstanceSourcePrivateIPv4` = `${aws:VpcSourceIp}`). Calls that leave through our
//! NAT carry no VPC keys, so NAT addresses stay exempt, as in the network form.
//!
//! Both forms are verified by [`cases`]: one table of inside and outside calls, built from
//! the real inventory's addresses.

use std::net::IpAddr;

use aws::Inventory;
use credwarden_core::Cidr;
use iam::Policy;
use serde_json::{json, Map, Value};

use crate::verify::{Case, Expect};

/// Which lock to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockForm {
    Network,
    Instance,
}

/// Where our calls legitimately come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// NAT gateway public addresses and any extra egress CIDRs (IPv4 or IPv6).
    pub egress: Vec<String>,
    pub vpcs: Vec<String>,
    /// (VPC, one private CIDR of it) for building inside test calls.
    pub vpc_cidrs: Vec<(String, String)>,
    pub vpc_endpoints: Vec<String>,
    /// (endpoint, its VPC): the only routes on which requests carry `aws:SourceVpc`.
    pub endpoint_routes: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockError {
    #[error("the inventory has no NAT addresses, egress CIDRs or VPC endpoints: a lock would deny every call (a VPC without an endpoint reaches AWS from public addresses the lock cannot know; give --inventory files with NatGateways / VpcEndpoints, --live, or --egress)")]
    EmptyEnvironment,
    #[error("{0:?} is not an IP address or CIDR block")]
    BadCidr(String),
    #[error(
        "the instance form needs at least one VPC (it binds instance credentials to their VPC)"
    )]
    NoVpc,
}

impl Environment {
    /// Our environment from an inventory plus extra egress CIDRs (`--egress`).
    pub fn from_inventory(
        inv: &Inventory,
        extra_egress: &[String],
    ) -> Result<Environment, LockError> {
        let mut egress = inv.nat_public_ips();
        for e in extra_egress {
            Cidr::parse(e).ok_or_else(|| LockError::BadCidr(e.clone()))?;
            egress.push(e.clone());
        }
        egress.sort();
        egress.dedup();
        let mut vpcs: Vec<String> = inv
            .vpcs
            .iter()
            .map(|v| v.id.clone())
            .chain(inv.vpc_endpoints.iter().map(|e| e.vpc_id.clone()))
            .filter(|v| !v.is_empty())
            .collect();
        vpcs.sort();
        vpcs.dedup();
        let vpc_cidrs = inv
            .vpcs
            .iter()
            .filter_map(|v| v.cidrs.first().map(|c| (v.id.clone(), c.clone())))
            .collect();
        let usable = |state: &str| {
            state.is_empty()
                || state.eq_ignore_ascii_case("available")
                || state.eq_ignore_ascii_case("pending")
        };
        let mut endpoint_routes: Vec<(String, String)> = inv
            .vpc_endpoints
            .iter()
            .filter(|e| usable(&e.state))
            .map(|e| (e.id.clone(), e.vpc_id.clone()))
            .collect();
        endpoint_routes.sort();
        endpoint_routes.dedup();
        let vpc_endpoints = endpoint_routes.iter().map(|(e, _)| e.clone()).collect();
        let env = Environment {
            egress,
            vpcs,
            vpc_cidrs,
            vpc_endpoints,
            endpoint_routes,
        };
        if env.egress.is_empty() && env.vpc_endpoints.is_empty() {
            return Err(LockError::EmptyEnvironment);
        }
        Ok(env)
    }

    fn inside(&self, ip: IpAddr) -> bool {
        self.egress
            .iter()
            .filter_map(|c| Cidr::parse(c))
            .any(|c| c.contains(ip))
    }

    /// An address in none of our egress ranges, from the documentation ranges.
    fn outside_v4(&self) -> String {
        [
            "203.0.113.200",
            "198.51.100.200",
            "192.0.2.200",
            "100.100.100.100",
        ]
        .into_iter()
        .find(|a| !self.inside(a.parse().unwrap()))
        .unwrap_or("8.8.4.4")
        .to_owned()
    }

    fn outside_v6(&self) -> String {
        ["2001:db8:dead::1", "2001:db9::1", "2606:4700::1"]
            .into_iter()
            .find(|a| !self.inside(a.parse().unwrap()))
            .unwrap_or("2a00::1")
            .to_owned()
    }
}

/// Generate the lock policy.
pub fn lock_policy(env: &Environment, form: LockForm) -> Result<Policy, LockError> {
    let aws_service_exempt = json!({"aws:ViaAWSService": "false"});
    let statements: Vec<Value> = match form {
        LockForm::Network => {
            if env.egress.is_empty() && env.vpc_endpoints.is_empty() {
                return Err(LockError::EmptyEnvironment);
            }
            let mut cond = Map::new();
            if !env.egress.is_empty() {
                cond.insert("NotIpAddress".into(), json!({"aws:SourceIp": env.egress}));
            }
            let mut vpc = Map::new();
            if !env.vpcs.is_empty() {
                vpc.insert("aws:SourceVpc".into(), json!(env.vpcs));
            }
            if !env.vpc_endpoints.is_empty() {
                vpc.insert("aws:SourceVpce".into(), json!(env.vpc_endpoints));
            }
            if !vpc.is_empty() {
                cond.insert("StringNotEquals".into(), Value::Object(vpc));
            }
            cond.insert("BoolIfExists".into(), aws_service_exempt);
            vec![
                json!({"Sid": "CredwardenEnvironmentLock", "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": cond}),
            ]
        }
        LockForm::Instance => {
            if env.vpcs.is_empty() {
                return Err(LockError::NoVpc);
            }
            let bound = |sid: &str, instance_key: &str, request_key: &str| {
                let mut cond = Map::new();
                cond.insert(
                    "StringNotEquals".into(),
                    json!({ instance_key: format!("${{{request_key}}}") }),
                );
                cond.insert("Null".into(), json!({"ec2:SourceInstanceARN": "false"}));
                cond.insert("BoolIfExists".into(), aws_service_exempt.clone());
                if !env.egress.is_empty() {
                    cond.insert(
                        "NotIpAddressIfExists".into(),
                        json!({"aws:SourceIp": env.egress}),
                    );
                }
                json!({"Sid": sid, "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": cond})
            };
            // Calls that reach AWS with no VPC keys at all (the internet, someone else's NAT) are
            // denied by a statement of their own, so that the lock never depends on how AWS
            // treats a policy variable it cannot resolve.
            let mut outside = Map::new();
            outside.insert(
                "Null".into(),
                json!({"ec2:SourceInstanceARN": "false", "aws:SourceVpc": "true"}),
            );
            outside.insert("BoolIfExists".into(), aws_service_exempt.clone());
            if !env.egress.is_empty() {
                outside.insert(
                    "NotIpAddressIfExists".into(),
                    json!({"aws:SourceIp": env.egress}),
                );
            }
            vec![
                json!({"Sid": "CredwardenInstanceOutsideAnyVpc", "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": outside}),
                bound(
                    "CredwardenInstanceVpcLock",
                    "aws:Ec2InstanceSourceVpc",
                    "aws:SourceVpc",
                ),
                bound(
                    "CredwardenInstanceAddressLock",
                    "aws:Ec2InstanceSourcePrivateIPv4",
                    "aws:VpcSourceIp",
                ),
            ]
        }
    };
    Ok(
        Policy::from_value(&json!({"Version": "2012-10-17", "Statement": statements}))
            .expect("generated lock policies are valid"),
    )
}

/// The verification table for a form: every inside route must be allowed, every outside one
/// denied. Addresses come from the environment itself.
pub fn cases(env: &Environment, form: LockForm) -> Vec<Case> {
    const ACTION: &str = "s3:GetObject";
    const RESOURCE: &str = "arn:aws:s3:::company-data/report.csv";
    let mut v = Vec::new();
    let outside4 = env.outside_v4();
    let outside6 = env.outside_v6();
    let nat: Option<&str> = env
        .egress
        .iter()
        .find(|e| Cidr::parse(e).is_some_and(|c| matches!(c, Cidr::V4 { .. })))
        .map(|s| s.split('/').next().unwrap_or(s));
    let nat6: Option<&str> = env
        .egress
        .iter()
        .find(|e| Cidr::parse(e).is_some_and(|c| matches!(c, Cidr::V6 { .. })))
        .map(|s| s.split('/').next().unwrap_or(s));
    // Inside calls through an endpoint are built only from real endpoints: `aws:SourceVpc` is
    // present on no other route, and a table that invented it would pass locks that deny
    // production.
    let route = env.endpoint_routes.first().cloned();
    let vpc = route
        .as_ref()
        .map(|(_, v)| v.clone())
        .or_else(|| env.vpcs.first().cloned())
        .unwrap_or_else(|| "vpc-0ffffffffffffffff".into());
    let private_ip = env
        .vpc_cidrs
        .iter()
        .find(|(v, _)| *v == vpc)
        .map(|(_, c)| first_host(c))
        .unwrap_or_else(|| "10.0.0.10".to_owned());
    let vpce = route.map(|(e, _)| e);
    let other_vpc = "vpc-0a77ac4e40000000";
    let other_vpce = "vpce-0a77ac4e40000000";
    let no = "false";
    match form {
        LockForm::Network => {
            if let Some(nat) = nat {
                v.push(Case::new(
                    "from our NAT address",
                    Expect::Allowed,
                    ACTION,
                    RESOURCE,
                    &[("aws:SourceIp", nat), ("aws:ViaAWSService", no)],
                ));
            }
            if let Some(nat6) = nat6 {
                v.push(Case::new(
                    "from our IPv6 egress",
                    Expect::Allowed,
                    ACTION,
                    RESOURCE,
                    &[("aws:SourceIp", nat6), ("aws:ViaAWSService", no)],
                ));
            }
            if let Some(e) = &vpce {
                let keys = [
                    ("aws:SourceIp", private_ip.as_str()),
                    ("aws:VpcSourceIp", private_ip.as_str()),
                    ("aws:SourceVpc", vpc.as_str()),
                    ("aws:SourceVpce", e.as_str()),
                    ("aws:ViaAWSService", no),
                ];
                v.push(Case::new(
                    "from our VPC through our endpoint",
                    Expect::Allowed,
                    ACTION,
                    RESOURCE,
                    &keys,
                ));
            }
            v.push(Case::new(
                "via an AWS service (CloudFormation)",
                Expect::Allowed,
                ACTION,
                RESOURCE,
                &[
                    ("aws:SourceIp", "cloudformation.amazonaws.com"),
                    ("aws:ViaAWSService", "true"),
                    ("aws:CalledVia", "cloudformation.amazonaws.com"),
                ],
            ));
            v.push(Case::new(
                "from the internet",
                Expect::Denied,
                ACTION,
                RESOURCE,
                &[("aws:SourceIp", &outside4), ("aws:ViaAWSService", no)],
            ));
            v.push(Case::new(
                "from the internet over IPv6",
                Expect::Denied,
                ACTION,
                RESOURCE,
                &[("aws:SourceIp", &outside6), ("aws:ViaAWSService", no)],
            ));
            v.push(Case::new(
                "from another VPC through its own endpoint",
                Expect::Denied,
                ACTION,
                RESOURCE,
                &[
                    ("aws:SourceIp", "10.200.0.5"),
                    ("aws:VpcSourceIp", "10.200.0.5"),
                    ("aws:SourceVpc", other_vpc),
                    ("aws:SourceVpce", other_vpce),
                    ("aws:ViaAWSService", no),
                ],
            ));
            v.push(Case::new(
                "from a private address outside our VPCs",
                Expect::Denied,
                ACTION,
                RESOURCE,
                &[
                    ("aws:SourceIp", "172.31.255.254"),
                    ("aws:ViaAWSService", no),
                ],
            ));
        }
        LockForm::Instance => {
            let arn = "arn:aws:ec2:us-east-1:111122223333:instance/i-0123456789abcdef0";
            let inst = |extra: &[(&'static str, String)]| {
                let mut keys: Vec<(&'static str, String)> = vec![
                    ("ec2:SourceInstanceARN", arn.to_owned()),
                    ("aws:Ec2InstanceSourceVpc", vpc.clone()),
                    ("aws:Ec2InstanceSourcePrivateIPv4", private_ip.clone()),
                ];
                keys.extend(extra.iter().cloned());
                keys
            };
            let case = |label: &str, expect, keys: Vec<(&'static str, String)>| {
                let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
                Case::new(label, expect, ACTION, RESOURCE, &refs)
            };
            let mut own = vec![
                ("aws:SourceIp", private_ip.clone()),
                ("aws:VpcSourceIp", private_ip.clone()),
                ("aws:SourceVpc", vpc.clone()),
                ("aws:ViaAWSService", no.to_owned()),
            ];
            if let Some(e) = &vpce {
                own.push(("aws:SourceVpce", e.clone()));
            }
            if vpce.is_some() {
                v.push(case(
                    "from the instance itself through our endpoint",
                    Expect::Allowed,
                    inst(&own),
                ));
            }
            if let Some(nat) = nat {
                v.push(case(
                    "from the instance through our NAT",
                    Expect::Allowed,
                    inst(&[
                        ("aws:SourceIp", nat.to_owned()),
                        ("aws:ViaAWSService", no.to_owned()),
                    ]),
                ));
            }
            v.push(case(
                "via an AWS service (CloudFormation)",
                Expect::Allowed,
                inst(&[
                    ("aws:SourceIp", "cloudformation.amazonaws.com".into()),
                    ("aws:ViaAWSService", "true".into()),
                ]),
            ));
            v.push(case(
                "stolen, used from the internet",
                Expect::Denied,
                inst(&[
                    ("aws:SourceIp", outside4.clone()),
                    ("aws:ViaAWSService", no.to_owned()),
                ]),
            ));
            v.push(case(
                "stolen, used from the internet over IPv6",
                Expect::Denied,
                inst(&[
                    ("aws:SourceIp", outside6.clone()),
                    ("aws:ViaAWSService", no.to_owned()),
                ]),
            ));
            let neighbour = neighbour_ip(&private_ip);
            let mut from_neighbour = vec![
                ("aws:SourceIp", neighbour.clone()),
                ("aws:VpcSourceIp", neighbour.clone()),
                ("aws:SourceVpc", vpc.clone()),
                ("aws:ViaAWSService", no.to_owned()),
            ];
            if let Some(e) = &vpce {
                from_neighbour.push(("aws:SourceVpce", e.clone()));
            }
            v.push(case(
                "stolen, used from another instance in our VPC",
                Expect::Denied,
                inst(&from_neighbour),
            ));
            v.push(case(
                "stolen, used from another VPC through its own endpoint",
                Expect::Denied,
                inst(&[
                    ("aws:SourceIp", "10.200.0.5".into()),
                    ("aws:VpcSourceIp", "10.200.0.5".into()),
                    ("aws:SourceVpc", other_vpc.into()),
                    ("aws:SourceVpce", other_vpce.into()),
                    ("aws:ViaAWSService", no.to_owned()),
                ]),
            ));
        }
    }
    v
}

/// Actions every case is decided for: a lock must hold for reads, writes and IAM changes in
/// any service, not only for the action a case names.
pub const PROBES: [(&str, &str); 4] = [
    ("s3:GetObject", "arn:aws:s3:::company-data/report.csv"),
    (
        "iam:CreateAccessKey",
        "arn:aws:iam::111122223333:user/admin",
    ),
    (
        "ec2:RunInstances",
        "arn:aws:ec2:us-east-1:111122223333:instance/*",
    ),
    (
        "kms:Decrypt",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ),
];

/// The first usable host of a CIDR (`10.0.0.0/16` → `10.0.0.10`), for inside test calls.
fn first_host(cidr: &str) -> String {
    match Cidr::parse(cidr) {
        Some(Cidr::V4 { start, end }) => {
            std::net::Ipv4Addr::from(start.saturating_add(10).min(end)).to_string()
        }
        _ => "10.0.0.10".to_owned(),
    }
}

/// Another address in the same /24, for "another instance" calls.
fn neighbour_ip(ip: &str) -> String {
    match ip.parse::<std::net::Ipv4Addr>() {
        Ok(a) => {
            let o = a.octets();
            std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3].wrapping_add(67).max(1)).to_string()
        }
        Err(_) => "10.0.0.77".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{allow_everything, run};

    fn env() -> Environment {
        Environment {
            egress: vec![
                "198.51.100.10".into(),
                "198.51.100.11".into(),
                "2001:db8:ee::/48".into(),
            ],
            vpcs: vec!["vpc-0a1b2c3d".into()],
            vpc_cidrs: vec![("vpc-0a1b2c3d".into(), "10.1.0.0/16".into())],
            vpc_endpoints: vec!["vpce-01234567".into()],
            endpoint_routes: vec![("vpce-01234567".into(), "vpc-0a1b2c3d".into())],
        }
    }

    #[test]
    fn both_forms_pass_their_tables() {
        let all = allow_everything();
        for form in [LockForm::Network, LockForm::Instance] {
            let p = lock_policy(&env(), form).unwrap();
            let out = run(
                &p,
                "lock",
                &[("allow-all", &all)],
                &cases(&env(), form),
                &PROBES,
            );
            assert!(out.len() >= 6);
            assert!(
                out.iter().all(|o| o.ok),
                "{form:?}: {}",
                crate::verify::render(&out)
            );
            assert!(
                out.iter().any(|o| o.expect == crate::Expect::Denied)
                    && out.iter().any(|o| o.expect == crate::Expect::Allowed)
            );
        }
    }

    /// The tables catch broken locks: drop one condition or use the wrong operator, and some
    /// case fails. (A table that cannot fail would verify nothing.)
    #[test]
    fn the_tables_catch_broken_locks() {
        let all = allow_everything();
        let table = cases(&env(), LockForm::Network);
        let good = lock_policy(&env(), LockForm::Network)
            .unwrap()
            .to_pretty_json();
        let broken = [
            good.replace("\"BoolIfExists\"", "\"Bool\"").replace(
                "\"aws:ViaAWSService\": \"false\"",
                "\"aws:ViaAWSService\": \"true\"",
            ),
            good.replace("NotIpAddress", "IpAddress"),
            good.replace("StringNotEquals", "StringEquals"),
            good.replace("\"Deny\"", "\"Allow\""),
            good.replace("198.51.100.10", "198.51.100.99"),
            // A lock scoped to one service protects nothing else.
            good.replace("\"Action\": \"*\"", "\"Action\": \"s3:*\""),
        ];
        for b in broken {
            let p = Policy::parse(&b).unwrap();
            let out = run(&p, "lock", &[("allow-all", &all)], &table, &PROBES);
            assert!(out.iter().any(|o| !o.ok), "a broken lock passed:\n{b}");
        }
    }

    #[test]
    fn instance_form_does_not_rely_on_unresolved_variables() {
        // Drop the two variable statements: the explicit no-VPC statement alone still denies
        // stolen instance credentials used from the internet.
        let p = lock_policy(&env(), LockForm::Instance).unwrap();
        let only_outside = Policy {
            statements: p.statements[..1].to_vec(),
            ..p
        };
        let out = run(
            &only_outside,
            "lock",
            &[("allow-all", &allow_everything())],
            &cases(&env(), LockForm::Instance),
            &PROBES,
        );
        assert!(
            out.iter()
                .filter(|o| o.label.contains("internet"))
                .all(|o| o.ok),
            "{}",
            crate::verify::render(&out)
        );
    }

    #[test]
    fn vpcs_without_endpoints_are_not_a_route() {
        let mut inv = Inventory::default();
        inv.absorb_json(
            "vpcs.json",
            &serde_json::json!({"Vpcs": [{"VpcId": "vpc-1", "CidrBlock": "10.0.0.0/16"}]}),
        )
        .unwrap();
        assert_eq!(
            Environment::from_inventory(&inv, &[]),
            Err(LockError::EmptyEnvironment)
        );
        let env = Environment::from_inventory(&inv, &["203.0.113.0/28".into()]).unwrap();
        assert!(cases(&env, LockForm::Network)
            .iter()
            .all(|c| !c.label.contains("endpoint") || c.expect == crate::Expect::Denied));
    }

    #[test]
    fn empty_environment_is_refused() {
        assert_eq!(
            Environment::from_inventory(&Inventory::default(), &[]),
            Err(LockError::EmptyEnvironment)
        );
        assert_eq!(
            Environment::from_inventory(&Inventory::default(), &["nonsense".into()]),
            Err(LockError::BadCidr("nonsense".into()))
        );
        let only_egress =
            Environment::from_inventory(&Inventory::default(), &["203.0.113.0/28".into()]).unwrap();
        assert_eq!(
            lock_policy(&only_egress, LockForm::Instance),
            Err(LockError::NoVpc)
        );
        assert!(lock_policy(&only_egress, LockForm::Network).is_ok());
    }
}
