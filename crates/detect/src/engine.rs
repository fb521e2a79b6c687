//! The engine: feeds records to detectors, keeps event time, removes duplicate deliveries,
//! and makes sure each finding id leaves at most once per run.
//!
//! Event time, not arrival, drives everything. The engine's *watermark* is the newest event
//! time seen; detectors decide a question only once the watermark has passed the evidence by
//! their lateness allowance, and drop state once the watermark has passed its expiry. Since
//! sources are decoded in a canonical order (see the cloudtrail crate) the sequence of
//! records, and so of watermarks and findings, is the same on every run.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use cloudtrail::{EventTime, Record};

use crate::fasthash::FastState;
use credwarden_core::Finding;

/// A detector: sees every record once, in engine order.
pub trait Detector: Send {
    /// The kebab-case name findings carry.
    fn name(&self) -> &'static str;
    fn observe(&mut self, record: &Record, out: &mut Vec<Finding>);
    /// Event time has reached `watermark`: decide what can be decided, drop expired state.
    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>);
    /// No more input: decide everything still open.
    fn finish(&mut self, out: &mut Vec<Finding>);
    /// Live state entries (for memory accounting in stats).
    fn live_state(&self) -> usize;
    /// Everything the detector has learned, to carry into the next run (`--state`).
    fn save_state(&self) -> serde_json::Value;
    /// End any learning period now: what was seen so far is the baseline
    /// (`credwarden baseline build`). Detectors without one ignore it.
    fn mark_learned(&mut self) {}
    /// Take back what `save_state` gave, replacing the current state. A state the detector
    /// cannot read (written by another version) is an error, never a guess.
    fn restore_state(&mut self, state: serde_json::Value) -> Result<(), String>;
}

/// Things to do at a point of event time (decide a source, expire a key), soonest first.
/// Detectors keep their deferred work here and take what is due as the watermark moves.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(
    transparent,
    bound(
        serialize = "T: serde::Serialize",
        deserialize = "T: serde::Deserialize<'de>"
    )
)]
pub struct Timers<T: Ord>(std::collections::BinaryHeap<std::cmp::Reverse<(EventTime, T)>>);

impl<T: Ord> Default for Timers<T> {
    fn default() -> Self {
        Timers(std::collections::BinaryHeap::new())
    }
}

impl<T: Ord> Timers<T> {
    pub fn push(&mut self, at: EventTime, item: T) {
        self.0.push(std::cmp::Reverse((at, item)));
    }

    /// The soonest item due at or before `watermark`, if any.
    pub fn pop_due(&mut self, watermark: EventTime) -> Option<(EventTime, T)> {
        if self
            .0
            .peek()
            .is_some_and(|std::cmp::Reverse((at, _))| *at <= watermark)
        {
            self.0.pop().map(|std::cmp::Reverse(x)| x)
        } else {
            None
        }
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Keep only the items `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.0.retain(|std::cmp::Reverse((_, t))| keep(t));
    }
}

/// Take one field out of a saved state.
pub fn state_field<T: serde::de::DeserializeOwned>(
    state: &mut serde_json::Value,
    name: &str,
) -> Result<T, String> {
    serde_json::from_value(
        state
            .get_mut(name)
            .map(serde_json::Value::take)
            .ok_or_else(|| format!("saved state lacks `{name}`"))?,
    )
    .map_err(|e| format!("saved state field `{name}`: {e}"))
}

/// Counters for the end-of-run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub records: u64,
    pub duplicates: u64,
    /// Records older than the watermark by more than the lateness allowance: processed,
    /// but later than detectors promise to take fully into account.
    pub late: u64,
    /// Records stamped more than a day after this machine's clock: processed, but they do
    /// not move event time.
    pub future: u64,
    pub findings: u64,
    pub peak_live_state: usize,
}

/// Remembers recent eventIDs (as 64-bit keyed hashes) for a window of event time, to drop
/// CloudTrail's duplicate deliveries without remembering all of history. The hashes are the
/// decoders' ([`Record::event_id_hash`], this process's key). Ids an earlier run remembered
/// were hashed with that run's key: they are kept apart, with their key, until event time
/// has passed them by the window.
struct RecentEvents {
    window_ms: i64,
    current: IdWindow,
    /// Windows restored from saved state under other keys (usually none).
    earlier: Vec<(FastState, IdWindow)>,
}

/// Hashes of ids in the order they were first seen, grouped by the minute of watermark they
/// were first seen in: one time a minute rather than one an id (8 bytes an id fewer, most of
/// a megabyte at a busy organisation's ~100 k events an hour). An id is remembered for at
/// least the window and at most a minute more.
#[derive(Default)]
struct IdWindow {
    seen: HashSet<u64, BuildHasherDefault<PreHashed>>,
    order: VecDeque<u64>,
    /// (start of a minute, ids first seen in it), oldest first.
    minutes: VecDeque<(EventTime, usize)>,
}

impl IdWindow {
    fn from_order(order: impl IntoIterator<Item = (EventTime, u64)>) -> IdWindow {
        let mut w = IdWindow::default();
        for (t, k) in order {
            w.insert(t, k);
        }
        w
    }

    /// Remember `k`, first seen at watermark `at`; false if it is already remembered.
    fn insert(&mut self, at: EventTime, k: u64) -> bool {
        if !self.seen.insert(k) {
            return false;
        }
        let minute = EventTime(at.millis().div_euclid(EventTime::MINUTE) * EventTime::MINUTE);
        match self.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => self.minutes.push_back((minute, 1)),
        }
        self.order.push_back(k);
        true
    }

    /// Forget the minutes that ended at or before `horizon`.
    fn expire(&mut self, horizon: EventTime) {
        while let Some(&(m, n)) = self.minutes.front() {
            if m.plus_millis(EventTime::MINUTE) > horizon {
                break;
            }
            self.minutes.pop_front();
            for k in self.order.drain(..n) {
                self.seen.remove(&k);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// (minute, hash) pairs, oldest first: what `from_order` takes back.
    fn saved(&self) -> Vec<(EventTime, u64)> {
        let mut out = Vec::with_capacity(self.order.len());
        let mut keys = self.order.iter();
        for &(m, n) in &self.minutes {
            out.extend(keys.by_ref().take(n).map(|&k| (m, k)));
        }
        out
    }
}

/// A `Hasher` for keys that already are hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl RecentEvents {
    fn new(window_ms: i64) -> Self {
        RecentEvents {
            window_ms,
            current: IdWindow::default(),
            earlier: Vec::new(),
        }
    }

    /// True if this event id (`hash` under the decoders' key) was already seen within the
    /// window.
    fn is_duplicate(&mut self, id: &str, hash: u64, watermark: EventTime) -> bool {
        let horizon = watermark.plus_millis(-self.window_ms);
        if !self.earlier.is_empty() {
            for (_, w) in &mut self.earlier {
                w.expire(horizon);
            }
            self.earlier.retain(|(_, w)| !w.is_empty());
            if self
                .earlier
                .iter()
                .any(|(key, w)| w.seen.contains(&key.hash_one(id)))
            {
                return true;
            }
        }
        if !self.current.insert(watermark, hash) {
            return true;
        }
        self.current.expire(horizon);
        false
    }

    fn save(&self) -> serde_json::Value {
        let earlier: Vec<serde_json::Value> = self
            .earlier
            .iter()
            .map(|(key, w)| serde_json::json!({"key": key.key(), "recent": w.saved()}))
            .collect();
        serde_json::json!({
            "recent_key": cloudtrail::event_id_hasher().key(),
            "recent": self.current.saved(),
            "recent_earlier": earlier,
            "window_ms": self.window_ms,
        })
    }

    /// Take back the ids `save` gave (before any record of this run).
    fn restore(&mut self, state: &mut serde_json::Value) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Earlier {
            key: u64,
            recent: VecDeque<(EventTime, u64)>,
        }
        let key: u64 = state_field(state, "recent_key")?;
        let order: VecDeque<(EventTime, u64)> = state_field(state, "recent")?;
        // Written by versions before the decoders hashed ids: absent means none.
        let earlier: Vec<Earlier> = if state.get("recent_earlier").is_some() {
            state_field(state, "recent_earlier")?
        } else {
            Vec::new()
        };
        self.earlier.clear();
        for (key, order) in
            std::iter::once((key, order)).chain(earlier.into_iter().map(|e| (e.key, e.recent)))
        {
            if order.is_empty() {
                continue;
            }
            if key == cloudtrail::event_id_hasher().key() && self.current.is_empty() {
                self.current = IdWindow::from_order(order);
            } else {
                self.earlier
                    .push((FastState::with_key(key), IdWindow::from_order(order)));
            }
        }
        Ok(())
    }
}

pub struct Engine {
    detectors: Vec<Box<dyn Detector>>,
    watermark: Option<EventTime>,
    recent: RecentEvents,
    emitted: HashSet<String>,
    lateness_ms: i64,
    now_ms: i64,
    pub stats: EngineStats,
}

/// How long duplicate eventIDs are remembered, in event time. CloudTrail's duplicate
/// deliveries arrive close together; an hour is generous and keeps memory bounded.
pub const DEFAULT_DUPLICATE_WINDOW_MS: i64 = EventTime::HOUR;
/// The name the engine's own state is saved under.
pub const ENGINE_STATE: &str = "engine";

/// How late (event time) a record may arrive and still be fully taken into account.
pub const DEFAULT_LATENESS_MS: i64 = 15 * EventTime::MINUTE;

impl Engine {
    pub fn new(detectors: Vec<Box<dyn Detector>>) -> Engine {
        let now_ms = credwarden_core::clock::now_millis();
        Engine {
            detectors,
            watermark: None,
            recent: RecentEvents::new(DEFAULT_DUPLICATE_WINDOW_MS),
            emitted: HashSet::new(),
            lateness_ms: DEFAULT_LATENESS_MS,
            now_ms,
            stats: EngineStats::default(),
        }
    }

    /// The lateness allowance the detectors were given (for the `late` counter).
    pub fn with_lateness(mut self, lateness_ms: i64) -> Engine {
        self.lateness_ms = lateness_ms;
        self
    }

    pub fn detector_names(&self) -> Vec<&'static str> {
        self.detectors.iter().map(|d| d.name()).collect()
    }

    /// Feed one record; findings it completes are appended to `out`.
    pub fn process(&mut self, record: &Record, out: &mut Vec<Finding>) {
        self.stats.records += 1;
        let t = record.event_time;
        // A record stamped far in the future (a broken clock, a hostile file) must not drag
        // the watermark there: that would expire every credential and freeze decisions for
        // the rest of the run. It is processed, counted, and does not advance event time.
        let plausible = t.millis() <= self.horizon_ms();
        if !plausible {
            self.stats.future += 1;
        }
        let wm = match self.watermark {
            Some(w) if w >= t || !plausible => {
                if t.millis() < w.millis() - self.lateness_ms {
                    self.stats.late += 1;
                }
                w
            }
            _ => t,
        };
        if let Some((id, hash)) = record.event_id_hash() {
            if self.recent.is_duplicate(id, hash, wm) {
                self.stats.duplicates += 1;
                return;
            }
        }
        let start = out.len();
        for d in &mut self.detectors {
            d.observe(record, out);
        }
        if self.watermark != Some(wm) {
            self.watermark = Some(wm);
            for d in &mut self.detectors {
                d.advance(wm, out);
            }
        }
        self.keep_new(out, start);
        if self.stats.records.is_multiple_of(4096) {
            let live = self.detectors.iter().map(|d| d.live_state()).sum();
            self.stats.peak_live_state = self.stats.peak_live_state.max(live);
        }
    }

    /// The latest event time believed: a day past this machine's clock.
    fn horizon_ms(&self) -> i64 {
        self.now_ms + 24 * EventTime::HOUR
    }

    /// The engine's and every detector's state, by name, to carry into the next run.
    pub fn save_state(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut engine = self.recent.save();
        engine["watermark"] = serde_json::json!(self.watermark);
        let mut out = vec![(ENGINE_STATE, engine)];
        out.extend(self.detectors.iter().map(|d| (d.name(), d.save_state())));
        out
    }

    /// Restore what `save_state` gave. States of detectors not running now are ignored;
    /// detectors without a saved state start fresh.
    pub fn restore_state(
        &mut self,
        states: Vec<(String, serde_json::Value)>,
    ) -> Result<(), String> {
        for (name, mut state) in states {
            if name == ENGINE_STATE {
                self.watermark = state_field(&mut state, "watermark")?;
                // The "future" horizon is this run's clock, not the saved one: a run a year
                // later must accept a year's newer records.
                self.recent.restore(&mut state)?;
            } else if let Some(d) = self.detectors.iter_mut().find(|d| d.name() == name) {
                d.restore_state(state)
                    .map_err(|e| format!("detector {name}: {e}"))?;
            }
        }
        Ok(())
    }

    /// End every detector's learning period now (see [`Detector::mark_learned`]).
    pub fn mark_learned(&mut self) {
        for d in &mut self.detectors {
            d.mark_learned();
        }
    }

    /// End of input: every detector decides what is still open.
    pub fn finish(&mut self, out: &mut Vec<Finding>) {
        let start = out.len();
        for d in &mut self.detectors {
            d.finish(out);
        }
        self.keep_new(out, start);
    }

    /// Drop findings from `out[start..]` whose id already left in this run.
    fn keep_new(&mut self, out: &mut Vec<Finding>, start: usize) {
        let mut i = start;
        while i < out.len() {
            if self.emitted.insert(out[i].id.clone()) {
                self.stats.findings += 1;
                i += 1;
            } else {
                out.remove(i);
            }
        }
    }
}
