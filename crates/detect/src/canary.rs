//! `canary-resource`: any use of a declared canary — a honey access key nobody should hold,
//! a honey bucket, a role nobody assumes — fires `critical`, learning or not. Canaries have no
//! legitimate use, so there is nothing to learn and nothing to tune; the only care needed is
//! not to alert once per attacker call: one finding per (canary, caller), at its first use.
//!
//! A canary is an access key id (`AKIA…`/`ASIA…`, matched exactly) or an ARN pattern where `*`
//! matches any run of characters and `?` one character (`arn:aws:s3:::corp-backup-archive*`),
//! matched against the record's `resources`, the role a session was issued for, and the role
//! an `AssumeRole` asked for. (An attacker can learn a honey key's account with
//! `sts:GetAccessKeyInfo`, which is logged only in the attacker's account.)

use cloudtrail::{EventTime, Record, Text};
use serde_json::json;

use crate::engine::{state_field, Detector, Timers};
use crate::fasthash::FastMap;
use credwarden_core::{finding_id, Finding, FindingSource, Severity};

pub const NAME: &str = "canary-resource";

#[derive(Clone, Debug, Default)]
pub struct CanaryConfig {
    /// Access key ids and ARN patterns.
    pub canaries: Vec<String>,
    pub lateness_ms: i64,
}

/// IAM-style wildcard matching (`*`, `?`), shared with the policy evaluator.
pub use iam::wildcard::glob_match;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Touch {
    time: EventTime,
    event_id: Text,
    event: String,
    matched: String,
    principal: Option<Text>,
    access_key: Option<Text>,
    ip: String,
    user_agent: Option<Text>,
    region: Option<Text>,
    account: Option<Text>,
    judged: bool,
}

pub struct CanaryDetector {
    cfg: CanaryConfig,
    /// Keyed by the canary itself (not its position in the list) and the caller, so a saved
    /// state still means the same canary after the list is edited.
    touches: FastMap<(Text, Text), Touch>,
    timers: Timers<(Text, Text)>,
}

impl CanaryDetector {
    pub fn new(cfg: CanaryConfig) -> Self {
        CanaryDetector {
            cfg,
            touches: FastMap::default(),
            timers: Timers::default(),
        }
    }

    fn is_key(c: &str) -> bool {
        !c.starts_with("arn:") && (c.starts_with("AKIA") || c.starts_with("ASIA"))
    }

    fn judge(&mut self, canary: &Text, caller: &Text, out: &mut Vec<Finding>) {
        let Some(t) = self.touches.get_mut(&(canary.clone(), caller.clone())) else {
            return;
        };
        if t.judged {
            return;
        }
        t.judged = true;
        let c: &str = canary;
        let who = t.principal.as_deref().unwrap_or(caller);
        out.push(Finding {
            id: finding_id(NAME, &[c, caller]),
            detector: NAME,
            severity: Severity::Critical,
            time: t.time.to_string(),
            account: t.account.as_deref().map(str::to_owned),
            account_name: None,
            account_owner: None,
            region: t.region.as_deref().map(str::to_owned),
            principal: t.principal.as_deref().map(str::to_owned),
            access_key_id: t.access_key.as_deref().map(str::to_owned),
            source: FindingSource { ip: Some(t.ip.clone()), vpc_endpoint: None, user_agent: t.user_agent.as_deref().map(str::to_owned) },
            event_ids: vec![t.event_id.to_string()],
            summary: format!("Canary {c} was touched: {} by {who} from {}. A canary has no legitimate use.", t.event, t.ip),
            details: json!({"canary": c, "matched": t.matched, "event": t.event, "caller": &**caller}),
            remediation: format!(
                "Treat {who}'s credentials as compromised: revoke them, then trace where they were used from ({}) and how the canary was found.",
                t.ip
            ),
        });
    }
}

impl Detector for CanaryDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, r: &Record, _out: &mut Vec<Finding>) {
        if self.cfg.canaries.is_empty() {
            return;
        }
        let id = &r.identity;
        let mut arns: Vec<String> = r.resource_arns();
        arns.extend(id.session_issuer_arn.as_deref().map(str::to_owned));
        arns.extend(
            r.issuance
                .as_ref()
                .and_then(|i| i.role_arn.as_deref())
                .map(str::to_owned),
        );
        let caller: Text = id
            .access_key_id
            .clone()
            .or(id.arn.clone())
            .or(id.principal_id.clone())
            .unwrap_or_else(|| "unknown".into());
        for c in &self.cfg.canaries {
            let matched = if Self::is_key(c) {
                id.access_key_id
                    .as_deref()
                    .filter(|k| *k == c)
                    .map(str::to_owned)
            } else {
                arns.iter().find(|a| glob_match(c, a)).cloned()
            };
            let Some(matched) = matched else { continue };
            let eid = r.event_id.as_deref().unwrap_or("");
            let canary: Text = c.as_str().into();
            let entry = self.touches.entry((canary.clone(), caller.clone()));
            let touch = || Touch {
                time: r.event_time,
                event_id: eid.into(),
                event: format!(
                    "{}:{}",
                    r.event_source.trim_end_matches(".amazonaws.com"),
                    r.event_name
                ),
                matched: matched.clone(),
                principal: id.session_issuer_arn.clone().or(id.arn.clone()),
                access_key: id.access_key_id.clone(),
                ip: r.source.to_string(),
                user_agent: r.user_agent.clone(),
                region: r.aws_region.clone(),
                account: r.account().map(Into::into),
                judged: false,
            };
            match entry {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let t = o.get_mut();
                    if !t.judged && (r.event_time, eid) < (t.time, &*t.event_id) {
                        *t = touch();
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(touch());
                    self.timers.push(
                        r.event_time.plus_millis(self.cfg.lateness_ms),
                        (canary, caller.clone()),
                    );
                }
            }
        }
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        while let Some((_, (canary, caller))) = self.timers.pop_due(watermark) {
            self.judge(&canary, &caller, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut all: Vec<(Text, Text)> = self.touches.keys().cloned().collect();
        all.sort();
        for (canary, caller) in all {
            self.judge(&canary, &caller, out);
        }
    }

    fn live_state(&self) -> usize {
        self.touches.len()
    }

    fn save_state(&self) -> serde_json::Value {
        serde_json::json!({"touches": self.touches.iter().collect::<Vec<_>>(), "timers": self.timers})
    }

    fn restore_state(&mut self, mut state: serde_json::Value) -> Result<(), String> {
        // Canaries no longer declared are forgotten.
        let declared = |c: &Text| self.cfg.canaries.iter().any(|d| d.as_str() == &**c);
        let touches: Vec<((Text, Text), Touch)> = state_field(&mut state, "touches")?;
        self.touches = touches
            .into_iter()
            .filter(|((c, _), _)| declared(c))
            .collect();
        self.timers = state_field(&mut state, "timers")?;
        let declared = |c: &Text| self.cfg.canaries.iter().any(|d| d.as_str() == &**c);
        self.timers.retain(|(c, _)| declared(c));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "arn:aws:s3:::honey*",
            "arn:aws:s3:::honey-bucket/key"
        ));
        assert!(glob_match(
            "arn:aws:iam::*:role/canary-?",
            "arn:aws:iam::1:role/canary-a"
        ));
        assert!(!glob_match(
            "arn:aws:iam::*:role/canary-?",
            "arn:aws:iam::1:role/canary-ab"
        ));
        assert!(!glob_match(
            "arn:aws:s3:::honey",
            "arn:aws:s3:::honey-bucket"
        ));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "ba"));
    }

    /// The matcher agrees with a regex-free reference: translate to a recursive matcher.
    fn reference(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some(b'?'), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_the_reference(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            prop_assert_eq!(glob_match(&p, &t), reference(p.as_bytes(), t.as_bytes()));
        }
    }
}
