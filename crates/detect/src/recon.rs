//! `recon-call`: a principal making an attacker's first-step call (`sts:GetCallerIdentity`,
//! `s3:ListBuckets`, `iam:ListAccessKeys`, … — the list is `data/recon-actions.txt`) that it
//! never made before, once it has been seen long enough to know its habits (the learning
//! window, 14 days by default). Applications settle into the same calls every day; someone
//! who just got hold of their credentials asks who they are first.
//!
//! A principal is the role (session issuer) for assumed-role sessions, the user for IAM users,
//! the ARN otherwise. Console browsing (browser user agents) is left out: a person opening a
//! new console page is not a program changing its habits. Each (principal, call) is judged once, at its earliest occurrence, after
//! the watermark has passed it by the decision delay: so the verdict and the finding do not
//! depend on arrival order within the lateness allowance.

use cloudtrail::{EventTime, Record, Text};
use serde_json::json;

use crate::engine::{state_field, Detector, Timers};
use crate::fasthash::FastMap;
use crate::finding::{finding_id, Finding, FindingSource, Severity};

pub const NAME: &str = "recon-call";

/// The documented list, compiled in.
pub const RECON_ACTIONS: &str = include_str!("../data/recon-actions.txt");

/// `(service, eventName)` pairs of the list.
pub fn recon_actions() -> &'static [(&'static str, &'static str)] {
    static LIST: std::sync::OnceLock<Vec<(&'static str, &'static str)>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        RECON_ACTIONS.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).filter_map(|l| l.split_once(':')).collect()
    })
}

/// Index of a record's call in the list, if it is a recon call.
pub fn recon_index(event_source: &str, event_name: &str) -> Option<usize> {
    let service = event_source.strip_suffix(".amazonaws.com").unwrap_or(event_source);
    recon_actions().iter().position(|(s, n)| *s == service && *n == event_name)
}

/// Calls made by the AWS console on a person's behalf (browser or console backends).
fn is_console(user_agent: Option<&str>) -> bool {
    user_agent.is_some_and(|ua| {
        ua.starts_with("Mozilla/") || ua.contains("console.amazonaws.com") || ua.contains("console.aws.amazon.com") || ua.starts_with("AWS Internal")
    })
}

#[derive(Clone, Debug)]
pub struct ReconConfig {
    /// How long a principal is watched before its first recon calls count as new.
    pub learning_ms: i64,
    pub lateness_ms: i64,
    pub early_window_ms: i64,
    /// New recon calls this close to the first one are one finding.
    pub group_window_ms: i64,
}

impl Default for ReconConfig {
    fn default() -> Self {
        ReconConfig {
            learning_ms: 14 * 24 * EventTime::HOUR,
            lateness_ms: 15 * EventTime::MINUTE,
            early_window_ms: 5 * EventTime::MINUTE,
            group_window_ms: 10 * EventTime::MINUTE,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Call {
    time: EventTime,
    event_id: Text,
    access_key: Option<Text>,
    ip: String,
    user_agent: Option<Text>,
    region: Option<Text>,
    account: Option<Text>,
    error_code: Option<Text>,
    arn: Option<Text>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Principal {
    first_seen: EventTime,
    /// Earliest occurrence of each recon call (`service:eventName`, so a saved state reads
    /// the same whatever the list looks like in a later build), and whether it was judged.
    calls: Vec<(Text, Call, bool)>,
}

pub struct ReconCallDetector {
    cfg: ReconConfig,
    principals: FastMap<Text, Principal>,
    timers: Timers<Text>,
}

impl ReconCallDetector {
    pub fn new(cfg: ReconConfig) -> Self {
        ReconCallDetector { cfg, principals: FastMap::default(), timers: Timers::default() }
    }

    fn delay(&self) -> i64 {
        self.cfg.lateness_ms + self.cfg.early_window_ms
    }

    /// Judge the principal's pending recon calls whose evidence is complete. New calls within
    /// `group_window` of the first one make one finding: an attacker's opening moves are one
    /// story, not five alerts.
    fn decide(&mut self, who: &str, watermark: Option<EventTime>, out: &mut Vec<Finding>) {
        let (delay, learning, window) = (self.delay(), self.cfg.learning_ms, self.cfg.group_window_ms);
        let Some(p) = self.principals.get_mut(who) else { return };
        let first_seen = p.first_seen;
        let learned_before = first_seen.plus_millis(learning);
        p.calls.sort_by(|a, b| (a.1.time, &a.1.event_id).cmp(&(b.1.time, &b.1.event_id)));
        let ready = |t: EventTime, extra: i64| watermark.is_none_or(|w| t.plus_millis(extra + delay) <= w);
        // Calls made while learning become the baseline.
        for (_, c, judged) in p.calls.iter_mut() {
            if !*judged && c.time < learned_before && ready(c.time, 0) {
                *judged = true;
            }
        }
        loop {
            let Some(start) = p.calls.iter().position(|(_, c, judged)| !*judged && c.time >= learned_before) else { return };
            let opened = p.calls[start].1.time;
            if !ready(opened, window) {
                return;
            }
            let group: Vec<usize> = (start..p.calls.len()).filter(|&i| !p.calls[i].2 && p.calls[i].1.time <= opened.plus_millis(window)).collect();
            for &i in &group {
                p.calls[i].2 = true;
            }
            let first = &p.calls[group[0]].1;
            let actions: Vec<String> = group.iter().map(|&i| p.calls[i].0.to_string()).collect();
            let refused: Vec<&str> = group.iter().filter(|&&i| p.calls[i].1.error_code.is_some()).map(|&i| &*p.calls[i].0).collect();
            let mut ips: Vec<&str> = group.iter().map(|&i| p.calls[i].1.ip.as_str()).collect();
            ips.sort_unstable();
            ips.dedup();
            out.push(Finding {
                id: finding_id(NAME, &[who, &actions[0], &first.time.to_string()]),
                detector: NAME,
                severity: Severity::High,
                time: first.time.to_string(),
                account: first.account.as_deref().map(str::to_owned),
                region: first.region.as_deref().map(str::to_owned),
                principal: Some(who.to_owned()),
                access_key_id: first.access_key.as_deref().map(str::to_owned),
                source: FindingSource { ip: Some(first.ip.clone()), vpc_endpoint: None, user_agent: first.user_agent.as_deref().map(str::to_owned) },
                event_ids: group.iter().map(|&i| p.calls[i].1.event_id.to_string()).collect(),
                summary: format!(
                    "{who} made {} attacker first step(s) it never made before ({}), watched since {first_seen}. Whoever holds stolen credentials asks these first.",
                    actions.len(),
                    actions.join(", ")
                ),
                details: json!({
                    "actions": actions,
                    "refused": refused,
                    "sources": ips,
                    "principal_first_seen": first_seen.to_string(),
                    "learning_window_hours": learning / EventTime::HOUR,
                    "caller_arn": first.arn.as_deref(),
                }),
                remediation: format!("Ask the owner of {who} whether they just ran these calls (a person debugging, a new deployment). If not, treat the credentials as stolen: revoke the session or deactivate the key, and review every call from {} since.", first.ip),
            });
        }
    }
}

impl Detector for ReconCallDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, r: &Record, _out: &mut Vec<Finding>) {
        let id = &r.identity;
        let Some(who) = id.session_issuer_arn.as_deref().or(id.arn.as_deref()) else { return };
        if id.invoked_by.is_some() || r.source.is_aws_service() {
            return; // an AWS service acting for the principal is not the principal asking
        }
        if is_console(r.user_agent.as_deref()) {
            return; // a person browsing the console opens new pages; this watches programs
        }
        let recon = recon_index(&r.event_source, &r.event_name);
        let t = r.event_time;
        let p = match self.principals.get_mut(who) {
            Some(p) => p,
            None => self.principals.entry(who.into()).or_insert(Principal { first_seen: t, calls: Vec::new() }),
        };
        p.first_seen = p.first_seen.min(t);
        let Some(ix) = recon else { return };
        let (service, name) = recon_actions()[ix];
        let action: Text = format!("{service}:{name}").into();
        let eid = r.event_id.as_deref().unwrap_or("");
        let call = || Call {
            time: t,
            event_id: eid.into(),
            access_key: id.access_key_id.clone(),
            ip: r.source.to_string(),
            user_agent: r.user_agent.clone(),
            region: r.aws_region.clone(),
            account: r.account().map(Into::into),
            error_code: r.error_code.clone(),
            arn: id.arn.clone(),
        };
        match p.calls.iter_mut().find(|c| c.0 == action) {
            Some((_, c, judged)) => {
                if !*judged && (t, eid) < (c.time, &*c.event_id) {
                    *c = call();
                } else {
                    return;
                }
            }
            None => p.calls.push((action, call(), false)),
        }
        let at = t.plus_millis(self.delay() + self.cfg.group_window_ms);
        self.timers.push(at, who.into());
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        while let Some((_, who)) = self.timers.pop_due(watermark) {
            self.decide(&who, Some(watermark), out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut all: Vec<Text> = self.principals.keys().cloned().collect();
        all.sort();
        for who in all {
            self.decide(&who, None, out);
        }
    }

    fn live_state(&self) -> usize {
        self.principals.len()
    }

    fn save_state(&self) -> serde_json::Value {
        serde_json::json!({"principals": self.principals, "timers": self.timers})
    }

    fn restore_state(&mut self, mut state: serde_json::Value) -> Result<(), String> {
        self.principals = state_field(&mut state, "principals")?;
        self.timers = state_field(&mut state, "timers")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_and_names_the_seeds_first_steps() {
        assert!(recon_actions().len() >= 15);
        for (s, n) in [
            ("sts.amazonaws.com", "GetCallerIdentity"),
            ("s3.amazonaws.com", "ListBuckets"),
            ("iam.amazonaws.com", "ListAccessKeys"),
            ("iam.amazonaws.com", "GetAccountAuthorizationDetails"),
        ] {
            assert!(recon_index(s, n).is_some(), "{s} {n}");
        }
        assert!(recon_index("s3.amazonaws.com", "GetObject").is_none());
        assert!(recon_actions().iter().all(|(s, n)| !s.is_empty() && !n.is_empty() && !n.contains(' ')));
    }
}
