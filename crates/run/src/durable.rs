//! Delivering findings exactly once across runs and crashes (`detect --state`).
//!
//! A run advances in checkpoints. Between two, findings are only collected. A checkpoint is
//! one SQLite transaction holding the detectors' state after a set of files, those files,
//! and the findings they produced (queued in an outbox). Only then are the queued findings
//! delivered — written to the sink, the file fsynced — and moved out of the outbox. So:
//! * killed before a checkpoint commits: nothing of it happened; the next run reads those
//!   files again from the previous checkpoint's state and produces the same findings;
//! * killed after it commits but before delivery is confirmed: the next run delivers the
//!   outbox first. For `--output` it first cuts a half-written last line and skips findings
//!   the file already holds, so the file receives each finding exactly once. (Stdout cannot
//!   be asked what it already printed: after a crash a finding may appear there twice.)

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use cloudtrail::FileReport;
use detect::{Engine, Finding};
use store::{EmittedFinding, ProcessedFile, Spooled, Store};

use crate::accounts::AccountNames;
use crate::drive::RunHooks;
use crate::error::RunError;
use crate::ledger::Ledger;
use crate::source::{FileIdentity, Seen};
use sink::FindingSink;

/// Format number of the detector state this build writes; a different one is refused.
pub const STATE_FORMAT: i64 = 1;

/// Deliver everything in the outbox (skipping what `already_written` holds), then confirm.
pub fn drain_outbox(
    store: &mut Store,
    sink: &mut FindingSink<'_>,
    already_written: &HashSet<String>,
) -> Result<(), RunError> {
    let pending = store.outbox()?;
    if pending.is_empty() {
        return Ok(());
    }
    let mut meta: Vec<(String, String, String)> = Vec::with_capacity(pending.len());
    for (id, json) in &pending {
        if !already_written.contains(id) {
            sink.deliver(json)?;
        }
        let v: serde_json::Value = serde_json::from_str(json)?;
        let field = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        meta.push((id.clone(), field("detector"), field("time")));
    }
    sink.sync()?;
    let done: Vec<EmittedFinding> = meta
        .iter()
        .map(|(id, d, t)| EmittedFinding {
            id,
            detector: d,
            time: t,
        })
        .collect();
    // One spool row per matching route, written with the delivery itself: a finding marked
    // delivered is never missing from a route's queue.
    let spool: Vec<Spooled> = pending
        .iter()
        .flat_map(|(id, json)| {
            sink.spool
                .destinations_of_json(json)
                .into_iter()
                .map(move |destination| Spooled {
                    destination,
                    id,
                    finding: json,
                })
        })
        .collect();
    store.delivered(&done, &spool)?;
    Ok(())
}

/// Load the engine's state from the store.
pub fn restore(store: &Store, engine: &mut Engine) -> Result<(), RunError> {
    let mut states = Vec::new();
    for (name, format, json) in store.detector_states()? {
        if format != STATE_FORMAT {
            return Err(RunError::StateFormat {
                detector: name,
                found: format,
                expected: STATE_FORMAT,
            });
        }
        let value = serde_json::from_str(&json).map_err(|e| {
            RunError::DetectorState(format!("the state of {name} is not JSON: {e}"))
        })?;
        states.push((name, value));
    }
    engine
        .restore_state(states)
        .map_err(|e| RunError::DetectorState(e.to_string()))
}

/// Save the engine's state, as [`Store::checkpoint`] takes it.
pub fn saved_states(engine: &Engine) -> Vec<(&'static str, i64, String)> {
    engine
        .save_state()
        .into_iter()
        .map(|(n, v)| (n, STATE_FORMAT, v.to_string()))
        .collect()
}

/// An exclusive lock on a state file for the length of a run: two runs sharing one state
/// would each restore the same state and overwrite the other's.
pub fn lock_state(path: &Path) -> Result<File, RunError> {
    let lock = path.with_extension("lock");
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let f = options.open(&lock).map_err(|source| RunError::File {
        what: "cannot create the lock",
        path: lock.clone(),
        source,
    })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Locked {
            state: path.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(RunError::File {
            what: "cannot lock",
            path: lock,
            source,
        }),
    }
}

/// The ledger of a run with `--state`: collect, checkpoint, deliver.
pub struct DurableLedger<'a, 's> {
    pub store: &'a mut Store,
    pub sink: &'a mut FindingSink<'s>,
    /// Per source index of the current pass: its identity (None for stdin).
    identities: Vec<Option<FileIdentity>>,
    pending_files: Vec<ProcessedFile>,
    pending_findings: Vec<(String, String)>,
    /// Findings decided again that an earlier run had already delivered.
    pub already_emitted: u64,
    last_checkpoint: Instant,
    accounts: AccountNames,
    every_files: usize,
    every: Duration,
    on_report: &'a mut dyn FnMut(&FileReport),
}

impl<'a, 's> DurableLedger<'a, 's> {
    /// A ledger over `store` delivering to `sink`, checkpointing after `every_files` files
    /// and at least every `every`. `on_report` sees every finished file's report.
    pub fn new(
        store: &'a mut Store,
        sink: &'a mut FindingSink<'s>,
        every_files: usize,
        every: Duration,
        on_report: &'a mut dyn FnMut(&FileReport),
    ) -> DurableLedger<'a, 's> {
        DurableLedger {
            store,
            sink,
            identities: Vec::new(),
            pending_files: Vec::new(),
            pending_findings: Vec::new(),
            already_emitted: 0,
            last_checkpoint: Instant::now(),
            accounts: AccountNames::default(),
            every_files: every_files.max(1),
            every,
            on_report,
        }
    }

    /// Put the registry's account names and owners on every finding.
    pub fn with_accounts(mut self, accounts: AccountNames) -> Self {
        self.accounts = accounts;
        self
    }

    fn commit(
        &mut self,
        states: &[(&str, i64, String)],
        findings: Vec<(String, String)>,
    ) -> Result<(), RunError> {
        let rows: Vec<(&str, String)> = findings
            .iter()
            .map(|(id, j)| (id.as_str(), j.clone()))
            .collect();
        let mut fresh = 0;
        for (id, _) in &rows {
            if !self.store.was_emitted(id)? {
                fresh += 1;
            }
        }
        self.already_emitted += (rows.len() - fresh) as u64;
        self.store.checkpoint(states, &self.pending_files, &rows)?;
        self.pending_files.clear();
        drain_outbox(self.store, self.sink, &HashSet::new())
    }

    /// Commit state, files and findings; then deliver the outbox.
    pub fn checkpoint(&mut self, engine: &Engine) -> Result<(), RunError> {
        let findings = std::mem::take(&mut self.pending_findings);
        self.commit(&saved_states(engine), findings)?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }
}

impl RunHooks for DurableLedger<'_, '_> {
    type Error = RunError;

    fn finding(&mut self, f: &Finding) -> Result<(), RunError> {
        let f = self.accounts.annotate(f);
        self.pending_findings
            .push((f.id.clone(), serde_json::to_string(&f)?));
        Ok(())
    }

    fn file_done(
        &mut self,
        index: usize,
        report: &FileReport,
        engine: &Engine,
    ) -> Result<(), RunError> {
        (self.on_report)(report);
        // A file that could not be read to its end is not done: the next run tries again.
        if let (false, Some(Some(id))) = (report.io_failed, self.identities.get(index)) {
            self.pending_files.push(ProcessedFile {
                path: id.path.clone(),
                size: id.size,
                mtime_ns: id.mtime_ns,
                records: report.records,
            });
        }
        if self.pending_files.len() >= self.every_files
            || self.last_checkpoint.elapsed() >= self.every
        {
            self.checkpoint(engine)?;
        }
        Ok(())
    }
}

impl Ledger for DurableLedger<'_, '_> {
    fn seen(&self, id: &FileIdentity) -> Result<Seen, RunError> {
        Ok(match self.store.processed(&id.path)? {
            Some((s, m)) if s == id.size && m == id.mtime_ns => Seen::Unchanged,
            Some(_) => Seen::Changed,
            None => Seen::New,
        })
    }

    fn begin_pass(&mut self, identities: Vec<Option<FileIdentity>>) {
        self.identities = identities;
    }

    fn end_pass(&mut self, engine: &Engine) -> Result<(), RunError> {
        self.checkpoint(engine)
    }

    /// Everything still open is decided now, for this run's output, and committed without
    /// the state that decided it: the saved state stays the one from before the end-of-run
    /// decisions, so open windows (a burst still going, a batch of new sources) carry into
    /// the next run. What is decided again there carries the same id and is not delivered
    /// twice.
    fn end_run(&mut self, engine: &mut Engine) -> Result<(), RunError> {
        let mut last = Vec::new();
        engine.finish(&mut last);
        let findings = last
            .iter()
            .map(|f| {
                Ok((
                    f.id.clone(),
                    serde_json::to_string(&self.accounts.annotate(f))?,
                ))
            })
            .collect::<Result<Vec<_>, RunError>>()?;
        self.commit(&[], findings)
    }

    fn delivered(&self) -> u64 {
        self.sink.delivered
    }
}
