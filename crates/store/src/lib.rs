//! # credwarden-store
//!
//! credwarden's persistence: one SQLite file (`--state FILE`) that users can open with
//! `sqlite3`. It owns the schema and its version and keeps what makes runs continue each
//! other: detector state, processed files, the finding outbox and emitted-finding ids (one
//! checkpoint is one transaction), the webhook spool and its dead letters (schema 4), each
//! row naming its destination (schema 6: the notify route it is for), and a log of runs. The broker's audit log (schema 3) lives here too, behind the same versioned
//! schema.
//!
//! A state file written by a newer credwarden (a schema version this build does not know)
//! is refused with a clear message rather than guessed at.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

mod approvals;
mod people;
mod schedules;
pub use approvals::{AccessRequest, Decided, Decision, Membership, RequestScope, MAX_REASON};
pub use people::{CreatedRole, MembershipSeen};
pub use schedules::Schedule;

/// The schema this build writes. 1: emitted findings and runs. 2: adds detector state,
/// processed files and the finding outbox. 3: adds the broker's audit log and the policy
/// history that right-sizing rolls back to. 4: adds the webhook's dead letters and a count
/// of delivery attempts per spooled finding. 5: adds the account registry. 6: every spooled
/// finding and dead letter names its destination (a notify route). 7: directory memberships
/// as the broker and `access prune` saw them (their age), the identity provider's groups of
/// each audited request, and the roles `shrink per-user --apply` created. 8: announced
/// right-sizing plans (`shrink schedule list / cancel`). 9: the broker's access requests
/// and the expiring memberships approved ones became (see `approvals`). Older files are
/// upgraded in place (every table below is created if missing, the added columns added if
/// missing).
pub const SCHEMA_VERSION: i64 = 9;

/// The destination of what was spooled before destinations existed, and of the single
/// `--webhook URL` (or the broker's `findings_webhook`): a run that posts to it again picks
/// those findings up where they were left.
pub const DEFAULT_DESTINATION: &str = "webhook";

const SCHEMA_V2: &str = "
    CREATE TABLE IF NOT EXISTS detector_state (name TEXT PRIMARY KEY, format INTEGER NOT NULL, state TEXT NOT NULL, saved_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS processed_files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, records INTEGER NOT NULL, processed_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, finding TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS webhook_spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, finding TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS broker_audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, request_id TEXT NOT NULL,
        user TEXT NOT NULL, groups TEXT NOT NULL, client_ip TEXT NOT NULL, network TEXT, role TEXT, decision TEXT NOT NULL, reason TEXT NOT NULL,
        access_key_id TEXT, expiration TEXT, duration_seconds INTEGER, session_policy TEXT);
    CREATE INDEX IF NOT EXISTS broker_audit_user ON broker_audit (user, time_ms);
    CREATE INDEX IF NOT EXISTS broker_audit_user_role ON broker_audit (user, role, decision);
    CREATE INDEX IF NOT EXISTS broker_audit_user_network ON broker_audit (user, network);
    CREATE TABLE IF NOT EXISTS policy_history (version INTEGER PRIMARY KEY AUTOINCREMENT, role TEXT NOT NULL, recorded_at INTEGER NOT NULL,
        reason TEXT NOT NULL, snapshot TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS policy_history_role ON policy_history (role, version);
";

/// Findings the webhook will not be sent again by itself: refused for good by the endpoint,
/// or past the retry limit. `status` is the HTTP status when the endpoint answered.
const SCHEMA_V4: &str = "
    CREATE TABLE IF NOT EXISTS webhook_dead_letters (seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL, finding TEXT NOT NULL, status INTEGER, reason TEXT NOT NULL,
        attempts INTEGER NOT NULL, dead_at INTEGER NOT NULL);
";

/// The account registry (`credwarden accounts sync`): names, owners and environments that
/// findings and tables show next to account ids.
const SCHEMA_V5: &str = "
    CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL,
        email TEXT, status TEXT, ou TEXT, owner TEXT, environment TEXT, tags TEXT NOT NULL,
        synced_at INTEGER NOT NULL);
";

/// Added to `webhook_spool` by schema 4 (not in `SCHEMA_V2`, so that a version 2 or 3 file
/// gets it the same way a new file does).
const SPOOL_ATTEMPTS: &str =
    "ALTER TABLE webhook_spool ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;";

/// Added by schema 6 to `webhook_spool` and `webhook_dead_letters`: the destination (notify
/// route) a row is for. Rows of older files get [`DEFAULT_DESTINATION`], the one destination
/// they could have been meant for, so they stay deliverable.
const SPOOL_DESTINATION: &str =
    "ALTER TABLE webhook_spool ADD COLUMN destination TEXT NOT NULL DEFAULT 'webhook';";
const DEAD_DESTINATION: &str =
    "ALTER TABLE webhook_dead_letters ADD COLUMN destination TEXT NOT NULL DEFAULT 'webhook';";
/// Each destination's sender reads its own rows in order: without this index every peek
/// would scan the other destinations' backlog (a dead endpoint's can grow large).
const SCHEMA_V6: &str =
    "CREATE INDEX IF NOT EXISTS webhook_spool_destination ON webhook_spool (destination, seq);";

/// Schema 7. `directory_tracking`: since when a directory file's memberships are observed;
/// `directory_memberships`: each membership present at the last observation, since when it
/// has been seen and whether it appeared after tracking began (then its first sighting
/// bounds its age) or was already there (then it is at least that old). `created_roles`:
/// roles `shrink per-user --apply` created, with what it put in them, so that undo deletes
/// only those and only while unchanged.
const SCHEMA_V7: &str = "
    CREATE TABLE IF NOT EXISTS directory_tracking (directory TEXT PRIMARY KEY, since_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS directory_memberships (directory TEXT NOT NULL, user TEXT NOT NULL, grp TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL, appeared INTEGER NOT NULL, PRIMARY KEY (directory, user, grp));
    CREATE TABLE IF NOT EXISTS created_roles (arn TEXT PRIMARY KEY, name TEXT NOT NULL, source_role TEXT NOT NULL,
        person TEXT NOT NULL, trust TEXT NOT NULL, policy_name TEXT NOT NULL, policy TEXT NOT NULL, created_ms INTEGER NOT NULL);
";
/// Schema 8: right-sizing plans announced by `shrink schedule` (see `schedules`).
const SCHEMA_V8: &str = "
    CREATE TABLE IF NOT EXISTS shrink_schedules (id TEXT PRIMARY KEY, announced_ms INTEGER NOT NULL,
        not_before TEXT NOT NULL, window_end TEXT NOT NULL, roles TEXT NOT NULL, plan_file TEXT NOT NULL,
        cancelled_ms INTEGER, cancel_reason TEXT, applied_ms INTEGER);
";
/// Schema 9: access requests and the memberships approved ones became (see `approvals`).
const SCHEMA_V9: &str = "
    CREATE TABLE IF NOT EXISTS access_requests (id TEXT PRIMARY KEY, user TEXT NOT NULL, grp TEXT NOT NULL,
        reason TEXT NOT NULL, duration_seconds INTEGER NOT NULL, status TEXT NOT NULL, created_ms INTEGER NOT NULL,
        decided_by TEXT, decided_ms INTEGER, comment TEXT);
    CREATE INDEX IF NOT EXISTS access_requests_status ON access_requests (status, created_ms);
    CREATE INDEX IF NOT EXISTS access_requests_user ON access_requests (user, created_ms);
    CREATE TABLE IF NOT EXISTS granted_memberships (user TEXT NOT NULL, grp TEXT NOT NULL, granted_by TEXT NOT NULL,
        request_id TEXT, since_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, PRIMARY KEY (user, grp));
";
/// Added to `broker_audit` by schema 7: the groups the identity provider asserted (token claim
/// or proxy header), apart from the directory's. NULL on older rows: unknown.
const AUDIT_IDP_GROUPS: &str = "ALTER TABLE broker_audit ADD COLUMN idp_groups TEXT;";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state file {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state file {path} has schema version {found}, newer than this credwarden understands ({SCHEMA_VERSION}); upgrade credwarden or use another --state file")]
    TooNew { path: String, found: i64 },
    #[error("state file {path}: cannot create it: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not a credwarden state file (it has tables but no credwarden metadata)")]
    Foreign { path: String },
}

/// One account of the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub status: Option<String>,
    /// The organisational unit path (`Root/Prod/Payments`).
    pub ou: Option<String>,
    pub owner: Option<String>,
    pub environment: Option<String>,
    /// Every tag, as a JSON object.
    pub tags: String,
}

/// The persistent state of detection runs.
pub struct Store {
    conn: Connection,
    path: String,
}

/// The error of a SQLite call on the store at `path`. A function of the path alone, not of
/// the store: a transaction holds `conn` mutably while its errors are being made.
pub(crate) fn sqlite_err(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// A source that was processed completely.
pub struct ProcessedFile {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
    pub records: u64,
}

/// One broker decision, granted or refused. Never holds a secret: the access key id
/// identifies the credentials in CloudTrail, the secret key and session token are not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub time_ms: i64,
    pub request_id: String,
    pub user: String,
    /// Groups, comma-separated.
    pub groups: String,
    pub client_ip: String,
    /// The configured network the client address matched.
    pub network: Option<String>,
    pub role: Option<String>,
    /// `granted` or `refused`.
    pub decision: String,
    pub reason: String,
    pub access_key_id: Option<String>,
    pub expiration: Option<String>,
    pub duration_seconds: Option<i64>,
    pub session_policy: Option<String>,
    /// Of `groups`, those the identity provider asserted (comma-separated); `None` on rows
    /// written before schema 7, whose groups' source is unknown.
    pub idp_groups: Option<String>,
}

/// Insert one audit row on `conn` (a transaction, usually: the caller commits it with whatever
/// it records).
pub(crate) fn audit_insert(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO broker_audit (time_ms, request_id, user, groups, client_ip, network, role, decision, reason, access_key_id, expiration, duration_seconds, session_policy, idp_groups)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        e.time_ms,
        e.request_id,
        e.user,
        e.groups,
        e.client_ip,
        e.network,
        e.role,
        e.decision,
        e.reason,
        e.access_key_id,
        e.expiration,
        e.duration_seconds,
        e.session_policy,
        e.idp_groups
    ])?;
    Ok(())
}

/// A finding waiting for the webhook, and how many delivery attempts failed so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolEntry {
    pub seq: i64,
    /// The destination (notify route) it waits for.
    pub destination: String,
    pub id: String,
    pub finding: String,
    pub attempts: i64,
}

/// A finding the webhook gave up on: refused for good, or past the retry limit.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub seq: i64,
    /// The destination (notify route) that gave up on it.
    pub destination: String,
    /// The finding's id.
    pub id: String,
    /// The finding as it was posted (JSON).
    pub finding: String,
    /// The endpoint's last HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it was given up on.
    pub reason: String,
    /// Delivery attempts made.
    pub attempts: i64,
    /// When it was given up on (Unix seconds).
    pub dead_at: i64,
}

/// One finding queued for one destination: a finding that goes to N destinations is N of
/// these, written in one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spooled<'a> {
    pub destination: &'a str,
    pub id: &'a str,
    pub finding: &'a str,
}

/// One emitted finding, as remembered.
pub struct EmittedFinding<'a> {
    pub id: &'a str,
    pub detector: &'a str,
    pub time: &'a str,
}

impl Store {
    /// Open or create a state file, creating or checking the schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let err = sqlite_err(&p);
        // A state file says which credentials were stolen and who asked for what: a new one is
        // created owner-only, and SQLite gives its -wal and -shm files the same permissions.
        #[cfg(unix)]
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
            if let Err(source) = created {
                if source.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(StoreError::Create { path: p, source });
                }
            }
        }
        let conn = Connection::open(path).map_err(err)?;
        // WAL: readers (a user's sqlite3) never block the detector. FULL sync: a commit
        // survives power loss too, not only a crash, so a checkpoint is never lost while the
        // findings it released are already in an fsynced --output.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let store = Store { conn, path: p };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite_err(&self.path)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='credwarden_meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(self.err())?
            > 0;
        if !has_meta {
            let tables: i64 = self
                .conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type='table'",
                    [],
                    |r| r.get(0),
                )
                .map_err(self.err())?;
            if tables > 0 {
                return Err(StoreError::Foreign {
                    path: self.path.clone(),
                });
            }
            self.conn
                .execute_batch(&format!(
                    "BEGIN;
                     CREATE TABLE credwarden_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                     CREATE TABLE emitted_findings (id TEXT PRIMARY KEY, detector TEXT NOT NULL, time TEXT NOT NULL, emitted_at INTEGER NOT NULL);
                     CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL, finished_at INTEGER, records INTEGER, findings INTEGER, input_errors INTEGER);
                     {SCHEMA_V2}
                     {SCHEMA_V4}
                     {SCHEMA_V5}
                     {SPOOL_ATTEMPTS}
                     {SPOOL_DESTINATION}
                     {DEAD_DESTINATION}
                     {SCHEMA_V6}
                     {SCHEMA_V7}
                     {AUDIT_IDP_GROUPS}
                     {SCHEMA_V8}
                     {SCHEMA_V9}
                     INSERT INTO credwarden_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
                     COMMIT;"
                ))
                .map_err(self.err())?;
            return Ok(());
        }
        let found: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM credwarden_meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        let found: i64 = found
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Foreign {
                path: self.path.clone(),
            })?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
            });
        }
        if found < SCHEMA_VERSION {
            // Columns are added only where missing: the tables themselves may have been
            // created just now (by the CREATE ... IF NOT EXISTS below) with or without them.
            let attempts = if self.has_column("webhook_spool", "attempts")? {
                ""
            } else {
                SPOOL_ATTEMPTS
            };
            let spool_destination = if self.has_column("webhook_spool", "destination")? {
                ""
            } else {
                SPOOL_DESTINATION
            };
            // The dead letters table is created by SCHEMA_V4 in this same batch when missing,
            // so it is created without the column and gets it from the ALTER.
            let dead_destination = if self.has_column("webhook_dead_letters", "destination")? {
                ""
            } else {
                DEAD_DESTINATION
            };
            // broker_audit is created by SCHEMA_V2 in this batch when missing, without it.
            let idp_groups = if self.has_column("broker_audit", "idp_groups")? {
                ""
            } else {
                AUDIT_IDP_GROUPS
            };
            self.conn
                .execute_batch(&format!(
                    "BEGIN; {SCHEMA_V2} {SCHEMA_V4} {SCHEMA_V5} {attempts}
                     {spool_destination} {dead_destination} {SCHEMA_V6} {SCHEMA_V7} {idp_groups} {SCHEMA_V8} {SCHEMA_V9}
                     UPDATE credwarden_meta SET value = '{SCHEMA_VERSION}'
                     WHERE key = 'schema_version'; COMMIT;"
                ))
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// Does `table` exist with `column`? (False when the table does not exist yet.)
    fn has_column(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                params![table, column],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// Append several audit entries in one transaction: one commit, one sync to disk. The
    /// broker's writer batches concurrent requests this way (group commit).
    pub fn audit_append_batch(&mut self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        for e in entries {
            audit_insert(&tx, e).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Audit entries, newest first, optionally for one user.
    pub fn audit_entries(
        &self,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT time_ms, request_id, user, groups, client_ip, network, role, decision, reason, access_key_id, expiration, duration_seconds, session_policy, idp_groups
                 FROM broker_audit WHERE (?1 IS NULL OR user = ?1) ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![user, limit as i64], |r| {
                Ok(AuditEntry {
                    time_ms: r.get(0)?,
                    request_id: r.get(1)?,
                    user: r.get(2)?,
                    groups: r.get(3)?,
                    client_ip: r.get(4)?,
                    network: r.get(5)?,
                    role: r.get(6)?,
                    decision: r.get(7)?,
                    reason: r.get(8)?,
                    access_key_id: r.get(9)?,
                    expiration: r.get(10)?,
                    duration_seconds: r.get(11)?,
                    session_policy: r.get(12)?,
                    idp_groups: r.get(13)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Record a role's policies as they are before a change; returns the version number.
    pub fn history_record(
        &self,
        role: &str,
        reason: &str,
        snapshot: &str,
    ) -> Result<i64, StoreError> {
        let now = credwarden_core::clock::now_millis();
        self.conn
            .execute("INSERT INTO policy_history (role, recorded_at, reason, snapshot) VALUES (?1, ?2, ?3, ?4)", params![role, now, reason, snapshot])
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A role's recorded versions, newest first: (version, recorded at ms, reason, snapshot).
    pub fn history(&self, role: &str) -> Result<Vec<(i64, i64, String, String)>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT version, recorded_at, reason, snapshot FROM policy_history WHERE role = ?1 ORDER BY version DESC").map_err(self.err())?;
        let rows = stmt
            .query_map(params![role], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Every role with recorded history (its key: the role ARN, or the bare name earlier
    /// versions recorded under).
    pub fn history_roles(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT role FROM policy_history ORDER BY role")
            .map_err(self.err())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Is there any earlier entry of `user` (with this role and decision, on this network)?
    /// An indexed lookup that stops at the first match, whatever the history's length.
    pub fn audit_exists(
        &self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
        decision: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM broker_audit WHERE user = ?1 AND (?2 IS NULL OR role = ?2) AND (?3 IS NULL OR network = ?3) AND (?4 IS NULL OR decision = ?4) LIMIT 1",
            )
            .map_err(self.err())?;
        stmt.exists(params![user, role, network, decision])
            .map_err(self.err())
    }

    /// How many earlier entries match: `role` granted to `user`, `network` used by `user`
    /// (granted or not), refusals of `user` since a time. What the broker's anomaly checks ask.
    pub fn audit_count(
        &self,
        user: &str,
        role: Option<&str>,
        network: Option<&str>,
        decision: Option<&str>,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM broker_audit WHERE user = ?1 AND (?2 IS NULL OR role = ?2) AND (?3 IS NULL OR network = ?3)
                 AND (?4 IS NULL OR decision = ?4) AND time_ms >= ?5",
            )
            .map_err(self.err())?;
        stmt.query_row(params![user, role, network, decision, since_ms], |r| {
            r.get(0)
        })
        .map_err(self.err())
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let v: String = self
            .conn
            .query_row(
                "SELECT value FROM credwarden_meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(v.parse().unwrap_or(0))
    }

    /// Was this finding id emitted by an earlier run?
    pub fn was_emitted(&self, id: &str) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM emitted_findings WHERE id = ?1")
            .map_err(self.err())?;
        stmt.exists(params![id]).map_err(self.err())
    }

    /// Saved detector states: name → (format, JSON).
    pub fn detector_states(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, format, state FROM detector_state ORDER BY name")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Size and modification time (ns) a file had when it was processed, if it was.
    pub fn processed(&self, path: &str) -> Result<Option<(i64, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT size, mtime_ns FROM processed_files WHERE path = ?1")
            .map_err(self.err())?;
        stmt.query_row(params![path], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(self.err())
    }

    /// One atomic step of a run: the detectors' state after `files` were processed, those
    /// files, and the findings they produced (queued in the outbox unless already emitted).
    /// Either all of it is durable or none of it is.
    pub fn checkpoint(
        &mut self,
        states: &[(&str, i64, String)],
        files: &[ProcessedFile],
        findings: &[(&str, String)],
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut st = tx.prepare_cached("INSERT OR REPLACE INTO detector_state (name, format, state, saved_at) VALUES (?1, ?2, ?3, ?4)").map_err(err)?;
            for (name, format, state) in states {
                st.execute(params![name, format, state, now]).map_err(err)?;
            }
            let mut pf = tx
                .prepare_cached("INSERT OR REPLACE INTO processed_files (path, size, mtime_ns, records, processed_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(err)?;
            for f in files {
                pf.execute(params![f.path, f.size, f.mtime_ns, f.records as i64, now])
                    .map_err(err)?;
            }
            let mut ob = tx
                .prepare_cached("INSERT OR IGNORE INTO outbox (id, finding) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM emitted_findings WHERE id = ?1)")
                .map_err(err)?;
            for (id, finding) in findings {
                ob.execute(params![id, finding]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Findings committed but not yet confirmed delivered, in the order they were queued.
    pub fn outbox(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, finding FROM outbox ORDER BY seq")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Move delivered findings from the outbox to the emitted set, atomically; with
    /// `spool`, queue them for their destinations in the same transaction (a crash never
    /// leaves a finding marked delivered but missing from a destination's spool).
    pub fn delivered(
        &mut self,
        findings: &[EmittedFinding<'_>],
        spool: &[Spooled<'_>],
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO emitted_findings (id, detector, time, emitted_at) VALUES (?1, ?2, ?3, ?4)").map_err(err)?;
            let mut del = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ?1")
                .map_err(err)?;
            for f in findings {
                ins.execute(params![f.id, f.detector, f.time, now])
                    .map_err(err)?;
                del.execute(params![f.id]).map_err(err)?;
            }
            let mut sp = tx
                .prepare_cached(
                    "INSERT INTO webhook_spool (destination, id, finding) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for s in spool {
                sp.execute(params![s.destination, s.id, s.finding])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Replace the account registry with `accounts`, in one transaction.
    pub fn accounts_replace(&mut self, accounts: &[Account]) -> Result<(), StoreError> {
        let now = unix_now();
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM accounts", []).map_err(err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO accounts (id, name, email, status, ou, owner, environment, tags, \
                     synced_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            for a in accounts {
                ins.execute(params![
                    a.id,
                    a.name,
                    a.email,
                    a.status,
                    a.ou,
                    a.owner,
                    a.environment,
                    a.tags,
                    now
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The account registry, by id.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, name, email, status, ou, owner, environment, tags FROM accounts \
                 ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Account {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    status: r.get(3)?,
                    ou: r.get(4)?,
                    owner: r.get(5)?,
                    environment: r.get(6)?,
                    tags: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Queue one finding for each of `destinations` (a service's finding, delivered as it is
    /// made), in one transaction: either every destination gets it or none does.
    pub fn spool_push(
        &mut self,
        destinations: &[&str],
        id: &str,
        finding: &str,
    ) -> Result<(), StoreError> {
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO webhook_spool (destination, id, finding) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for d in destinations {
                ins.execute(params![d, id, finding]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// The oldest findings waiting for `destination`, in order.
    pub fn spool_peek(
        &self,
        destination: &str,
        limit: usize,
    ) -> Result<Vec<SpoolEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, destination, id, finding, attempts FROM webhook_spool
                 WHERE destination = ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![destination, limit as i64], |r| {
                Ok(SpoolEntry {
                    seq: r.get(0)?,
                    destination: r.get(1)?,
                    id: r.get(2)?,
                    finding: r.get(3)?,
                    attempts: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// How many findings wait for each destination that has any, by destination name.
    pub fn spool_destinations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT destination, count(*) FROM webhook_spool GROUP BY destination
                 ORDER BY destination",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// The webhook accepted this one.
    pub fn spool_done(&self, seq: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM webhook_spool WHERE seq = ?1", params![seq])
            .map_err(self.err())?;
        Ok(())
    }

    /// A delivery attempt of this one failed; returns how many have failed so far.
    pub fn spool_failed(&self, seq: i64) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "UPDATE webhook_spool SET attempts = attempts + 1 WHERE seq = ?1",
                params![seq],
            )
            .map_err(self.err())?;
        self.conn
            .query_row(
                "SELECT attempts FROM webhook_spool WHERE seq = ?1",
                params![seq],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(self.err())
    }

    /// Give up on this one: move it from the spool to the dead letters, atomically.
    pub fn spool_dead(
        &mut self,
        seq: i64,
        status: Option<u16>,
        reason: &str,
        attempts: i64,
    ) -> Result<(), StoreError> {
        let now = unix_now();
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO webhook_dead_letters
                 (destination, id, finding, status, reason, attempts, dead_at)
             SELECT destination, id, finding, ?2, ?3, ?4, ?5 FROM webhook_spool WHERE seq = ?1",
            params![seq, status, reason, attempts, now],
        )
        .map_err(err)?;
        tx.execute("DELETE FROM webhook_spool WHERE seq = ?1", params![seq])
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// The dead letters, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, destination, id, finding, status, reason, attempts, dead_at
                 FROM webhook_dead_letters ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeadLetter {
                    seq: r.get(0)?,
                    destination: r.get(1)?,
                    id: r.get(2)?,
                    finding: r.get(3)?,
                    status: r.get(4)?,
                    reason: r.get(5)?,
                    attempts: r.get(6)?,
                    dead_at: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    pub fn dead_letter_len(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM webhook_dead_letters", [], |r| {
                r.get(0)
            })
            .map_err(self.err())
    }

    /// How many dead letters `destination` has.
    pub fn dead_letter_len_of(&self, destination: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM webhook_dead_letters WHERE destination = ?1",
                params![destination],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// How many findings wait for `destination`.
    pub fn spool_len_of(&self, destination: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM webhook_spool WHERE destination = ?1",
                params![destination],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// Move dead letters back to the end of their destination's spool with a fresh retry
    /// count, atomically: those of the given destinations (all when `destinations` is empty)
    /// with the given finding ids (all when `ids` is empty). Returns what was moved, as
    /// (destination, finding id), in dead-letter order.
    pub fn dead_letters_requeue(
        &mut self,
        destinations: &[String],
        ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        let rows: Vec<(i64, String, String, String)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT seq, destination, id, finding FROM webhook_dead_letters ORDER BY seq",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)?
        };
        let mut moved = Vec::new();
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO webhook_spool (destination, id, finding, attempts)
                     VALUES (?1, ?2, ?3, 0)",
                )
                .map_err(err)?;
            let mut del = tx
                .prepare_cached("DELETE FROM webhook_dead_letters WHERE seq = ?1")
                .map_err(err)?;
            for (seq, destination, id, finding) in rows {
                if (!ids.is_empty() && !ids.contains(&id))
                    || (!destinations.is_empty() && !destinations.contains(&destination))
                {
                    continue;
                }
                ins.execute(params![destination, id, finding])
                    .map_err(err)?;
                del.execute(params![seq]).map_err(err)?;
                moved.push((destination, id));
            }
        }
        tx.commit().map_err(err)?;
        Ok(moved)
    }

    pub fn spool_len(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM webhook_spool", [], |r| r.get(0))
            .map_err(self.err())
    }

    pub fn emitted_count(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM emitted_findings", [], |r| r.get(0))
            .map_err(self.err())
    }

    /// Start a run; returns its id.
    pub fn begin_run(&self) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (started_at) VALUES (?1)",
                params![unix_now()],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(
        &self,
        run: i64,
        records: u64,
        findings: u64,
        input_errors: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at=?2, records=?3, findings=?4, input_errors=?5 WHERE id=?1",
                params![run, unix_now(), records as i64, findings as i64, input_errors as i64],
            )
            .map_err(self.err())?;
        Ok(())
    }
}

fn unix_now() -> i64 {
    credwarden_core::clock::now_seconds()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `finding` queued for the default destination.
    fn spooled<'a>(id: &'a str, finding: &'a str) -> Spooled<'a> {
        Spooled {
            destination: DEFAULT_DESTINATION,
            id,
            finding,
        }
    }

    #[test]
    fn the_account_registry_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let a = |id: &str, name: &str| Account {
            id: id.into(),
            name: name.into(),
            tags: "{}".into(),
            ..Default::default()
        };
        s.accounts_replace(&[a("111122223333", "prod"), a("444455556666", "dev")])
            .unwrap();
        s.accounts_replace(&[a("111122223333", "production")])
            .unwrap();
        let got = s.accounts().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "production");
    }

    /// Issue 12: state files (and so their -wal and -shm) were created world-readable.
    #[cfg(unix)]
    #[test]
    fn new_state_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let mut s = Store::open(&path).unwrap();
        s.delivered(&[], &[spooled("a", "{}")]).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let p = dir.path().join(format!("state.sqlite{suffix}"));
            if p.exists() {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
        }
    }

    #[test]
    fn remembers_emitted_findings_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let mut s = Store::open(&path).unwrap();
            assert!(!s.was_emitted("a").unwrap());
            s.delivered(
                &[
                    EmittedFinding {
                        id: "a",
                        detector: "d",
                        time: "t",
                    },
                    EmittedFinding {
                        id: "a",
                        detector: "d",
                        time: "t",
                    },
                ],
                &[],
            )
            .unwrap();
            let run = s.begin_run().unwrap();
            s.finish_run(run, 10, 1, 0).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(s.was_emitted("a").unwrap());
        assert!(!s.was_emitted("b").unwrap());
        assert_eq!(s.emitted_count().unwrap(), 1);
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn checkpoints_are_atomic_and_the_outbox_drains_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut s = Store::open(&path).unwrap();
        let f = ProcessedFile {
            path: "a.json".into(),
            size: 10,
            mtime_ns: 5,
            records: 3,
        };
        s.checkpoint(
            &[("d", 1, "{}".into())],
            &[f],
            &[("f1", "{\"id\":\"f1\"}".into()), ("f2", "{}".into())],
        )
        .unwrap();
        assert_eq!(s.processed("a.json").unwrap(), Some((10, 5)));
        assert_eq!(
            s.outbox()
                .unwrap()
                .iter()
                .map(|x| x.0.as_str())
                .collect::<Vec<_>>(),
            ["f1", "f2"]
        );
        s.delivered(
            &[EmittedFinding {
                id: "f1",
                detector: "d",
                time: "t",
            }],
            &[spooled("f1", "{}")],
        )
        .unwrap();
        assert_eq!(s.spool_len().unwrap(), 1);
        let entry = s.spool_peek(DEFAULT_DESTINATION, 10).unwrap().remove(0);
        assert_eq!((entry.id.as_str(), entry.attempts), ("f1", 0));
        s.spool_done(entry.seq).unwrap();
        assert_eq!(s.spool_len().unwrap(), 0);
        // A finding already delivered is never queued again.
        s.checkpoint(&[], &[], &[("f1", "{}".into())]).unwrap();
        assert_eq!(s.outbox().unwrap().len(), 1);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert!(s.was_emitted("f1").unwrap());
        assert_eq!(
            s.detector_states().unwrap(),
            vec![("d".to_owned(), 1, "{}".to_owned())]
        );
    }

    #[test]
    fn a_version_1_file_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE credwarden_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO credwarden_meta VALUES ('schema_version', '1');
                 CREATE TABLE emitted_findings (id TEXT PRIMARY KEY, detector TEXT NOT NULL, time TEXT NOT NULL, emitted_at INTEGER NOT NULL);
                 CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL, finished_at INTEGER, records INTEGER, findings INTEGER, input_errors INTEGER);
                 INSERT INTO emitted_findings VALUES ('old', 'd', 't', 0);",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(s.was_emitted("old").unwrap());
        assert!(s.outbox().unwrap().is_empty());
        assert!(
            s.audit_entries(None, 10).unwrap().is_empty(),
            "the audit table is added on upgrade"
        );
    }

    #[test]
    fn a_version_3_file_gets_dead_letters_and_keeps_its_spool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "CREATE TABLE credwarden_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO credwarden_meta VALUES ('schema_version', '3');
                 CREATE TABLE emitted_findings (id TEXT PRIMARY KEY, detector TEXT NOT NULL,
                     time TEXT NOT NULL, emitted_at INTEGER NOT NULL);
                 CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,
                     finished_at INTEGER, records INTEGER, findings INTEGER,
                     input_errors INTEGER);
                 {SCHEMA_V2}
                 INSERT INTO webhook_spool (id, finding) VALUES ('w', '{{}}');"
            ))
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let spool = s.spool_peek(DEFAULT_DESTINATION, 10).unwrap();
        assert_eq!((spool[0].id.as_str(), spool[0].attempts), ("w", 0));
        assert_eq!(s.dead_letter_len().unwrap(), 0);
        drop(s);
        // Opening again does not try to add the column twice.
        assert_eq!(Store::open(&path).unwrap().spool_len().unwrap(), 1);
    }

    #[test]
    fn dead_letters_leave_the_spool_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("d.sqlite")).unwrap();
        s.delivered(
            &[],
            &[
                spooled("a", "{\"id\":\"a\"}"),
                spooled("b", "{}"),
                spooled("c", "{}"),
            ],
        )
        .unwrap();
        let spool = s.spool_peek(DEFAULT_DESTINATION, 10).unwrap();
        assert_eq!(s.spool_failed(spool[0].seq).unwrap(), 1);
        s.spool_dead(spool[0].seq, Some(400), "HTTP 400", 1)
            .unwrap();
        assert_eq!(s.spool_failed(spool[1].seq).unwrap(), 1);
        assert_eq!(s.spool_failed(spool[1].seq).unwrap(), 2);
        s.spool_dead(spool[1].seq, None, "gave up", 2).unwrap();
        let left = s.spool_peek(DEFAULT_DESTINATION, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "c");
        let dead = s.dead_letters().unwrap();
        assert_eq!(
            dead.iter()
                .map(|d| (d.id.as_str(), d.status, d.attempts))
                .collect::<Vec<_>>(),
            [("a", Some(400), 1), ("b", None, 2)]
        );
        assert_eq!(dead[0].finding, "{\"id\":\"a\"}");
        assert_eq!(dead[0].destination, DEFAULT_DESTINATION);
        let moved = s.dead_letters_requeue(&[], &["b".into()]).unwrap();
        assert_eq!(moved, [(DEFAULT_DESTINATION.to_owned(), "b".to_owned())]);
        assert_eq!(
            s.dead_letters_requeue(&[], &["zz".into()]).unwrap().len(),
            0
        );
        let spool = s.spool_peek(DEFAULT_DESTINATION, 10).unwrap();
        assert_eq!(
            spool
                .iter()
                .map(|e| (e.id.as_str(), e.attempts))
                .collect::<Vec<_>>(),
            [("c", 0), ("b", 0)],
            "back at the end of the spool, with a fresh count"
        );
        assert_eq!(s.dead_letters_requeue(&[], &[]).unwrap().len(), 1);
        assert_eq!(s.dead_letter_len().unwrap(), 0);
        assert_eq!(s.spool_len().unwrap(), 3);
    }

    /// Each destination has its own queue in the one spool: a finding for two destinations
    /// is two rows written together, each destination reads only its own rows in order, and
    /// a dead letter goes back to the destination that gave up on it.
    #[test]
    fn destinations_have_their_own_queues_and_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.sqlite")).unwrap();
        s.spool_push(&["payments", "all"], "f1", "{}").unwrap();
        s.spool_push(&["all"], "f2", "{}").unwrap();
        s.spool_push(&[], "f3", "{}").unwrap();
        s.delivered(
            &[],
            &[
                Spooled {
                    destination: "payments",
                    id: "f4",
                    finding: "{}",
                },
                Spooled {
                    destination: "all",
                    id: "f4",
                    finding: "{}",
                },
            ],
        )
        .unwrap();
        let ids = |s: &Store, d: &str| {
            s.spool_peek(d, 10)
                .unwrap()
                .into_iter()
                .map(|e| {
                    assert_eq!(e.destination, d);
                    e.id
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&s, "payments"), ["f1", "f4"]);
        assert_eq!(ids(&s, "all"), ["f1", "f2", "f4"]);
        assert!(ids(&s, DEFAULT_DESTINATION).is_empty());
        assert_eq!(
            s.spool_destinations().unwrap(),
            [("all".to_owned(), 3), ("payments".to_owned(), 2)]
        );
        assert_eq!(s.spool_len_of("payments").unwrap(), 2);

        let first = s.spool_peek("payments", 1).unwrap().remove(0);
        s.spool_dead(first.seq, Some(404), "HTTP 404", 1).unwrap();
        let first = s.spool_peek("all", 1).unwrap().remove(0);
        s.spool_dead(first.seq, Some(410), "HTTP 410", 1).unwrap();
        let dead = s.dead_letters().unwrap();
        assert_eq!(
            dead.iter()
                .map(|d| (d.destination.as_str(), d.id.as_str()))
                .collect::<Vec<_>>(),
            [("payments", "f1"), ("all", "f1")]
        );
        assert_eq!(s.dead_letter_len_of("all").unwrap(), 1);
        // Only the dead letters of the destination asked for move, and back to it.
        let moved = s.dead_letters_requeue(&["all".into()], &[]).unwrap();
        assert_eq!(moved, [("all".to_owned(), "f1".to_owned())]);
        assert_eq!(ids(&s, "all"), ["f2", "f4", "f1"]);
        assert_eq!(ids(&s, "payments"), ["f4"]);
        assert_eq!(s.dead_letter_len_of("payments").unwrap(), 1);
    }

    /// Schema 6: a version 5 file's spooled findings and dead letters, written before
    /// destinations existed, belong to the default destination and stay deliverable.
    #[test]
    fn a_version_5_file_keeps_its_spool_for_the_default_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "CREATE TABLE credwarden_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO credwarden_meta VALUES ('schema_version', '5');
                 CREATE TABLE emitted_findings (id TEXT PRIMARY KEY, detector TEXT NOT NULL,
                     time TEXT NOT NULL, emitted_at INTEGER NOT NULL);
                 CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,
                     finished_at INTEGER, records INTEGER, findings INTEGER,
                     input_errors INTEGER);
                 {SCHEMA_V2} {SCHEMA_V4} {SCHEMA_V5} {SPOOL_ATTEMPTS}
                 INSERT INTO webhook_spool (id, finding, attempts) VALUES ('old', '{{}}', 3);
                 INSERT INTO webhook_dead_letters (id, finding, status, reason, attempts,
                     dead_at) VALUES ('gone', '{{}}', 400, 'HTTP 400', 1, 0);"
            ))
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let spool = s.spool_peek(DEFAULT_DESTINATION, 10).unwrap();
        assert_eq!(
            (
                spool[0].id.as_str(),
                spool[0].attempts,
                spool[0].destination.as_str()
            ),
            ("old", 3, DEFAULT_DESTINATION)
        );
        assert_eq!(
            s.dead_letters().unwrap()[0].destination,
            DEFAULT_DESTINATION
        );
        s.spool_push(&["payments"], "new", "{}").unwrap();
        drop(s);
        // Opened again: the columns are not added twice, and nothing moved.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.spool_len_of(DEFAULT_DESTINATION).unwrap(), 1);
        assert_eq!(s.spool_len_of("payments").unwrap(), 1);
    }

    #[test]
    fn audit_log_appends_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("audit.sqlite")).unwrap();
        let entry = |t: i64, user: &str, role: &str, network: &str, decision: &str| AuditEntry {
            time_ms: t,
            request_id: format!("r{t}"),
            user: user.into(),
            groups: "g".into(),
            client_ip: "10.0.0.1".into(),
            network: Some(network.into()),
            role: Some(role.into()),
            decision: decision.into(),
            reason: "test".into(),
            ..Default::default()
        };
        let mut s = s;
        s.audit_append_batch(&[
            entry(1, "alice", "r1", "vpn", "granted"),
            entry(2, "alice", "r2", "office", "refused"),
        ])
        .unwrap();
        s.audit_append_batch(&[entry(3, "bob", "r1", "vpn", "refused")])
            .unwrap();
        let all = s.audit_entries(None, 10).unwrap();
        assert_eq!(
            all.iter().map(|e| e.time_ms).collect::<Vec<_>>(),
            [3, 2, 1],
            "newest first"
        );
        assert_eq!(s.audit_entries(Some("alice"), 1).unwrap()[0].time_ms, 2);
        assert_eq!(
            s.audit_count("alice", Some("r1"), None, Some("granted"), 0)
                .unwrap(),
            1
        );
        assert_eq!(
            s.audit_count("alice", None, Some("office"), None, 0)
                .unwrap(),
            1
        );
        assert_eq!(
            s.audit_count("alice", None, None, Some("refused"), 3)
                .unwrap(),
            0
        );
        assert_eq!(
            s.audit_count("bob", None, None, Some("refused"), 0)
                .unwrap(),
            1
        );
        assert!(s
            .audit_exists("alice", Some("r1"), None, Some("granted"))
            .unwrap());
        assert!(!s
            .audit_exists("alice", Some("r2"), None, Some("granted"))
            .unwrap());
        assert!(!s.audit_exists("carol", None, None, None).unwrap());
    }

    #[test]
    fn refuses_newer_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let newer = dir.path().join("newer.sqlite");
        drop(Store::open(&newer).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute(
                "UPDATE credwarden_meta SET value='99' WHERE key='schema_version'",
                [],
            )
            .unwrap();
        let e = Store::open(&newer).err().unwrap().to_string();
        assert!(
            e.contains("schema version 99") && e.contains("newer"),
            "{e}"
        );

        let foreign = dir.path().join("foreign.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute("CREATE TABLE x (y)", [])
            .unwrap();
        assert!(Store::open(&foreign)
            .err()
            .unwrap()
            .to_string()
            .contains("not a credwarden state file"));

        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(
            &garbage,
            b"this is not sqlite at all, just text, long enough to be read as a header",
        )
        .unwrap();
        assert!(Store::open(&garbage).is_err());
    }
}
