//! The broker's access requests and the memberships approved ones became (schema 9).
//!
//! A request is `pending` until an approver decides it, once: the decision is a conditional
//! update of a pending row, so two approvers (or two broker replicas) deciding at once make
//! one decision and one membership, and the other learns it was decided already. The decision,
//! the membership and the audit row are one transaction: there is no membership without its
//! audit row, and no audit row of a decision that did not happen.
//!
//! A membership holds until `expires_ms`; the broker ignores it afterwards and `access prune`
//! deletes it. Approving a group the user already holds keeps the later expiry.

use rusqlite::{params, OptionalExtension, Row};

use crate::{audit_insert, sqlite_err, AuditEntry, Store, StoreError};

/// The longest reason (and decision comment) kept, in bytes.
pub const MAX_REASON: usize = 1024;

/// One access request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccessRequest {
    pub id: String,
    pub user: String,
    pub group: String,
    pub reason: String,
    /// How long the membership lasts once approved (from the approval).
    pub duration_seconds: i64,
    /// `pending`, `approved` or `denied`.
    pub status: String,
    pub created_ms: i64,
    pub decided_by: Option<String>,
    pub decided_ms: Option<i64>,
    pub comment: Option<String>,
}

impl AccessRequest {
    /// The membership approving this request by `by` at `now_ms` grants: for the requested
    /// duration from the approval.
    pub fn membership(&self, by: &str, now_ms: i64) -> Membership {
        Membership {
            user: self.user.clone(),
            group: self.group.clone(),
            granted_by: by.to_owned(),
            request_id: Some(self.id.clone()),
            since_ms: now_ms,
            expires_ms: now_ms.saturating_add(self.duration_seconds.saturating_mul(1000)),
        }
    }
}

/// A group membership an approved request granted, until `expires_ms`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Membership {
    pub user: String,
    pub group: String,
    pub granted_by: String,
    /// The request it came from (none for one recorded otherwise).
    pub request_id: Option<String>,
    pub since_ms: i64,
    pub expires_ms: i64,
}

/// What an approver decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    /// The request's status after this decision.
    pub fn status(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Deny => "denied",
        }
    }
}

/// What became of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decided {
    /// This call decided the request; with the membership an approval granted.
    Done {
        request: AccessRequest,
        membership: Option<Membership>,
    },
    /// Nothing changed: the request was decided already (as it now stands), or it is the
    /// decider's own (nobody decides their own request).
    Unchanged(AccessRequest),
    /// No request has this id.
    Missing,
}

/// Which requests a listing shows.
#[derive(Clone, Copy, Debug)]
pub enum RequestScope<'a> {
    /// Every request (an admin's view).
    All,
    /// `user`'s own requests and requests for any of `groups` (those the caller approves).
    Visible { user: &'a str, groups: &'a [String] },
}

const REQUEST_COLUMNS: &str =
    "id, user, grp, reason, duration_seconds, status, created_ms, decided_by, decided_ms, comment";

fn request_row(r: &Row<'_>) -> rusqlite::Result<AccessRequest> {
    Ok(AccessRequest {
        id: r.get(0)?,
        user: r.get(1)?,
        group: r.get(2)?,
        reason: r.get(3)?,
        duration_seconds: r.get(4)?,
        status: r.get(5)?,
        created_ms: r.get(6)?,
        decided_by: r.get(7)?,
        decided_ms: r.get(8)?,
        comment: r.get(9)?,
    })
}

fn membership_row(r: &Row<'_>) -> rusqlite::Result<Membership> {
    Ok(Membership {
        user: r.get(0)?,
        group: r.get(1)?,
        granted_by: r.get(2)?,
        request_id: r.get(3)?,
        since_ms: r.get(4)?,
        expires_ms: r.get(5)?,
    })
}

const MEMBERSHIP_COLUMNS: &str = "user, grp, granted_by, request_id, since_ms, expires_ms";

/// Record `m`, or extend the user's membership of the group to the later expiry.
fn grant(conn: &rusqlite::Connection, m: &Membership) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO granted_memberships (user, grp, granted_by, request_id, since_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (user, grp) DO UPDATE SET granted_by = excluded.granted_by,
         request_id = excluded.request_id, since_ms = excluded.since_ms,
         expires_ms = max(expires_ms, excluded.expires_ms)",
        params![
            m.user,
            m.group,
            m.granted_by,
            m.request_id,
            m.since_ms,
            m.expires_ms
        ],
    )?;
    Ok(())
}

impl Store {
    /// Record a new request (status `pending`) and its audit row in one transaction.
    pub fn access_request_create(
        &mut self,
        r: &AccessRequest,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO access_requests (id, user, grp, reason, duration_seconds, status, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
            params![r.id, r.user, r.group, r.reason, r.duration_seconds, r.created_ms],
        )
        .map_err(err)?;
        audit_insert(&tx, audit).map_err(err)?;
        tx.commit().map_err(err)
    }

    pub fn access_request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = ?1"),
                params![id],
                request_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// Requests in `scope` (with `status`, when given), newest first, at most `limit`.
    pub fn access_requests(
        &self,
        scope: RequestScope<'_>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let (all, user, groups) = match scope {
            RequestScope::All => (true, "", String::new()),
            // Newline-framed: a requested group never holds a control character (the broker
            // refuses them), so `\ngroup\n` matches whole names only.
            RequestScope::Visible { user, groups } => {
                (false, user, format!("\n{}\n", groups.join("\n")))
            }
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM access_requests
                 WHERE (?1 OR user = ?2 OR instr(?3, char(10) || grp || char(10)) > 0)
                 AND (?4 IS NULL OR status = ?4)
                 ORDER BY created_ms DESC, id LIMIT ?5"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![all, user, groups, status, limit], request_row)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Decide a pending request as `by` at `now_ms`, with `audit` as its audit row: the
    /// status, an approval's membership (lasting the requested duration from now) and the
    /// audit row are committed together, or nothing is when the request is not pending or is
    /// `by`'s own.
    pub fn access_request_decide(
        &mut self,
        id: &str,
        decision: Decision,
        by: &str,
        comment: &str,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> Result<Decided, StoreError> {
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        let changed = tx
            .execute(
                "UPDATE access_requests SET status = ?2, decided_by = ?3, decided_ms = ?4, comment = ?5
                 WHERE id = ?1 AND status = 'pending' AND user <> ?3",
                params![id, decision.status(), by, now_ms, comment],
            )
            .map_err(err)?;
        let request = tx
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = ?1"),
                params![id],
                request_row,
            )
            .optional()
            .map_err(err)?;
        let Some(request) = request else {
            return Ok(Decided::Missing);
        };
        if changed == 0 {
            return Ok(Decided::Unchanged(request));
        }
        let membership = (decision == Decision::Approve).then(|| request.membership(by, now_ms));
        if let Some(m) = &membership {
            grant(&tx, m).map_err(err)?;
        }
        audit_insert(&tx, audit).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Decided::Done {
            request,
            membership,
        })
    }

    /// Record a membership directly (an import, a test): as an approval records it.
    pub fn membership_grant(&mut self, m: &Membership) -> Result<(), StoreError> {
        grant(&self.conn, m).map_err(self.err())
    }

    /// `user`'s memberships that have not expired at `now_ms`.
    pub fn memberships_of(&self, user: &str, now_ms: i64) -> Result<Vec<Membership>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {MEMBERSHIP_COLUMNS} FROM granted_memberships WHERE user = ?1 AND expires_ms > ?2 ORDER BY grp"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![user, now_ms], membership_row)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Every recorded membership, expired ones included.
    pub fn memberships(&self) -> Result<Vec<Membership>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {MEMBERSHIP_COLUMNS} FROM granted_memberships ORDER BY user, grp"
            ))
            .map_err(self.err())?;
        let rows = stmt.query_map([], membership_row).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Delete each of `memberships` that is still as given (same grant time and expiry): one
    /// approved again since it was read is kept. Returns how many were deleted.
    pub fn memberships_remove(&mut self, memberships: &[Membership]) -> Result<usize, StoreError> {
        let err = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(err)?;
        let mut n = 0;
        for m in memberships {
            n += tx
                .execute(
                    "DELETE FROM granted_memberships WHERE user = ?1 AND grp = ?2 AND since_ms = ?3 AND expires_ms = ?4",
                    params![m.user, m.group, m.since_ms, m.expires_ms],
                )
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, user: &str, group: &str) -> AccessRequest {
        AccessRequest {
            id: id.into(),
            user: user.into(),
            group: group.into(),
            reason: "on call".into(),
            duration_seconds: 3600,
            status: "pending".into(),
            created_ms: 1_000,
            decided_by: None,
            decided_ms: None,
            comment: None,
        }
    }

    fn audit(user: &str, decision: &str) -> AuditEntry {
        AuditEntry {
            time_ms: 1,
            user: user.into(),
            decision: decision.into(),
            ..Default::default()
        }
    }

    fn decisions(s: &Store) -> Vec<(String, String)> {
        s.audit_entries(None, 100)
            .unwrap()
            .into_iter()
            .map(|e| (e.user, e.decision))
            .collect()
    }

    #[test]
    fn a_request_is_decided_once_and_an_approval_is_a_membership_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        s.access_request_create(
            &request("r1", "alice", "payments"),
            &audit("alice", "access-requested"),
        )
        .unwrap();
        s.access_request_create(
            &request("r2", "dave", "search"),
            &audit("dave", "access-requested"),
        )
        .unwrap();
        // The requester cannot decide their own: nothing changes, nothing is audited.
        let own = s
            .access_request_decide(
                "r1",
                Decision::Approve,
                "alice",
                "",
                5_000,
                &audit("alice", "access-approved"),
            )
            .unwrap();
        assert!(
            matches!(&own, Decided::Unchanged(r) if r.status == "pending"),
            "{own:?}"
        );
        assert!(s.memberships_of("alice", 5_000).unwrap().is_empty());

        let done = s
            .access_request_decide(
                "r1",
                Decision::Approve,
                "carol",
                "ok",
                5_000,
                &audit("carol", "access-approved"),
            )
            .unwrap();
        let Decided::Done {
            request,
            membership: Some(m),
        } = done
        else {
            panic!("{done:?}")
        };
        assert_eq!(request.status, "approved");
        assert_eq!(request.decided_by.as_deref(), Some("carol"));
        assert_eq!((m.since_ms, m.expires_ms), (5_000, 5_000 + 3_600_000));
        // Decided already: a second approval (another replica) and a denial change nothing.
        for d in [Decision::Approve, Decision::Deny] {
            let again = s
                .access_request_decide("r1", d, "erin", "", 6_000, &audit("erin", "x"))
                .unwrap();
            assert!(
                matches!(&again, Decided::Unchanged(r) if r.decided_by.as_deref() == Some("carol")),
                "{again:?}"
            );
        }
        assert_eq!(
            s.access_request_decide(
                "nope",
                Decision::Deny,
                "carol",
                "",
                6_000,
                &audit("carol", "x")
            )
            .unwrap(),
            Decided::Missing
        );
        assert_eq!(s.memberships_of("alice", 5_001).unwrap(), vec![m.clone()]);
        assert!(
            s.memberships_of("alice", m.expires_ms).unwrap().is_empty(),
            "expired"
        );

        let denied = s
            .access_request_decide(
                "r2",
                Decision::Deny,
                "carol",
                "no",
                7_000,
                &audit("carol", "access-denied"),
            )
            .unwrap();
        assert!(matches!(
            denied,
            Decided::Done {
                membership: None,
                ..
            }
        ));
        assert!(s.memberships_of("dave", 7_000).unwrap().is_empty());
        // One audit row per request and per decision that happened, none for the others.
        assert_eq!(
            decisions(&s),
            [
                ("carol", "access-denied"),
                ("carol", "access-approved"),
                ("dave", "access-requested"),
                ("alice", "access-requested")
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );

        // Scopes: an approver of payments sees alice's; dave sees his own; all sees both.
        let ids = |scope, status| {
            s.access_requests(scope, status, 100)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        let payments = ["payments".to_owned()];
        assert_eq!(
            ids(
                RequestScope::Visible {
                    user: "carol",
                    groups: &payments
                },
                None
            ),
            ["r1"]
        );
        assert_eq!(
            ids(
                RequestScope::Visible {
                    user: "dave",
                    groups: &[]
                },
                None
            ),
            ["r2"]
        );
        assert_eq!(ids(RequestScope::All, Some("denied")), ["r2"]);
        assert!(ids(RequestScope::All, Some("pending")).is_empty());
    }

    #[test]
    fn memberships_extend_and_are_removed_only_while_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let m = Membership {
            user: "alice".into(),
            group: "payments".into(),
            granted_by: "carol".into(),
            request_id: None,
            since_ms: 10,
            expires_ms: 100,
        };
        s.membership_grant(&m).unwrap();
        // A shorter grant does not cut a longer one short.
        s.membership_grant(&Membership {
            since_ms: 20,
            expires_ms: 50,
            ..m.clone()
        })
        .unwrap();
        let now = s.memberships().unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!((now[0].since_ms, now[0].expires_ms), (20, 100));
        // Removing what was read before the change removes nothing.
        assert_eq!(s.memberships_remove(&[m]).unwrap(), 0);
        assert_eq!(s.memberships_remove(&now).unwrap(), 1);
        assert!(s.memberships().unwrap().is_empty());
    }
}
