//! `--webhook URL`: POST every finding as JSON, without ever stalling ingest and without
//! losing one. Delivered findings are queued in the state file's spool in the same
//! transaction that marks them delivered; a thread of its own (with its own SQLite
//! connection) posts them in order, retrying with exponential backoff (1 s doubling to 60 s)
//! while the endpoint is slow or down. What is still queued when a run ends stays in the
//! spool for the next run. A finding may be posted twice (a crash between the endpoint's
//! answer and the spool update): receivers deduplicate on its `id`.
//!
//! One finding never jams the others. A permanent refusal (a 4xx status other than 408 and
//! 429) moves the finding to the state file's dead letters at once; a transient failure (5xx,
//! 408, 429, a broken or timed-out exchange) is retried in order, and a finding whose
//! attempts reach [`WebhookOptions::max_attempts`] (counted across runs) is moved to the dead
//! letters too. An endpoint that cannot be reached at all (DNS, connection refused) is not
//! the finding's fault: those attempts are retried but not counted, so an outage never
//! empties the spool into the dead letters. Dead letters are listed and sent again by
//! `credwarden webhook dead-letters` / `webhook resend`. Failures are described by status
//! and kind only: neither the finding's body nor the URL (which may hold a token) is kept.
//!
//! A sender posts one destination's queue of the spool (a notify route's, named in the
//! spool's `destination` column): every destination has a sender (a thread and a connection)
//! of its own, so an endpoint that is down, slow or refusing delays only its own findings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use store::{Store, StoreError};

use crate::error::SinkError;
use crate::route::{check_routes, Route};

/// How many failed attempts make a finding a dead letter unless configured otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// How a [`WebhookSender`] posts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookOptions {
    /// Timeout of one POST.
    pub timeout: Duration,
    /// Counted failed attempts after which a finding is moved to the dead letters (at least 1).
    pub max_attempts: u32,
    /// The first wait after a transient failure; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// What is posted: the finding's JSON, or a Slack incoming-webhook message.
    pub format: PostFormat,
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PostFormat {
    /// The finding's JSON line: the contract, for SIEMs and scripts.
    #[default]
    Json,
    /// A Slack incoming-webhook message ([`crate::slack::render`]).
    Slack,
}

impl Default for WebhookOptions {
    fn default() -> WebhookOptions {
        WebhookOptions {
            timeout: Duration::from_secs(10),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            format: PostFormat::Json,
        }
    }
}

/// What a sender did in a run, for its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookOutcome {
    /// Findings posted in this run.
    pub posted: u64,
    /// Findings still waiting in the destination's spool (the next run posts them).
    pub left: i64,
    /// The endpoint's last answer was a transient failure.
    pub failing: bool,
    /// Findings moved to the dead letters in this run.
    pub dead: u64,
    /// The destination's dead letters now (this run's and earlier ones).
    pub dead_total: i64,
}

/// Why one POST failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostFailure {
    /// The endpoint refused this finding for good (4xx other than 408 and 429).
    Refused { status: u16, reason: String },
    /// Worth trying again. `counts`: the attempt counts towards the retry limit (the endpoint
    /// was reached); an endpoint that cannot be reached is not the finding's fault.
    Transient {
        status: Option<u16>,
        reason: String,
        counts: bool,
    },
}

impl PostFailure {
    /// Classify an HTTP status that is not a success.
    pub fn from_status(status: u16, text: &str) -> PostFailure {
        let text: String = text.chars().filter(|c| !c.is_control()).take(80).collect();
        let reason = format!("HTTP {status} {text}").trim_end().to_owned();
        if (400..500).contains(&status) && status != 408 && status != 429 {
            PostFailure::Refused { status, reason }
        } else {
            PostFailure::Transient {
                status: Some(status),
                reason,
                counts: true,
            }
        }
    }

    fn from_ureq(e: ureq::Error) -> PostFailure {
        match e {
            ureq::Error::Status(status, response) => {
                PostFailure::from_status(status, response.status_text())
            }
            ureq::Error::Transport(t) => {
                use ureq::ErrorKind as K;
                let counts = !matches!(
                    t.kind(),
                    K::Dns
                        | K::ConnectionFailed
                        | K::ProxyConnect
                        | K::InvalidUrl
                        | K::UnknownScheme
                        | K::InsecureRequestHttpsOnly
                        | K::InvalidProxyUrl
                        | K::ProxyUnauthorized
                );
                // The kind only: the transport's full message names the URL.
                PostFailure::Transient {
                    status: None,
                    reason: t.kind().to_string(),
                    counts,
                }
            }
        }
    }
}

/// POST one finding.
pub fn post(url: &str, body: &str, timeout: Duration) -> Result<(), PostFailure> {
    ureq::post(url)
        .timeout(timeout)
        .set("Content-Type", "application/json")
        .send_string(body)
        .map(drop)
        .map_err(PostFailure::from_ureq)
}

/// The thread that posts one destination's spool; [`WebhookSender::finish`] gives it time to
/// empty it.
pub struct WebhookSender {
    handle: JoinHandle<()>,
    /// When set: stop once the spool is empty or this moment has passed.
    deadline: Arc<Mutex<Option<Instant>>>,
    counters: Arc<Counters>,
    state: PathBuf,
    destination: String,
}

#[derive(Default)]
struct Counters {
    posted: AtomicU64,
    dead: AtomicU64,
    failing: AtomicBool,
}

fn past(deadline: &Mutex<Option<Instant>>) -> bool {
    deadline
        .lock()
        .expect("deadline lock")
        .is_some_and(|t| Instant::now() >= t)
}

impl WebhookSender {
    /// Start posting what the state file `state` spools for `destination` to `url`.
    pub fn start_with(
        state: PathBuf,
        destination: String,
        url: String,
        options: WebhookOptions,
    ) -> Result<WebhookSender, StoreError> {
        let mut store = Store::open(&state)?;
        let deadline: Arc<Mutex<Option<Instant>>> = Arc::default();
        let counters: Arc<Counters> = Arc::default();
        let (d, c) = (deadline.clone(), counters.clone());
        let max_attempts = i64::from(options.max_attempts.max(1));
        let dest = destination.clone();
        let handle = std::thread::spawn(move || {
            let mut backoff = options.first_backoff;
            loop {
                let ending = *d.lock().expect("deadline lock");
                if ending.is_some_and(|t| Instant::now() >= t) {
                    return;
                }
                let batch = store.spool_peek(&dest, 64).unwrap_or_default();
                if batch.is_empty() {
                    if ending.is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                for entry in batch {
                    if past(&d) {
                        return;
                    }
                    let body = match options.format {
                        PostFormat::Json => entry.finding.clone(),
                        PostFormat::Slack => crate::slack::render(&entry.finding)
                            .unwrap_or_else(|| entry.finding.clone()),
                    };
                    let (status, reason, counts) = match post(&url, &body, options.timeout) {
                        Ok(()) => {
                            let _ = store.spool_done(entry.seq);
                            c.posted.fetch_add(1, Ordering::Relaxed);
                            c.failing.store(false, Ordering::Relaxed);
                            backoff = options.first_backoff;
                            continue;
                        }
                        Err(PostFailure::Refused { status, reason }) => {
                            (Some(status), reason, None)
                        }
                        Err(PostFailure::Transient {
                            status,
                            reason,
                            counts,
                        }) => (status, reason, Some(counts)),
                    };
                    let attempts = match counts {
                        Some(false) => entry.attempts,
                        _ => store.spool_failed(entry.seq).unwrap_or(entry.attempts + 1),
                    };
                    let give_up = match counts {
                        None => Some(reason),
                        Some(_) if attempts >= max_attempts => Some(format!(
                            "gave up after {attempts} attempt(s), the last: {reason}"
                        )),
                        Some(_) => None,
                    };
                    if let Some(reason) = give_up {
                        if store
                            .spool_dead(entry.seq, status, &reason, attempts)
                            .is_ok()
                        {
                            c.dead.fetch_add(1, Ordering::Relaxed);
                        }
                        backoff = options.first_backoff;
                        continue;
                    }
                    c.failing.store(true, Ordering::Relaxed);
                    // Sleep in small steps so a run that ends is not held up.
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !past(&d) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(options.max_backoff);
                    break;
                }
            }
        });
        Ok(WebhookSender {
            handle,
            deadline,
            counters,
            state,
            destination,
        })
    }

    /// The destination (route name) this sender posts.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// Ask the sender to stop once its spool is empty or `wait` has passed, without waiting
    /// for it: senders of several destinations are given the same `wait` at once, then
    /// [`WebhookSender::finish`]ed one after the other.
    pub fn stop_after(&self, wait: Duration) {
        let mut d = self.deadline.lock().expect("deadline lock");
        if d.is_none() {
            *d = Some(Instant::now() + wait);
        }
    }

    /// Give the sender up to `wait` to empty the spool, then stop it. Returns how many
    /// findings were posted and dead-lettered in this run and how many still wait.
    /// (A deadline already set by [`WebhookSender::stop_after`] is kept.)
    pub fn finish(self, wait: Duration) -> Result<WebhookOutcome, StoreError> {
        self.stop_after(wait);
        let _ = self.handle.join();
        let store = Store::open(&self.state)?;
        Ok(WebhookOutcome {
            posted: self.counters.posted.load(Ordering::Relaxed),
            left: store.spool_len_of(&self.destination)?,
            failing: self.counters.failing.load(Ordering::Relaxed),
            dead: self.counters.dead.load(Ordering::Relaxed),
            dead_total: store.dead_letter_len_of(&self.destination)?,
        })
    }
}

/// One sender per route, over one state file: started together, given the same time to empty
/// their queues at the end, each reporting for its own route.
pub struct RouteSenders {
    senders: Vec<WebhookSender>,
}

impl RouteSenders {
    /// Check the routes, then start a sender for each.
    pub fn start(state: &Path, routes: &[Route]) -> Result<RouteSenders, SinkError> {
        check_routes(routes)?;
        let mut senders = Vec::with_capacity(routes.len());
        for r in routes {
            match WebhookSender::start_with(
                state.to_path_buf(),
                r.name.clone(),
                r.url.clone(),
                r.options.clone(),
            ) {
                Ok(s) => senders.push(s),
                Err(e) => {
                    // Those already started must not outlive the failed start.
                    for s in senders {
                        let _ = s.finish(Duration::ZERO);
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(RouteSenders { senders })
    }

    /// Give every sender up to `wait` (the same `wait`, in parallel) to empty its queue, then
    /// stop them; each route's outcome, in the routes' order.
    pub fn finish(self, wait: Duration) -> Result<Vec<(String, WebhookOutcome)>, SinkError> {
        for s in &self.senders {
            s.stop_after(wait);
        }
        let mut outcomes = Vec::with_capacity(self.senders.len());
        for s in self.senders {
            let name = s.destination().to_owned();
            outcomes.push((name, s.finish(wait)?));
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for s in [400, 401, 403, 404, 410, 413, 422] {
            assert!(
                matches!(
                    PostFailure::from_status(s, "x"),
                    PostFailure::Refused { .. }
                ),
                "{s}"
            );
        }
        for s in [408, 429, 500, 502, 503, 504, 302] {
            assert!(
                matches!(
                    PostFailure::from_status(s, "x"),
                    PostFailure::Transient { counts: true, .. }
                ),
                "{s}"
            );
        }
        assert_eq!(
            PostFailure::from_status(400, "Bad Request\r\nX: y"),
            PostFailure::Refused {
                status: 400,
                reason: "HTTP 400 Bad RequestX: y".into()
            }
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_retried_but_not_counted() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            drop(l);
            format!("http://{a}/hook")
        };
        match post(&dead, "{}", Duration::from_secs(2)) {
            Err(PostFailure::Transient {
                status: None,
                counts: false,
                reason,
            }) => assert!(!reason.contains("127.0.0.1"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
