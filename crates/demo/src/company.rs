//! The demo company: three accounts, five (account, region) networks, and the instance
//! fleets in them.
//!
//! Each network has a NAT gateway with two addresses, a VPC endpoint, a web fleet (SSM agent,
//! calls S3/DynamoDB through the endpoint), a worker fleet, two instances with their own
//! public address, and an idle instance; one network has dual-stack (IPv6) instances. Most
//! instances were running before the logs begin, so their current credentials' issuance is
//! not in the data.

use std::collections::BTreeMap;

use credwarden_core::EventTime;

use crate::delivery::{slot_time, SLOT_MS};
use crate::record::RoleSession;
use crate::rng::Rng;

/// The company's accounts and the regions each runs a network in.
const LAYOUT: [(&str, &[&str]); 3] = [
    ("318294751063", &["us-east-1", "eu-west-1"]),
    ("540912836471", &["us-west-2"]),
    ("729104658213", &["us-east-1", "us-west-2"]),
];

/// The company's canary: an old backup bucket nothing legitimate reads.
pub const DEMO_CANARY_BUCKET: &str = "arn:aws:s3:::corp-backup-archive-2019";

/// The address the CI runner calls from.
pub const CI_RUNNER_IP: &str = "203.0.113.50";

/// The CI user's long-lived key in account number `i`.
pub fn ci_key(i: usize) -> String {
    format!("AKIACIDEPLOYER{i:06}")
}

/// The company's AWS address space, written to the demo's ip-ranges.json.
pub const AWS_PREFIXES_V4: &[&str] = &[
    "52.0.0.0/10",
    "54.144.0.0/12",
    "3.208.0.0/12",
    "18.204.0.0/14",
];
pub const AWS_PREFIXES_V6: &[&str] = &["2600:1f00::/24"];

/// The ip-ranges.json of the demo's world, in AWS's format.
pub fn aws_ip_ranges_json() -> String {
    let v4: Vec<_> = AWS_PREFIXES_V4
        .iter()
        .map(|p| {
            serde_json::json!({
                "ip_prefix": p, "region": "GLOBAL", "service": "AMAZON",
                "network_border_group": "GLOBAL"
            })
        })
        .collect();
    let v6: Vec<_> = AWS_PREFIXES_V6
        .iter()
        .map(|p| {
            serde_json::json!({
                "ipv6_prefix": p, "region": "GLOBAL", "service": "AMAZON",
                "network_border_group": "GLOBAL"
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "syncToken": "1772409600",
        "createDate": "2026-03-02-00-00-00",
        "prefixes": v4,
        "ipv6_prefixes": v6
    }))
    .expect("static JSON")
}

/// Who owns which roles in the demo company, for foreign-role-pass.
pub fn demo_ownership() -> detect::OwnershipMap {
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    detect::OwnershipMap {
        roles: pairs(&[
            ("arn:aws:iam::*:role/*-admin-automation", "platform"),
            ("arn:aws:iam::*:role/*-queue-worker", "worker"),
            ("arn:aws:iam::*:role/*-web-frontend", "web"),
        ]),
        principals: pairs(&[
            ("arn:aws:iam::*:role/*-queue-worker", "worker"),
            ("arn:aws:iam::*:role/*-web-frontend", "web"),
            ("arn:aws:iam::*:user/ci-deployer", "*"),
        ]),
    }
}

/// One AWS account of the company.
pub struct Account {
    pub id: &'static str,
    /// Indexes into [`Company::networks`].
    pub networks: Vec<usize>,
}

/// An account's network in one region: a VPC with its NAT gateway and VPC endpoint.
pub struct Network {
    /// Index into [`Company::accounts`].
    pub account: usize,
    pub region: &'static str,
    /// The NAT gateway's public addresses.
    pub nat: Vec<String>,
    /// The VPC endpoint's id (S3 and DynamoDB calls may go through it).
    pub vpc_endpoint: String,
    /// The first three octets of private addresses, `10.x.y`.
    pub private_prefix: String,
    /// The first four groups of IPv6 addresses.
    pub v6_prefix: String,
}

/// What an instance runs, and so how it reaches AWS and which role it has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fleet {
    /// Web servers: S3, DynamoDB (often through the VPC endpoint), KMS, SQS, SSM agent.
    Web,
    /// Queue workers: SQS, S3, DynamoDB.
    Worker,
    /// Instances with their own public address, no NAT.
    Public,
    /// Dual-stack instances: IPv4 through the NAT, or their own IPv6 address.
    DualStack,
    /// A batch instance that launches and then makes no calls.
    Idle,
}

impl Fleet {
    /// The role's name, after the environment prefix (`prod-web-frontend`).
    pub fn role(self) -> &'static str {
        match self {
            Fleet::Web => "web-frontend",
            Fleet::Worker => "queue-worker",
            Fleet::Public => "ingest-gateway",
            Fleet::DualStack => "api-v6",
            Fleet::Idle => "nightly-batch",
        }
    }

    /// The fleets of network number `network`, one entry per instance, in launch order.
    fn instances_in(network: usize) -> Vec<Fleet> {
        let mut fleets = Vec::new();
        fleets.extend(std::iter::repeat_n(Fleet::Web, 6));
        fleets.extend(std::iter::repeat_n(Fleet::Worker, 4));
        fleets.extend(std::iter::repeat_n(Fleet::Public, 2));
        fleets.push(Fleet::Idle);
        if network == 0 {
            fleets.extend(std::iter::repeat_n(Fleet::DualStack, 3));
        }
        fleets
    }
}

/// Which of an instance's two sibling credentials: `ec2RoleDelivery` 1.0 (used by the SSM
/// agent) or 2.0 (IMDSv2, used by the applications).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Delivery {
    V1,
    V2,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::V1 => "1.0",
            Delivery::V2 => "2.0",
        }
    }
}

/// An instance's current credentials: the two siblings EC2 issues together.
pub struct InstanceCredentials {
    pub v1_key: String,
    pub v2_key: String,
    pub created: EventTime,
}

impl InstanceCredentials {
    pub fn key(&self, delivery: Delivery) -> &str {
        match delivery {
            Delivery::V1 => &self.v1_key,
            Delivery::V2 => &self.v2_key,
        }
    }
}

pub struct Instance {
    pub id: String,
    /// Index into [`Company::networks`].
    pub network: usize,
    pub fleet: Fleet,
    pub role: String,
    pub role_id: String,
    pub private_ip: String,
    pub public_ip: String,
    pub v6: String,
    pub launch: EventTime,
    pub launched: bool,
    pub credentials: Option<InstanceCredentials>,
    pub next_refresh: EventTime,
    /// The NAT address of this instance's first call through the NAT. A NAT gateway spreads
    /// connections over its addresses, so across a fleet every address is some instance's
    /// first.
    pub first_nat: usize,
    pub nat_used: bool,
}

/// The company: accounts, their networks and the instances in them.
pub struct Company {
    pub accounts: Vec<Account>,
    pub networks: Vec<Network>,
    pub instances: Vec<Instance>,
}

fn role_id(rng: &mut Rng) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::from("AROA");
    s.extend((0..17).map(|_| char::from(alphabet[rng.below(32) as usize])));
    s
}

/// The environment an account is: the prefix of its roles' names.
fn environment(account: &str) -> &'static str {
    match account {
        "318294751063" => "prod",
        "540912836471" => "staging",
        _ => "data",
    }
}

impl Company {
    /// The company `rng` draws: addresses, ids and launch times.
    pub fn build(rng: &mut Rng) -> Company {
        let mut accounts = Vec::new();
        let mut networks = Vec::new();
        for (ai, (id, regions)) in LAYOUT.iter().enumerate() {
            let mut account = Account {
                id,
                networks: Vec::new(),
            };
            for region in regions.iter() {
                let n = networks.len();
                networks.push(Network {
                    account: ai,
                    region,
                    nat: (0..2)
                        .map(|_| {
                            format!(
                                "52.{}.{}.{}",
                                rng.below(60) + 1,
                                rng.below(256),
                                rng.below(254) + 1
                            )
                        })
                        .collect(),
                    vpc_endpoint: format!("vpce-0{}", rng.hex(16)),
                    private_prefix: format!("10.{}.{}", 10 * (ai + 1) + n, rng.below(200) + 10),
                    v6_prefix: format!(
                        "2600:1f18:{:x}:{:x}",
                        rng.below(0xfffe) + 1,
                        rng.below(0xffe) + 1
                    ),
                });
                account.networks.push(n);
            }
            accounts.push(account);
        }
        let start = slot_time(0);
        let mut instances = Vec::new();
        for (ni, network) in networks.iter().enumerate() {
            let mut role_ids: BTreeMap<&str, String> = BTreeMap::new();
            for (k, fleet) in Fleet::instances_in(ni).into_iter().enumerate() {
                let rid = role_ids
                    .entry(fleet.role())
                    .or_insert_with(|| role_id(rng))
                    .clone();
                // Most instances were running before the logs begin (their current
                // credentials' issuance is not in the data); some launch during the window.
                let launch = if fleet == Fleet::Idle {
                    start.plus_millis(2 * SLOT_MS)
                } else if rng.chance(0.7) {
                    start.plus_millis(-(rng.below(50) as i64 + 5) * EventTime::MINUTE)
                } else {
                    start.plus_millis(
                        (rng.below(20) as i64 + 1) * SLOT_MS + rng.below(SLOT_MS as u64) as i64,
                    )
                };
                let host = rng.below(250) + 2;
                let environment = environment(accounts[network.account].id);
                instances.push(Instance {
                    id: format!("i-0{}", rng.hex(16)),
                    network: ni,
                    fleet,
                    role: format!("{environment}-{}", fleet.role()),
                    role_id: rid,
                    private_ip: format!("{}.{}", network.private_prefix, host),
                    public_ip: format!(
                        "54.{}.{}.{}",
                        144 + rng.below(16),
                        rng.below(256),
                        rng.below(254) + 1
                    ),
                    v6: format!(
                        "{}:{:x}:{:x}::{:x}",
                        network.v6_prefix,
                        rng.below(0xfffe) + 1,
                        rng.below(0xfe) + 1,
                        rng.below(0xffe) + 1
                    ),
                    launch,
                    launched: false,
                    credentials: None,
                    next_refresh: launch,
                    first_nat: k % network.nat.len(),
                    nat_used: false,
                });
            }
        }
        Company {
            accounts,
            networks,
            instances,
        }
    }

    /// The index of the `nth` instance of `fleet` in network number `network`.
    pub fn find(&self, network: usize, fleet: Fleet, nth: usize) -> usize {
        self.instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.network == network && i.fleet == fleet)
            .nth(nth)
            .map(|(ix, _)| ix)
            .expect("the company's layout has this instance")
    }

    /// The network an instance runs in.
    pub fn network_of(&self, instance: usize) -> &Network {
        &self.networks[self.instances[instance].network]
    }

    /// The account id an instance runs in.
    pub fn account_of(&self, instance: usize) -> &'static str {
        self.accounts[self.network_of(instance).account].id
    }

    /// Who an instance's current credentials say the caller is.
    pub fn identity(&self, instance: usize) -> Option<InstanceIdentity> {
        let inst = &self.instances[instance];
        Some(InstanceIdentity {
            account: self.account_of(instance),
            region: self.network_of(instance).region,
            instance_id: inst.id.clone(),
            role: inst.role.clone(),
            role_id: inst.role_id.clone(),
            created: inst.credentials.as_ref()?.created,
        })
    }
}

/// The session an instance's credentials belong to: what CloudTrail records as the caller
/// of every call made with them, wherever they are used from.
#[derive(Clone, Debug)]
pub struct InstanceIdentity {
    pub account: &'static str,
    pub region: &'static str,
    pub instance_id: String,
    pub role: String,
    pub role_id: String,
    /// When the credentials were issued.
    pub created: EventTime,
}

impl InstanceIdentity {
    /// The role session a call made with the instance's `delivery` credential `key` shows.
    pub fn session<'a>(&'a self, key: &'a str, delivery: Delivery) -> RoleSession<'a> {
        RoleSession {
            account: self.account,
            role: &self.role,
            role_id: &self.role_id,
            session: &self.instance_id,
            key,
            created: self.created,
            delivery: Some(delivery.as_str()),
            ..Default::default()
        }
    }
}
