//! What each principal did: the IAM actions its CloudTrail events exercised, with the last
//! time, through the iam crate's event → action mapping.
//!
//! Denied calls are not use (the permission did not grant them); calls a service made for
//! the principal (`invokedBy`) are use (they needed the principal's permission); events that
//! pass a role (`passed_roles`) used `iam:PassRole`. Events the mapping cannot attribute are
//! counted and reported, never dropped silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use cloudtrail::{decode_in_order, discover, Decoded, Record};
use iam::{Catalogue, EventActions, EventMap};
use serde::Serialize;

/// Observed use over some CloudTrail.
#[derive(Debug, Default, Serialize)]
pub struct Usage {
    /// principal ARN (the role for assumed-role sessions) → action (canonical) → last use (ms).
    pub used: HashMap<String, BTreeMap<String, i64>>,
    /// IAM prefixes with at least one event from anyone: the trail covers them.
    pub services_seen: BTreeSet<String>,
    /// Principals seen at all (any event, even denied): "did nothing" needs evidence too.
    pub principals_seen: BTreeSet<String>,
    pub records: u64,
    pub input_errors: u64,
    /// Unattributable events: guess → count.
    pub unknown_events: BTreeMap<String, u64>,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    /// Last use of a long-lived (AKIA) key, per user ARN.
    pub static_key_use: BTreeMap<String, i64>,
    /// Per role and person (source identity, else the session name): actions → last use.
    /// What `shrink per-user` fits one role per person to.
    pub per_person: HashMap<(String, String), BTreeMap<String, i64>>,
    /// (source identity, role ARN) → last use: how broker-issued sessions show in CloudTrail.
    pub source_identity_use: BTreeMap<(String, String), i64>,
}

fn denied(code: &str) -> bool {
    let c = code.to_ascii_lowercase();
    c.contains("accessdenied") || c.contains("unauthorized") || c.contains("forbidden")
}

impl Usage {
    /// Read CloudTrail files and folders (every input form the cloudtrail crate knows).
    pub fn scan(paths: &[PathBuf]) -> Result<Usage, cloudtrail::DiscoverError> {
        let (sources, _) = discover(paths)?;
        let mut usage = Usage::default();
        decode_in_order(&sources, 0, |d| match d {
            Decoded::Records(records) => records.iter().for_each(|r| usage.observe(r)),
            Decoded::Done(_, report) => usage.input_errors += report.errors.len() as u64 + report.errors_dropped,
        });
        Ok(usage)
    }

    /// Take one record into account.
    pub fn observe(&mut self, r: &Record) {
        self.records += 1;
        let t = r.event_time.millis();
        self.oldest_ms = Some(self.oldest_ms.map_or(t, |o| o.min(t)));
        self.newest_ms = Some(self.newest_ms.map_or(t, |n| n.max(t)));
        let principal = r.identity.session_issuer_arn.as_deref().or(r.identity.arn.as_deref()).map(str::to_owned);
        if let Some(p) = &principal {
            self.principals_seen.insert(p.clone());
        }
        let (catalogue, map) = (Catalogue::builtin(), EventMap::builtin());
        let mut actions = match map.map(catalogue, &r.event_source, &r.event_name) {
            EventActions::Actions { actions } => actions,
            EventActions::NoPermission { .. } | EventActions::Unmappable { .. } => Vec::new(),
            EventActions::Unknown { guess } => {
                *self.unknown_events.entry(guess).or_default() += 1;
                Vec::new()
            }
        };
        if let Some(first) = actions.first() {
            if let Some((prefix, _)) = first.split_once(':') {
                self.services_seen.insert(prefix.to_owned());
            }
        }
        if r.error_code.as_deref().is_some_and(denied) {
            return;
        }
        if !r.passed_roles.is_empty() {
            actions.push("iam:PassRole".into());
        }
        let Some(p) = principal else { return };
        if let (Some(si), true) = (r.identity.source_identity.as_deref(), r.identity.session_issuer_arn.is_some()) {
            let last = self.source_identity_use.entry((si.to_owned(), p.clone())).or_insert(t);
            *last = (*last).max(t);
        }
        if r.identity.session_issuer_arn.is_some() {
            let person = r
                .identity
                .source_identity
                .as_deref()
                .map(str::to_owned)
                .or_else(|| r.identity.arn.as_deref().and_then(|a| a.rsplit('/').next()).map(str::to_owned));
            if let Some(person) = person {
                let entry = self.per_person.entry((p.clone(), person)).or_default();
                for a in &actions {
                    let last = entry.entry(a.clone()).or_insert(t);
                    *last = (*last).max(t);
                }
            }
        }
        if r.identity.access_key_id.as_deref().is_some_and(|k| k.starts_with("AKIA")) {
            let last = self.static_key_use.entry(p.clone()).or_insert(t);
            *last = (*last).max(t);
        }
        let entry = self.used.entry(p).or_default();
        for a in actions {
            let last = entry.entry(a).or_insert(t);
            *last = (*last).max(t);
        }
    }

    /// Did `principal` use `action` at or after `since_ms`?
    pub fn used_since(&self, principal: &str, action: &str, since_ms: i64) -> bool {
        self.used.get(principal).and_then(|m| m.get(action)).is_some_and(|&t| t >= since_ms)
    }
}
