//! The engine driven over sources: parallel decode in canonical order → engine → findings.
//! One function serves `detect`, `baseline build`, the demo and the benchmarks.

use std::time::Instant;

use cloudtrail::{decode_in_order, Decoded, FileReport, InputSource};
use detect::{Engine, Finding};

use crate::summary::RunSummary;

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

/// Run detection over `sources` and decide everything still open at the end. `on_finding`
/// is called for each new finding in order; `on_file` once per source with its report. With
/// an engine that has no detectors this is the decode floor: records are decoded and dropped.
pub fn run_detect<E>(
    sources: &[InputSource],
    engine: &mut Engine,
    threads: usize,
    on_finding: impl FnMut(&Finding) -> Result<(), E>,
    on_file: impl FnMut(&FileReport),
) -> Result<RunSummary, E> {
    let mut hooks = ClosureHooks(on_finding, on_file);
    run_with_hooks(sources, engine, threads, &mut hooks, true)
}

/// [`RunHooks`] from two closures: one per finding, one per finished source.
pub struct ClosureHooks<F, G>(pub F, pub G);

impl<E, F, G> RunHooks for ClosureHooks<F, G>
where
    F: FnMut(&Finding) -> Result<(), E>,
    G: FnMut(&FileReport),
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
/// `finish`: decide everything still open at the end (a batch run); a pass of a longer run
/// passes false and lets event time, or the run's own end, decide.
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
                    // Timed per batch, not per record: the clock would cost more than some records.
                    let t = Instant::now();
                    for r in &chunk {
                        engine.process(r, &mut out);
                    }
                    summary.engine_busy += t.elapsed();
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
