//! Where a service's findings go: the metadata proxy's, the broker's and shrink's notices
//! are delivered the way `detect` delivers its own, so none of them is lost or jams.
//!
//! A [`FindingDelivery`] writes each finding, as it is made, to any of: stdout (one JSON
//! line), an owner-only JSON-lines file fsynced before `deliver` returns, and the spool of a
//! state file that a [`WebhookSender`] posts in order, retrying transient failures and moving
//! permanent refusals to the dead letters. The spool is written in the same call, so a
//! finding reaches the webhook even if the endpoint is down now or the service restarts.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use credwarden_core::Finding;
use store::Store;

use crate::error::SinkError;
use crate::webhook::{WebhookOptions, WebhookOutcome, WebhookSender};

/// A webhook and the state file whose spool feeds it.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    pub url: String,
    /// The SQLite state file holding the spool and the dead letters.
    pub state: PathBuf,
    pub options: WebhookOptions,
}

/// What a service delivers to.
#[derive(Clone, Debug, Default)]
pub struct DeliveryConfig {
    /// One JSON line per finding on stdout.
    pub stdout: bool,
    /// Append to this JSON-lines file (created 0600, fsynced per finding).
    pub file: Option<PathBuf>,
    pub webhook: Option<WebhookTarget>,
}

/// A service's finding sink; safe to share between threads.
pub struct FindingDelivery {
    stdout: bool,
    file: Option<Mutex<File>>,
    spool: Option<Mutex<Store>>,
    sender: Mutex<Option<WebhookSender>>,
}

impl FindingDelivery {
    /// Open the file and the spool, and start the webhook sender.
    pub fn open(config: &DeliveryConfig) -> Result<FindingDelivery, SinkError> {
        let file = match &config.file {
            Some(p) => Some(Mutex::new(crate::private::open_append(p)?)),
            None => None,
        };
        let (spool, sender) = match &config.webhook {
            Some(w) => {
                crate::private::prepare_database(&w.state)?;
                let store = Store::open(&w.state)?;
                let sender =
                    WebhookSender::start_with(w.state.clone(), w.url.clone(), w.options.clone())?;
                (Some(Mutex::new(store)), Some(sender))
            }
            None => (None, None),
        };
        Ok(FindingDelivery {
            stdout: config.stdout,
            file,
            spool,
            sender: Mutex::new(sender),
        })
    }

    /// Deliver one finding to every destination. Each is attempted even when an earlier
    /// one failed; the first failure is returned.
    pub fn deliver(&self, finding: &Finding) -> Result<(), SinkError> {
        let json = serde_json::to_string(finding)?;
        let mut first_error = None;
        if self.stdout {
            let mut out = std::io::stdout().lock();
            if let Err(e) = writeln!(out, "{json}").and_then(|_| out.flush()) {
                first_error.get_or_insert(SinkError::Deliver(e));
            }
        }
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            let written = file
                .write_all(json.as_bytes())
                .and_then(|_| file.write_all(b"\n"))
                .and_then(|_| file.sync_data());
            if let Err(e) = written {
                first_error.get_or_insert(SinkError::Deliver(e));
            }
        }
        if let Some(spool) = &self.spool {
            let spool = spool.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = spool.spool_push(&finding.id, &json) {
                first_error.get_or_insert(SinkError::Store(e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Give the webhook sender up to `wait` to empty the spool, then stop it. What is left
    /// stays in the spool for the next start.
    pub fn finish(&self, wait: Duration) -> Result<Option<WebhookOutcome>, SinkError> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        match sender {
            Some(s) => Ok(Some(s.finish(wait)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credwarden_core::{FindingSource, Severity};

    fn finding(id: &str) -> Finding {
        Finding {
            id: id.into(),
            detector: "test",
            severity: Severity::Low,
            time: "2026-01-01T00:00:00Z".into(),
            account: None,
            account_name: None,
            account_owner: None,
            region: None,
            principal: None,
            access_key_id: None,
            source: FindingSource::default(),
            event_ids: Vec::new(),
            summary: "s".into(),
            details: serde_json::Value::Null,
            remediation: "r".into(),
        }
    }

    #[test]
    fn findings_reach_the_file_and_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        let config = DeliveryConfig {
            stdout: false,
            file: Some(dir.path().join("findings.jsonl")),
            webhook: Some(WebhookTarget {
                // Nothing listens on port 9 of loopback: the sender keeps the spool.
                url: "http://127.0.0.1:9/hook".into(),
                state: state.clone(),
                options: WebhookOptions::default(),
            }),
        };
        let delivery = FindingDelivery::open(&config).unwrap();
        delivery.deliver(&finding("a")).unwrap();
        delivery.deliver(&finding("b")).unwrap();
        let outcome = delivery
            .finish(Duration::from_millis(200))
            .unwrap()
            .unwrap();
        assert_eq!(outcome.posted, 0);
        assert_eq!(outcome.left, 2, "kept for the next start");
        let text = std::fs::read_to_string(dir.path().join("findings.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.contains("\"detector\":\"test\"")));
    }
}
