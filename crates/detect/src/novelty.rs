//! Novelty: something an account or a principal has never done, once it has been watched
//! long enough to know what it does. One engine, four questions:
//!
//! | detector | entity | what is new | severity |
//! |---|---|---|---|
//! | `recon-call` | principal | an attacker's first step (`data/recon-actions.txt`) | high |
//! | `new-role-behaviour` | principal | an action (`service:eventName`) | low; medium with a new service |
//! | `unused-service` | account | a service | medium; high for three or more at once |
//! | `unused-region` | account | a region (global services excluded) | medium; high for three or more at once |
//!
//! A principal is the role (session issuer) for assumed-role sessions, the user for IAM users,
//! the ARN otherwise. Calls AWS services make on a principal's behalf teach nothing and alert
//! nothing. Principal questions leave console browsing out (a person opening a new page is not
//! a program changing its habits); account questions count it, but group it: a console page
//! fans one click out across regions and services, and everything new one caller does within
//! ten minutes is one finding.
//!
//! Everything an entity does during its learning window (default 14 days from when it was
//! first seen) is its baseline. Each item is judged once, at its earliest occurrence, after
//! the watermark has passed it by the decision delay — so arrival order within the lateness
//! allowance changes nothing.

use cloudtrail::{EventTime, Record, Text};
use serde_json::json;

use crate::engine::{state_field, Detector, Timers};
use crate::fasthash::{FastMap, FastState};
use credwarden_core::{finding_id, Finding, FindingSource, Severity};

/// Which question a [`NoveltyDetector`] asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Novelty {
    ReconCall,
    NewRoleBehaviour,
    UnusedService,
    UnusedRegion,
}

pub const NEW_ROLE_BEHAVIOUR: &str = "new-role-behaviour";
pub const UNUSED_SERVICE: &str = "unused-service";
pub const UNUSED_REGION: &str = "unused-region";

impl Novelty {
    pub const ALL: [Novelty; 4] = [
        Novelty::ReconCall,
        Novelty::NewRoleBehaviour,
        Novelty::UnusedService,
        Novelty::UnusedRegion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Novelty::ReconCall => crate::recon::NAME,
            Novelty::NewRoleBehaviour => NEW_ROLE_BEHAVIOUR,
            Novelty::UnusedService => UNUSED_SERVICE,
            Novelty::UnusedRegion => UNUSED_REGION,
        }
    }

    /// The question a detector name asks, if it is one of the novelty engine's.
    pub fn by_name(name: &str) -> Option<Novelty> {
        Novelty::ALL.into_iter().find(|k| k.name() == name)
    }

    fn per_account(self) -> bool {
        matches!(self, Novelty::UnusedService | Novelty::UnusedRegion)
    }
}

/// Services whose calls CloudTrail logs in us-east-1 whatever region the caller uses: they say
/// nothing about which regions an account uses.
pub const GLOBAL_SERVICES: &[&str] = &[
    "iam",
    "sts",
    "cloudfront",
    "route53",
    "route53domains",
    "organizations",
    "support",
    "health",
    "globalaccelerator",
    "budgets",
    "ce",
    "account",
    "shield",
    "waf",
    "trustedadvisor",
    "signin",
    "notifications",
    "pricing",
    "savingsplans",
    "artifact",
    "billingconsole",
    "sso",
    "identitystore",
];

/// Whether `service` (an event source without `.amazonaws.com`) is one of
/// [`GLOBAL_SERVICES`]. Asked of every record: a hash lookup, not a walk of the list.
pub fn is_global_service(service: &str) -> bool {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str, FastState>> =
        std::sync::OnceLock::new();
    SET.get_or_init(|| GLOBAL_SERVICES.iter().copied().collect())
        .contains(service)
}

/// Calls made by the AWS console on a person's behalf (browser or console backends). The
/// decoders ask this of every record ([`Record::from_console`]).
pub use cloudtrail::record::is_console_agent as is_console;

#[derive(Clone, Debug)]
pub struct NoveltyConfig {
    /// How long an entity is watched before what it does counts as new.
    pub learning_ms: i64,
    pub lateness_ms: i64,
    pub early_window_ms: i64,
    /// New items by one caller this close to the first are one finding.
    pub group_window_ms: i64,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        NoveltyConfig {
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
    caller: Text,
    access_key: Option<Text>,
    principal: Option<Text>,
    ip: String,
    user_agent: Option<Text>,
    region: Option<Text>,
    account: Option<Text>,
    error_code: Option<Text>,
    event: Text,
}

/// The earliest occurrence of an item. An entity keeps every item it ever did (that is its
/// baseline), so a judged item keeps only its time, what later judgements compare with: the
/// whole call (a few hundred bytes with its strings) is needed only until it is judged. An
/// organisation's roles times the actions each uses is millions of items.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Item {
    Judged(EventTime),
    /// Waiting for judgement. The flag is always false: it keeps the saved form of earlier
    /// versions (`[call, judged]`), which restoring turns into `Judged` when true.
    Open(Box<Call>, bool),
}

impl Item {
    fn time(&self) -> EventTime {
        match self {
            Item::Judged(t) => *t,
            Item::Open(c, _) => c.time,
        }
    }

    fn judge(&mut self) {
        *self = Item::Judged(self.time());
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entity {
    first_seen: EventTime,
    /// Earliest occurrence of each item.
    items: FastMap<Text, Item>,
    /// Items not judged yet (their keys); each is `Item::Open`.
    pending: Vec<Text>,
}

impl Entity {
    /// The call of a pending item.
    fn open<'a>(items: &'a FastMap<Text, Item>, key: &str) -> &'a Call {
        match items.get(key) {
            Some(Item::Open(call, _)) => call,
            // `restore_state` refuses a state where this could happen, and nothing else
            // judges an item without taking it out of `pending`.
            _ => unreachable!("pending item {key:?} is open"),
        }
    }
}

pub struct NoveltyDetector {
    kind: Novelty,
    cfg: NoveltyConfig,
    entities: FastMap<Text, Entity>,
    timers: Timers<Text>,
    key: String,
}

impl NoveltyDetector {
    pub fn new(kind: Novelty, cfg: NoveltyConfig) -> Self {
        NoveltyDetector {
            kind,
            cfg,
            entities: FastMap::default(),
            timers: Timers::default(),
            key: String::new(),
        }
    }

    fn delay(&self) -> i64 {
        self.cfg.lateness_ms + self.cfg.early_window_ms
    }

    /// The item this record is, for this detector's question (written into `self.key`).
    fn item(&mut self, r: &Record) -> bool {
        let service = r
            .event_source
            .strip_suffix(".amazonaws.com")
            .unwrap_or(&r.event_source);
        self.key.clear();
        match self.kind {
            Novelty::ReconCall => {
                if crate::recon::recon_index(&r.event_source, &r.event_name).is_none() {
                    return false;
                }
                self.key.push_str(service);
                self.key.push(':');
                self.key.push_str(&r.event_name);
            }
            Novelty::NewRoleBehaviour => {
                self.key.push_str(service);
                self.key.push(':');
                self.key.push_str(&r.event_name);
            }
            Novelty::UnusedService => self.key.push_str(service),
            Novelty::UnusedRegion => {
                let Some(region) = r.aws_region.as_deref() else {
                    return false;
                };
                if is_global_service(service) {
                    return false;
                }
                self.key.push_str(region);
            }
        }
        true
    }

    fn decide(&mut self, who: &str, watermark: Option<EventTime>, out: &mut Vec<Finding>) {
        let (delay, learning, window, kind) = (
            self.delay(),
            self.cfg.learning_ms,
            self.cfg.group_window_ms,
            self.kind,
        );
        let Some(e) = self.entities.get_mut(who) else {
            return;
        };
        let learned_before = e.first_seen.plus_millis(learning);
        let ready =
            |t: EventTime, extra: i64| watermark.is_none_or(|w| t.plus_millis(extra + delay) <= w);
        let items = &mut e.items;
        e.pending.sort_by(|a, b| {
            let (a, b) = (Entity::open(items, a), Entity::open(items, b));
            (a.time, &a.event_id).cmp(&(b.time, &b.event_id))
        });
        // What was done while learning is the baseline.
        e.pending.retain(|k| {
            let item = items.get_mut(k).expect("pending items exist");
            let t = item.time();
            if t < learned_before && ready(t, 0) {
                item.judge();
                false
            } else {
                true
            }
        });
        loop {
            let Some(start) = e
                .pending
                .iter()
                .position(|k| items[k].time() >= learned_before)
            else {
                return;
            };
            let opener = Entity::open(items, &e.pending[start]).clone();
            if !ready(opener.time, window) {
                return;
            }
            let group: Vec<Text> = e
                .pending
                .iter()
                .filter(|k| {
                    let c = Entity::open(items, k);
                    c.caller == opener.caller
                        && c.time >= learned_before
                        && c.time <= opener.time.plus_millis(window)
                })
                .cloned()
                .collect();
            e.pending.retain(|k| !group.contains(k));
            // For principal behaviour: which services are new, not only which actions.
            let new_services: Vec<String> = if kind == Novelty::NewRoleBehaviour {
                let mut v: Vec<String> = group
                    .iter()
                    .filter_map(|k| {
                        let svc = k.split(':').next().unwrap_or("");
                        let seen_before = items.iter().any(|(other, item)| {
                            !group.contains(other)
                                && other.split(':').next() == Some(svc)
                                && item.time() < items[k].time()
                        });
                        (!seen_before).then(|| svc.to_owned())
                    })
                    .collect();
                v.sort();
                v.dedup();
                v
            } else {
                Vec::new()
            };
            out.push(novelty_finding(
                kind,
                who,
                e.first_seen,
                learning,
                &opener,
                &group,
                items,
                &new_services,
            ));
            for k in &group {
                items.get_mut(k).expect("exists").judge();
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn novelty_finding(
    kind: Novelty,
    who: &str,
    first_seen: EventTime,
    learning: i64,
    opener: &Call,
    group: &[Text],
    items: &FastMap<Text, Item>,
    new_services: &[String],
) -> Finding {
    let list: Vec<&str> = group.iter().map(|k| &**k).collect();
    let refused: Vec<&str> = group
        .iter()
        .filter(|k| Entity::open(items, k).error_code.is_some())
        .map(|k| &**k)
        .collect();
    let by = opener.principal.as_deref().unwrap_or(&opener.caller);
    let many = group.len() >= 3;
    let (severity, summary) = match kind {
        Novelty::ReconCall => (Severity::High, format!("{who} made {} attacker first step(s) it never made before ({}), watched since {first_seen}. Whoever holds stolen credentials asks these first.", list.len(), list.join(", "))),
        Novelty::NewRoleBehaviour => (
            if new_services.is_empty() { Severity::Low } else { Severity::Medium },
            if new_services.is_empty() {
                format!("{who} did {} thing(s) it never did before: {}.", list.len(), list.join(", "))
            } else {
                format!("{who} used {} service(s) it never used before ({}): {}.", new_services.len(), new_services.join(", "), list.join(", "))
            },
        ),
        Novelty::UnusedService => (if many { Severity::High } else { Severity::Medium }, format!("Account {who} saw its first call(s) to {}, by {by}, watched since {first_seen}.", list.join(", "))),
        Novelty::UnusedRegion => (if many { Severity::High } else { Severity::Medium }, format!("Account {who} saw its first call(s) in region(s) {}, by {by}, watched since {first_seen}.", list.join(", "))),
    };
    let remediation = match kind {
        Novelty::ReconCall => format!("Ask the owner of {who} whether they just ran these calls (a person debugging, a new deployment). If not, treat the credentials as stolen: revoke the session or deactivate the key, and review every call from {} since.", opener.ip),
        Novelty::NewRoleBehaviour => format!("If {who} was deployed with new code, this is expected: nothing to do. If not, review what else its credentials did from {} and consider revoking its sessions.", opener.ip),
        Novelty::UnusedService | Novelty::UnusedRegion => format!("Unused services and regions are where enumeration scripts and crypto-miners show up. Confirm with {by}'s owner; if unexplained, revoke its credentials. Consider an SCP that denies the regions and services the account does not use."),
    };
    Finding {
        id: finding_id(
            kind.name(),
            &[who, &opener.caller, list[0], &opener.time.to_string()],
        ),
        detector: kind.name(),
        severity,
        time: opener.time.to_string(),
        account: opener.account.as_deref().map(str::to_owned),
        account_name: None,
        account_owner: None,
        region: opener.region.as_deref().map(str::to_owned),
        principal: opener.principal.as_deref().map(str::to_owned),
        access_key_id: opener.access_key.as_deref().map(str::to_owned),
        source: FindingSource {
            ip: Some(opener.ip.clone()),
            vpc_endpoint: None,
            user_agent: opener.user_agent.as_deref().map(str::to_owned),
        },
        event_ids: group
            .iter()
            .map(|k| Entity::open(items, k).event_id.to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        summary,
        details: json!({
            "new": list,
            "actions": if kind == Novelty::ReconCall { json!(list) } else { json!(group.iter().map(|k| &*Entity::open(items, k).event).collect::<Vec<_>>()) },
            "new_services": new_services,
            "refused": refused,
            "entity": who,
            "entity_first_seen": first_seen.to_string(),
            "learning_window_hours": learning / EventTime::HOUR,
        }),
        remediation,
    }
}

impl Detector for NoveltyDetector {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn observe(&mut self, r: &Record, _out: &mut Vec<Finding>) {
        let id = &r.identity;
        if id.invoked_by.is_some() || r.source.is_aws_service() {
            return; // an AWS service acting for the principal teaches and tells nothing
        }
        let entity = if self.kind.per_account() {
            r.account()
        } else {
            if r.from_console() {
                return;
            }
            id.session_issuer_arn.as_deref().or(id.arn.as_deref())
        };
        let Some(entity) = entity else { return };
        let t = r.event_time;
        let is_item = self.item(r);
        let e = match self.entities.get_mut(entity) {
            Some(e) => e,
            None => self.entities.entry(entity.into()).or_insert(Entity {
                first_seen: t,
                items: FastMap::default(),
                pending: Vec::new(),
            }),
        };
        e.first_seen = e.first_seen.min(t);
        if !is_item {
            return;
        }
        let eid = r.event_id.as_deref().unwrap_or("");
        match e.items.get(self.key.as_str()) {
            Some(Item::Judged(_)) => return,
            Some(Item::Open(c, _)) if (t, eid) >= (c.time, &*c.event_id) => return,
            _ => {}
        }
        let service = r
            .event_source
            .strip_suffix(".amazonaws.com")
            .unwrap_or(&r.event_source);
        let call = Call {
            time: t,
            event_id: eid.into(),
            caller: id
                .access_key_id
                .clone()
                .or(id.arn.clone())
                .unwrap_or_else(|| "unknown".into()),
            access_key: id.access_key_id.clone(),
            principal: id.session_issuer_arn.clone().or(id.arn.clone()),
            ip: r.source.to_string(),
            user_agent: r.user_agent.clone(),
            region: r.aws_region.clone(),
            account: r.account().map(Into::into),
            error_code: r.error_code.clone(),
            event: format!("{service}:{}", r.event_name).into(),
        };
        let key: Text = self.key.as_str().into();
        if e.items
            .insert(key.clone(), Item::Open(Box::new(call), false))
            .is_none()
        {
            e.pending.push(key);
        }
        let at = t.plus_millis(self.delay() + self.cfg.group_window_ms);
        self.timers.push(at, entity.into());
    }

    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>) {
        while let Some((_, who)) = self.timers.pop_due(watermark) {
            self.decide(&who, Some(watermark), out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut all: Vec<Text> = self.entities.keys().cloned().collect();
        all.sort();
        for who in all {
            self.decide(&who, None, out);
        }
    }

    fn live_state(&self) -> usize {
        self.entities.len()
    }

    fn save_state(&self) -> serde_json::Value {
        json!({"entities": self.entities, "timers": self.timers})
    }

    fn mark_learned(&mut self) {
        // Everything seen is baseline, and every entity counts as watched long enough.
        for e in self.entities.values_mut() {
            e.first_seen = EventTime(i64::MIN / 4);
            for item in e.items.values_mut() {
                item.judge();
            }
            e.pending.clear();
        }
        self.timers.clear();
    }

    fn restore_state(&mut self, mut state: serde_json::Value) -> Result<(), String> {
        let mut entities: FastMap<Text, Entity> = state_field(&mut state, "entities")?;
        for (who, e) in &mut entities {
            // Earlier versions kept judged items whole, flagged.
            for item in e.items.values_mut() {
                if matches!(item, Item::Open(_, true)) {
                    item.judge();
                }
            }
            if let Some(k) = e
                .pending
                .iter()
                .find(|k| !matches!(e.items.get(*k), Some(Item::Open(..))))
            {
                return Err(format!(
                    "entity {who}: pending item {k:?} is not an open item"
                ));
            }
        }
        self.entities = entities;
        self.timers = state_field(&mut state, "timers")?;
        Ok(())
    }
}
