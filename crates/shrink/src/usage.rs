//! What each principal did: the IAM actions its CloudTrail events exercised, with the last
//! time, through the iam crate's event → action mapping.
//!
//! Denied calls are not use (the permission did not grant them); calls a service made for
//! the principal (`invokedBy`) are use (they needed the principal's permission); events that
//! pass a role (`passed_roles`) used `iam:PassRole`. Events the mapping cannot attribute are
//! counted and reported, never dropped silently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use cloudtrail::{decode_in_order, Decoded, DeliveryDays, Record};
use iam::{Catalogue, EventActions, EventMap};
use serde::Serialize;

/// Observed use over some CloudTrail.
#[derive(Debug, Default, Serialize)]
pub struct Usage {
    /// principal ARN (the role for assumed-role sessions) → action (canonical) → last use (ms).
    pub used: HashMap<String, BTreeMap<String, i64>>,
    pub records: u64,
    pub input_errors: u64,
    /// Unattributable events: guess → count.
    pub unknown_events: BTreeMap<String, u64>,
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    /// Last use of a long-lived (AKIA) key, per user ARN.
    pub static_key_use: BTreeMap<String, i64>,
    /// (account, action) seen in any event, denied or not: proof that the trail records that
    /// action for that account. Right-sizing removes only actions proven recordable.
    pub actions_seen: BTreeSet<(String, String)>,
    /// Per role and person (source identity, else the session name): actions → last use.
    /// What `shrink per-user` fits one role per person to.
    pub per_person: HashMap<(String, String), BTreeMap<String, i64>>,
    /// (source identity, role ARN) → last use: how broker-issued sessions show in CloudTrail.
    pub source_identity_use: BTreeMap<(String, String), i64>,
    /// Role (its [`role_key`]) → the last time a session of it was issued (`AssumeRole`,
    /// `…WithWebIdentity`, `…WithSAML`, by people or services) or acted: "no session in the
    /// window" is what sends an unused role to zero.
    pub sessions: BTreeMap<String, i64>,
    /// Successful grants: (time, role key or `None`, policy name, policy ARN). A permission
    /// granted within the grace period is never removed.
    pub grants: Vec<GrantSeen>,
    /// Changes to trails (`PutEventSelectors`, `StopLogging`, …): (time, event name). The
    /// trail's current configuration proves nothing about the time before such a change.
    pub trail_changes: Vec<(i64, String)>,
    /// Accounts with any record: a CloudTrail of other accounts proves nothing about this one.
    pub accounts_seen: BTreeSet<String>,
}

/// A change to a role's permissions seen in CloudTrail.
#[derive(Clone, Debug, Serialize)]
pub struct GrantSeen {
    pub at_ms: i64,
    pub event: String,
    /// The role ([`role_key`] form), when the event names one.
    pub role: Option<String>,
    pub policy_name: Option<String>,
    pub policy_arn: Option<String>,
}

/// The CloudTrail events that change what a trail records.
const TRAIL_CHANGES: &[&str] = &[
    "PutEventSelectors",
    "StopLogging",
    "UpdateTrail",
    "DeleteTrail",
    "CreateTrail",
];

fn denied(code: &str) -> bool {
    let c = code.to_ascii_lowercase();
    c.contains("accessdenied") || c.contains("unauthorized") || c.contains("forbidden")
}

impl Usage {
    /// Read CloudTrail files and folders (every input form the cloudtrail crate knows), one
    /// delivery day at a time: a 90-day window of an organisation's trail is millions of
    /// files, and only one day's paths are held at once.
    pub fn scan(paths: &[PathBuf]) -> Result<Usage, cloudtrail::DiscoverError> {
        let mut days = DeliveryDays::walk(paths)?;
        let mut usage = Usage::default();
        while let Some(sources) = days.next_day()? {
            decode_in_order(&sources, 0, |d| match d {
                Decoded::Records(records) => records.iter().for_each(|r| usage.observe(r)),
                Decoded::Done(_, report) => {
                    usage.input_errors += report.errors.len() as u64 + report.errors_dropped
                }
            });
        }
        Ok(usage)
    }

    /// Take one record into account.
    pub fn observe(&mut self, r: &Record) {
        self.records += 1;
        let t = r.event_time.millis();
        self.oldest_ms = Some(self.oldest_ms.map_or(t, |o| o.min(t)));
        self.newest_ms = Some(self.newest_ms.map_or(t, |n| n.max(t)));
        let principal = r
            .identity
            .session_issuer_arn
            .as_deref()
            .or(r.identity.arn.as_deref())
            .map(role_key);
        let (catalogue, map) = (Catalogue::builtin(), EventMap::builtin());
        let mut actions = match map.map(catalogue, &r.event_source, &r.event_name) {
            EventActions::Actions { actions } => actions,
            EventActions::NoPermission { .. } | EventActions::Unmappable { .. } => Vec::new(),
            // Kept as the guessed name: a wildcard that covers it must not be narrowed away.
            EventActions::Unknown { guess } => {
                *self.unknown_events.entry(guess.clone()).or_default() += 1;
                vec![guess]
            }
        };
        let account = r
            .recipient_account_id
            .as_deref()
            .or(r.identity.account_id.as_deref())
            .unwrap_or("")
            .to_owned();
        for a in &actions {
            self.actions_seen.insert((account.clone(), a.clone()));
        }
        if !account.is_empty() && !self.accounts_seen.contains(&account) {
            self.accounts_seen.insert(account.clone());
        }
        if r.error_code.is_some() {
            // A failed call changed nothing and issued nothing.
            if r.error_code.as_deref().is_some_and(denied) {
                return;
            }
        } else {
            self.observe_changes(r, principal.as_ref(), &account, t);
        }
        if !r.passed_roles.is_empty() {
            actions.push("iam:PassRole".into());
        }
        let Some(p) = principal else { return };
        if let (Some(si), true) = (
            r.identity.source_identity.as_deref(),
            r.identity.session_issuer_arn.is_some(),
        ) {
            let last = self
                .source_identity_use
                .entry((si.to_owned(), p.clone()))
                .or_insert(t);
            *last = (*last).max(t);
        }
        if r.identity.session_issuer_arn.is_some() {
            let person = r
                .identity
                .source_identity
                .as_deref()
                .map(str::to_owned)
                .or_else(|| {
                    r.identity
                        .arn
                        .as_deref()
                        .and_then(|a| a.rsplit('/').next())
                        .map(str::to_owned)
                });
            if let Some(person) = person {
                let entry = self.per_person.entry((p.clone(), person)).or_default();
                for a in &actions {
                    let last = entry.entry(a.clone()).or_insert(t);
                    *last = (*last).max(t);
                }
            }
        }
        if r.identity
            .access_key_id
            .as_deref()
            .is_some_and(|k| k.starts_with("AKIA"))
        {
            let last = self.static_key_use.entry(p.clone()).or_insert(t);
            *last = (*last).max(t);
        }
        let entry = self.used.entry(p).or_default();
        for a in actions {
            let last = entry.entry(a).or_insert(t);
            *last = (*last).max(t);
        }
    }

    /// Sessions issued, grants and trail changes: facts about the account, whoever made them.
    fn observe_changes(&mut self, r: &Record, principal: Option<&String>, account: &str, t: i64) {
        let mut session = |role: String| {
            let last = self.sessions.entry(role).or_insert(t);
            *last = (*last).max(t);
        };
        if let Some(role) = r.issuance.as_ref().and_then(|i| i.role_arn.as_deref()) {
            session(role_key(role));
        }
        // A call of a session: its role is the principal already keyed.
        if let (Some(role), true) = (principal, r.identity.session_issuer_arn.is_some()) {
            session(role.clone());
        }
        if let Some(g) = &r.grant {
            self.grants.push(GrantSeen {
                at_ms: t,
                event: r.event_name.to_string(),
                role: g.role_name.as_deref().map(|name| {
                    let partition = r
                        .identity
                        .arn
                        .as_deref()
                        .and_then(|a| a.split(':').nth(1))
                        .unwrap_or("aws");
                    format!("arn:{partition}:iam::{account}:role/{name}")
                }),
                policy_name: g.policy_name.as_deref().map(str::to_owned),
                policy_arn: g.policy_arn.as_deref().map(str::to_owned),
            });
        }
        if &*r.event_source == "cloudtrail.amazonaws.com" && TRAIL_CHANGES.contains(&&*r.event_name)
        {
            self.trail_changes.push((t, r.event_name.to_string()));
        }
    }

    /// Did `principal` use `action` at or after `since_ms`?
    pub fn used_since(&self, principal: &str, action: &str, since_ms: i64) -> bool {
        self.used
            .get(&role_key(principal))
            .and_then(|m| m.get(action))
            .is_some_and(|&t| t >= since_ms)
    }

    /// Does the CloudTrail cover `[since_ms, until_ms]`? (Its oldest record is no later than a
    /// day after the window starts, and its newest no earlier than a day before it ends.)
    pub fn covers(&self, since_ms: i64, until_ms: i64) -> bool {
        let day = 86_400_000;
        matches!((self.oldest_ms, self.newest_ms), (Some(o), Some(n)) if o <= since_ms + day && n >= until_ms - day)
    }
}

/// One key for a role however CloudTrail or IAM spells it: `arn:aws:iam::ACCOUNT:role/NAME`
/// without the path, also for `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`. Other ARNs
/// (users) are returned as they are.
pub fn role_key(arn: &str) -> String {
    let Some(parts) = iam::wildcard::arn_parts(arn) else {
        return arn.to_owned();
    };
    let name = if let Some(rest) = parts[5].strip_prefix("assumed-role/") {
        rest.split('/').next()
    } else if parts[5].starts_with("role/") {
        parts[5].rsplit('/').next()
    } else {
        None
    };
    match name {
        Some(n) => format!("arn:{}:iam::{}:role/{n}", parts[1], parts[4]),
        None => arn.to_owned(),
    }
}

#[cfg(test)]
mod grant_tests {
    #[test]
    fn grants_are_seen() {
        let f = std::env::temp_dir().join(format!("credwarden-grant-{}.json", std::process::id()));
        std::fs::write(&f, r#"{"Records":[{"eventVersion":"1.08","eventTime":"2027-05-15T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"PutRolePolicy","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.5","userAgent":"x","eventID":"e","eventType":"AwsApiCall","recipientAccountId":"123456789012","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/ops/i","accountId":"123456789012"},"requestParameters":{"roleName":"fresh","policyName":"fresh","policyDocument":"{}"}}]}"#).unwrap();
        let u = super::Usage::scan(std::slice::from_ref(&f)).unwrap();
        std::fs::remove_file(&f).unwrap();
        assert_eq!(u.grants.len(), 1, "{:?}", u.grants);
        assert_eq!(
            u.grants[0].role.as_deref(),
            Some("arn:aws:iam::123456789012:role/fresh")
        );
    }
}
