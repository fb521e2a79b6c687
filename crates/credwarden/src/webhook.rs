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

use anyhow::Result;
use store::Store;

pub struct WebhookSender {
    handle: JoinHandle<()>,
    /// When set: stop once the spool is empty or this moment has passed.
    deadline: Arc<Mutex<Option<Instant>>>,
    posted: Arc<std::sync::atomic::AtomicU64>,
    failing: Arc<AtomicBool>,
    state: PathBuf,
}

fn post(url: &str, body: &str, timeout: Duration) -> Result<(), String> {
    match ureq::post(url)
        .timeout(timeout)
        .set("Content-Type", "application/json")
        .send_string(body)
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(format!("HTTP {code}")),
        Err(e) => Err(e.to_string()),
    }
}

impl WebhookSender {
    pub fn start(state: PathBuf, url: String, timeout: Duration) -> Result<WebhookSender> {
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
    pub fn finish(self, wait: Duration) -> Result<(u64, i64, bool)> {
        *self.deadline.lock().expect("deadline lock") = Some(Instant::now() + wait);
        let _ = self.handle.join();
        let left = Store::open(&self.state)?.spool_len()?;
        Ok((
            self.posted.load(Ordering::Relaxed),
            left,
            self.failing.load(Ordering::Relaxed),
        ))
    }
}
