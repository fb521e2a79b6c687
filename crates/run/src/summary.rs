//! What a run reports at its end.

use std::time::Duration;

use detect::EngineStats;

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

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
