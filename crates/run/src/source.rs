//! Where a run's CloudTrail comes from, and which of it is new.
//!
//! A [`Source`] lists the inputs there are now, in canonical order; a run asks again on every
//! pass when it follows. [`PathSource`] serves files, folders (walked recursively) and stdin.
//! Sources that live elsewhere (S3 listings, SQS notifications) implement the same trait.
//!
//! Which inputs are new is decided by their [`FileIdentity`] (path, size, modification
//! time): the run's ledger (memory, or the state file's processed set) says whether an
//! identity was seen, and [`select`] keeps the rest.

use std::path::PathBuf;
use std::time::Duration;

use cloudtrail::{discover, InputSource};

use crate::error::RunError;

/// What a source holds now.
#[derive(Debug, Default)]
pub struct Listing {
    /// In canonical order (delivery stamp, then path).
    pub inputs: Vec<InputSource>,
    /// Files a folder walk passed over because their names are not CloudTrail's.
    pub ignored: Vec<PathBuf>,
}

/// A place CloudTrail is read from.
pub trait Source {
    /// The inputs there are now. Called once per pass.
    fn list(&mut self) -> Result<Listing, RunError>;

    /// Whether the inputs include a live stream (stdin): a stream cannot be read again, so
    /// its progress cannot be checkpointed.
    fn has_stream(&self) -> bool {
        false
    }
}

/// Files, folders and `-` (stdin), as given on the command line.
#[derive(Clone, Debug)]
pub struct PathSource {
    paths: Vec<PathBuf>,
}

impl PathSource {
    pub fn new(paths: Vec<PathBuf>) -> PathSource {
        PathSource { paths }
    }
}

impl Source for PathSource {
    fn list(&mut self) -> Result<Listing, RunError> {
        let (inputs, ignored) = discover(&self.paths)?;
        Ok(Listing { inputs, ignored })
    }

    fn has_stream(&self) -> bool {
        self.paths.iter().any(|p| p.as_os_str() == "-")
    }
}

/// A file as it was when it was read: path (canonical), size, modification time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
}

impl FileIdentity {
    /// The identity of a file source now; `None` for a stream or a file gone since listing.
    pub fn of(source: &InputSource) -> Option<FileIdentity> {
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
            .ok()?;
        Some(FileIdentity {
            path: p.display().to_string(),
            size: i64::try_from(m.len()).ok()?,
            mtime_ns: i64::try_from(mtime.as_nanos()).ok()?,
        })
    }
}

/// What an earlier look knows of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    Changed,
    Unchanged,
}

/// The inputs to read in one pass.
#[derive(Debug, Default)]
pub struct Picked {
    pub todo: Vec<InputSource>,
    /// Per input in `todo`: its identity (None for a stream).
    pub identities: Vec<Option<FileIdentity>>,
    pub notes: Vec<String>,
}

/// Files modified this recently may still be being written (an S3 sync in progress): when
/// following, they wait for the next look.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Choose what to read: everything not seen unchanged before; when `following`, not files
/// still being written.
pub fn select(
    inputs: Vec<InputSource>,
    following: bool,
    mut seen: impl FnMut(&FileIdentity) -> Result<Seen, RunError>,
) -> Result<Picked, RunError> {
    let now = credwarden_core::clock::now_nanos();
    let mut picked = Picked::default();
    let mut skipped = 0usize;
    for source in inputs {
        let id = FileIdentity::of(&source);
        if let Some(identity) = &id {
            if following && now - identity.mtime_ns < SETTLE.as_nanos() as i64 {
                continue;
            }
            match seen(identity)? {
                Seen::Unchanged => {
                    skipped += 1;
                    continue;
                }
                Seen::Changed => picked.notes.push(format!(
                    "note: {} changed since an earlier run processed it; it is read again",
                    identity.path
                )),
                Seen::New => {}
            }
        }
        picked.identities.push(id);
        picked.todo.push(source);
    }
    if skipped > 0 && !following {
        picked.notes.push(format!(
            "note: {skipped} file(s) already processed by an earlier run (per --state) were \
             skipped"
        ));
    }
    Ok(picked)
}
