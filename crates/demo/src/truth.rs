//! The ground truth: every finding the detectors must make on the demo's data, and the
//! bookkeeping that knows, as records are made, which calls are new for their principal
//! or account.

use std::collections::{HashMap, HashSet};

use credwarden_core::EventTime;
use serde::Serialize;

use crate::record::Call;

/// The learning window the demo's novelty detectors run with (its data spans six hours).
pub const DEMO_RECON_LEARNING_MS: i64 = EventTime::HOUR;

/// Why a finding is expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TruthKind {
    /// An injected attack (or what the attacker did that was new for the role or account).
    Attack,
    /// Expected but not an attack: a static key in daily use must be reported so that it
    /// gets retired.
    Hygiene,
}

/// One expected finding: the detector, and the credential and source it must name.
#[derive(Clone, Debug, Serialize)]
pub struct TruthEntry {
    pub kind: TruthKind,
    /// The attack's name (`ssrf-credential-theft`, …), or the hygiene rule's.
    pub attack: &'static str,
    pub detector: &'static str,
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub access_key_id: String,
    pub source_ip: String,
    pub vpc_endpoint: Option<String>,
    pub time: String,
    pub description: &'static str,
}

/// A credential used from a source: what a finding about it names.
#[derive(Clone, Debug)]
pub struct CredentialUse {
    pub account: &'static str,
    pub region: String,
    /// The instance the credential belongs to, `-` for a user's key.
    pub instance_id: String,
    pub access_key_id: String,
    pub source_ip: String,
    pub vpc_endpoint: Option<String>,
}

/// What an attack is, for its truth entry.
#[derive(Clone, Copy, Debug)]
pub struct AttackLabel {
    pub attack: &'static str,
    pub detector: &'static str,
    pub description: &'static str,
}

impl TruthEntry {
    /// The entry for an attack first seen at `time`.
    pub fn attack(label: AttackLabel, used: CredentialUse, time: EventTime) -> TruthEntry {
        TruthEntry {
            kind: TruthKind::Attack,
            attack: label.attack,
            detector: label.detector,
            account: used.account.to_owned(),
            region: used.region,
            instance_id: used.instance_id,
            access_key_id: used.access_key_id,
            source_ip: used.source_ip,
            vpc_endpoint: used.vpc_endpoint,
            time: time.to_string(),
            description: label.description,
        }
    }

    /// The entry for account `account`'s CI key in daily use from `source_ip`.
    pub fn static_key_in_use(account: &str, access_key_id: String, source_ip: &str) -> Self {
        TruthEntry {
            kind: TruthKind::Hygiene,
            attack: "static-key-in-use",
            detector: detect::static_key::NAME,
            account: account.to_owned(),
            region: "-".to_owned(),
            instance_id: "-".to_owned(),
            access_key_id,
            source_ip: source_ip.to_owned(),
            vpc_endpoint: None,
            time: String::new(),
            description: "a CI user's long-lived key in daily use: reported once, so it gets \
                          retired",
        }
    }
}

/// Which novelty detectors a call (or an attack's calls together) must trip.
#[derive(Clone, Copy, Debug, Default)]
pub struct Novel {
    /// A recon call (`GetCallerIdentity`, listings) the principal never made.
    pub recon: bool,
    /// An action the principal never made.
    pub action: bool,
    /// A service the account never used.
    pub service: bool,
    /// A region the account never used.
    pub region: bool,
}

impl std::ops::BitOrAssign for Novel {
    fn bitor_assign(&mut self, o: Novel) {
        self.recon |= o.recon;
        self.action |= o.action;
        self.service |= o.service;
        self.region |= o.region;
    }
}

impl Novel {
    /// The truth entries these flags mean, beside an attack's main entry `main`.
    pub fn entries(self, main: &TruthEntry) -> impl Iterator<Item = TruthEntry> + '_ {
        [
            (
                self.recon,
                detect::recon::NAME,
                "the attacker's first whoami / listing calls, never made by this principal",
            ),
            (
                self.action,
                "new-role-behaviour",
                "the attacker's calls, never made by this principal",
            ),
            (
                self.service,
                "unused-service",
                "a service the account never used",
            ),
            (
                self.region,
                "unused-region",
                "regions the account never used",
            ),
        ]
        .into_iter()
        .filter(|(flag, ..)| *flag)
        .map(|(_, detector, description)| TruthEntry {
            detector,
            description,
            ..main.clone()
        })
    }
}

/// What each principal and account has done so far, to know which calls are new: the same
/// rules as the novelty detectors, applied as the data is made.
#[derive(Default)]
pub struct NoveltyTracker {
    /// Each principal's (and account's) first call.
    first: HashMap<String, EventTime>,
    /// (principal or account, what it did) pairs seen.
    made: HashSet<(String, String)>,
}

impl NoveltyTracker {
    /// Note `call`; returns which novelty detectors must report it: the first of its kind
    /// for its principal or account, after the learning window.
    pub fn observe(&mut self, call: &Call<'_>) -> Novel {
        let ip = call.origin.ip;
        let by_service = ip.ends_with("amazonaws.com")
            || ip.starts_with("AWS Internal")
            || call.caller.is_service();
        let mut novel = Novel::default();
        if by_service {
            return novel;
        }
        let service = call.api.source.trim_end_matches(".amazonaws.com");
        let action = format!("{service}:{}", call.api.name);
        let principal = call.caller.principal_arn();
        if let Some(p) = principal.filter(|_| !call.origin.user_agent.starts_with("Mozilla/")) {
            let learned = self.learned(&p, call.time);
            if detect::recon::recon_index(call.api.source, call.api.name).is_some() {
                novel.recon = self.made.insert((p.clone(), format!("recon {action}"))) && learned;
            }
            novel.action = self.made.insert((p, action)) && learned;
        }
        let account = format!("account {}", call.place.account);
        let learned = self.learned(&account, call.time);
        novel.service = self
            .made
            .insert((account.clone(), format!("service {service}")))
            && learned;
        if !detect::novelty::is_global_service(service) {
            novel.region = self
                .made
                .insert((account, format!("region {}", call.place.region)))
                && learned;
        }
        novel
    }

    /// Note that `who` acted at `time`; whether its learning window had passed by then.
    fn learned(&mut self, who: &str, time: EventTime) -> bool {
        let first = *self
            .first
            .entry(who.to_owned())
            .and_modify(|t| *t = (*t).min(time))
            .or_insert(time);
        time >= first.plus_millis(DEMO_RECON_LEARNING_MS)
    }
}
