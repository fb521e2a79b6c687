//! Credentials, where they come from, and the cache that keeps them fresh.
//!
//! The cache is filled by one background task per server. It refreshes `refresh_before`
//! ahead of expiry, backs off exponentially (bounded) while the source fails, keeps serving
//! the previous credentials while they are still valid, and never hands out credentials
//! within `serve_margin` of their expiry: a client would only fail with them later, far from
//! the cause. Waiting is done in short slices against the wall clock, so a laptop that slept
//! past the refresh time refreshes on wake instead of when the monotonic timer fires.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use credwarden_core::EventTime;
use serde::Deserialize;
use tokio::sync::{watch, Notify};

use crate::error::SourceError;
use crate::log::LogSink;
use crate::util::{imds_time, key_prefix, now, one_line};

/// Temporary AWS credentials. `Debug` shows the key id prefix and expiry, never secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expiration: EventTime,
    /// When this process obtained them (the `LastUpdated` EC2 reports).
    pub last_updated: EventTime,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &key_prefix(&self.access_key_id))
            .field("expiration", &imds_time(self.expiration))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput {
    version: i64,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// Lifetime assumed for credential_process output without `Expiration` (long-lived keys):
/// they are re-read this often, and clients are told they expire then.
pub const NO_EXPIRATION_LIFETIME: Duration = Duration::from_secs(3600);

impl Credentials {
    /// Parse AWS `credential_process` output: `{"Version": 1, "AccessKeyId", "SecretAccessKey",
    /// "SessionToken"?, "Expiration"? (RFC 3339)}`.
    pub fn from_process_json(bytes: &[u8]) -> Result<Credentials, SourceError> {
        // The serde error may quote input; keep only its category and position.
        let out: ProcessOutput = serde_json::from_slice(bytes).map_err(|e| {
            SourceError::Parse(format!(
                "{:?} at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if out.version != 1 {
            return Err(SourceError::Parse(format!(
                "Version {} (only 1 is defined)",
                out.version
            )));
        }
        if out.access_key_id.is_empty() || out.secret_access_key.is_empty() {
            return Err(SourceError::Parse(
                "empty AccessKeyId or SecretAccessKey".into(),
            ));
        }
        let t = now();
        let expiration = match out.expiration.as_deref() {
            Some(s) => EventTime::parse(s).ok_or_else(|| {
                SourceError::Parse(format!("Expiration {:?} is not RFC 3339", one_line(s, 40)))
            })?,
            None => t.plus_millis(NO_EXPIRATION_LIFETIME.as_millis() as i64),
        };
        Ok(Credentials {
            access_key_id: out.access_key_id,
            secret_access_key: out.secret_access_key,
            session_token: out.session_token.filter(|s| !s.is_empty()),
            expiration,
            last_updated: t,
        })
    }
}

/// Boxed future returned by [`CredentialSource::fetch`] (keeps the trait object-safe).
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Credentials, SourceError>> + Send + 'a>>;

/// Anything that can produce fresh credentials on demand.
pub trait CredentialSource: Send + Sync + 'static {
    fn fetch(&self) -> FetchFuture<'_>;
    /// Short description for logs (no secrets).
    fn describe(&self) -> String;
}

/// Runs a command that prints `credential_process` JSON — how the broker plugs in
/// (`credwarden creds ROLE --process`), and any other credential_process helper too.
#[derive(Debug, Clone)]
pub struct ProcessSource {
    pub program: String,
    pub args: Vec<String>,
    /// Killed after this long (default 60 s: the broker may wait on a network call).
    pub timeout: Duration,
}

impl ProcessSource {
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> ProcessSource {
        ProcessSource {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl CredentialSource for ProcessSource {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(async move {
            let mut cmd = tokio::process::Command::new(&self.program);
            cmd.args(&self.args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let program = self.program.clone();
            let out = match tokio::time::timeout(self.timeout, cmd.output()).await {
                Err(_) => {
                    return Err(SourceError::Timeout {
                        program,
                        seconds: self.timeout.as_secs(),
                    })
                }
                Ok(Err(e)) => {
                    return Err(SourceError::Spawn {
                        program,
                        message: e.to_string(),
                    })
                }
                Ok(Ok(out)) => out,
            };
            if !out.status.success() {
                // Only the first line of stderr, trimmed: enough to diagnose, little room for leaks.
                let stderr = one_line(&String::from_utf8_lossy(&out.stderr), 200);
                return Err(SourceError::Exit {
                    program,
                    status: out.status.to_string(),
                    stderr,
                });
            }
            Credentials::from_process_json(&out.stdout)
        })
    }

    fn describe(&self) -> String {
        format!("process `{}`", self.program)
    }
}

/// Fixed credentials (tests, benchmarks, a source wrapped elsewhere).
#[derive(Clone)]
pub struct StaticSource(pub Credentials);

impl CredentialSource for StaticSource {
    fn fetch(&self) -> FetchFuture<'_> {
        let mut c = self.0.clone();
        c.last_updated = now();
        Box::pin(async move { Ok(c) })
    }

    fn describe(&self) -> String {
        "static credentials".into()
    }
}

/// When to refresh and how to behave while the source fails.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    /// Refresh this long before expiry (default 5 min). Credentials that live shorter than
    /// this are refreshed at half their remaining life.
    pub refresh_before: Duration,
    /// Never serve credentials with less than this left (default 15 s).
    pub serve_margin: Duration,
    /// First retry delay after a failure (default 1 s), doubled per consecutive failure ...
    pub initial_backoff: Duration,
    /// ... up to this (default 5 min).
    pub max_backoff: Duration,
    /// How long a request waits for an in-flight fetch when nothing valid is cached (default
    /// 800 ms: the SDKs give the metadata service about one second).
    pub request_wait: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            refresh_before: Duration::from_secs(300),
            serve_margin: Duration::from_secs(15),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            request_wait: Duration::from_millis(800),
        }
    }
}

impl RefreshPolicy {
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(20))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
            .max(Duration::from_millis(10))
    }

    fn refresh_delay(&self, c: &Credentials, at: EventTime) -> Duration {
        let remaining = Duration::from_millis((c.expiration.millis() - at.millis()).max(0) as u64);
        if remaining > self.refresh_before {
            remaining - self.refresh_before
        } else {
            (remaining / 2).max(Duration::from_millis(500))
        }
    }
}

/// What the cache currently holds.
#[derive(Clone, Default)]
struct State {
    creds: Option<Arc<Credentials>>,
    last_error: Option<String>,
    /// Consecutive failures (0 when the last fetch succeeded).
    failures: u32,
}

/// Why a request got no credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The credential cache shared by the request handlers and the refresher task.
pub struct CredentialCache {
    state: watch::Sender<State>,
    wake: Notify,
    policy: RefreshPolicy,
}

impl CredentialCache {
    /// Start the refresher; it fetches immediately and runs until the returned handle is
    /// aborted (the servers abort it when they stop).
    pub fn start(
        source: Arc<dyn CredentialSource>,
        policy: RefreshPolicy,
        log: Arc<dyn LogSink>,
    ) -> (Arc<CredentialCache>, tokio::task::JoinHandle<()>) {
        let cache = Arc::new(CredentialCache {
            state: watch::Sender::new(State::default()),
            wake: Notify::new(),
            policy,
        });
        let task = tokio::spawn(refresher(cache.clone(), source, log));
        (cache, task)
    }

    fn valid(&self, c: &Credentials) -> bool {
        c.expiration.millis() > now().millis() + self.policy.serve_margin.as_millis() as i64
    }

    /// Valid credentials, waiting up to `request_wait` for a fetch when none are cached.
    pub async fn current(&self) -> Result<Arc<Credentials>, Unavailable> {
        let mut rx = self.state.subscribe();
        if let Some(c) = rx
            .borrow_and_update()
            .creds
            .clone()
            .filter(|c| self.valid(c))
        {
            return Ok(c);
        }
        // Expired or missing: ask the refresher to fetch now (it still honours backoff).
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + self.policy.request_wait;
        loop {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                break;
            }
            if let Some(c) = rx
                .borrow_and_update()
                .creds
                .clone()
                .filter(|c| self.valid(c))
            {
                return Ok(c);
            }
        }
        let state = self.state.borrow();
        Err(Unavailable(match (&state.creds, &state.last_error) {
            (_, Some(e)) => format!("no valid credentials: the credential source is failing ({e})"),
            (Some(c), None) => format!(
                "no valid credentials: the cached ones expire at {}",
                imds_time(c.expiration)
            ),
            (None, None) => "no valid credentials yet: the first fetch is still running".into(),
        }))
    }
}

async fn refresher(
    cache: Arc<CredentialCache>,
    source: Arc<dyn CredentialSource>,
    log: Arc<dyn LogSink>,
) {
    let policy = cache.policy.clone();
    loop {
        let result = source.fetch().await;
        let at = now();
        let result = result.and_then(|c| {
            if cache.valid(&c) {
                Ok(c)
            } else {
                Err(SourceError::AlreadyExpired(imds_time(c.expiration)))
            }
        });
        let delay = match result {
            Ok(c) => {
                log.log(&serde_json::json!({"time": imds_time(at), "event": "credentials-refreshed", "source": source.describe(),
                    "access_key_id": key_prefix(&c.access_key_id), "expiration": imds_time(c.expiration)}));
                let delay = policy.refresh_delay(&c, at);
                cache.state.send_replace(State {
                    creds: Some(Arc::new(c)),
                    last_error: None,
                    failures: 0,
                });
                delay
            }
            Err(e) => {
                let mut failures = 0;
                cache.state.send_modify(|s| {
                    s.failures = s.failures.saturating_add(1);
                    s.last_error = Some(e.to_string());
                    failures = s.failures;
                });
                let delay = policy.backoff(failures);
                log.log(&serde_json::json!({"time": imds_time(at), "event": "credentials-refresh-failed", "source": source.describe(),
                    "error": e.to_string(), "consecutive_failures": failures, "retry_in_ms": delay.as_millis() as u64}));
                delay
            }
        };
        let failing = cache.state.borrow().failures > 0;
        let due = at.plus_millis(delay.as_millis() as i64);
        loop {
            let left = due.millis() - now().millis();
            if left <= 0 {
                break;
            }
            // Short slices: the wall clock decides, so suspend/resume cannot stretch the wait.
            let slice = Duration::from_millis(left.min(5_000) as u64);
            tokio::select! {
                _ = tokio::time::sleep(slice) => {}
                _ = cache.wake.notified() => {
                    // A request found nothing valid. Fetch now unless we are backing off after
                    // failures (then the request gets a 503 and the backoff stands).
                    let have_valid = cache.state.borrow().creds.as_ref().is_some_and(|c| cache.valid(c));
                    if !failing && !have_valid {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_process_output() {
        let c = Credentials::from_process_json(
            br#"{"Version":1,"AccessKeyId":"ASIAX","SecretAccessKey":"s","SessionToken":"t","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "ASIAX");
        assert_eq!(imds_time(c.expiration), "2030-01-01T00:00:00Z");
        assert!(!format!("{c:?}").contains("\"s\""));
        assert!(Credentials::from_process_json(
            br#"{"Version":2,"AccessKeyId":"a","SecretAccessKey":"s"}"#
        )
        .is_err());
        assert!(Credentials::from_process_json(
            br#"{"Version":1,"AccessKeyId":"a","SecretAccessKey":"s","Expiration":"soon"}"#
        )
        .is_err());
        let e = Credentials::from_process_json(
            br#"{"Version":1,"AccessKeyId":"a","SecretAccessKey":"SECRET" oops"#,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("SECRET"));
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RefreshPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(3), Duration::from_secs(4));
        assert_eq!(p.backoff(40), Duration::from_secs(300));
    }
}
