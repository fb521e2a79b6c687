//! `static-key-use`: every long-lived access key (`AKIA…`) seen in use. Static keys are how
//! most AWS credential leaks start (a key in Git, on a laptop, in CI logs); the mission is to
//! retire them, and until then to know each one: whose it is, since when, how much, and from
//! where. One finding per key when it is first seen, and one more each time it is used from a
//! network address it was never used from — never one per call.
//!
//! Determinism: a batch of new sources is reported once the watermark has passed the last of
//! them by the decision delay (lateness plus five minutes), and the figures it carries (calls,
//! last use) are counted up to a cutoff minute that every record it covers has reached by
//! then — so arrival order within the lateness allowance changes neither ids nor contents.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cloudtrail::{EventTime, Record, SourceAddress, Text};
use serde_json::json;

use crate::engine::{state_field, Detector, Timers};
use crate::fasthash::FastMap;
use credwarden_core::{finding_id, Finding, FindingSource, Severity};

pub const NAME: &str = "static-key-use";

/// Sources remembered per key; beyond this, new addresses are only counted.
const MAX_SOURCES: usize = 256;

#[derive(Clone, Debug)]
pub struct StaticKeyConfig {
    pub lateness_ms: i64,
    pub early_window_ms: i64,
}

impl Default for StaticKeyConfig {
    fn default() -> Self {
        StaticKeyConfig {
            lateness_ms: 15 * EventTime::MINUTE,
            early_window_ms: 5 * EventTime::MINUTE,
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KeySource {
    /// An address, not its text: compared for every call the key makes (serialized as the
    /// same string).
    ip: IpAddr,
    first: EventTime,
    event_id: Text,
    event_name: Text,
    user_agent: Option<Text>,
    region: Option<Text>,
    reported: bool,
}

impl KeySource {
    fn earlier(&self, t: EventTime, id: &str) -> bool {
        (t, id) < (self.first, &*self.event_id)
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct KeyState {
    account: Option<Text>,
    owner_arn: Option<Text>,
    user_name: Option<Text>,
    root: bool,
    first_use: Option<(EventTime, Text)>,
    sources: Vec<KeySource>,
    untracked_sources: u64,
    /// Calls per minute (start of minute → count, latest time) for the recent past; older
    /// minutes are folded into the two totals below.
    minutes: BTreeMap<i64, (u64, EventTime)>,
    folded_calls: u64,
    folded_last: Option<EventTime>,
    latest: EventTime,
    reported_once: bool,
}

impl KeyState {
    /// Calls and last use strictly before `cutoff` (a minute boundary).
    fn calls_before(&self, cutoff: i64) -> (u64, Option<EventTime>) {
        let mut calls = self.folded_calls;
        let mut last = self.folded_last;
        for (_, (n, t)) in self.minutes.range(..cutoff) {
            calls += n;
            last = last.max(Some(*t));
        }
        (calls, last)
    }
}

pub struct StaticKeyDetector {
    cfg: StaticKeyConfig,
    keys: FastMap<Text, KeyState>,
    timers: Timers<Text>,
}

fn minute_of(t: EventTime) -> i64 {
    t.millis().div_euclid(EventTime::MINUTE) * EventTime::MINUTE
}

impl StaticKeyDetector {
    pub fn new(cfg: StaticKeyConfig) -> Self {
        StaticKeyDetector {
            cfg,
            keys: FastMap::default(),
            timers: Timers::default(),
        }
    }

    fn delay(&self) -> i64 {
        self.cfg.lateness_ms + self.cfg.early_window_ms
    }

    fn decide(&mut self, key: &str, watermark: Option<EventTime>, out: &mut Vec<Finding>) {
        let delay = self.delay();
        let Some(k) = self.keys.get_mut(key) else {
            return;
        };
        let by_first = |a: &usize, b: &usize| {
            (k.sources[*a].first, &k.sources[*a].event_id)
                .cmp(&(k.sources[*b].first, &k.sources[*b].event_id))
        };
        let mut settled: Vec<usize> = (0..k.sources.len())
            .filter(|&i| {
                !k.sources[i].reported
                    && watermark.is_none_or(|w| k.sources[i].first.plus_millis(delay) <= w)
            })
            .collect();
        if settled.is_empty() {
            return;
        }
        settled.sort_by(by_first);
        let mut known_ix: Vec<usize> = (0..k.sources.len())
            .filter(|&i| k.sources[i].reported)
            .collect();
        known_ix.sort_by(by_first);
        let first_src = settled[0];
        let latest = k.sources[*settled.last().expect("non-empty")].first;
        // Calls are counted up to a point every record before it has reached by the time of
        // this decision: the batch's settling window, to the minute.
        let cutoff = minute_of(latest.plus_millis(self.cfg.early_window_ms));
        let (calls, last) = k.calls_before(cutoff);
        let s = &k.sources[first_src];
        let who = k.owner_arn.as_deref().unwrap_or("an unknown principal");
        let name = k
            .user_name
            .as_deref()
            .map_or_else(|| who.to_owned(), |u| format!("user {u}"));
        let new_sources: Vec<serde_json::Value> = settled
            .iter()
            .map(|&i| {
                let x = &k.sources[i];
                json!({"ip": x.ip, "first_use": x.first.to_string(), "event_id": &*x.event_id, "event_name": &*x.event_name, "user_agent": x.user_agent.as_deref()})
            })
            .collect();
        let known: Vec<String> = known_ix
            .iter()
            .map(|&i| k.sources[i].ip.to_string())
            .collect();
        let first_report = !k.reported_once;
        let (severity, summary) = if k.root {
            (Severity::Critical, format!("The root account's access key {key} was used from {}: root should have no access keys at all.", s.ip))
        } else if first_report {
            (
                Severity::Medium,
                format!(
                    "Long-lived access key {key} of {name} is in use: first seen {}, {calls} call(s) from {} address(es) before {}.",
                    k.first_use.as_ref().map_or(s.first, |f| f.0),
                    settled.len(),
                    EventTime(cutoff)
                ),
            )
        } else {
            (
                Severity::High,
                format!(
                    "Long-lived access key {key} of {name} was used from {} new address(es), starting with {} at {}; it was known from {} before.",
                    settled.len(),
                    s.ip,
                    s.first,
                    known.join(", ")
                ),
            )
        };
        out.push(Finding {
            id: finding_id(NAME, &[key, &s.ip.to_string()]),
            detector: NAME,
            severity,
            time: s.first.to_string(),
            account: k.account.as_deref().map(str::to_owned),
            account_name: None,
            account_owner: None,
            region: s.region.as_deref().map(str::to_owned),
            principal: k.owner_arn.as_deref().map(str::to_owned),
            access_key_id: Some(key.to_owned()),
            source: FindingSource { ip: Some(s.ip.to_string()), vpc_endpoint: None, user_agent: s.user_agent.as_deref().map(str::to_owned) },
            event_ids: settled.iter().map(|&i| k.sources[i].event_id.to_string()).filter(|e| !e.is_empty()).take(20).collect(),
            summary,
            details: json!({
                "owner": k.owner_arn.as_deref(),
                "user_name": k.user_name.as_deref(),
                "root": k.root,
                "first_use": k.first_use.as_ref().map(|f| f.0.to_string()),
                "last_use": last.map(|t| t.to_string()),
                "calls": calls,
                "calls_counted_before": EventTime(cutoff).to_string(),
                "new_sources": new_sources,
                "known_sources": known,
                "untracked_sources": k.untracked_sources,
                "first_report_for_key": first_report,
            }),
            remediation: format!(
                "Replace the static key with short-lived credentials (a role through the credential broker, OIDC federation for CI, IAM Roles Anywhere for servers outside AWS). If {} is not a place this key belongs, deactivate it now (aws iam update-access-key --access-key-id {key} --status Inactive) and review its calls. Until it is retired, restrict it with an aws:SourceIp condition.",
                s.ip
            ),
        });
        for i in settled {
            k.sources[i].reported = true;
        }
        k.reported_once = true;
    }
}

impl Detector for StaticKeyDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, r: &Record, _out: &mut Vec<Finding>) {
        let Some(key) = r.identity.access_key_id.as_deref() else {
            return;
        };
        if !key.starts_with("AKIA") {
            return;
        }
        let delay = self.delay();
        let k = self.keys.entry(key.into()).or_default();
        if k.owner_arn.is_none() {
            k.owner_arn = r.identity.arn.clone();
            k.user_name = r.identity.user_name.clone();
            k.account = r
                .identity
                .account_id
                .clone()
                .or(r.recipient_account_id.clone());
            k.root = r.identity.kind.as_deref() == Some("Root");
        }
        let t = r.event_time;
        let id = r.event_id.as_deref().unwrap_or("");
        if k.first_use
            .as_ref()
            .is_none_or(|(ft, fid)| (t, id) < (*ft, &**fid))
        {
            k.first_use = Some((t, id.into()));
        }
        let b = k.minutes.entry(minute_of(t)).or_insert((0, t));
        b.0 += 1;
        b.1 = b.1.max(t);
        // Fold minutes that no future cutoff can fall before (cutoffs trail the newest use by
        // at most the decision delay, and the newest use trails the watermark).
        k.latest = k.latest.max(t);
        let horizon = minute_of(k.latest.plus_millis(-2 * delay));
        while let Some((&m, &(n, last))) = k.minutes.first_key_value() {
            if m >= horizon {
                break;
            }
            k.minutes.remove(&m);
            k.folded_calls += n;
            k.folded_last = k.folded_last.max(Some(last));
        }
        let ip = match r.source {
            SourceAddress::V4(a) if !r.made_by_aws_for_caller() => IpAddr::V4(a),
            SourceAddress::V6(a) if !r.made_by_aws_for_caller() => IpAddr::V6(a),
            _ => return,
        };
        let fresh = match k.sources.iter().position(|s| s.ip == ip) {
            Some(i) => {
                let s = &mut k.sources[i];
                if s.earlier(t, id) && !s.reported {
                    s.first = t;
                    s.event_id = id.into();
                    s.event_name = r.event_name.clone();
                    s.user_agent = r.user_agent.clone();
                    s.region = r.aws_region.clone();
                    true
                } else {
                    false
                }
            }
            None if k.sources.len() >= MAX_SOURCES => {
                k.untracked_sources += 1;
                false
            }
            None => {
                k.sources.push(KeySource {
                    ip,
                    first: t,
                    event_id: id.into(),
                    event_name: r.event_name.clone(),
                    user_agent: r.user_agent.clone(),
                    region: r.aws_region.clone(),
                    reported: false,
                });
                true
            }
        };
        if fresh {
            self.timers.push(t.plus_millis(delay), key.into());
        }
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        while let Some((at, key)) = self.timers.pop_due(watermark) {
            // Settle what was due by the timer, not by how far the watermark happens to have
            // moved: the batch must not depend on arrival order.
            self.decide(&key, Some(at), out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut keys: Vec<Text> = self.keys.keys().cloned().collect();
        keys.sort();
        for k in keys {
            self.decide(&k, None, out);
        }
    }

    fn live_state(&self) -> usize {
        self.keys.len()
    }

    fn save_state(&self) -> serde_json::Value {
        serde_json::json!({"keys": self.keys, "timers": self.timers})
    }

    fn restore_state(&mut self, mut state: serde_json::Value) -> Result<(), String> {
        self.keys = state_field(&mut state, "keys")?;
        self.timers = state_field(&mut state, "timers")?;
        Ok(())
    }
}
