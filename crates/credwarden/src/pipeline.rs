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
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Run detection over `sources`. `on_finding` is called for each new finding in order;
/// `on_file` once per source with its report. With an engine that has no detectors this
/// is the decode floor: records are decoded and dropped.
pub fn run_detect<E>(
    sources: &[InputSource],
    engine: &mut Engine,
    threads: usize,
    mut on_finding: impl FnMut(&Finding) -> Result<(), E>,
    mut on_file: impl FnMut(&FileReport),
) -> Result<RunSummary, E> {
    let start = Instant::now();
    let mut summary = RunSummary { files: sources.len(), ..Default::default() };
    let detecting = !engine.detector_names().is_empty();
    let mut out: Vec<Finding> = Vec::new();
    let mut failure: Option<E> = None;
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
                    if let Err(e) = on_finding(&f) {
                        failure = Some(e);
                        return;
                    }
                }
            }
            Decoded::Done(_, report) => {
                summary.records += report.records;
                summary.bytes += report.bytes;
                summary.input_errors += report.error_count();
                summary.skipped_values += report.skipped;
                on_file(&report);
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    engine.finish(&mut out);
    for f in out.drain(..) {
        on_finding(&f)?;
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
