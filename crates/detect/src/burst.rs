//! `enumeration-burst`: many denied calls by one principal in a short time — an attacker
//! with fresh credentials probing what they can do (enumerate-iam, pacu, Stratus Red Team's
//! detonations), not a developer hitting one missing permission now and then.
//!
//! * **Denials are spelled per service**: `AccessDenied`, `AccessDeniedException`,
//!   `Client.UnauthorizedOperation` (EC2), `UnauthorizedOperation`, `VpceAccessDenied`,
//!   `AuthorizationError` (SNS), … Throttling is not a denial.
//! * **Two shapes fire**: a *rate* burst — at least `rate_threshold` denials (default 10)
//!   within `rate_window` (60 s), like 30 denied `GetPasswordData` in five seconds — and a
//!   *spread* burst — denials on at least `spread_actions` distinct actions (6) across at
//!   least `spread_services` services (3) within `spread_window` (5 min). A console page
//!   that is denied one action every few seconds (Permiso's sessions) is neither.
//! * **One finding per burst.** A principal's denials form a cluster until `gap` (5 min)
//!   passes without one; the cluster is judged once, after the watermark has passed its end
//!   by the lateness allowance, so arrival order changes nothing. The finding's id is derived
//!   from the principal and the cluster's first denial.

use cloudtrail::{EventTime, Record, Text};
use serde_json::json;

use crate::engine::{state_field, Detector, Timers};
use crate::fasthash::FastMap;
use credwarden_core::{finding_id, Finding, FindingSource, Severity};

pub const NAME: &str = "enumeration-burst";

/// Error codes that mean "not authorised", across services.
pub fn is_denial(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied"
            | "AccessDeniedException"
            | "Client.UnauthorizedOperation"
            | "UnauthorizedOperation"
            | "Client.AccessDenied"
            | "VpceAccessDenied"
            | "AuthorizationError"
            | "AuthorizationErrorException"
            | "UnauthorizedAccess"
            | "UnauthorizedException"
            | "NotAuthorized"
            | "Forbidden"
    )
}

#[derive(Clone, Debug)]
pub struct BurstConfig {
    pub rate_window_ms: i64,
    pub rate_threshold: usize,
    pub spread_window_ms: i64,
    pub spread_actions: usize,
    pub spread_services: usize,
    /// Quiet time that ends a cluster of denials.
    pub gap_ms: i64,
    pub lateness_ms: i64,
    /// Denials kept per cluster as evidence (the rest are counted).
    pub max_kept: usize,
    /// A cluster that never goes quiet (an app retrying a denied call forever) is judged
    /// and restarted after this long, so its finding is not held back indefinitely.
    pub max_span_ms: i64,
}

impl Default for BurstConfig {
    fn default() -> Self {
        BurstConfig {
            rate_window_ms: EventTime::MINUTE,
            rate_threshold: 10,
            spread_window_ms: 5 * EventTime::MINUTE,
            spread_actions: 6,
            spread_services: 3,
            gap_ms: 5 * EventTime::MINUTE,
            lateness_ms: 15 * EventTime::MINUTE,
            max_kept: 2_000,
            max_span_ms: EventTime::HOUR,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Denial {
    time: EventTime,
    event_id: Text,
    service: Text,
    action: Text,
    code: Text,
    source: String,
    user_agent: Option<Text>,
    region: Option<Text>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Cluster {
    principal: Option<Text>,
    account: Option<Text>,
    access_key: Option<Text>,
    denials: Vec<Denial>,
    dropped: u64,
    first: EventTime,
    last: EventTime,
}

pub struct EnumerationBurstDetector {
    cfg: BurstConfig,
    /// Open clusters per principal (usually one; more when records arrive far out of order).
    open: FastMap<Text, Vec<Cluster>>,
    timers: Timers<Text>,
}

impl EnumerationBurstDetector {
    pub fn new(cfg: BurstConfig) -> Self {
        EnumerationBurstDetector {
            cfg,
            open: FastMap::default(),
            timers: Timers::default(),
        }
    }
}

/// Judge a closed cluster: the finding, if it is a burst.
fn judge(cfg: &BurstConfig, who: &str, mut c: Cluster) -> Option<Finding> {
    c.denials
        .sort_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)));
    let d = &c.denials;
    // Rate: the first denial that completes `rate_threshold` within the rate window.
    let rate_hit = (cfg.rate_threshold.max(1) - 1..d.len()).find(|&i| {
        d[i].time.millis() - d[i + 1 - cfg.rate_threshold.max(1)].time.millis()
            <= cfg.rate_window_ms
    });
    // Spread: the first denial at which the spread window holds enough actions and services.
    let mut spread_hit = None;
    let mut lo = 0;
    for hi in 0..d.len() {
        while d[hi].time.millis() - d[lo].time.millis() > cfg.spread_window_ms {
            lo += 1;
        }
        let window = &d[lo..=hi];
        let mut actions: Vec<(&str, &str)> =
            window.iter().map(|x| (&*x.service, &*x.action)).collect();
        actions.sort_unstable();
        actions.dedup();
        let mut services: Vec<&str> = actions.iter().map(|a| a.0).collect();
        services.dedup();
        if actions.len() >= cfg.spread_actions && services.len() >= cfg.spread_services {
            spread_hit = Some(hi);
            break;
        }
    }
    let (trigger, shape) = match (rate_hit, spread_hit) {
        (None, None) => return None,
        (Some(r), Some(s)) if s <= r => (s, "spread"),
        (Some(r), _) => (r, "rate"),
        (None, Some(s)) => (s, "spread"),
    };
    let first = d.first()?;
    let last = d.last()?;
    let mut actions: Vec<String> = d
        .iter()
        .map(|x| {
            format!(
                "{}:{}",
                x.service.trim_end_matches(".amazonaws.com"),
                x.action
            )
        })
        .collect();
    actions.sort();
    actions.dedup();
    let mut services: Vec<&str> = d
        .iter()
        .map(|x| x.service.trim_end_matches(".amazonaws.com"))
        .collect();
    services.sort_unstable();
    services.dedup();
    let mut codes: Vec<&str> = d.iter().map(|x| &*x.code).collect();
    codes.sort_unstable();
    codes.dedup();
    let total = d.len() as u64 + c.dropped;
    let t = &d[trigger];
    let severity = if shape == "spread" {
        Severity::High
    } else {
        Severity::Medium
    };
    let span = (last.time.millis() - first.time.millis()) as f64 / 1000.0;
    let who_display = c.principal.as_deref().unwrap_or(who);
    let mut sources: Vec<&str> = d.iter().map(|x| x.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    sources.truncate(10);
    Some(Finding {
        id: finding_id(NAME, &[who, &first.event_id, &first.time.to_string()]),
        detector: NAME,
        severity,
        time: t.time.to_string(),
        account: c.account.as_deref().map(str::to_owned),
        account_name: None,
        account_owner: None,
        region: t.region.as_deref().map(str::to_owned),
        principal: c.principal.as_deref().map(str::to_owned),
        access_key_id: c.access_key.as_deref().map(str::to_owned),
        source: FindingSource { ip: Some(t.source.clone()), vpc_endpoint: None, user_agent: t.user_agent.as_deref().map(str::to_owned) },
        event_ids: d.iter().take(20).map(|x| x.event_id.to_string()).collect(),
        summary: format!("{who_display} was denied {total} calls to {} action(s) of {} service(s) in {span:.0} s: {} burst, the shape of permission enumeration.", actions.len(), services.len(), shape),
        details: json!({
            "shape": shape,
            "denied_calls": total,
            "distinct_actions": actions.len(),
            "actions": actions.iter().take(50).collect::<Vec<_>>(),
            "services": services,
            "error_codes": codes,
            "first_denial": first.time.to_string(),
            "last_denial": last.time.to_string(),
            "triggered_by_event": &*t.event_id,
            "sources": sources,
        }),
        remediation: "Find out who holds these credentials right now: a person exploring their permissions looks the same as an attacker enumerating stolen ones. If nobody owns it, revoke the credentials (deactivate the access key, or revoke the role's active sessions) and review what the principal did successfully around the same time.".to_owned(),
    })
}

impl Detector for EnumerationBurstDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, r: &Record, out: &mut Vec<Finding>) {
        let Some(code) = r.error_code.as_deref() else {
            return;
        };
        if !is_denial(code) {
            return;
        }
        let id = &r.identity;
        let Some(who) = id
            .access_key_id
            .as_deref()
            .or(id.arn.as_deref())
            .or(id.principal_id.as_deref())
        else {
            return;
        };
        let denial = Denial {
            time: r.event_time,
            event_id: r.event_id.clone().unwrap_or_default(),
            service: r.event_source.clone(),
            action: r.event_name.clone(),
            code: code.into(),
            source: r.source.to_string(),
            user_agent: r.user_agent.clone(),
            region: r.aws_region.clone(),
        };
        let (gap, max_span, lateness) =
            (self.cfg.gap_ms, self.cfg.max_span_ms, self.cfg.lateness_ms);
        let t = r.event_time;
        let clusters = self.open.entry(who.into()).or_default();
        // A cluster that has gone on too long is judged now and a new one begun.
        if let Some(i) = clusters.iter().position(|c| {
            t.millis() - c.first.millis() > max_span && t.millis() <= c.last.millis() + gap
        }) {
            let c = clusters.swap_remove(i);
            out.extend(judge(&self.cfg, who, c));
        }
        let clusters = self.open.get_mut(who).expect("inserted above");
        let i = match clusters.iter().position(|c| {
            t.millis() >= c.first.millis() - gap && t.millis() <= c.last.millis() + gap
        }) {
            Some(i) => i,
            None => {
                clusters.push(Cluster {
                    principal: id.session_issuer_arn.clone().or(id.arn.clone()),
                    account: r.account().map(Into::into),
                    access_key: id.access_key_id.clone(),
                    denials: Vec::new(),
                    dropped: 0,
                    first: t,
                    last: t,
                });
                clusters.len() - 1
            }
        };
        let c = &mut clusters[i];
        c.first = c.first.min(t);
        c.last = c.last.max(t);
        if c.denials.len() < self.cfg.max_kept {
            c.denials.push(denial);
        } else {
            c.dropped += 1;
        }
        // A late denial can bridge two clusters: merge them, as in time order they were one.
        let mut i = i;
        loop {
            let (lo, hi) = (
                clusters[i].first.millis() - gap,
                clusters[i].last.millis() + gap,
            );
            let Some(j) = (0..clusters.len()).find(|&j| {
                j != i && clusters[j].first.millis() <= hi && clusters[j].last.millis() >= lo
            }) else {
                break;
            };
            let other = clusters.swap_remove(j);
            if i == clusters.len() {
                i = j; // swap_remove moved cluster `i` (the last) into slot `j`
            }
            let c = &mut clusters[i];
            c.first = c.first.min(other.first);
            c.last = c.last.max(other.last);
            c.dropped += other.dropped;
            for d in other.denials {
                if c.denials.len() < self.cfg.max_kept {
                    c.denials.push(d);
                } else {
                    c.dropped += 1;
                }
            }
        }
        let at = clusters[i].last.plus_millis(gap + lateness);
        self.timers.push(at, who.into());
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        let settle = self.cfg.gap_ms + self.cfg.lateness_ms;
        while let Some((_, who)) = self.timers.pop_due(watermark) {
            let Some(clusters) = self.open.get_mut(&who) else {
                continue;
            };
            let mut i = 0;
            while i < clusters.len() {
                if clusters[i].last.plus_millis(settle) <= watermark {
                    let c = clusters.swap_remove(i);
                    out.extend(judge(&self.cfg, &who, c));
                } else {
                    i += 1;
                }
            }
            if clusters.is_empty() {
                self.open.remove(&who);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut all: Vec<(Text, Cluster)> = self
            .open
            .drain()
            .flat_map(|(who, cs)| cs.into_iter().map(move |c| (who.clone(), c)))
            .collect();
        all.sort_by(|a, b| (&a.0, a.1.first).cmp(&(&b.0, b.1.first)));
        for (who, c) in all {
            out.extend(judge(&self.cfg, &who, c));
        }
        self.timers.clear();
    }

    fn live_state(&self) -> usize {
        self.open.values().map(Vec::len).sum()
    }

    fn save_state(&self) -> serde_json::Value {
        serde_json::json!({"open": self.open, "timers": self.timers})
    }

    fn restore_state(&mut self, mut state: serde_json::Value) -> Result<(), String> {
        self.open = state_field(&mut state, "open")?;
        self.timers = state_field(&mut state, "timers")?;
        Ok(())
    }
}
