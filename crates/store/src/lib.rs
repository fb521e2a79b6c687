//! # credwarden-store
//!
//! credwarden's persistence: one SQLite file (`--state FILE`) that users can open with
//! `sqlite3`. It owns the schema and its version, and today keeps which findings were
//! already emitted (so a second run over the same files prints nothing twice) and a log of
//! runs. Detector state, processed-file bookkeeping and the broker's audit log will live
//! here too, behind the same versioned schema.
//!
//! A state file written by a newer credwarden (a schema version this build does not know)
//! is refused with a clear message rather than guessed at.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

/// The schema this build writes.
pub const SCHEMA_VERSION: i64 = 1;

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
    #[error("state file {path} is not a credwarden state file (it has tables but no credwarden metadata)")]
    Foreign { path: String },
}

/// The persistent state of detection runs.
pub struct Store {
    conn: Connection,
    path: String,
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
        let err = |source| StoreError::Sqlite { path: p.clone(), source };
        let conn = Connection::open(path).map_err(err)?;
        // WAL: readers (a user's sqlite3) never block the detector; NORMAL sync is durable
        // across process crashes, which is what a detection run needs.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let store = Store { conn, path: p };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite { path: self.path.clone(), source }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let has_meta: bool = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='credwarden_meta'", [], |r| r.get::<_, i64>(0))
            .map_err(self.err())?
            > 0;
        if !has_meta {
            let tables: i64 = self.conn.query_row("SELECT count(*) FROM sqlite_master WHERE type='table'", [], |r| r.get(0)).map_err(self.err())?;
            if tables > 0 {
                return Err(StoreError::Foreign { path: self.path.clone() });
            }
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE credwarden_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                     CREATE TABLE emitted_findings (id TEXT PRIMARY KEY, detector TEXT NOT NULL, time TEXT NOT NULL, emitted_at INTEGER NOT NULL);
                     CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL, finished_at INTEGER, records INTEGER, findings INTEGER, input_errors INTEGER);
                     COMMIT;",
                )
                .map_err(self.err())?;
            self.conn
                .execute("INSERT INTO credwarden_meta (key, value) VALUES ('schema_version', ?1)", params![SCHEMA_VERSION.to_string()])
                .map_err(self.err())?;
            return Ok(());
        }
        let found: Option<String> =
            self.conn.query_row("SELECT value FROM credwarden_meta WHERE key='schema_version'", [], |r| r.get(0)).optional().map_err(self.err())?;
        let found: i64 = found.and_then(|v| v.parse().ok()).ok_or_else(|| StoreError::Foreign { path: self.path.clone() })?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: self.path.clone(), found });
        }
        Ok(())
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let v: String = self.conn.query_row("SELECT value FROM credwarden_meta WHERE key='schema_version'", [], |r| r.get(0)).map_err(self.err())?;
        Ok(v.parse().unwrap_or(0))
    }

    /// Was this finding id emitted by an earlier run?
    pub fn was_emitted(&self, id: &str) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM emitted_findings WHERE id = ?1").map_err(self.err())?;
        stmt.exists(params![id]).map_err(self.err())
    }

    /// Remember findings as emitted, in one transaction.
    pub fn mark_emitted(&mut self, findings: &[EmittedFinding<'_>]) -> Result<(), StoreError> {
        let now = unix_now();
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO emitted_findings (id, detector, time, emitted_at) VALUES (?1, ?2, ?3, ?4)").map_err(err)?;
            for f in findings {
                stmt.execute(params![f.id, f.detector, f.time, now]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    pub fn emitted_count(&self) -> Result<i64, StoreError> {
        self.conn.query_row("SELECT count(*) FROM emitted_findings", [], |r| r.get(0)).map_err(self.err())
    }

    /// Start a run; returns its id.
    pub fn begin_run(&self) -> Result<i64, StoreError> {
        self.conn.execute("INSERT INTO runs (started_at) VALUES (?1)", params![unix_now()]).map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(&self, run: i64, records: u64, findings: u64, input_errors: u64) -> Result<(), StoreError> {
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
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_emitted_findings_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let mut s = Store::open(&path).unwrap();
            assert!(!s.was_emitted("a").unwrap());
            s.mark_emitted(&[EmittedFinding { id: "a", detector: "d", time: "t" }, EmittedFinding { id: "a", detector: "d", time: "t" }]).unwrap();
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
    fn refuses_newer_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let newer = dir.path().join("newer.sqlite");
        drop(Store::open(&newer).unwrap());
        Connection::open(&newer).unwrap().execute("UPDATE credwarden_meta SET value='99' WHERE key='schema_version'", []).unwrap();
        let e = Store::open(&newer).err().unwrap().to_string();
        assert!(e.contains("schema version 99") && e.contains("newer"), "{e}");

        let foreign = dir.path().join("foreign.sqlite");
        Connection::open(&foreign).unwrap().execute("CREATE TABLE x (y)", []).unwrap();
        assert!(Store::open(&foreign).err().unwrap().to_string().contains("not a credwarden state file"));

        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, b"this is not sqlite at all, just text, long enough to be read as a header").unwrap();
        assert!(Store::open(&garbage).is_err());
    }
}
