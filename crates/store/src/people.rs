//! What the store keeps about people's access (schema 7): how long each directory membership
//! has been there, and the per-person roles `shrink per-user --apply` created.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, OptionalExtension};

use crate::{sqlite_err, Store, StoreError};

/// What the store knows of one membership's age after an observation of the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipSeen {
    /// When it was first seen in this directory (ms), since it was last absent.
    pub first_seen_ms: i64,
    /// True when it appeared after tracking of the directory had begun: it was not there at
    /// an earlier observation, so it is no older than `first_seen_ms` (give or take the gap
    /// between two observations). False when it was there when tracking began: it is at
    /// least that old, and possibly much older.
    pub appeared: bool,
    /// True when this observation is the first to see it.
    pub new: bool,
}

/// A role `shrink per-user --apply` created, with exactly what it put in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedRole {
    pub arn: String,
    pub name: String,
    /// The shared role it was fitted from (ARN).
    pub source_role: String,
    pub person: String,
    /// The trust policy document it was created with.
    pub trust: String,
    pub policy_name: String,
    /// The inline policy document it was given.
    pub policy: String,
    pub created_ms: i64,
}

/// The recorded memberships of `directory`.
fn sightings(
    conn: &rusqlite::Connection,
    directory: &str,
) -> rusqlite::Result<BTreeMap<(String, String), MembershipSeen>> {
    let mut stmt = conn.prepare_cached(
        "SELECT user, grp, first_seen_ms, appeared FROM directory_memberships WHERE directory = ?1",
    )?;
    let rows = stmt.query_map(params![directory], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            MembershipSeen {
                first_seen_ms: r.get(2)?,
                appeared: r.get::<_, i64>(3)? != 0,
                new: false,
            },
        ))
    })?;
    rows.collect()
}

impl Store {
    /// Record an observation of `directory` (the file's path, as its key): memberships in
    /// `current` not seen before are recorded as first seen at `now_ms`, memberships no longer
    /// present are forgotten (so one removed and added back later counts as new, not as old).
    /// Returns what is known of every current membership. One transaction.
    pub fn observe_memberships(
        &mut self,
        directory: &str,
        current: &BTreeSet<(String, String)>,
        now_ms: i64,
    ) -> Result<BTreeMap<(String, String), MembershipSeen>, StoreError> {
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        let tracked_since: Option<i64> = tx
            .query_row(
                "SELECT since_ms FROM directory_tracking WHERE directory = ?1",
                params![directory],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        // The first observation of a directory cannot tell new memberships from old ones.
        let tracking_began = tracked_since.is_none();
        if tracking_began {
            tx.execute(
                "INSERT INTO directory_tracking (directory, since_ms) VALUES (?1, ?2)",
                params![directory, now_ms],
            )
            .map_err(err)?;
        }
        let known = sightings(&tx, directory).map_err(err)?;
        for gone in known.keys().filter(|k| !current.contains(*k)) {
            tx.execute(
                "DELETE FROM directory_memberships WHERE directory = ?1 AND user = ?2 AND grp = ?3",
                params![directory, gone.0, gone.1],
            )
            .map_err(err)?;
        }
        let mut out = BTreeMap::new();
        for m in current {
            let seen = match known.get(m) {
                Some(s) => *s,
                None => {
                    tx.execute(
                        "INSERT INTO directory_memberships (directory, user, grp, first_seen_ms, appeared) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![directory, m.0, m.1, now_ms, !tracking_began as i64],
                    )
                    .map_err(err)?;
                    MembershipSeen {
                        first_seen_ms: now_ms,
                        appeared: !tracking_began,
                        new: true,
                    }
                }
            };
            out.insert(m.clone(), seen);
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// The memberships of `directory` as last observed, without observing anything.
    pub fn memberships_seen(
        &self,
        directory: &str,
    ) -> Result<BTreeMap<(String, String), MembershipSeen>, StoreError> {
        sightings(&self.conn, directory).map_err(self.err())
    }

    /// Remember a role created for a person. A role already recorded keeps its first record.
    pub fn created_role_record(&self, role: &CreatedRole) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO created_roles (arn, name, source_role, person, trust, policy_name, policy, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    role.arn,
                    role.name,
                    role.source_role,
                    role.person,
                    role.trust,
                    role.policy_name,
                    role.policy,
                    role.created_ms
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Roles created for people, oldest first; only those fitted from `source_role` if given.
    pub fn created_roles(&self, source_role: Option<&str>) -> Result<Vec<CreatedRole>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT arn, name, source_role, person, trust, policy_name, policy, created_ms FROM created_roles
                 WHERE (?1 IS NULL OR source_role = ?1) ORDER BY created_ms, arn",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![source_role], |r| {
                Ok(CreatedRole {
                    arn: r.get(0)?,
                    name: r.get(1)?,
                    source_role: r.get(2)?,
                    person: r.get(3)?,
                    trust: r.get(4)?,
                    policy_name: r.get(5)?,
                    policy: r.get(6)?,
                    created_ms: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Forget a created role (after it was deleted).
    pub fn created_role_forget(&self, arn: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM created_roles WHERE arn = ?1", params![arn])
            .map_err(self.err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        v.iter()
            .map(|(u, g)| (u.to_string(), g.to_string()))
            .collect()
    }

    #[test]
    fn memberships_age_from_first_sighting_and_restart_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let first = s
            .observe_memberships("d.json", &set(&[("alice", "pay")]), 100)
            .unwrap();
        let alice = first[&("alice".into(), "pay".into())];
        assert_eq!(
            alice,
            MembershipSeen {
                first_seen_ms: 100,
                appeared: false,
                new: true
            },
            "there when tracking began: at least that old"
        );
        let second = s
            .observe_memberships("d.json", &set(&[("alice", "pay"), ("bob", "pay")]), 200)
            .unwrap();
        assert_eq!(second[&("alice".into(), "pay".into())].first_seen_ms, 100);
        assert!(!second[&("alice".into(), "pay".into())].new);
        let bob = second[&("bob".into(), "pay".into())];
        assert!(bob.appeared && bob.new && bob.first_seen_ms == 200);
        // alice leaves and comes back: her membership is new again, not 100 old.
        s.observe_memberships("d.json", &set(&[("bob", "pay")]), 300)
            .unwrap();
        let back = s
            .observe_memberships("d.json", &set(&[("alice", "pay"), ("bob", "pay")]), 400)
            .unwrap();
        let alice = back[&("alice".into(), "pay".into())];
        assert!(alice.appeared && alice.first_seen_ms == 400);
        // Another directory file is tracked on its own.
        let other = s
            .observe_memberships("e.json", &set(&[("bob", "pay")]), 500)
            .unwrap();
        assert!(!other[&("bob".into(), "pay".into())].appeared);
        assert_eq!(
            s.observe_memberships("d.json", &set(&[("bob", "pay")]), 600)
                .unwrap()[&("bob".into(), "pay".into())]
                .first_seen_ms,
            200
        );
    }

    #[test]
    fn created_roles_are_recorded_listed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let role = |arn: &str, source: &str, t: i64| CreatedRole {
            arn: arn.into(),
            name: arn.rsplit('/').next().unwrap().into(),
            source_role: source.into(),
            person: "alice".into(),
            trust: "{}".into(),
            policy_name: "p".into(),
            policy: "{}".into(),
            created_ms: t,
        };
        s.created_role_record(&role("arn:aws:iam::1:role/b", "arn:aws:iam::1:role/s", 2))
            .unwrap();
        s.created_role_record(&role("arn:aws:iam::1:role/a", "arn:aws:iam::1:role/s", 1))
            .unwrap();
        s.created_role_record(&role("arn:aws:iam::1:role/c", "arn:aws:iam::1:role/t", 3))
            .unwrap();
        // Recording again keeps the first record.
        s.created_role_record(&role("arn:aws:iam::1:role/a", "arn:aws:iam::1:role/s", 9))
            .unwrap();
        let of_s = s.created_roles(Some("arn:aws:iam::1:role/s")).unwrap();
        assert_eq!(
            of_s.iter()
                .map(|r| (r.name.as_str(), r.created_ms))
                .collect::<Vec<_>>(),
            [("a", 1), ("b", 2)]
        );
        assert_eq!(s.created_roles(None).unwrap().len(), 3);
        s.created_role_forget("arn:aws:iam::1:role/a").unwrap();
        assert_eq!(
            s.created_roles(Some("arn:aws:iam::1:role/s"))
                .unwrap()
                .len(),
            1
        );
    }

    /// Schema 7: a version 6 file keeps its audit rows (their IdP groups unknown) and gets
    /// the new tables.
    #[test]
    fn a_version_6_file_keeps_its_audit_and_learns_idp_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v6.sqlite");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "CREATE TABLE credwarden_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO credwarden_meta VALUES ('schema_version', '6');
                 CREATE TABLE emitted_findings (id TEXT PRIMARY KEY, detector TEXT NOT NULL,
                     time TEXT NOT NULL, emitted_at INTEGER NOT NULL);
                 CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,
                     finished_at INTEGER, records INTEGER, findings INTEGER,
                     input_errors INTEGER);
                 {} {} {} {} {} {} {}
                 INSERT INTO broker_audit (time_ms, request_id, user, groups, client_ip, decision, reason)
                     VALUES (5, 'r1', 'alice', 'pay', '10.0.0.1', 'granted', '');",
                crate::SCHEMA_V2,
                crate::SCHEMA_V4,
                crate::SCHEMA_V5,
                crate::SPOOL_ATTEMPTS,
                crate::SPOOL_DESTINATION,
                crate::DEAD_DESTINATION,
                crate::SCHEMA_V6
            ))
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), crate::SCHEMA_VERSION);
        let old = s.audit_entries(Some("alice"), 10).unwrap();
        assert_eq!((old.len(), old[0].idp_groups.clone()), (1, None));
        s.audit_append_batch(&[crate::AuditEntry {
            time_ms: 6,
            user: "alice".into(),
            groups: "pay,okta-admins".into(),
            idp_groups: Some("okta-admins".into()),
            decision: "granted".into(),
            ..Default::default()
        }])
        .unwrap();
        assert_eq!(
            s.audit_entries(Some("alice"), 1).unwrap()[0]
                .idp_groups
                .as_deref(),
            Some("okta-admins")
        );
        assert!(s
            .observe_memberships("d", &set(&[("alice", "pay")]), 1)
            .is_ok());
    }
}
