//! What a run remembers and how it hands findings on, and the one loop every run uses.
//!
//! A [`Ledger`] says which inputs were already read, receives findings and finished files
//! (it is the run's [`RunHooks`]), and closes passes and the run. [`MemoryLedger`] delivers
//! each finding at once and remembers files in memory; [`crate::DurableLedger`] checkpoints
//! into the state file and delivers exactly once. [`run_passes`] drives either over a
//! [`Source`], once or, following, pass after pass.

use std::collections::HashSet;
use std::time::Duration;

use cloudtrail::FileReport;
use detect::{Engine, Finding};

use crate::drive::{run_with_hooks, RunHooks};
use crate::error::RunError;
use crate::source::{select, FileIdentity, Seen, Source};
use crate::summary::RunSummary;
use sink::FindingSink;

/// How a run remembers what it read and delivers what it found.
pub trait Ledger: RunHooks<Error = RunError> {
    /// What this ledger knows of a file.
    fn seen(&self, id: &FileIdentity) -> Result<Seen, RunError>;
    /// Whether it needs the inputs' identities (to skip what was read, or to record it). A run
    /// without a state file that does not follow reads each input once and needs none.
    fn needs_identities(&self, _following: bool) -> bool {
        true
    }
    /// A pass over these inputs (identities in source order) begins.
    fn begin_pass(&mut self, identities: Vec<Option<FileIdentity>>);
    /// The pass's inputs have all been through the engine.
    fn end_pass(&mut self, engine: &Engine) -> Result<(), RunError>;
    /// The run ends (not following): decide and deliver everything still open.
    fn end_run(&mut self, engine: &mut Engine) -> Result<(), RunError>;
    /// Findings delivered so far.
    fn delivered(&self) -> u64;
}

/// A run without a state file: each finding is delivered (and the sink synced) as it is
/// found; when following, the files read are remembered in memory (a 128-bit digest of each
/// identity, so that a month of an organisation's files stays in tens of megabytes) and each
/// is read once.
pub struct MemoryLedger<'a, 's> {
    sink: &'a mut FindingSink<'s>,
    on_report: &'a mut dyn FnMut(&FileReport),
    read: HashSet<u128>,
    pass: Vec<Option<FileIdentity>>,
}

/// A file identity's digest: two SipHashes of it under different leading words. At 128 bits
/// two different files colliding (one then never read) is out of reach for any number of
/// files a run may see; 64 bits would be about one in ten million at a million files.
fn identity_digest(id: &FileIdentity) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

impl<'a, 's> MemoryLedger<'a, 's> {
    pub fn new(
        sink: &'a mut FindingSink<'s>,
        on_report: &'a mut dyn FnMut(&FileReport),
    ) -> MemoryLedger<'a, 's> {
        MemoryLedger {
            sink,
            on_report,
            read: HashSet::new(),
            pass: Vec::new(),
        }
    }
}

impl RunHooks for MemoryLedger<'_, '_> {
    type Error = RunError;

    fn finding(&mut self, f: &Finding) -> Result<(), RunError> {
        self.sink.deliver(&serde_json::to_string(f)?)?;
        Ok(self.sink.sync()?)
    }

    fn file_done(&mut self, _: usize, report: &FileReport, _: &Engine) -> Result<(), RunError> {
        (self.on_report)(report);
        Ok(())
    }
}

impl Ledger for MemoryLedger<'_, '_> {
    fn seen(&self, id: &FileIdentity) -> Result<Seen, RunError> {
        Ok(if self.read.contains(&identity_digest(id)) {
            Seen::Unchanged
        } else {
            Seen::New
        })
    }

    fn needs_identities(&self, following: bool) -> bool {
        following
    }

    fn begin_pass(&mut self, identities: Vec<Option<FileIdentity>>) {
        self.pass = identities;
    }

    fn end_pass(&mut self, _: &Engine) -> Result<(), RunError> {
        self.read
            .extend(self.pass.drain(..).flatten().map(|id| identity_digest(&id)));
        Ok(())
    }

    fn end_run(&mut self, engine: &mut Engine) -> Result<(), RunError> {
        let mut last = Vec::new();
        engine.finish(&mut last);
        for f in &last {
            self.finding(f)?;
        }
        Ok(())
    }

    fn delivered(&self) -> u64 {
        self.sink.delivered
    }
}

/// How a run goes on.
#[derive(Clone, Copy, Debug)]
pub struct Passes {
    /// Decoding threads (0: one per core).
    pub threads: usize,
    /// `Some(poll)`: keep following, looking at the source again every `poll`; event time
    /// decides, nothing is forced at the end because there is no end. `None`: one pass,
    /// then everything still open is decided.
    pub follow: Option<Duration>,
}

/// Drive `engine` over `source` with `ledger`. Notes for the operator (files read again,
/// files skipped) are handed to `note` as they arise.
pub fn run_passes<L: Ledger>(
    source: &mut dyn Source,
    listing: Vec<cloudtrail::InputSource>,
    engine: &mut Engine,
    ledger: &mut L,
    passes: Passes,
    note: &mut dyn FnMut(String),
) -> Result<RunSummary, RunError> {
    let mut total = RunSummary::default();
    let mut next = Some(listing);
    let following = passes.follow.is_some();
    let mut skipped = 0usize;
    loop {
        let listing = match next.take() {
            Some(l) => l,
            None => {
                let more = source.list()?;
                // Following lists the same files again and again: what it passes over was
                // said when the run began. A walk in parts says each part's.
                if !following {
                    if let Some(n) = more.ignored_note() {
                        note(n);
                    }
                }
                for n in more.notes {
                    note(n);
                }
                more.inputs
            }
        };
        let identify = ledger.needs_identities(following);
        let picked = select(listing, following, identify, |id| ledger.seen(id))?;
        for n in picked.notes {
            note(n);
        }
        skipped += picked.skipped;
        ledger.begin_pass(picked.identities);
        let summary = run_with_hooks(&picked.todo, engine, passes.threads, ledger, false)?;
        ledger.end_pass(engine)?;
        // Only now is what the source handed out committed: a queue may forget it.
        source.committed()?;
        total.absorb(summary);
        release_free_memory();
        // A source handing out its inputs in parts (one day per listing) is listed again at
        // once until it has handed out everything.
        if !source.drained() {
            continue;
        }
        match passes.follow {
            None => {
                if skipped > 0 {
                    note(format!(
                        "note: {skipped} file(s) already processed by an earlier run (per \
                         --state) were skipped"
                    ));
                }
                ledger.end_run(engine)?;
                total.engine = engine.stats.clone();
                return Ok(total);
            }
            Some(poll) => std::thread::sleep(poll),
        }
    }
}

/// Give the memory the allocator holds free back to the system. A pass's decode threads
/// allocate in their own allocator arenas; after a day's pass glibc keeps what they freed
/// (fragments between live blocks), and over many days of a long run that shows as resident
/// memory growing while live memory does not. Once per pass it costs well under a millisecond.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    }
}
