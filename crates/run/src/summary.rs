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
    /// Time the (serial) consumer spent in the detectors; the rest of the wall time it waited
    /// for decoded records or delivered findings. With the process's CPU time this says where
    /// the time goes: decoding on the workers, or detection on the one consumer.
    pub engine_busy: Duration,
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
        self.engine_busy += other.engine_busy;
    }

    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// CPU time (user + system) this process has used so far, all threads, if known.
pub fn cpu_time() -> Option<Duration> {
    // /proc/self/stat: fields 14 and 15 (utime, stime) in clock ticks, counted after the
    // command name, which is in parentheses and may itself hold spaces.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI credwarden builds for.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
