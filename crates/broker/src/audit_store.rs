//! Where the broker's decisions are kept: a SQLite file (one replica) or PostgreSQL (any
//! number of replicas sharing one database, `audit = "postgres://…"`). The broker calls the
//! same handful of operations on either; with PostgreSQL the per-user rate limits also hold
//! across replicas ([`AuditStore::rate_hit`]).
//!
//! Either way the rule is the same: no audit row, no credentials. A backend that cannot write
//! fails the request (the broker answers 503), and PostgreSQL being down is such a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use store::{
    AccessRequest, AuditEntry, Decided, Decision, Membership, MembershipSeen, RequestScope, Store,
};
use store_pg::PgStore;

use crate::error::ConfigError;

/// Why a read or write of the audit store failed. The message names the store (a file path
/// or host:port/database), never a password.
#[derive(Debug, thiserror::Error)]
pub enum AuditStoreError {
    #[error(transparent)]
    Sqlite(#[from] store::StoreError),
    #[error(transparent)]
    Postgres(#[from] store_pg::PgError),
}

/// The broker's audit store.
pub enum AuditStore {
    Sqlite(Box<Store>),
    Postgres(Box<PgStore>),
}

/// Connections for the broker's reads (history checks, rate windows, the audit API). One for a
/// SQLite file; several for PostgreSQL, so that concurrent requests do not queue behind one
/// connection's round trips.
pub struct AuditPool {
    stores: Vec<Mutex<AuditStore>>,
    next: AtomicUsize,
}

/// PostgreSQL read connections per replica.
const POSTGRES_READERS: usize = 4;

impl AuditPool {
    pub fn open(audit: &str) -> Result<AuditPool, ConfigError> {
        let n = if is_postgres(audit) {
            POSTGRES_READERS
        } else {
            1
        };
        let stores = (0..n)
            .map(|_| AuditStore::open(audit).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(AuditPool {
            stores,
            next: AtomicUsize::new(0),
        })
    }

    pub fn is_shared(&self) -> bool {
        self.stores[0]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_shared()
    }

    /// Run `f` on a free connection (the next one in turn when all are busy). Blocking: call
    /// it from a blocking thread.
    pub fn with<T>(&self, f: impl FnOnce(&mut AuditStore) -> T) -> T {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.stores.len();
        for i in 0..n {
            if let Ok(mut guard) = self.stores[(start + i) % n].try_lock() {
                return f(&mut guard);
            }
        }
        let mut guard = self.stores[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// Whether `audit` names a PostgreSQL database rather than a file.
pub fn is_postgres(audit: &str) -> bool {
    audit.starts_with("postgres://") || audit.starts_with("postgresql://")
}

impl AuditStore {
    /// Open `audit`: a PostgreSQL URL, or a SQLite file created owner-only.
    pub fn open(audit: &str) -> Result<AuditStore, ConfigError> {
        if is_postgres(audit) {
            return Ok(AuditStore::Postgres(Box::new(PgStore::connect(audit)?)));
        }
        let path = std::path::Path::new(audit);
        sink::private::prepare_database(path)?;
        Ok(AuditStore::Sqlite(Box::new(Store::open(path)?)))
    }

    /// Whether other broker replicas may share this store (then rate limits are counted in it).
    pub fn is_shared(&self) -> bool {
        matches!(self, AuditStore::Postgres(_))
    }

    pub fn audit_append_batch(&mut self, entries: &[AuditEntry]) -> Result<(), AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.audit_append_batch(entries)?),
            AuditStore::Postgres(p) => Ok(p.audit_append_batch(entries)?),
        }
    }

    pub fn audit_entries(
        &mut self,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.audit_entries(user, limit)?),
            AuditStore::Postgres(p) => Ok(p.audit_entries(user, limit)?),
        }
    }

    pub fn audit_exists(
        &mut self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
        decision: Option<&str>,
    ) -> Result<bool, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.audit_exists(user, role, network, decision)?),
            AuditStore::Postgres(p) => Ok(p.audit_exists(user, role, network, decision)?),
        }
    }

    pub fn audit_count(
        &mut self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
        decision: Option<&str>,
        since_ms: i64,
    ) -> Result<i64, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.audit_count(user, role, network, decision, since_ms)?),
            AuditStore::Postgres(p) => Ok(p.audit_count(user, role, network, decision, since_ms)?),
        }
    }

    /// (no earlier grant of `role` to `user`, `user` seen before but never from `network`).
    pub fn audit_novelty(
        &mut self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
    ) -> Result<(bool, bool), AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => {
                let first_role = !s.audit_exists(user, role, None, Some("granted"))?;
                let new_network = s.audit_exists(user, None, None, None)?
                    && !s.audit_exists(user, None, network, None)?;
                Ok((first_role, new_network))
            }
            AuditStore::Postgres(p) => Ok(p.audit_novelty(user, role, network)?),
        }
    }

    pub fn observe_memberships(
        &mut self,
        directory: &str,
        current: &BTreeSet<(String, String)>,
        now_ms: i64,
    ) -> Result<BTreeMap<(String, String), MembershipSeen>, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.observe_memberships(directory, current, now_ms)?),
            AuditStore::Postgres(p) => Ok(p.observe_memberships(directory, current, now_ms)?),
        }
    }

    /// Count a request of `user` in the shared window of `period_ms` holding `now_ms`: the
    /// window's count across every replica, or `None` for a store only this replica uses
    /// (its in-memory limiter is then the whole truth).
    pub fn rate_hit(
        &mut self,
        user: &str,
        kind: &str,
        period_ms: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, AuditStoreError> {
        match self {
            AuditStore::Sqlite(_) => Ok(None),
            AuditStore::Postgres(p) => {
                let window = now_ms - now_ms.rem_euclid(period_ms);
                Ok(Some(p.rate_hit(user, kind, window, window - period_ms)?))
            }
        }
    }

    /// Record a new access request with its audit row (one transaction).
    pub fn access_request_create(
        &mut self,
        r: &AccessRequest,
        audit: &AuditEntry,
    ) -> Result<(), AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.access_request_create(r, audit)?),
            AuditStore::Postgres(p) => Ok(p.access_request_create(r, audit)?),
        }
    }

    pub fn access_request(&mut self, id: &str) -> Result<Option<AccessRequest>, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.access_request(id)?),
            AuditStore::Postgres(p) => Ok(p.access_request(id)?),
        }
    }

    pub fn access_requests(
        &mut self,
        scope: RequestScope<'_>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccessRequest>, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.access_requests(scope, status, limit)?),
            AuditStore::Postgres(p) => Ok(p.access_requests(scope, status, limit)?),
        }
    }

    /// Decide a pending request (a conditional update: one decision across replicas), with
    /// the membership an approval grants and `audit`, all in one transaction.
    pub fn access_request_decide(
        &mut self,
        id: &str,
        decision: Decision,
        by: &str,
        comment: &str,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> Result<Decided, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => {
                Ok(s.access_request_decide(id, decision, by, comment, now_ms, audit)?)
            }
            AuditStore::Postgres(p) => {
                Ok(p.access_request_decide(id, decision, by, comment, now_ms, audit)?)
            }
        }
    }

    pub fn membership_grant(&mut self, m: &Membership) -> Result<(), AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.membership_grant(m)?),
            AuditStore::Postgres(p) => Ok(p.membership_grant(m)?),
        }
    }

    /// `user`'s memberships from approvals that have not expired at `now_ms`.
    pub fn memberships_of(
        &mut self,
        user: &str,
        now_ms: i64,
    ) -> Result<Vec<Membership>, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.memberships_of(user, now_ms)?),
            AuditStore::Postgres(p) => Ok(p.memberships_of(user, now_ms)?),
        }
    }

    pub fn memberships(&mut self) -> Result<Vec<Membership>, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.memberships()?),
            AuditStore::Postgres(p) => Ok(p.memberships()?),
        }
    }

    pub fn memberships_remove(&mut self, m: &[Membership]) -> Result<usize, AuditStoreError> {
        match self {
            AuditStore::Sqlite(s) => Ok(s.memberships_remove(m)?),
            AuditStore::Postgres(p) => Ok(p.memberships_remove(m)?),
        }
    }
}
