//! `--webhook URL`: POST every finding as JSON, without ever stalling ingest and without
//! losing one. Delivered findings are queued in the state file's spool in the same
//! transaction that marks them delivered; a thread of its own (with its own SQLite
//! connection) posts them in order, retrying with exponential backoff (1 s doubling to 60 s)
//! while the endpoint is slow or down. What is still queued when a run ends stays in the
//! spool for the next run. A finding may be posted twice (a crash between the endpoint's
//! answer and the spool update): receivers deduplicate on its `id`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use store::{Store, StoreError};

/// What a sender did in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookOutcome {
    /// Findings posted in this run.
    pub posted: u64,
    /// Findings still waiting in the spool (the next run posts them).
    pub left: i64,
    /// The endpoint's last answer was a failure.
    pub failing: bool,
}

/// The thread that posts the spool; [`WebhookSender::finish`] gives it time to empty it.
pub struct WebhookSender {
    handle: JoinHandle<()>,
    /// When set: stop once the spool is empty or this moment has passed.
    deadline: Arc<Mutex<Option<Instant>>>,
    posted: Arc<std::sync::atomic::AtomicU64>,
    failing: Arc<AtomicBool>,
    state: PathBuf,
}

fn post(url: &str, body: &str, timeout: Duration) -> Result<(), Box<ureq::Error>> {
    ureq::post(url)
        .timeout(timeout)
        .set("Content-Type", "application/json")
        .send_string(body)
        .map(drop)
        .map_err(Box::new)
}

impl WebhookSender {
    pub fn start(
        state: PathBuf,
        url: String,
        timeout: Duration,
    ) -> Result<WebhookSender, StoreError> {
        let store = Store::open(&state)?;
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let posted: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let failing: Arc<AtomicBool> = Arc::default();
        let (d, p, f) = (deadline.clone(), posted.clone(), failing.clone());
        let handle = std::thread::spawn(move || {
            let mut backoff = Duration::from_secs(1);
            loop {
                let ending = *d.lock().expect("deadline lock");
                if ending.is_some_and(|t| Instant::now() >= t) {
                    return;
                }
                let batch = store.spool_peek(64).unwrap_or_default();
                if batch.is_empty() {
                    if ending.is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                for (seq, _id, body) in batch {
                    match post(&url, &body, timeout) {
                        Ok(()) => {
                            let _ = store.spool_done(seq);
                            p.fetch_add(1, Ordering::Relaxed);
                            f.store(false, Ordering::Relaxed);
                            backoff = Duration::from_secs(1);
                        }
                        Err(_) => {
                            f.store(true, Ordering::Relaxed);
                            // Sleep in small steps so a run that ends is not held up.
                            let until = Instant::now() + backoff;
                            while Instant::now() < until
                                && !d
                                    .lock()
                                    .expect("deadline lock")
                                    .is_some_and(|t| Instant::now() >= t)
                            {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(60));
                            break;
                        }
                    }
                }
            }
        });
        Ok(WebhookSender {
            handle,
            deadline,
            posted,
            failing,
            state,
        })
    }

    /// Give the sender up to `wait` to empty the spool, then stop it. Returns how many
    /// findings were posted in this run and how many still wait in the spool.
    pub fn finish(self, wait: Duration) -> Result<WebhookOutcome, StoreError> {
        *self.deadline.lock().expect("deadline lock") = Some(Instant::now() + wait);
        let _ = self.handle.join();
        let left = Store::open(&self.state)?.spool_len()?;
        Ok(WebhookOutcome {
            posted: self.posted.load(Ordering::Relaxed),
            left,
            failing: self.failing.load(Ordering::Relaxed),
        })
    }
}
