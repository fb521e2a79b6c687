//! # credwarden-store-pg
//!
//! The broker's state in PostgreSQL, for more than one broker replica: the audit log (every
//! decision, written before credentials leave), the directory sightings `access prune` ages
//! memberships by, and rate-limit counters that hold across replicas. It mirrors the SQLite
//! [`store::Store`] methods the broker calls, with the same types, so the broker chooses the
//! backend once (`audit = "postgres://…"`) and runs the same code above it.
//!
//! Schema changes are versioned in `credwarden_meta` like the SQLite file's, and applied under
//! a transaction-scoped advisory lock: replicas starting together migrate once, one after the
//! other. A schema newer than this build is refused.
//!
//! Connections are plain TCP or a Unix socket and are refused to anything but loopback or a
//! socket: the audit holds who got which role from where, and this build links no TLS stack
//! for PostgreSQL. Put PostgreSQL on the broker's host, or reach it through a local TLS
//! tunnel (stunnel, a sidecar proxy).

use std::collections::{BTreeMap, BTreeSet};

use postgres::config::Host;
use postgres::{Client, NoTls};
use store::{AuditEntry, MembershipSeen};

/// The schema this build writes. 1: audit, directory sightings, rate windows. 2: access
/// requests and the expiring memberships approved ones became.
pub const SCHEMA_VERSION: i64 = 2;

/// One key for every credwarden replica's migration lock.
const MIGRATION_LOCK: i64 = 0x6372_6564_7761_7264; // "credward"

const SCHEMA_V1: &str = "
    CREATE TABLE IF NOT EXISTS credwarden_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS broker_audit (seq BIGSERIAL PRIMARY KEY, time_ms BIGINT NOT NULL,
        request_id TEXT NOT NULL, user_name TEXT NOT NULL, groups TEXT NOT NULL, client_ip TEXT NOT NULL,
        network TEXT, role TEXT, decision TEXT NOT NULL, reason TEXT NOT NULL, access_key_id TEXT,
        expiration TEXT, duration_seconds BIGINT, session_policy TEXT, idp_groups TEXT);
    CREATE INDEX IF NOT EXISTS broker_audit_user ON broker_audit (user_name, time_ms);
    CREATE INDEX IF NOT EXISTS broker_audit_user_role ON broker_audit (user_name, role, decision);
    CREATE INDEX IF NOT EXISTS broker_audit_user_network ON broker_audit (user_name, network);
    CREATE TABLE IF NOT EXISTS directory_tracking (directory TEXT PRIMARY KEY, since_ms BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS directory_memberships (directory TEXT NOT NULL, user_name TEXT NOT NULL,
        grp TEXT NOT NULL, first_seen_ms BIGINT NOT NULL, appeared BOOLEAN NOT NULL,
        PRIMARY KEY (directory, user_name, grp));
    CREATE TABLE IF NOT EXISTS broker_rate (user_name TEXT NOT NULL, kind TEXT NOT NULL,
        window_ms BIGINT NOT NULL, hits BIGINT NOT NULL, PRIMARY KEY (user_name, kind, window_ms));
";

/// Schema 2: as the SQLite store's schema 9 (`store::AccessRequest`, `store::Membership`).
const SCHEMA_V2: &str = "
    CREATE TABLE IF NOT EXISTS access_requests (id TEXT PRIMARY KEY, user_name TEXT NOT NULL, grp TEXT NOT NULL,
        reason TEXT NOT NULL, duration_seconds BIGINT NOT NULL, status TEXT NOT NULL, created_ms BIGINT NOT NULL,
        decided_by TEXT, decided_ms BIGINT, comment TEXT);
    CREATE INDEX IF NOT EXISTS access_requests_status ON access_requests (status, created_ms);
    CREATE INDEX IF NOT EXISTS access_requests_user ON access_requests (user_name, created_ms);
    CREATE TABLE IF NOT EXISTS granted_memberships (user_name TEXT NOT NULL, grp TEXT NOT NULL,
        granted_by TEXT NOT NULL, request_id TEXT, since_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL,
        PRIMARY KEY (user_name, grp));
";

mod approvals;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL could not be used. Never carries the URL itself: it may hold a password.
    #[error("audit store (PostgreSQL): {0}")]
    Config(String),
    #[error("audit store (PostgreSQL) on {target}: {source}")]
    Db {
        /// host:port/database, never the password.
        target: String,
        #[source]
        source: postgres::Error,
    },
    #[error("audit store (PostgreSQL) on {target} has schema version {found}, newer than this credwarden understands ({SCHEMA_VERSION}); upgrade every replica")]
    TooNew { target: String, found: i64 },
}

/// A connection to the broker's PostgreSQL database.
pub struct PgStore {
    /// Always `Some` until dropped (see the `Drop` impl).
    client: Option<Client>,
    cfg: postgres::Config,
    target: String,
}

/// Where a configuration points, for messages: hosts, port, database; no user or password.
fn describe(cfg: &postgres::Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}:{port}/{}",
        hosts.join(","),
        cfg.get_dbname().unwrap_or("(default)")
    )
}

/// Loopback or a Unix socket: where plain TCP cannot be read or altered by the network.
fn local_only(cfg: &postgres::Config) -> Result<(), PgError> {
    if cfg.get_hosts().is_empty() && cfg.get_hostaddrs().is_empty() {
        return Err(PgError::Config("the URL names no host".into()));
    }
    // `hostaddr` is where the client actually connects (`host` then only names the server
    // for TLS and errors): it must be loopback too, or `host=localhost hostaddr=10.0.0.5`
    // would pass the check and leave the machine.
    if let Some(ip) = cfg.get_hostaddrs().iter().find(|ip| !ip.is_loopback()) {
        return Err(PgError::Config(format!(
            "hostaddr {ip}: only a loopback address or a Unix socket is allowed (this build has \
             no TLS for PostgreSQL; reach a remote server through a local TLS tunnel)"
        )));
    }
    for h in cfg.get_hosts() {
        let ok = match h {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        };
        if !ok {
            return Err(PgError::Config(format!(
                "{}: only a loopback address or a Unix socket is allowed (this build has no TLS \
                 for PostgreSQL; reach a remote server through a local TLS tunnel)",
                describe(cfg)
            )));
        }
    }
    Ok(())
}

impl PgStore {
    /// Connect to `url` (`postgres://user[:password]@127.0.0.1:5432/db`, or `host=/run/…`),
    /// bring the schema up to date, and check it is not newer than this build.
    pub fn connect(url: &str) -> Result<PgStore, PgError> {
        let cfg: postgres::Config = url.parse().map_err(|_| {
            PgError::Config("the audit URL is not a PostgreSQL connection string".into())
        })?;
        local_only(&cfg)?;
        let target = describe(&cfg);
        let mut cfg = cfg;
        // A dead server must fail a request in bounded time, not hang it.
        cfg.connect_timeout(std::time::Duration::from_secs(5));
        cfg.application_name("credwarden-broker");
        let client = cfg.connect(NoTls).map_err(|source| PgError::Db {
            target: target.clone(),
            source,
        })?;
        let mut s = PgStore {
            client: Some(client),
            cfg,
            target,
        };
        s.migrate()?;
        Ok(s)
    }

    /// Run `op` on the connection. A connection the server closed (a restart, a failover) is
    /// replaced and `op` run once more: the closed connection had not sent it, so nothing runs
    /// twice that ran once (if the server died in the middle of a commit, reconnecting fails
    /// and the error stands). The broker thus recovers by itself once PostgreSQL is back.
    fn run<T>(
        &mut self,
        mut op: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, PgError> {
        let client = self
            .client
            .as_mut()
            .expect("the client is there until drop");
        if !client.is_closed() {
            match op(client) {
                Err(e) if e.is_closed() || client.is_closed() => {}
                other => return other.map_err(|source| self.db(source)),
            }
        }
        let fresh = self.cfg.connect(NoTls).map_err(|source| self.db(source))?;
        let client = self.client.insert(fresh);
        op(client).map_err(|source| self.db(source))
    }

    fn db(&self, source: postgres::Error) -> PgError {
        PgError::Db {
            target: self.target.clone(),
            source,
        }
    }

    fn migrate(&mut self) -> Result<(), PgError> {
        let found = self.run(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            // Read the version before touching any table: `CREATE INDEX IF NOT EXISTS` locks
            // its table even when the index is there, and a replica starting beside busy ones
            // would then deadlock with their audit writes. An up-to-date schema is left alone.
            let has_meta: bool = tx
                .query_one("SELECT to_regclass('credwarden_meta') IS NOT NULL", &[])?
                .get(0);
            let found: Option<String> = if has_meta {
                tx.query_opt(
                    "SELECT value FROM credwarden_meta WHERE key = 'schema_version'",
                    &[],
                )?
                .map(|r| r.get(0))
            } else {
                None
            };
            let found: i64 = found.and_then(|v| v.parse().ok()).unwrap_or(0);
            if found < SCHEMA_VERSION {
                tx.batch_execute(SCHEMA_V1)?;
                tx.batch_execute(SCHEMA_V2)?;
                tx.execute(
                    "INSERT INTO credwarden_meta (key, value) VALUES ('schema_version', $1)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&SCHEMA_VERSION.to_string()],
                )?;
                tx.commit()?;
            }
            Ok(found)
        })?;
        if found > SCHEMA_VERSION {
            return Err(PgError::TooNew {
                target: self.target.clone(),
                found,
            });
        }
        Ok(())
    }

    pub fn schema_version(&mut self) -> Result<i64, PgError> {
        let v: String = self.run(|c| {
            Ok(c.query_one(
                "SELECT value FROM credwarden_meta WHERE key = 'schema_version'",
                &[],
            )?
            .get(0))
        })?;
        Ok(v.parse().unwrap_or(0))
    }

    /// Append audit entries in one transaction: all are durable, or none (and the caller
    /// gives out no credentials).
    pub fn audit_append_batch(&mut self, entries: &[AuditEntry]) -> Result<(), PgError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(AUDIT_INSERT)?;
            for e in entries {
                audit_insert(&mut tx, &stmt, e)?;
            }
            tx.commit()
        })
    }

    /// Audit entries, newest first, optionally for one user.
    pub fn audit_entries(
        &mut self,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, PgError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self.run(|c| {
            c.query(
                "SELECT time_ms, request_id, user_name, groups, client_ip, network, role, decision,
                 reason, access_key_id, expiration, duration_seconds, session_policy, idp_groups
                 FROM broker_audit WHERE ($1::TEXT IS NULL OR user_name = $1)
                 ORDER BY seq DESC LIMIT $2",
                &[&user, &limit],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                time_ms: r.get(0),
                request_id: r.get(1),
                user: r.get(2),
                groups: r.get(3),
                client_ip: r.get(4),
                network: r.get(5),
                role: r.get(6),
                decision: r.get(7),
                reason: r.get(8),
                access_key_id: r.get(9),
                expiration: r.get(10),
                duration_seconds: r.get(11),
                session_policy: r.get(12),
                idp_groups: r.get(13),
            })
            .collect())
    }

    /// Is there any entry of `user` (with this role and decision, on this network)?
    pub fn audit_exists(
        &mut self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
        decision: Option<&str>,
    ) -> Result<bool, PgError> {
        self.run(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM broker_audit WHERE user_name = $1 AND ($2::TEXT IS NULL OR role = $2)
                 AND ($3::TEXT IS NULL OR network = $3) AND ($4::TEXT IS NULL OR decision = $4) LIMIT 1",
                &[&user, &role, &network, &decision],
            )?
            .is_some())
        })
    }

    /// The broker's two anomaly questions in one round trip: (no earlier grant of `role` to
    /// `user`, `user` seen before but never from `network`).
    pub fn audit_novelty(
        &mut self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
    ) -> Result<(bool, bool), PgError> {
        self.run(|c| {
            let row = c.query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM broker_audit WHERE user_name = $1
                     AND ($2::TEXT IS NULL OR role = $2) AND decision = 'granted'),
                 EXISTS (SELECT 1 FROM broker_audit WHERE user_name = $1)
                     AND NOT EXISTS (SELECT 1 FROM broker_audit WHERE user_name = $1
                     AND ($3::TEXT IS NULL OR network = $3))",
                &[&user, &role, &network],
            )?;
            Ok((row.get(0), row.get(1)))
        })
    }

    /// How many entries of `user` match since `since_ms`.
    pub fn audit_count(
        &mut self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
        decision: Option<&str>,
        since_ms: i64,
    ) -> Result<i64, PgError> {
        self.run(|c| {
            Ok(c.query_one(
                "SELECT count(*) FROM broker_audit WHERE user_name = $1 AND ($2::TEXT IS NULL OR role = $2)
                 AND ($3::TEXT IS NULL OR network = $3) AND ($4::TEXT IS NULL OR decision = $4)
                 AND time_ms >= $5",
                &[&user, &role, &network, &decision, &since_ms],
            )?
            .get(0))
        })
    }

    /// Record an observation of `directory`, as [`store::Store::observe_memberships`] does:
    /// new memberships first seen now, removed ones forgotten; one transaction, serialised
    /// across replicas by a lock on the directory's tracking row.
    pub fn observe_memberships(
        &mut self,
        directory: &str,
        current: &BTreeSet<(String, String)>,
        now_ms: i64,
    ) -> Result<BTreeMap<(String, String), MembershipSeen>, PgError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            // The first observation of a directory cannot tell new memberships from old
            // ones: it is the one whose insert of the tracking row takes effect. A replica
            // loading the same directory at once waits on the row lock for the first's rows
            // instead of recording the same memberships as new twice.
            let tracking_began = tx
                .query_opt(
                    "INSERT INTO directory_tracking (directory, since_ms) VALUES ($1, $2)
                     ON CONFLICT (directory) DO NOTHING RETURNING since_ms",
                    &[&directory, &now_ms],
                )?
                .is_some();
            tx.execute(
                "SELECT since_ms FROM directory_tracking WHERE directory = $1 FOR UPDATE",
                &[&directory],
            )?;
            let known: BTreeMap<(String, String), MembershipSeen> = tx
                .query(
                    "SELECT user_name, grp, first_seen_ms, appeared FROM directory_memberships WHERE directory = $1",
                    &[&directory],
                )?
                .iter()
                .map(|r| {
                    (
                        (r.get::<_, String>(0), r.get::<_, String>(1)),
                        MembershipSeen {
                            first_seen_ms: r.get(2),
                            appeared: r.get(3),
                            new: false,
                        },
                    )
                })
                .collect();
            for gone in known.keys().filter(|k| !current.contains(*k)) {
                tx.execute(
                    "DELETE FROM directory_memberships WHERE directory = $1 AND user_name = $2 AND grp = $3",
                    &[&directory, &gone.0, &gone.1],
                )?;
            }
            let mut out = BTreeMap::new();
            for m in current {
                let seen = match known.get(m) {
                    Some(s) => *s,
                    None => {
                        tx.execute(
                            "INSERT INTO directory_memberships (directory, user_name, grp, first_seen_ms, appeared)
                             VALUES ($1, $2, $3, $4, $5)",
                            &[&directory, &m.0, &m.1, &now_ms, &!tracking_began],
                        )?;
                        MembershipSeen {
                            first_seen_ms: now_ms,
                            appeared: !tracking_began,
                            new: true,
                        }
                    }
                };
                out.insert(m.clone(), seen);
            }
            tx.commit()?;
            Ok(out)
        })
    }

    /// Count one request of `user` of `kind` in the fixed window starting at `window_ms`
    /// across every replica; returns the window's count including this one. The user's
    /// windows before `keep_after_ms` are deleted when a new window opens, so the table holds
    /// a few rows per active user.
    pub fn rate_hit(
        &mut self,
        user: &str,
        kind: &str,
        window_ms: i64,
        keep_after_ms: i64,
    ) -> Result<i64, PgError> {
        self.run(|c| {
            let hits: i64 = c
                .query_one(
                    "INSERT INTO broker_rate (user_name, kind, window_ms, hits) VALUES ($1, $2, $3, 1)
                     ON CONFLICT (user_name, kind, window_ms) DO UPDATE SET hits = broker_rate.hits + 1
                     RETURNING hits",
                    &[&user, &kind, &window_ms],
                )?
                .get(0);
            if hits == 1 {
                c.execute(
                    "DELETE FROM broker_rate WHERE user_name = $1 AND kind = $2 AND window_ms < $3",
                    &[&user, &kind, &keep_after_ms],
                )?;
            }
            Ok(hits)
        })
    }
}

const AUDIT_INSERT: &str = "INSERT INTO broker_audit (time_ms, request_id, user_name, groups,
    client_ip, network, role, decision, reason, access_key_id, expiration, duration_seconds,
    session_policy, idp_groups) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// Insert one audit row in `tx` (committed with whatever else the caller records in it).
/// `stmt` is [`AUDIT_INSERT`] prepared (once for a batch).
fn audit_insert(
    tx: &mut postgres::Transaction<'_>,
    stmt: &postgres::Statement,
    e: &AuditEntry,
) -> Result<(), postgres::Error> {
    tx.execute(
        stmt,
        &[
            &e.time_ms,
            &e.request_id,
            &e.user,
            &e.groups,
            &e.client_ip,
            &e.network,
            &e.role,
            &e.decision,
            &e.reason,
            &e.access_key_id,
            &e.expiration,
            &e.duration_seconds,
            &e.session_policy,
            &e.idp_groups,
        ],
    )?;
    Ok(())
}

/// The synchronous client closes its connection by blocking on its own runtime, which tokio
/// forbids on a thread that drives async tasks (where a broker may drop its store at shutdown):
/// the client is dropped on a thread of its own.
impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = std::thread::Builder::new()
                .name("credwarden-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}
