//! The `detect` data flow, as one function the CLI, the demo and the tests share:
//! sources → parallel decode (canonical order) → engine → findings.

use std::time::{Duration, Instant};

use cloudtrail::{decode_in_order, Decoded, FileReport, InputSource};
use detect::{Engine, EngineStats, Finding};

/// Everything the end-of-run summary reports.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub files: usize,
    pub records: u64,
    /// Uncompressed bytes decoded.
    pub bytes: u64,
    pub input_errors: u64,
    pub skipped_values: u64,
    pub engine: EngineStats,
    pub findings_emitted: u64,
    /// Findings an earlier run (per `--state`) had already emitted.
    pub findings_already_emitted: u64,
    pub elapsed: Duration,
}

impl RunSummary {
    /// Add another pass's figures (a `--follow` run reads in passes).
    pub fn absorb(&mut self, other: RunSummary) {
        self.files += other.files;
        self.records += other.records;
        self.bytes += other.bytes;
        self.input_errors += other.input_errors;
        self.skipped_values += other.skipped_values;
        self.engine = other.engine;
        self.elapsed += other.elapsed;
    }

    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a run tells its caller as it goes.
pub trait RunHooks {
    type Error;
    /// A new finding (in order).
    fn finding(&mut self, f: &Finding) -> Result<(), Self::Error>;
    /// Source `index` is finished: every record of it (and of the sources before it) has been
    /// through the engine, and none of a later one has.
    fn file_done(
        &mut self,
        index: usize,
        report: &FileReport,
        engine: &Engine,
    ) -> Result<(), Self::Error>;
}

/// Run detection over `sources`. `on_finding` is called for each new finding in order;
/// `on_file` once per source with its report. With an engine that has no detectors this
/// is the decode floor: records are decoded and dropped.
pub fn run_detect<E>(
    sources: &[InputSource],
    engine: &mut Engine,
    threads: usize,
    on_finding: impl FnMut(&Finding) -> Result<(), E>,
    on_file: impl FnMut(&FileReport),
) -> Result<RunSummary, E> {
    run_with_hooks(
        sources,
        engine,
        threads,
        &mut ClosureHooks(on_finding, on_file),
        true,
    )
}

/// [`RunHooks`] from two closures: one per finding, one per finished source.
pub struct ClosureHooks<F, G>(pub F, pub G);

impl<E, F: FnMut(&Finding) -> Result<(), E>, G: FnMut(&FileReport)> RunHooks
    for ClosureHooks<F, G>
{
    type Error = E;
    fn finding(&mut self, f: &Finding) -> Result<(), E> {
        (self.0)(f)
    }
    fn file_done(&mut self, _: usize, report: &FileReport, _: &Engine) -> Result<(), E> {
        (self.1)(report);
        Ok(())
    }
}

/// [`run_detect`] with hooks that can see the engine between sources (to checkpoint it).
/// `finish`: decide everything still open at the end (a batch run); `--follow` passes false
/// and lets event time decide as more files arrive.
pub fn run_with_hooks<H: RunHooks>(
    sources: &[InputSource],
    engine: &mut Engine,
    threads: usize,
    hooks: &mut H,
    finish: bool,
) -> Result<RunSummary, H::Error> {
    let start = Instant::now();
    let mut summary = RunSummary {
        files: sources.len(),
        ..Default::default()
    };
    let detecting = !engine.detector_names().is_empty();
    let mut out: Vec<Finding> = Vec::new();
    let mut failure: Option<H::Error> = None;
    decode_in_order(sources, threads, |msg| {
        if failure.is_some() {
            return;
        }
        match msg {
            Decoded::Records(chunk) => {
                if detecting {
                    for r in &chunk {
                        engine.process(r, &mut out);
                    }
                }
                for f in out.drain(..) {
                    if let Err(e) = hooks.finding(&f) {
                        failure = Some(e);
                        return;
                    }
                }
            }
            Decoded::Done(index, report) => {
                summary.records += report.records;
                summary.bytes += report.bytes;
                summary.input_errors += report.error_count();
                summary.skipped_values += report.skipped;
                if let Err(e) = hooks.file_done(index, &report, engine) {
                    failure = Some(e);
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if finish {
        engine.finish(&mut out);
    }
    for f in out.drain(..) {
        hooks.finding(&f)?;
    }
    summary.engine = engine.stats.clone();
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
