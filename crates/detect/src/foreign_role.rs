//! `foreign-role-pass`: a principal passing a role it does not own — launching an instance
//! with another application's instance profile, creating a Lambda function or an ECS task with
//! another application's role, a CloudFormation stack run as someone else's role. Passing a
//! more privileged role to a service you control is the classic AWS privilege escalation; the
//! delivery-lockdown policy (issue 4) prevents it, this detector sees it happen.
//!
//! Ownership comes from a map in configuration: role (or instance-profile) ARN patterns to the
//! owning application, principal ARN patterns to the caller's application; `*` marks a
//! deployment system allowed to pass any role. Exact ARNs (from role tags read from an
//! inventory) win, then the longest matching pattern. A role with no owner is not judged (the delivery-lockdown report lists those). One
//! finding per (caller, role), at its earliest use, after the lateness allowance.

use cloudtrail::{EventTime, Record, Text};
use serde_json::json;

use crate::canary::glob_match;
use crate::engine::{state_field, Detector, Timers};
use crate::fasthash::FastMap;
use credwarden_core::{finding_id, Finding, FindingSource, Severity};

pub const NAME: &str = "foreign-role-pass";

#[derive(Clone, Debug, Default)]
pub struct OwnershipMap {
    /// Role or instance-profile ARN pattern → owning application.
    pub roles: Vec<(String, String)>,
    /// Principal ARN pattern → the caller's application (`*`: may pass any role).
    pub principals: Vec<(String, String)>,
}

impl OwnershipMap {
    fn lookup<'a>(list: &'a [(String, String)], arn: &str) -> Option<&'a str> {
        // Exact entries (from role tags) first, then the longest pattern.
        list.iter()
            .filter(|(p, _)| glob_match(p, arn))
            .max_by_key(|(p, _)| (!p.contains(['*', '?']), p.len()))
            .map(|(_, app)| app.as_str())
    }

    pub fn role_owner(&self, arn: &str) -> Option<&str> {
        Self::lookup(&self.roles, arn)
    }

    pub fn caller_app(&self, arn: &str) -> Option<&str> {
        Self::lookup(&self.principals, arn)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ForeignRolePassConfig {
    pub ownership: OwnershipMap,
    pub lateness_ms: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Pass {
    time: EventTime,
    event_id: Text,
    event: String,
    owner: String,
    caller_app: Option<String>,
    access_key: Option<Text>,
    ip: String,
    user_agent: Option<Text>,
    region: Option<Text>,
    account: Option<Text>,
    error_code: Option<Text>,
    judged: bool,
}

pub struct ForeignRolePassDetector {
    cfg: ForeignRolePassConfig,
    passes: FastMap<(Text, Text), Pass>,
    timers: Timers<(Text, Text)>,
}

impl ForeignRolePassDetector {
    pub fn new(cfg: ForeignRolePassConfig) -> Self {
        ForeignRolePassDetector {
            cfg,
            passes: FastMap::default(),
            timers: Timers::default(),
        }
    }

    fn judge(&mut self, key: &(Text, Text), out: &mut Vec<Finding>) {
        let Some(p) = self.passes.get_mut(key) else {
            return;
        };
        if p.judged {
            return;
        }
        p.judged = true;
        let (caller, role) = (&*key.0, &*key.1);
        let whose = p
            .caller_app
            .as_deref()
            .map_or("a principal with no known application".to_owned(), |a| {
                format!("application {a}")
            });
        let refused = p
            .error_code
            .as_deref()
            .map_or(String::new(), |e| format!(" (refused: {e})"));
        out.push(Finding {
            id: finding_id(NAME, &[caller, role]),
            detector: NAME,
            severity: if p.error_code.is_some() || p.caller_app.is_none() { Severity::Medium } else { Severity::High },
            time: p.time.to_string(),
            account: p.account.as_deref().map(str::to_owned),
            account_name: None,
            account_owner: None,
            region: p.region.as_deref().map(str::to_owned),
            principal: Some(caller.to_owned()),
            access_key_id: p.access_key.as_deref().map(str::to_owned),
            source: FindingSource { ip: Some(p.ip.clone()), vpc_endpoint: None, user_agent: p.user_agent.as_deref().map(str::to_owned) },
            event_ids: vec![p.event_id.to_string()],
            summary: format!("{caller} ({whose}) passed role {role}, owned by application {}, in {}{refused}.", p.owner, p.event),
            details: json!({"role": role, "role_owner": p.owner, "caller_application": p.caller_app, "event": p.event, "error_code": p.error_code.as_deref()}),
            remediation: format!(
                "Only {}'s own deployments should pass {role}. If this was not one, treat {caller}'s credentials as compromised and remove what was created with the role. Prevent it: allow iam:PassRole only on roles whose owner tag matches the caller's (credwarden policy passrole).",
                p.owner
            ),
        });
    }
}

impl Detector for ForeignRolePassDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, r: &Record, _out: &mut Vec<Finding>) {
        if r.passed_roles.is_empty() || self.cfg.ownership.roles.is_empty() {
            return;
        }
        let id = &r.identity;
        let Some(caller) = id.session_issuer_arn.as_deref().or(id.arn.as_deref()) else {
            return;
        };
        let caller_app = self.cfg.ownership.caller_app(caller).map(str::to_owned);
        if caller_app.as_deref() == Some("*") {
            return;
        }
        for role in &r.passed_roles {
            let Some(owner) = self.cfg.ownership.role_owner(role) else {
                continue;
            };
            if caller_app.as_deref() == Some(owner) {
                continue;
            }
            let key: (Text, Text) = (caller.into(), role.clone());
            let eid = r.event_id.as_deref().unwrap_or("");
            let fresh = Pass {
                time: r.event_time,
                event_id: eid.into(),
                event: format!(
                    "{}:{}",
                    r.event_source.trim_end_matches(".amazonaws.com"),
                    r.event_name
                ),
                owner: owner.to_owned(),
                caller_app: caller_app.clone(),
                access_key: id.access_key_id.clone(),
                ip: r.source.to_string(),
                user_agent: r.user_agent.clone(),
                region: r.aws_region.clone(),
                account: r.account().map(Into::into),
                error_code: r.error_code.clone(),
                judged: false,
            };
            match self.passes.get_mut(&key) {
                Some(p) if !p.judged && (r.event_time, eid) < (p.time, &*p.event_id) => *p = fresh,
                Some(_) => {}
                None => {
                    self.timers
                        .push(r.event_time.plus_millis(self.cfg.lateness_ms), key.clone());
                    self.passes.insert(key, fresh);
                }
            }
        }
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        while let Some((_, key)) = self.timers.pop_due(watermark) {
            self.judge(&key, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut all: Vec<(Text, Text)> = self.passes.keys().cloned().collect();
        all.sort();
        for key in all {
            self.judge(&key, out);
        }
    }

    fn live_state(&self) -> usize {
        self.passes.len()
    }

    fn save_state(&self) -> serde_json::Value {
        json!({"passes": self.passes.iter().collect::<Vec<_>>(), "timers": self.timers})
    }

    fn restore_state(&mut self, mut state: serde_json::Value) -> Result<(), String> {
        self.passes = state_field::<Vec<((Text, Text), Pass)>>(&mut state, "passes")?
            .into_iter()
            .collect();
        self.timers = state_field(&mut state, "timers")?;
        Ok(())
    }
}
