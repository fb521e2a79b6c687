//! `off-instance-credential-use`: EC2 instance credentials used from somewhere the instance
//! is not — the seeds' method (Netflix, "Detecting credential compromise in AWS"), made
//! robust against what real CloudTrail does (DETECTION-NOTES.md).
//!
//! How it decides, per instance:
//! * **Which credentials are an instance's.** `AssumeRole` called by `ec2.amazonaws.com` with
//!   the instance id as session name issues them; when that event was never seen (the scan
//!   started mid-stream), the assumed-role ARN's session name (`…/ROLE/i-…`) and
//!   `sessionContext.ec2RoleDelivery` tie a key to its instance.
//! * **What a source is.** A public IPv4 address, an IPv6 /64, or a VPC endpoint plus the
//!   private address behind it. Calls an AWS service made on the caller's behalf (`invokedBy`,
//!   `AWS Internal`, a service name) are never a source. Non-addresses never lock.
//! * **The lock is per instance, per address family**, not per credential: EC2 issues two
//!   credential sets per instance session at once, and a stolen set may never be used from
//!   the instance. The earliest source (by event time) locks; among sources first seen
//!   within a few minutes of each other, one whose first call looks like an attacker's first
//!   step (a recon call from a command-line tool) loses to one that does not.
//! * **Order does not matter.** Every question is decided only once the engine's watermark
//!   has passed the evidence by the lateness allowance plus that early window, and all
//!   evidence is kept as minima (earliest use), so records arriving out of order within the
//!   allowance change nothing. Each (credential, foreign source) is one finding with an id
//!   derived from those two alone.
//! * **What is never foreign.** Declared egress CIDRs; an address that is the first source of
//!   another live instance of the same account (a NAT gateway with several addresses); the
//!   first new address after an `AssociateAddress` / `AttachNetworkInterface` /
//!   `StartInstances` naming the instance.
//! * **What is always foreign.** With AWS's ip-ranges loaded, a public address outside AWS
//!   and outside declared egress (GuardDuty's `OutsideAWS`): this catches an attacker who is
//!   the first user of a credential. A VPC endpoint owned by an account that is neither the
//!   instance's nor a declared one.
//! * **Memory.** A credential's state is dropped once it cannot be valid any more (its
//!   expiration, or issuance + 6 h when unknown, plus a margin); an instance's once its last
//!   credential is gone.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use cloudtrail::{EventTime, Record, SourceAddress, Text};
use serde_json::json;

use crate::engine::{state_field, Detector, Timers};
use crate::fasthash::FastMap;
use crate::netset::{AwsIpRanges, NetSet};
use credwarden_core::{finding_id, Finding, FindingSource, Severity};

pub const NAME: &str = "off-instance-credential-use";

/// Tuning and optional knowledge; every field has a working default.
#[derive(Clone, Debug)]
pub struct OffInstanceConfig {
    /// The company's known egress (NAT, proxies, VPN): never foreign.
    pub egress: NetSet,
    /// AWS's published ranges: enables the outside-AWS signal.
    pub aws_ranges: Option<AwsIpRanges>,
    /// Accounts whose VPC endpoints count as ours besides the instance's own.
    pub known_accounts: HashSet<String>,
    /// How late (in event time) a record may arrive and still be taken into account.
    pub lateness_ms: i64,
    /// Sources first seen this close to the earliest compete for the lock.
    pub early_window_ms: i64,
    /// Kept after a credential's expiry before its state is dropped.
    pub expiry_margin_ms: i64,
    /// Lifetime assumed when the issuance (and so the expiration) was not seen.
    pub default_lifetime_ms: i64,
}

impl Default for OffInstanceConfig {
    fn default() -> Self {
        OffInstanceConfig {
            egress: NetSet::default(),
            aws_ranges: None,
            known_accounts: HashSet::new(),
            lateness_ms: 15 * EventTime::MINUTE,
            early_window_ms: 5 * EventTime::MINUTE,
            expiry_margin_ms: EventTime::HOUR,
            default_lifetime_ms: 6 * EventTime::HOUR,
        }
    }
}

/// Where a call came from, as the detector compares it.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
enum NetSource {
    Public4(Ipv4Addr),
    /// A private address without a VPC endpoint (rare; compared as its own family).
    Private4(Ipv4Addr),
    /// An IPv6 /64 (an instance keeps its /64; the interface id may vary).
    V6Net([u16; 4]),
    /// A VPC endpoint (ours, or of unknown owner in older logs) and the private address that
    /// used it. `owner_verified`: the record names the owner and it is one of our accounts.
    Endpoint {
        vpce: Text,
        /// An address, not its text: compared for every call made through an endpoint, and
        /// serialized as the same string either way.
        ip: IpAddr,
        owner_verified: bool,
    },
    /// A VPC endpoint in an account that is not ours.
    ForeignEndpoint {
        vpce: Text,
        account: Text,
    },
}

impl NetSource {
    /// Address family: each family has its own lock (a dual-stack instance uses both
    /// IPv4 and IPv6; an instance calls some services through endpoints, others via NAT).
    fn family(&self) -> Option<u8> {
        match self {
            NetSource::Public4(_) => Some(0),
            NetSource::Private4(_) => Some(1),
            NetSource::V6Net(_) => Some(2),
            NetSource::Endpoint { .. } => Some(3),
            NetSource::ForeignEndpoint { .. } => None,
        }
    }

    fn key(&self) -> String {
        match self {
            NetSource::Public4(a) | NetSource::Private4(a) => format!("ip:{a}"),
            NetSource::V6Net(s) => format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]),
            NetSource::Endpoint { vpce, ip, .. } => format!("vpce:{vpce}/{ip}"),
            NetSource::ForeignEndpoint { vpce, account } => format!("vpce:{vpce}@{account}"),
        }
    }
}

/// One call, as evidence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Evidence {
    time: EventTime,
    event_id: Text,
    event_name: Text,
    user_agent: Option<Text>,
    region: Option<Text>,
    ip: String,
    vpce: Option<Text>,
    access_key: Text,
    /// The call is on the recon list (`data/recon-actions.txt`).
    recon: bool,
}

impl Evidence {
    fn from_record(r: &Record, access_key: &str) -> Evidence {
        Evidence {
            time: r.event_time,
            event_id: r.event_id.clone().unwrap_or_default(),
            event_name: r.event_name.clone(),
            user_agent: r.user_agent.clone(),
            region: r.aws_region.clone(),
            ip: r.source.to_string(),
            vpce: r.vpc_endpoint_id.clone(),
            access_key: access_key.into(),
            recon: crate::recon::recon_index(&r.event_source, &r.event_name).is_some(),
        }
    }

    /// Earliest wins; eventID breaks ties so the choice never depends on arrival order.
    fn earlier_than(&self, other: &Evidence) -> bool {
        (self.time, &self.event_id) < (other.time, &other.event_id)
    }

    fn json(&self) -> serde_json::Value {
        json!({"time": self.time.to_string(), "event_id": &*self.event_id, "event_name": &*self.event_name,
               "source_ip": self.ip, "vpc_endpoint": self.vpce.as_deref(), "user_agent": self.user_agent.as_deref(),
               "region": self.region.as_deref(), "access_key_id": &*self.access_key})
    }
}

/// Why a source was accepted or judged foreign (the finding's `details.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Reason {
    DeclaredEgress,
    ForeignVpcEndpoint,
    OutsideAws,
    Lock,
    FirstSourceOfAnotherInstance,
    AfterAddressChange,
    UnverifiedNewNetwork,
    DifferentSource,
    /// A private address without a VPC endpoint, first used with an attacker's first step
    /// after the instance already held a lock elsewhere.
    UnverifiedPrivateSource,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::DeclaredEgress => "declared-egress",
            Reason::ForeignVpcEndpoint => "foreign-vpc-endpoint",
            Reason::OutsideAws => "outside-aws",
            Reason::Lock => "lock",
            Reason::FirstSourceOfAnotherInstance => "first-source-of-another-instance",
            Reason::AfterAddressChange => "after-address-change",
            Reason::UnverifiedNewNetwork => "unverified-new-network",
            Reason::DifferentSource => "different-source",
            Reason::UnverifiedPrivateSource => "unverified-private-source",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Verdict {
    Undecided,
    Accepted(Reason),
    Foreign(Reason),
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SourceState {
    source: NetSource,
    addr: Option<IpAddr>,
    first: Evidence,
    /// Earliest use per access key.
    per_key: Vec<Evidence>,
    verdict: Verdict,
    /// For accepted sources: the lock this source is, or is accepted beside.
    reported: Vec<Text>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct InstanceState {
    account: Text,
    instance_id: Text,
    role_arn: Option<Text>,
    /// How the instance was recognised: issuance seen, or session name (+ ec2RoleDelivery).
    identified_by: Text,
    keys: Vec<Text>,
    sources: Vec<SourceState>,
    address_changes: Vec<Evidence>,
    /// The source index that locks each family, once chosen.
    locks: [Option<usize>; 4],
    /// Current earliest source per family, registered in the account's shared-egress counts.
    earliest: [Option<NetSource>; 4],
    last_seen: EventTime,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KeyState {
    instance: String,
    expires: EventTime,
    issuance: Option<Evidence>,
    delivery: Option<Text>,
}

/// What is known about a credential when it is first tied to an instance.
struct KeySighting<'a> {
    key: &'a str,
    account: &'a str,
    instance_id: &'a str,
    role_arn: Option<&'a str>,
    expires: EventTime,
    issuance: Option<Evidence>,
    delivery: Option<&'a str>,
    time: EventTime,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum Timer {
    Decide(String),
    ExpireKey(Text),
    ExpireInstance(String),
}

pub struct OffInstanceDetector {
    cfg: OffInstanceConfig,
    keys: FastMap<Text, KeyState>,
    instances: FastMap<String, InstanceState>,
    /// (account, source) → live instances whose earliest source it is.
    first_sources: FastMap<(Text, NetSource), u32>,
    timers: Timers<Timer>,
}

/// `i-` and 8–17 alphanumerics: real ids are hex; anonymised data sets mix case and letters.
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|rest| {
        (8..=17).contains(&rest.len()) && rest.bytes().all(|c| c.is_ascii_alphanumeric())
    })
}

/// Whether the part of `arn` after its last `/` is an instance id ([`is_instance_id`]),
/// looked for in the ARN's last 20 bytes only: `/`, `i-` and at most 17 characters fit there,
/// so a long ARN is never scanned from its start.
fn ends_in_instance_id(arn: &str) -> bool {
    let from = arn.len().saturating_sub(20);
    arn.as_bytes()[from..]
        .iter()
        .rposition(|&c| c == b'/')
        // `/` is one byte: what follows it starts a character.
        .is_some_and(|i| is_instance_id(&arn[from + i + 1..]))
}

/// Account and session name of `arn:<partition>:sts::<account>:assumed-role/<role>/<session>`.
fn assumed_role_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_arn, _partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "sts" {
        return None;
    }
    let rest = resource.strip_prefix("assumed-role/")?;
    let (role, session) = rest.rsplit_once('/')?;
    Some((account, role, session))
}

fn role_account(role_arn: &str) -> Option<&str> {
    credwarden_core::account::arn_account(role_arn)
}

/// Preference between near-simultaneous first sources: a recon call from a command-line
/// tool, a scripting library or no agent at all looks like an attacker's first step and
/// loses the lock to any other source. Nothing is promoted: among ordinary calls the
/// earliest wins, so an instance whose NAT spreads calls over several addresses still
/// locks its first one.
fn on_instance_score(e: &Evidence) -> i32 {
    let ua = e.user_agent.as_deref().unwrap_or("").to_ascii_lowercase();
    let tool = ua.is_empty()
        || ua.contains("aws-cli")
        || ua.contains("python-requests")
        || ua.contains("curl")
        || ua.contains("pacu");
    if e.recon && tool {
        -1
    } else {
        0
    }
}

impl OffInstanceDetector {
    pub fn new(cfg: OffInstanceConfig) -> Self {
        OffInstanceDetector {
            cfg,
            keys: FastMap::default(),
            instances: FastMap::default(),
            first_sources: FastMap::default(),
            timers: Timers::default(),
        }
    }

    fn decision_delay(&self) -> i64 {
        self.cfg.lateness_ms + self.cfg.early_window_ms
    }

    fn instance_entry(
        &mut self,
        account: &str,
        instance_id: &str,
        time: EventTime,
    ) -> &mut InstanceState {
        let key = format!("{account}/{}", instance_id.to_ascii_lowercase());
        self.instances.entry(key).or_insert_with(|| InstanceState {
            account: account.into(),
            instance_id: instance_id.into(),
            role_arn: None,
            identified_by: "session-name".into(),
            keys: Vec::new(),
            sources: Vec::new(),
            address_changes: Vec::new(),
            locks: [None; 4],
            earliest: Default::default(),
            last_seen: time,
        })
    }

    /// Register (or refresh) a credential of an instance.
    fn register_key(&mut self, k: KeySighting<'_>) {
        let KeySighting {
            key,
            account,
            instance_id,
            role_arn,
            expires,
            issuance,
            delivery,
            time,
        } = k;
        let ikey = format!("{account}/{}", instance_id.to_ascii_lowercase());
        let identified_by = if issuance.is_some() {
            "issuance"
        } else if delivery.is_some() {
            "session-name+ec2RoleDelivery"
        } else {
            "session-name"
        };
        let inst = self.instance_entry(account, instance_id, time);
        if inst.role_arn.is_none() {
            inst.role_arn = role_arn.map(Into::into);
        }
        if identified_by == "issuance" || &*inst.identified_by == "session-name" {
            inst.identified_by = identified_by.into();
        }
        if !inst.keys.iter().any(|k| &**k == key) {
            inst.keys.push(key.into());
        }
        let ks = self.keys.entry(key.into()).or_insert_with(|| KeyState {
            instance: ikey,
            expires,
            issuance: None,
            delivery: None,
        });
        ks.expires = ks.expires.max(expires);
        if issuance.is_some() {
            ks.issuance = issuance;
        }
        if ks.delivery.is_none() {
            ks.delivery = delivery.map(Into::into);
        }
        let at = ks.expires.plus_millis(self.cfg.expiry_margin_ms);
        self.timers.push(at, Timer::ExpireKey(key.into()));
    }

    fn observe_issuance(&mut self, r: &Record) {
        let Some(iss) = &r.issuance else { return };
        let by_ec2 = r.identity.invoked_by.as_deref() == Some("ec2.amazonaws.com")
            || matches!(&r.source, SourceAddress::AwsService(s) if &**s == "ec2.amazonaws.com");
        let Some(session) = iss.session_name.as_deref() else {
            return;
        };
        if !by_ec2
            || &*r.event_name != "AssumeRole"
            || !is_instance_id(session)
            || r.error_code.is_some()
        {
            return;
        }
        let Some(account) = iss
            .role_arn
            .as_deref()
            .and_then(role_account)
            .or(r.account())
        else {
            return;
        };
        // STS caps role sessions at 12 h (36 h for some chains): a later or earlier stated
        // expiration is not believed, so a hostile value cannot keep state alive forever.
        let longest = r.event_time.plus_millis(36 * EventTime::HOUR);
        let expires = iss.expiration.map_or(
            r.event_time.plus_millis(self.cfg.default_lifetime_ms),
            |e| e.clamp(r.event_time, longest),
        );
        let evidence = Evidence::from_record(r, &iss.access_key_id);
        let account = account.to_owned();
        self.register_key(KeySighting {
            key: &iss.access_key_id,
            account: &account,
            instance_id: session,
            role_arn: iss.role_arn.as_deref(),
            expires,
            issuance: Some(evidence),
            delivery: None,
            time: r.event_time,
        });
    }

    fn observe_address_change(&mut self, r: &Record) {
        if r.instances_named.is_empty() || r.error_code.is_some() {
            return;
        }
        let Some(account) = r.account().map(str::to_owned) else {
            return;
        };
        for id in &r.instances_named {
            if !is_instance_id(id) {
                continue;
            }
            let ev = Evidence::from_record(r, r.identity.access_key_id.as_deref().unwrap_or(""));
            let inst = self.instance_entry(&account, id, r.event_time);
            if !inst.address_changes.contains(&ev) {
                inst.address_changes.push(ev);
            }
            let ikey = format!("{account}/{}", id.to_ascii_lowercase());
            let at = r
                .event_time
                .plus_millis(self.cfg.default_lifetime_ms + self.cfg.expiry_margin_ms);
            self.timers.push(at, Timer::ExpireInstance(ikey));
        }
    }

    /// A credential whose issuance was not seen: recognise the instance from the session
    /// (some service events carry no `userIdentity.type`; the ARN's shape decides) and
    /// register the key. False when the call is not an instance's.
    fn recognise_from_session(&mut self, r: &Record, key: &str) -> bool {
        if r.identity
            .kind
            .as_deref()
            .is_some_and(|k| k != "AssumedRole")
        {
            return false;
        }
        let Some(arn) = r.identity.arn.as_deref() else {
            return false;
        };
        // Most session keys are not an instance's (people, functions, tasks), and this runs
        // for each of their calls: the ARN's last bytes say so before it is taken apart.
        if !ends_in_instance_id(arn) {
            return false;
        }
        let Some((account, _role, session)) = assumed_role_parts(arn) else {
            return false;
        };
        let (account, session) = (account.to_owned(), session.to_owned());
        let expires = r.event_time.plus_millis(self.cfg.default_lifetime_ms);
        let issuer = r.identity.session_issuer_arn.clone();
        self.register_key(KeySighting {
            key,
            account: &account,
            instance_id: &session,
            role_arn: issuer.as_deref(),
            expires,
            issuance: None,
            delivery: r.identity.ec2_role_delivery.as_deref(),
            time: r.event_time,
        });
        true
    }

    fn observe_use(&mut self, r: &Record) {
        let Some(key) = r.identity.access_key_id.as_deref() else {
            return;
        };
        if !key.starts_with("ASIA") {
            return;
        }
        // This runs for every call made with an instance credential: one lookup for a known
        // key, and it allocates only when the call is new evidence (a new source, a new key
        // at a source, or an earlier first use than known).
        let ks = match self.keys.get_mut(key) {
            Some(ks) => ks,
            None => {
                if !self.recognise_from_session(r, key) {
                    return;
                }
                match self.keys.get_mut(key) {
                    Some(ks) => ks,
                    None => return,
                }
            }
        };
        if ks.delivery.is_none() {
            ks.delivery = r.identity.ec2_role_delivery.clone();
        }
        let Some(inst) = self.instances.get_mut(&ks.instance) else {
            return;
        };
        let Some((source, addr)) = classify_source(&self.cfg, r, &inst.account) else {
            return;
        };
        inst.last_seen = inst.last_seen.max(r.event_time);
        if inst.role_arn.is_none() {
            inst.role_arn = r.identity.session_issuer_arn.clone();
        }
        let this = (r.event_time, r.event_id.as_deref().unwrap_or(""));
        let earlier = |e: &Evidence| this < (e.time, &*e.event_id);
        let (idx, created) = match inst.sources.iter().position(|s| s.source == source) {
            Some(i) => (i, false),
            None => {
                let ev = Evidence::from_record(r, key);
                inst.sources.push(SourceState {
                    source: source.clone(),
                    addr,
                    first: ev.clone(),
                    per_key: vec![ev],
                    verdict: Verdict::Undecided,
                    reported: Vec::new(),
                });
                (inst.sources.len() - 1, true)
            }
        };
        let s = &mut inst.sources[idx];
        let moved = !created && earlier(&s.first);
        if moved {
            s.first = Evidence::from_record(r, key);
        }
        // Newest key last: an instance calls with its current credentials, so the search
        // from the end stops at the first entry (the others are older keys still valid).
        let new_key = created
            || match s.per_key.iter_mut().rev().find(|e| &*e.access_key == key) {
                Some(e) => {
                    if earlier(e) {
                        *e = Evidence::from_record(r, key);
                    }
                    false
                }
                None => {
                    s.per_key.push(Evidence::from_record(r, key));
                    true
                }
            };
        if !(created || moved || new_key) {
            return;
        }
        let (verdict, first_time) = (s.verdict, s.first.time);
        let ikey = ks.instance.clone();
        if created || moved {
            self.update_earliest(&ikey);
        }
        let delay = self.decision_delay();
        match verdict {
            Verdict::Undecided if created || moved => self
                .timers
                .push(first_time.plus_millis(delay), Timer::Decide(ikey)),
            // A new key at a source already judged foreign: reported once its own evidence
            // is complete (its earliest use there may still be in flight).
            Verdict::Foreign(_) if new_key => self
                .timers
                .push(r.event_time.plus_millis(delay), Timer::Decide(ikey)),
            _ => {}
        }
    }

    /// Could this source be the instance's own network? Not if it is outside AWS (ranges
    /// loaded), already judged foreign, or its first call looks like an attacker's first step.
    fn lock_eligible(&self, s: &SourceState) -> bool {
        s.source.family().is_some()
            && !matches!(s.verdict, Verdict::Foreign(_))
            && !self.outside_aws(s)
            && on_instance_score(&s.first) >= 0
    }

    /// The earliest lock-eligible source of each family, and which families are *primary*:
    /// first used within the early window of the instance's first use. (A family that only
    /// appears later — an instance that used IPv4 for hours and suddenly IPv6 — is secondary:
    /// its first source must be corroborated before it may lock.)
    fn family_firsts(&self, inst: &InstanceState) -> ([Option<usize>; 4], [bool; 4]) {
        let mut best: [Option<usize>; 4] = [None; 4];
        for (i, s) in inst.sources.iter().enumerate() {
            if !self.lock_eligible(s) {
                continue;
            }
            let fam = s.source.family().expect("eligible sources have a family") as usize;
            if best[fam].is_none_or(|b| s.first.earlier_than(&inst.sources[b].first)) {
                best[fam] = Some(i);
            }
        }
        let overall = best
            .iter()
            .flatten()
            .map(|&i| inst.sources[i].first.time)
            .min();
        let mut primary = [false; 4];
        for fam in 0..4 {
            primary[fam] = match (best[fam], overall) {
                (Some(i), Some(o)) => {
                    inst.sources[i].first.time <= o.plus_millis(self.cfg.early_window_ms)
                }
                _ => false,
            };
        }
        (best, primary)
    }

    /// Keep the account-wide "first source of a live instance" counts current: each
    /// instance registers the first eligible source of each of its primary families.
    fn update_earliest(&mut self, ikey: &str) {
        let Some(inst) = self.instances.get(ikey) else {
            return;
        };
        let (best, primary) = self.family_firsts(inst);
        let wanted: [Option<NetSource>; 4] = std::array::from_fn(|f| {
            best[f]
                .filter(|_| primary[f])
                .map(|i| inst.sources[i].source.clone())
        });
        if wanted == inst.earliest {
            return;
        }
        let account = inst.account.clone();
        let inst = self.instances.get_mut(ikey).expect("live instance");
        let old = std::mem::replace(&mut inst.earliest, wanted.clone());
        for src in old.into_iter().flatten() {
            dec(&mut self.first_sources, (account.clone(), src));
        }
        for src in wanted.into_iter().flatten() {
            *self
                .first_sources
                .entry((account.clone(), src))
                .or_insert(0) += 1;
        }
    }

    /// Is `s` the registered first source of another live instance of the account?
    fn shared_first_source(&self, inst: &InstanceState, s: &SourceState) -> bool {
        let own = inst.earliest.iter().flatten().any(|e| *e == s.source);
        self.first_sources
            .get(&(inst.account.clone(), s.source.clone()))
            .is_some_and(|n| *n > u32::from(own))
    }

    /// Decide every source of the instance whose evidence is complete by `watermark`, and
    /// report foreign sources' keys whose evidence is complete.
    fn decide(&mut self, ikey: &str, watermark: Option<EventTime>, out: &mut Vec<Finding>) {
        let delay = self.decision_delay();
        let ready = |t: EventTime| watermark.is_none_or(|w| t.plus_millis(delay) <= w);
        let Some(inst) = self.instances.get(ikey) else {
            return;
        };
        let mut order: Vec<usize> = (0..inst.sources.len())
            .filter(|&i| {
                inst.sources[i].verdict == Verdict::Undecided && ready(inst.sources[i].first.time)
            })
            .collect();
        order.sort_by(|&a, &b| {
            (inst.sources[a].first.time, &inst.sources[a].first.event_id)
                .cmp(&(inst.sources[b].first.time, &inst.sources[b].first.event_id))
        });
        let (_, primary) = self.family_firsts(inst);
        let mut decisions = Vec::with_capacity(order.len());
        let mut locks = inst.locks;
        for &i in &order {
            let s = &inst.sources[i];
            let verdict = if s.addr.is_some_and(|a| self.cfg.egress.contains(a)) {
                Verdict::Accepted(Reason::DeclaredEgress)
            } else if matches!(s.source, NetSource::ForeignEndpoint { .. }) {
                Verdict::Foreign(Reason::ForeignVpcEndpoint)
            } else if self.outside_aws(s) {
                Verdict::Foreign(Reason::OutsideAws)
            } else {
                let fam = s
                    .source
                    .family()
                    .expect("only foreign endpoints lack a family")
                    as usize;
                // A private address without a VPC endpoint (anonymised logs, a proxy) is no
                // evidence of the instance: it must not take a lock of its own when the
                // instance already holds one elsewhere and its first call is an attacker's
                // first step (a stolen sibling credential's `GetCallerIdentity`).
                let private_recon_after_lock = matches!(s.source, NetSource::Private4(_))
                    && s.first.recon
                    && locks.iter().enumerate().any(|(f, l)| {
                        f != fam && l.is_some_and(|l| inst.sources[l].first.earlier_than(&s.first))
                    });
                if private_recon_after_lock && locks[fam].is_none() {
                    decisions.push((i, Verdict::Foreign(Reason::UnverifiedPrivateSource)));
                    continue;
                }
                if locks[fam].is_none() {
                    if primary[fam] {
                        locks[fam] = self.choose_lock(inst, fam);
                    } else if self.shared_first_source(inst, s)
                        || matches!(
                            s.source,
                            NetSource::Endpoint {
                                owner_verified: true,
                                ..
                            }
                        )
                    {
                        // A family the instance took up later locks only on corroborated
                        // ground: another instance's first source, or our own endpoint.
                        locks[fam] = Some(i);
                    }
                }
                if locks[fam] == Some(i) {
                    Verdict::Accepted(Reason::Lock)
                } else if self.shared_first_source(inst, s) {
                    Verdict::Accepted(Reason::FirstSourceOfAnotherInstance)
                } else if locks[fam].is_some() && self.follows_address_change(inst, i) {
                    Verdict::Accepted(Reason::AfterAddressChange)
                } else if locks[fam].is_none() {
                    Verdict::Foreign(Reason::UnverifiedNewNetwork)
                } else {
                    Verdict::Foreign(Reason::DifferentSource)
                }
            };
            decisions.push((i, verdict));
        }
        let inst = self.instances.get_mut(ikey).expect("live instance");
        inst.locks = locks;
        let mut foreign_now = false;
        for &(i, v) in &decisions {
            inst.sources[i].verdict = v;
            foreign_now |= matches!(v, Verdict::Foreign(_));
        }
        if foreign_now {
            // A source judged foreign no longer stands as this instance's first source.
            self.update_earliest(ikey);
        }
        let inst = self.instances.get(ikey).expect("live instance");
        let foreign: Vec<(usize, Reason)> = inst
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.verdict {
                Verdict::Foreign(reason) => Some((i, reason)),
                _ => None,
            })
            .collect();
        for (i, reason) in foreign {
            self.report(ikey, i, reason, watermark, out);
        }
    }

    fn outside_aws(&self, s: &SourceState) -> bool {
        let Some(ranges) = &self.cfg.aws_ranges else {
            return false;
        };
        match (&s.source, s.addr) {
            (NetSource::Public4(_) | NetSource::V6Net(_), Some(a)) => !ranges.set.contains(a),
            _ => false,
        }
    }

    /// The lock of a primary family: its earliest eligible source, unless another source first
    /// seen within the early window looks more like the instance. Declared egress never locks
    /// (it is accepted anyway, and must not push the instance's own address aside).
    fn choose_lock(&self, inst: &InstanceState, fam: usize) -> Option<usize> {
        let candidates = || {
            inst.sources.iter().enumerate().filter(|(_, s)| {
                s.source.family() == Some(fam as u8)
                    && self.lock_eligible(s)
                    && !s.addr.is_some_and(|a| self.cfg.egress.contains(a))
            })
        };
        let (first, base) = candidates().min_by(|a, b| {
            (a.1.first.time, &a.1.first.event_id).cmp(&(b.1.first.time, &b.1.first.event_id))
        })?;
        let horizon = base.first.time.plus_millis(self.cfg.early_window_ms);
        let mut best = first;
        for (i, s) in candidates() {
            if s.first.time > horizon {
                continue;
            }
            let b = &inst.sources[best].first;
            if (
                on_instance_score(&s.first),
                Reverse((s.first.time, &s.first.event_id)),
            ) > (on_instance_score(b), Reverse((b.time, &b.event_id)))
            {
                best = i;
            }
        }
        Some(best)
    }

    /// Is source `i` the first new source of its family after an address change named the
    /// instance (and within an hour of it)?
    fn follows_address_change(&self, inst: &InstanceState, i: usize) -> bool {
        let s = &inst.sources[i];
        let fam = s.source.family();
        inst.address_changes.iter().any(|change| {
            let t = change.time;
            if s.first.time < t || s.first.time > t.plus_millis(EventTime::HOUR) {
                return false;
            }
            !inst.sources.iter().any(|o| {
                o.source.family() == fam
                    && o.source != s.source
                    && o.first.time >= t
                    && o.first.earlier_than(&s.first)
            })
        })
    }

    /// Emit one finding per access key that used foreign source `idx`, was not reported yet,
    /// and whose evidence is complete by `watermark` (all of them at the end of input).
    fn report(
        &mut self,
        ikey: &str,
        idx: usize,
        reason: Reason,
        watermark: Option<EventTime>,
        out: &mut Vec<Finding>,
    ) {
        let delay = self.decision_delay();
        let inst = self.instances.get(ikey).expect("live instance");
        let s = &inst.sources[idx];
        let pending: Vec<Evidence> = s
            .per_key
            .iter()
            .filter(|e| {
                !s.reported.contains(&e.access_key)
                    && watermark.is_none_or(|w| e.time.plus_millis(delay) <= w)
            })
            .cloned()
            .collect();
        if pending.is_empty() {
            return;
        }
        let fam = s.source.family().map(|f| f as usize);
        let lock = fam
            .and_then(|f| inst.locks[f])
            .or_else(|| inst.locks.iter().flatten().next().copied())
            .map(|l| &inst.sources[l].first);
        for ev in &pending {
            out.push(self.finding(inst, s, ev, lock, reason));
        }
        let inst = self.instances.get_mut(ikey).expect("live instance");
        inst.sources[idx]
            .reported
            .extend(pending.into_iter().map(|e| e.access_key));
    }

    fn finding(
        &self,
        inst: &InstanceState,
        s: &SourceState,
        ev: &Evidence,
        lock: Option<&Evidence>,
        reason: Reason,
    ) -> Finding {
        let key_state = self.keys.get(&ev.access_key);
        let issuance = key_state.and_then(|k| k.issuance.as_ref());
        let role = inst.role_arn.as_deref().unwrap_or("(unknown role)");
        let role_name = role.rsplit('/').next().unwrap_or(role);
        let where_from = match &s.source {
            NetSource::Endpoint { vpce, ip, .. } => format!("{ip} through VPC endpoint {vpce}"),
            NetSource::ForeignEndpoint { vpce, account } => {
                format!("{} through VPC endpoint {vpce} of account {account}", ev.ip)
            }
            _ => ev.ip.clone(),
        };
        let summary = match (reason, lock) {
            (Reason::OutsideAws, _) => format!("Credential {} of instance {} (role {role_name}) was used from {where_from}, outside AWS's published address ranges and outside the declared egress.", ev.access_key, inst.instance_id),
            (Reason::ForeignVpcEndpoint, _) => format!("Credential {} of instance {} (role {role_name}) was used from {where_from}, an endpoint that is not in one of our accounts.", ev.access_key, inst.instance_id),
            (_, Some(l)) => format!("Credential {} of instance {} (role {role_name}) was used from {where_from}; the instance's credentials have been used from {} since {}.", ev.access_key, inst.instance_id, l.ip, l.time),
            (_, None) => format!("Credential {} of instance {} (role {role_name}) was used from {where_from}, not from the instance's network.", ev.access_key, inst.instance_id),
        };
        let mut event_ids: Vec<String> = Vec::new();
        for e in [issuance, lock, Some(ev)].into_iter().flatten() {
            if !e.event_id.is_empty() && !event_ids.iter().any(|x| **x == *e.event_id) {
                event_ids.push(e.event_id.to_string());
            }
        }
        Finding {
            id: finding_id(NAME, &[&ev.access_key, &s.source.key()]),
            detector: NAME,
            severity: Severity::High,
            time: ev.time.to_string(),
            account: Some(inst.account.to_string()),
            account_name: None,
            account_owner: None,
            region: ev.region.as_deref().map(str::to_owned),
            principal: inst.role_arn.as_deref().map(str::to_owned),
            access_key_id: Some(ev.access_key.to_string()),
            source: FindingSource { ip: Some(ev.ip.clone()), vpc_endpoint: ev.vpce.as_deref().map(str::to_owned), user_agent: ev.user_agent.as_deref().map(str::to_owned) },
            event_ids,
            summary,
            details: json!({
                "reason": reason.as_str(),
                "instance_id": &*inst.instance_id,
                "role_arn": inst.role_arn.as_deref(),
                "credential_identified_by": &*inst.identified_by,
                "ec2_role_delivery": key_state.and_then(|k| k.delivery.as_deref()),
                "issuance": issuance.map(Evidence::json),
                "locked_source": lock.map(|l| json!({"source": l.ip, "vpc_endpoint": l.vpce.as_deref(), "locked_at": l.time.to_string(), "event_id": &*l.event_id, "user_agent": l.user_agent.as_deref(), "access_key_id": &*l.access_key})),
                "foreign_use": ev.json(),
                "foreign_source": s.source.key(),
            }),
            remediation: format!(
                "Treat the role's credentials as stolen. Revoke its active sessions (IAM console: role {role_name} → Revoke active sessions, which denies every session issued before now), then replace or restart instance {} so it gets fresh credentials. Find how they left the instance (SSRF to the metadata service, a debug endpoint, logs) and enforce IMDSv2. Review what {} did with access key {}: filter CloudTrail on that accessKeyId. If the source is a new egress address of ours, declare it in the egress CIDRs.",
                inst.instance_id, ev.ip, ev.access_key
            ),
        }
    }

    fn expire_key(&mut self, key: &str, watermark: EventTime) {
        let Some(ks) = self.keys.get(key) else { return };
        if ks.expires.plus_millis(self.cfg.expiry_margin_ms) > watermark {
            return; // extended since the timer was set; a later timer exists
        }
        let ikey = ks.instance.clone();
        self.keys.remove(key);
        let horizon = watermark.plus_millis(-(EventTime::HOUR + self.decision_delay()));
        if let Some(inst) = self.instances.get_mut(&ikey) {
            inst.keys.retain(|k| &**k != key);
            // Evidence of a dead credential at a decided source can never matter again once
            // its finding, if any, is out. A source keeps its first use: that is the lock.
            for s in inst
                .sources
                .iter_mut()
                .filter(|s| s.verdict != Verdict::Undecided)
            {
                let owed = matches!(s.verdict, Verdict::Foreign(_))
                    && !s.reported.iter().any(|k| &**k == key);
                if !owed {
                    s.per_key.retain(|e| &*e.access_key != key);
                    s.reported.retain(|k| &**k != key);
                }
            }
            // A long-lived instance keeps only what can still matter: decided sources with no
            // live evidence go (the locks stay), and address changes older than they can count.
            let mut j = inst.sources.len();
            while j > 0 {
                j -= 1;
                let s = &inst.sources[j];
                let is_lock = inst.locks.contains(&Some(j));
                if s.verdict != Verdict::Undecided && !is_lock && s.per_key.is_empty() {
                    inst.sources.remove(j);
                    for l in inst.locks.iter_mut().flatten() {
                        if *l > j {
                            *l -= 1;
                        }
                    }
                }
            }
            inst.address_changes.retain(|c| c.time >= horizon);
            if inst.keys.is_empty() {
                let at = inst
                    .last_seen
                    .plus_millis(self.cfg.expiry_margin_ms)
                    .max(watermark);
                self.timers.push(at, Timer::ExpireInstance(ikey));
            }
        }
    }

    fn expire_instance(&mut self, ikey: &str, watermark: EventTime, out: &mut Vec<Finding>) {
        let Some(inst) = self.instances.get(ikey) else {
            return;
        };
        if !inst.keys.is_empty()
            || inst.last_seen.plus_millis(self.cfg.expiry_margin_ms) > watermark
        {
            return;
        }
        self.decide(ikey, None, out);
        let inst = self.instances.remove(ikey).expect("checked above");
        for src in inst.earliest.into_iter().flatten() {
            dec(&mut self.first_sources, (inst.account.clone(), src));
        }
    }
}

/// The source a record's call came from, or `None` when it is not a network source.
fn classify_source(
    cfg: &OffInstanceConfig,
    r: &Record,
    account: &str,
) -> Option<(NetSource, Option<IpAddr>)> {
    if r.made_by_aws_for_caller() {
        return None;
    }
    let addr = match &r.source {
        SourceAddress::V4(a) => IpAddr::V4(*a),
        SourceAddress::V6(a) => IpAddr::V6(*a),
        _ => return None,
    };
    if let Some(vpce) = &r.vpc_endpoint_id {
        return Some(match r.vpc_endpoint_account_id.as_deref() {
            Some(owner) if owner != account && !cfg.known_accounts.contains(owner) => (
                NetSource::ForeignEndpoint {
                    vpce: vpce.clone(),
                    account: owner.into(),
                },
                Some(addr),
            ),
            owner => (
                NetSource::Endpoint {
                    vpce: vpce.clone(),
                    ip: addr,
                    owner_verified: owner.is_some(),
                },
                Some(addr),
            ),
        });
    }
    Some(match addr {
        IpAddr::V4(a) if r.source.is_private() => (NetSource::Private4(a), Some(addr)),
        IpAddr::V4(a) => (NetSource::Public4(a), Some(addr)),
        IpAddr::V6(a) => {
            let s = a.segments();
            (NetSource::V6Net([s[0], s[1], s[2], s[3]]), Some(addr))
        }
    })
}

fn dec(map: &mut FastMap<(Text, NetSource), u32>, k: (Text, NetSource)) {
    if let Some(n) = map.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            map.remove(&k);
        }
    }
}

impl Detector for OffInstanceDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, r: &Record, out: &mut Vec<Finding>) {
        match (
            &*r.event_source,
            r.issuance.is_some(),
            r.instances_named.is_empty(),
        ) {
            ("sts.amazonaws.com", true, _) => self.observe_issuance(r),
            ("ec2.amazonaws.com", _, false) => self.observe_address_change(r),
            _ => {}
        }
        self.observe_use(r);
        let _ = out; // findings leave only through `advance` and `finish`, once evidence is complete
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        while let Some((_, timer)) = self.timers.pop_due(watermark) {
            match timer {
                Timer::Decide(ikey) => self.decide(&ikey, Some(watermark), out),
                Timer::ExpireKey(key) => self.expire_key(&key, watermark),
                Timer::ExpireInstance(ikey) => self.expire_instance(&ikey, watermark, out),
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut all: Vec<String> = self.instances.keys().cloned().collect();
        all.sort();
        for ikey in all {
            self.decide(&ikey, None, out);
        }
    }

    fn live_state(&self) -> usize {
        self.keys.len() + self.instances.len()
    }

    fn save_state(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": self.keys, "instances": self.instances,
            "first_sources": self.first_sources.iter().collect::<Vec<_>>(), "timers": self.timers,
        })
    }

    fn restore_state(&mut self, mut state: serde_json::Value) -> Result<(), String> {
        self.keys = state_field(&mut state, "keys")?;
        self.instances = state_field(&mut state, "instances")?;
        self.first_sources =
            state_field::<Vec<((Text, NetSource), u32)>>(&mut state, "first_sources")?
                .into_iter()
                .collect();
        self.timers = state_field(&mut state, "timers")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading the ARN from its end answers what splitting it at its last `/` would.
    #[test]
    fn an_instance_session_is_recognised_from_the_arn_end() {
        let tails = [
            "i-0123456789abcdef0",
            "i-01234567",
            "i-0123456",
            "i-0123456789abcdef01",
            "i-ABCdef12",
            "i-0123-4567",
            "i-",
            "i-é1234567",
            "xi-01234567",
            "",
            "alice",
        ];
        for head in [
            "arn:aws:sts::111122223333:assumed-role/app/",
            "arn:aws:sts::111122223333:assumed-role/app/x",
            "",
            "/",
            "é/",
        ] {
            for tail in tails {
                let arn = format!("{head}{tail}");
                let split = arn.rsplit('/').next().is_some_and(is_instance_id) && arn.contains('/');
                assert_eq!(ends_in_instance_id(&arn), split, "{arn:?}");
            }
        }
        assert!(ends_in_instance_id(
            "arn:aws:sts::111122223333:assumed-role/app/i-0123456789abcdef0"
        ));
    }
}
