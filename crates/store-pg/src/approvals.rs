//! Access requests and the memberships approved ones became, in PostgreSQL: the same
//! operations as the SQLite store's (`store::Store::access_request_decide` and the rest), so
//! that every replica sees a decision, and a membership, at its next request.
//!
//! A decision is a conditional update of a pending row: under PostgreSQL's row locking two
//! replicas approving at once make one decision (the second update finds the row no longer
//! pending and changes nothing), and the membership and the audit row are committed in the
//! same transaction as the decision.

use postgres::Row;
use store::{AccessRequest, AuditEntry, Decided, Decision, Membership, RequestScope};

use crate::{audit_insert, PgError, PgStore, AUDIT_INSERT};

const REQUEST_COLUMNS: &str = "id, user_name, grp, reason, duration_seconds, status, created_ms, decided_by, decided_ms, comment";
const MEMBERSHIP_COLUMNS: &str = "user_name, grp, granted_by, request_id, since_ms, expires_ms";

fn request_row(r: &Row) -> AccessRequest {
    AccessRequest {
        id: r.get(0),
        user: r.get(1),
        group: r.get(2),
        reason: r.get(3),
        duration_seconds: r.get(4),
        status: r.get(5),
        created_ms: r.get(6),
        decided_by: r.get(7),
        decided_ms: r.get(8),
        comment: r.get(9),
    }
}

fn membership_row(r: &Row) -> Membership {
    Membership {
        user: r.get(0),
        group: r.get(1),
        granted_by: r.get(2),
        request_id: r.get(3),
        since_ms: r.get(4),
        expires_ms: r.get(5),
    }
}

/// Record `m`, or extend the user's membership of the group to the later expiry.
fn grant(c: &mut impl postgres::GenericClient, m: &Membership) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO granted_memberships (user_name, grp, granted_by, request_id, since_ms, expires_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_name, grp) DO UPDATE SET granted_by = EXCLUDED.granted_by,
         request_id = EXCLUDED.request_id, since_ms = EXCLUDED.since_ms,
         expires_ms = GREATEST(granted_memberships.expires_ms, EXCLUDED.expires_ms)",
        &[
            &m.user,
            &m.group,
            &m.granted_by,
            &m.request_id,
            &m.since_ms,
            &m.expires_ms,
        ],
    )?;
    Ok(())
}

impl PgStore {
    /// Record a new request (status `pending`) and its audit row in one transaction.
    pub fn access_request_create(
        &mut self,
        r: &AccessRequest,
        audit: &AuditEntry,
    ) -> Result<(), PgError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO access_requests (id, user_name, grp, reason, duration_seconds, status, created_ms)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
                &[&r.id, &r.user, &r.group, &r.reason, &r.duration_seconds, &r.created_ms],
            )?;
            let stmt = tx.prepare(AUDIT_INSERT)?;
            audit_insert(&mut tx, &stmt, audit)?;
            tx.commit()
        })
    }

    pub fn access_request(&mut self, id: &str) -> Result<Option<AccessRequest>, PgError> {
        let row = self.run(|c| {
            c.query_opt(
                &format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1"),
                &[&id],
            )
        })?;
        Ok(row.as_ref().map(request_row))
    }

    /// Requests in `scope` (with `status`, when given), newest first, at most `limit`.
    pub fn access_requests(
        &mut self,
        scope: RequestScope<'_>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccessRequest>, PgError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let (all, user, groups): (bool, &str, Vec<String>) = match scope {
            RequestScope::All => (true, "", Vec::new()),
            RequestScope::Visible { user, groups } => (false, user, groups.to_vec()),
        };
        let rows = self.run(|c| {
            c.query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM access_requests
                     WHERE ($1 OR user_name = $2 OR grp = ANY($3))
                     AND ($4::TEXT IS NULL OR status = $4)
                     ORDER BY created_ms DESC, id LIMIT $5"
                ),
                &[&all, &user, &groups, &status, &limit],
            )
        })?;
        Ok(rows.iter().map(request_row).collect())
    }

    /// Decide a pending request, as `store::Store::access_request_decide` does.
    pub fn access_request_decide(
        &mut self,
        id: &str,
        decision: Decision,
        by: &str,
        comment: &str,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> Result<Decided, PgError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let changed = tx.query_opt(
                &format!(
                    "UPDATE access_requests SET status = $2, decided_by = $3, decided_ms = $4, comment = $5
                     WHERE id = $1 AND status = 'pending' AND user_name <> $3 RETURNING {REQUEST_COLUMNS}"
                ),
                &[&id, &decision.status(), &by, &now_ms, &comment],
            )?;
            let Some(row) = changed else {
                let now = tx.query_opt(
                    &format!("SELECT {REQUEST_COLUMNS} FROM access_requests WHERE id = $1"),
                    &[&id],
                )?;
                return Ok(match now {
                    Some(r) => Decided::Unchanged(request_row(&r)),
                    None => Decided::Missing,
                });
            };
            let request = request_row(&row);
            let membership =
                (decision == Decision::Approve).then(|| request.membership(by, now_ms));
            if let Some(m) = &membership {
                grant(&mut tx, m)?;
            }
            let stmt = tx.prepare(AUDIT_INSERT)?;
            audit_insert(&mut tx, &stmt, audit)?;
            tx.commit()?;
            Ok(Decided::Done {
                request,
                membership,
            })
        })
    }

    /// Record a membership directly (an import, a test): as an approval records it.
    pub fn membership_grant(&mut self, m: &Membership) -> Result<(), PgError> {
        self.run(|c| grant(c, m))
    }

    /// `user`'s memberships that have not expired at `now_ms`.
    pub fn memberships_of(&mut self, user: &str, now_ms: i64) -> Result<Vec<Membership>, PgError> {
        let rows = self.run(|c| {
            c.query(
                &format!(
                    "SELECT {MEMBERSHIP_COLUMNS} FROM granted_memberships
                     WHERE user_name = $1 AND expires_ms > $2 ORDER BY grp"
                ),
                &[&user, &now_ms],
            )
        })?;
        Ok(rows.iter().map(membership_row).collect())
    }

    /// Every recorded membership, expired ones included.
    pub fn memberships(&mut self) -> Result<Vec<Membership>, PgError> {
        let rows = self.run(|c| {
            c.query(
                &format!(
                    "SELECT {MEMBERSHIP_COLUMNS} FROM granted_memberships ORDER BY user_name, grp"
                ),
                &[],
            )
        })?;
        Ok(rows.iter().map(membership_row).collect())
    }

    /// Delete each of `memberships` that is still as given (same grant time and expiry): one
    /// approved again since it was read is kept. Returns how many were deleted.
    pub fn memberships_remove(&mut self, memberships: &[Membership]) -> Result<usize, PgError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let mut n = 0;
            for m in memberships {
                n += tx.execute(
                    "DELETE FROM granted_memberships WHERE user_name = $1 AND grp = $2
                     AND since_ms = $3 AND expires_ms = $4",
                    &[&m.user, &m.group, &m.since_ms, &m.expires_ms],
                )?;
            }
            tx.commit()?;
            Ok(n as usize)
        })
    }
}
