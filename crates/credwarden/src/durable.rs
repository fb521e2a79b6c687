//! Delivering findings exactly once across runs and crashes (`detect --state`).
//!
//! A run advances in checkpoints. Between two, findings are only collected. A checkpoint is
//! one SQLite transaction holding the detectors' state after a set of files, those files,
//! and the findings they produced (queued in an outbox). Only then are the queued findings
//! delivered — written to stdout and `--output`, the file fsynced — and moved out of the
//! outbox. So:
//! * killed before a checkpoint commits: nothing of it happened; the next run reads those
//!   files again from the previous checkpoint's state and produces the same findings;
//! * killed after it commits but before delivery is confirmed: the next run delivers the
//!   outbox first. For `--output` it first cuts a half-written last line and skips findings
//!   the file already holds, so the file receives each finding exactly once. (Stdout cannot
//!   be asked what it already printed: after a crash a finding may appear there twice.)

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cloudtrail::{FileReport, InputSource};
use detect::{Engine, Finding};
use store::{EmittedFinding, ProcessedFile, Store};

use crate::output::{write_finding_json, Format};

/// Where findings go: stdout in the chosen format, and optionally a JSON-lines file.
pub struct Sink<'a> {
    pub out: &'a mut dyn Write,
    pub format: Format,
    pub file: Option<File>,
    pub delivered: u64,
    /// Also queue delivered findings for the webhook (in the state file's spool).
    pub spool_webhook: bool,
}

impl Sink<'_> {
    pub fn deliver(&mut self, json: &str) -> Result<()> {
        write_finding_json(self.out, json, self.format)?;
        if let Some(f) = &mut self.file {
            write_finding_json(f, json, Format::Jsonl)?;
        }
        self.delivered += 1;
        Ok(())
    }

    /// Make what was delivered durable (stdout flushed, the file fsynced).
    pub fn sync(&mut self) -> Result<()> {
        self.out.flush()?;
        if let Some(f) = &mut self.file {
            f.sync_data()?;
        }
        Ok(())
    }
}

/// Open `--output` for appending. With `repair` (only needed when an interrupted run left
/// findings in the outbox), a half-written last line is cut off first, and the ids the file
/// already holds are returned.
pub fn open_output(path: &Path, repair: bool) -> Result<(File, HashSet<String>)> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open --output {}", path.display()))?;
    let mut ids = HashSet::new();
    if repair {
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut text)?;
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            file.set_len(complete as u64)
                .with_context(|| format!("cannot repair {}", path.display()))?;
        }
        #[derive(serde::Deserialize)]
        struct Id {
            id: String,
        }
        for line in text[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            if let Ok(i) = serde_json::from_slice::<Id>(line) {
                ids.insert(i.id);
            }
        }
    }
    Ok((file, ids))
}

/// Deliver everything in the outbox (skipping what `already_written` holds), then confirm.
pub fn drain_outbox(
    store: &mut Store,
    sink: &mut Sink<'_>,
    already_written: &HashSet<String>,
) -> Result<()> {
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
        meta.push((
            id.clone(),
            v["detector"].as_str().unwrap_or("").to_owned(),
            v["time"].as_str().unwrap_or("").to_owned(),
        ));
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
    let spool: Vec<(&str, &str)> = if sink.spool_webhook {
        pending
            .iter()
            .map(|(id, j)| (id.as_str(), j.as_str()))
            .collect()
    } else {
        Vec::new()
    };
    store.delivered(&done, &spool)?;
    Ok(())
}

/// Identity of a file at the time it was read: path, size, modification time.
pub fn file_identity(source: &InputSource) -> Option<(String, i64, i64)> {
    let InputSource::File(p) = source else {
        return None;
    };
    // The same file reached as `logs/x` or `/abs/logs/x` is one file.
    let p = std::fs::canonicalize(p).ok()?;
    let m = std::fs::metadata(&p).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos() as i64;
    Some((p.display().to_string(), m.len() as i64, mtime))
}

/// Format number of the detector state this build writes; a different one is refused.
pub const STATE_FORMAT: i64 = 1;

/// Load the engine's state from the store.
pub fn restore(store: &Store, engine: &mut Engine) -> Result<()> {
    let mut states = Vec::new();
    for (name, format, json) in store.detector_states()? {
        if format != STATE_FORMAT {
            anyhow::bail!("the state of {name} in the --state file has format {format}, this credwarden reads format {STATE_FORMAT}; use a new --state file (findings already reported stay in the old one)");
        }
        states.push((
            name,
            serde_json::from_str(&json).context("detector state is not JSON")?,
        ));
    }
    engine.restore_state(states).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the detector state in the --state file: {e}; use a new --state file"
        )
    })
}

/// Hooks of a run with `--state`: collect, checkpoint, deliver.
pub struct DurableRun<'a, 's> {
    pub store: &'a mut Store,
    pub sink: &'a mut Sink<'s>,
    /// Per source index: its identity (None for stdin).
    pub identities: Vec<Option<(String, i64, i64)>>,
    pub pending_files: Vec<ProcessedFile>,
    pub pending_findings: Vec<(String, String)>,
    pub already_emitted: u64,
    pub last_checkpoint: Instant,
    pub every_files: usize,
    pub every: Duration,
    pub on_report: &'a mut dyn FnMut(&FileReport),
}

impl DurableRun<'_, '_> {
    /// Commit findings decided at the end of a run without the state that decided them: the
    /// saved state stays the one from before the end-of-run decisions, so open windows (a
    /// burst still going, a batch of new sources) carry into the next run. What is decided
    /// again there carries the same id and is not delivered twice.
    pub fn commit_final_findings(&mut self, findings: Vec<Finding>) -> Result<()> {
        let pending: Vec<(String, String)> = findings
            .iter()
            .map(|f| Ok((f.id.clone(), serde_json::to_string(f)?)))
            .collect::<Result<_>>()?;
        let rows: Vec<(&str, String)> = pending
            .iter()
            .map(|(id, j)| (id.as_str(), j.clone()))
            .collect();
        let fresh = rows
            .iter()
            .filter(|(id, _)| !self.store.was_emitted(id).unwrap_or(false))
            .count();
        self.already_emitted += (rows.len() - fresh) as u64;
        self.store.checkpoint(&[], &[], &rows)?;
        drain_outbox(self.store, self.sink, &HashSet::new())
    }

    /// Commit state, files and findings; then deliver the outbox.
    pub fn checkpoint(&mut self, engine: &Engine) -> Result<()> {
        let states: Vec<(&str, i64, String)> = engine
            .save_state()
            .into_iter()
            .map(|(n, v)| (n, STATE_FORMAT, v.to_string()))
            .collect();
        let findings: Vec<(&str, String)> = self
            .pending_findings
            .iter()
            .map(|(id, j)| (id.as_str(), j.clone()))
            .collect();
        let fresh = findings
            .iter()
            .filter(|(id, _)| !self.store.was_emitted(id).unwrap_or(false))
            .count();
        self.already_emitted += (findings.len() - fresh) as u64;
        self.store
            .checkpoint(&states, &self.pending_files, &findings)?;
        self.pending_files.clear();
        self.pending_findings.clear();
        self.last_checkpoint = Instant::now();
        drain_outbox(self.store, self.sink, &HashSet::new())
    }
}

impl crate::pipeline::RunHooks for DurableRun<'_, '_> {
    type Error = anyhow::Error;

    fn finding(&mut self, f: &Finding) -> Result<()> {
        self.pending_findings
            .push((f.id.clone(), serde_json::to_string(f)?));
        Ok(())
    }

    fn file_done(&mut self, index: usize, report: &FileReport, engine: &Engine) -> Result<()> {
        (self.on_report)(report);
        // A file that could not be read to its end is not done: the next run tries again.
        if let (false, Some(Some((path, size, mtime_ns)))) =
            (report.io_failed, self.identities.get(index))
        {
            self.pending_files.push(ProcessedFile {
                path: path.clone(),
                size: *size,
                mtime_ns: *mtime_ns,
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

/// What an earlier look knows of a file.
pub enum Seen {
    New,
    Changed,
    Unchanged,
}

/// The sources to read now.
pub struct Picked {
    pub todo: Vec<InputSource>,
    pub identities: Vec<Option<(String, i64, i64)>>,
    pub notes: Vec<String>,
}

/// Files modified this recently may still be being written (an S3 sync in progress): when
/// following, they wait for the next look.
const SETTLE: Duration = Duration::from_secs(2);

/// Choose what to read: everything not seen unchanged before; when `following`, not files
/// still being written.
pub fn select_sources(
    sources: Vec<InputSource>,
    following: bool,
    mut seen: impl FnMut(&str, i64, i64) -> Result<Seen>,
) -> Result<Picked> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let mut picked = Picked {
        todo: Vec::new(),
        identities: Vec::new(),
        notes: Vec::new(),
    };
    let mut skipped = 0usize;
    for source in sources {
        let id = file_identity(&source);
        if let Some((path, size, mtime)) = &id {
            if following && now - mtime < SETTLE.as_nanos() as i64 {
                continue;
            }
            match seen(path, *size, *mtime)? {
                Seen::Unchanged => {
                    skipped += 1;
                    continue;
                }
                Seen::Changed => picked.notes.push(format!(
                    "note: {path} changed since an earlier run processed it; it is read again"
                )),
                Seen::New => {}
            }
        }
        picked.identities.push(id);
        picked.todo.push(source);
    }
    if skipped > 0 && !following {
        picked.notes.push(format!("note: {skipped} file(s) already processed by an earlier run (per --state) were skipped"));
    }
    Ok(picked)
}

/// An exclusive lock on a state file for the length of a run: two runs sharing one state
/// would each restore the same state and overwrite the other's.
pub fn lock_state(path: &Path) -> Result<File> {
    let lock_path = path.with_extension("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!(
                "another credwarden run is using the state file {} (lock {} is held)",
                path.display(),
                lock_path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", lock_path.display()))
        }
    }
}
