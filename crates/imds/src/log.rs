//! Where the server and proxy report: a JSON-lines log sink and a finding sink. Both are
//! traits so the CLI can send them to stderr / stdout / a file and tests can collect them.
//! Nothing written here ever contains a secret access key, session token or IMDS token.

use std::sync::Mutex;

/// Receives one JSON object per event (a proxied request, a credential refresh, …).
pub trait LogSink: Send + Sync + 'static {
    fn log(&self, line: &serde_json::Value);
}

/// One JSON line per event on stderr (stdout stays free for findings).
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrLog;

impl LogSink for StderrLog {
    fn log(&self, line: &serde_json::Value) {
        eprintln!("{line}");
    }
}

/// Discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullLog;

impl LogSink for NullLog {
    fn log(&self, _: &serde_json::Value) {}
}

/// Keeps every line in memory (tests, embedding).
#[derive(Debug, Default)]
pub struct MemoryLog(pub Mutex<Vec<serde_json::Value>>);

impl MemoryLog {
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl LogSink for MemoryLog {
    fn log(&self, line: &serde_json::Value) {
        if let Ok(mut v) = self.0.lock() {
            v.push(line.clone());
        }
    }
}

impl<F: Fn(&serde_json::Value) + Send + Sync + 'static> LogSink for F {
    fn log(&self, line: &serde_json::Value) {
        self(line)
    }
}

/// Findings use the workspace's one finding model (DESIGN.md contract), shared with `detect`.
pub use credwarden_core::{Finding, FindingSource};

/// Receives findings as they are made.
pub trait FindingSink: Send + Sync + 'static {
    fn deliver(&self, finding: Finding);
}

impl FindingSink for tokio::sync::mpsc::UnboundedSender<Finding> {
    fn deliver(&self, finding: Finding) {
        // A closed receiver means nobody listens any more; the request log still has it.
        let _ = self.send(finding);
    }
}

impl<F: Fn(Finding) + Send + Sync + 'static> FindingSink for F {
    fn deliver(&self, finding: Finding) {
        self(finding)
    }
}
