//! The JWKS the broker verifies tokens with, kept fresh: read from a file or an `https://`
//! URL (plain `http://` only to loopback), read again every `jwks_refresh_seconds` in the
//! background, and at once when a token names a key the set does not hold (an identity
//! provider rotating its key) — at most once per `jwks_refetch_seconds`, so a stream of
//! tokens with made-up key ids cannot make the broker hammer the identity provider. A fetch
//! that fails, or a document with no usable key, keeps the keys held until then.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::auth::Jwks;
use crate::error::{AuthError, ConfigError};

/// Where the keys come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    File(PathBuf),
    Url(url::Url),
}

impl JwksSource {
    /// A `jwks_url`, checked: `https://`, or `http://` to a loopback host.
    pub fn url(text: &str) -> Result<JwksSource, ConfigError> {
        crate::transport::secure_url(text)
            .map(JwksSource::Url)
            .map_err(|e| ConfigError::Invalid(format!("jwks_url: {e}")))
    }

    /// Read and parse the document (blocking).
    pub fn fetch(&self) -> Result<Jwks, AuthError> {
        let text = match self {
            JwksSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| AuthError::Jwks(format!("{}: {e}", p.display())))?,
            JwksSource::Url(u) => ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                // A redirect could leave https (or loopback); the URL given is the one trusted.
                .redirects(0)
                .build()
                .get(u.as_str())
                .call()
                .map_err(|e| AuthError::Jwks(format!("{u}: {e}")))?
                .into_string()
                .map_err(|e| AuthError::Jwks(format!("{u}: {e}")))?,
        };
        Jwks::parse(&text)
    }
}

/// The keys in use, and when they were last (tried to be) read.
pub struct KeyRing {
    source: JwksSource,
    keys: RwLock<Arc<Jwks>>,
    /// The last read of any kind (the periodic refresh counts from it).
    last_attempt: Mutex<Instant>,
    /// The last read for an unknown key id (those are rate-limited on their own).
    last_refetch: Mutex<Option<Instant>>,
    refreshing: AtomicBool,
    refresh: Duration,
    refetch: Duration,
}

impl KeyRing {
    /// Read the keys once; the broker does not start without them.
    pub async fn load(
        source: JwksSource,
        refresh: Duration,
        refetch: Duration,
    ) -> Result<Arc<KeyRing>, ConfigError> {
        let s = source.clone();
        let keys = tokio::task::spawn_blocking(move || s.fetch())
            .await
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(Arc::new(KeyRing {
            source,
            keys: RwLock::new(Arc::new(keys)),
            last_attempt: Mutex::new(Instant::now()),
            last_refetch: Mutex::new(None),
            refreshing: AtomicBool::new(false),
            refresh: refresh.max(Duration::from_secs(1)),
            refetch: refetch.max(Duration::from_secs(1)),
        }))
    }

    /// The keys held now.
    pub fn current(&self) -> Arc<Jwks> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Start a background read if the periodic refresh is due (never waits for it).
    pub fn refresh_if_due(self: &Arc<Self>) {
        if self.since_last_attempt() < self.refresh {
            return;
        }
        let ring = self.clone();
        tokio::spawn(async move {
            ring.fetch_now().await;
        });
    }

    /// A token named a key we do not hold: read the keys again unless that was done less
    /// than `jwks_refetch_seconds` ago. True when new keys were installed.
    pub async fn refetch_for_unknown_key(&self) -> bool {
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.refetch) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.fetch_now().await
    }

    fn since_last_attempt(&self) -> Duration {
        self.last_attempt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// One read at a time; the attempt is recorded before it starts, so concurrent callers
    /// see it and do not start their own.
    async fn fetch_now(&self) -> bool {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.last_attempt.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        let source = self.source.clone();
        let fetched = tokio::task::spawn_blocking(move || source.fetch()).await;
        let installed = match fetched {
            Ok(Ok(keys)) => {
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                true
            }
            Ok(Err(e)) => {
                eprintln!("broker: reading the JWKS again failed ({e}); keeping the keys held");
                false
            }
            Err(e) => {
                eprintln!("broker: reading the JWKS again failed ({e}); keeping the keys held");
                false
            }
        };
        self.refreshing.store(false, Ordering::Release);
        installed
    }
}
