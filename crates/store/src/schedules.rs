//! Announced right-sizing plans (schema 8): what `shrink schedule` promised the roles' owners,
//! so that `shrink schedule list` can show what is coming, `cancel` can withdraw it, and
//! `shrink apply` refuses a withdrawn plan whoever runs it.

use rusqlite::{params, OptionalExtension};

use crate::{Store, StoreError};

/// One announced plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The plan's `schedule_id`.
    pub id: String,
    pub announced_ms: i64,
    /// From when the plan may be applied (RFC 3339, as announced).
    pub not_before: String,
    /// The end of the window the plan judged.
    pub window_end: String,
    /// The roles (ARNs) it changes.
    pub roles: Vec<String>,
    /// Where the announced plan was written.
    pub plan_file: String,
    pub cancelled_ms: Option<i64>,
    pub cancel_reason: Option<String>,
    pub applied_ms: Option<i64>,
}

impl Store {
    /// Record an announced plan. Announcing the same plan again keeps the first record.
    pub fn schedule_record(&self, s: &Schedule) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO shrink_schedules (id, announced_ms, not_before, window_end,
                 roles, plan_file) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.id,
                    s.announced_ms,
                    s.not_before,
                    s.window_end,
                    s.roles.join("\n"),
                    s.plan_file
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn schedules_where(
        &self,
        clause: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Schedule>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, announced_ms, not_before, window_end, roles, plan_file, cancelled_ms,
                 cancel_reason, applied_ms FROM shrink_schedules {clause} ORDER BY announced_ms, id"
            ))
            .map_err(self.err())?;
        let rows = stmt
            .query_map(args, |r| {
                let roles: String = r.get(4)?;
                Ok(Schedule {
                    id: r.get(0)?,
                    announced_ms: r.get(1)?,
                    not_before: r.get(2)?,
                    window_end: r.get(3)?,
                    // One ARN per line: an ARN holds no line break.
                    roles: roles.lines().map(str::to_owned).collect(),
                    plan_file: r.get(5)?,
                    cancelled_ms: r.get(6)?,
                    cancel_reason: r.get(7)?,
                    applied_ms: r.get(8)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Every recorded schedule, oldest first.
    pub fn schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.schedules_where("", &[])
    }

    /// The schedule `id` (a unique prefix of it is enough: ids are long hashes).
    pub fn schedule(&self, id: &str) -> Result<Vec<Schedule>, StoreError> {
        // A plain comparison of the prefix: LIKE would read `%` and `_` as wildcards.
        let len = id.chars().count() as i64;
        self.schedules_where("WHERE substr(id, 1, ?2) = ?1", &[&id, &len])
    }

    /// Withdraw a schedule; false if it was already cancelled.
    pub fn schedule_cancel(&self, id: &str, at_ms: i64, reason: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE shrink_schedules SET cancelled_ms = ?2, cancel_reason = ?3
                 WHERE id = ?1 AND cancelled_ms IS NULL",
                params![id, at_ms, reason],
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }

    /// Note that the schedule's plan was applied (the first time counts).
    pub fn schedule_applied(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE shrink_schedules SET applied_ms = ?2 WHERE id = ?1 AND applied_ms IS NULL",
                params![id, at_ms],
            )
            .optional()
            .map_err(self.err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(id: &str) -> Schedule {
        Schedule {
            id: id.into(),
            announced_ms: 1_000,
            not_before: "2027-06-08T00:00:00Z".into(),
            window_end: "2027-06-01T00:00:00Z".into(),
            roles: vec!["arn:aws:iam::123456789012:role/app".into()],
            plan_file: "announced.json".into(),
            cancelled_ms: None,
            cancel_reason: None,
            applied_ms: None,
        }
    }

    #[test]
    fn a_schedule_is_recorded_found_by_prefix_cancelled_once_and_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        store.schedule_record(&announced("abc123")).unwrap();
        store.schedule_record(&announced("abd456")).unwrap();
        // Announced again: the first record stays.
        let mut again = announced("abc123");
        again.announced_ms = 9_999;
        store.schedule_record(&again).unwrap();
        assert_eq!(store.schedules().unwrap().len(), 2);
        assert_eq!(store.schedule("abc").unwrap(), vec![announced("abc123")]);
        assert_eq!(store.schedule("ab").unwrap().len(), 2, "ambiguous prefix");
        assert!(store.schedule("a%").unwrap().is_empty(), "no wildcards");
        assert!(store
            .schedule_cancel("abc123", 2_000, "owners asked")
            .unwrap());
        assert!(!store.schedule_cancel("abc123", 3_000, "again").unwrap());
        store.schedule_applied("abd456", 4_000).unwrap();
        store.schedule_applied("abd456", 5_000).unwrap();
        let all = store.schedules().unwrap();
        assert_eq!(all[0].cancelled_ms, Some(2_000));
        assert_eq!(all[0].cancel_reason.as_deref(), Some("owners asked"));
        assert_eq!(all[1].applied_ms, Some(4_000));
    }
}
