//! IAM Access Advisor (`get-service-last-accessed-details`) for one role: when each service
//! (and, for an action-level job, each tracked action) was last used.
//!
//! The same reader takes the AWS CLI's JSON from a file and the JSON that
//! `aws::Session::access_advisor` builds from the live API, so both are judged alike.
//!
//! Only what the report positively lists counts. AWS tracks just some actions (service
//! *management* actions of a growing list of services), and a service's
//! `TrackedActionsLastAccessed` is null both when nothing is tracked and when the role used
//! none of the tracked actions — so an action the report does not list is unknown, never
//! unused. A report that is not finished, or truncated, shows nothing at all.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// One role's Access Advisor report (`get-service-last-accessed-details` JSON).
#[derive(Clone, Debug, Default)]
pub struct AccessAdvisor {
    /// Complete: the job finished and the result is not truncated.
    pub complete: bool,
    /// Namespace → last authenticated (ms), `None` when never.
    pub services: BTreeMap<String, Option<i64>>,
    /// The job was `ACTION_LEVEL` (only then are `actions` filled).
    pub action_level: bool,
    /// When the job was created (ms): the report shows nothing after it, so a caller refuses a
    /// report much older than its window's end. `None` when the file does not say.
    pub created_ms: Option<i64>,
    /// Tracked action (`prefix:Name`, the prefix lower-case as IAM writes it) → last accessed
    /// (ms), `None` when listed without a time (tracked, not used in the tracking period).
    pub actions: BTreeMap<String, Option<i64>>,
    /// Namespaces whose entry carried a `TrackedActionsLastAccessed` list.
    pub action_namespaces: BTreeSet<String>,
}

fn date(v: Option<&Value>, what: &str) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(iam::condition::parse_date)
            .map(Some)
            .ok_or_else(|| format!("{what} {v} is not a date")),
    }
}

impl AccessAdvisor {
    pub fn parse(v: &Value) -> Result<AccessAdvisor, String> {
        let list = v
            .get("ServicesLastAccessed")
            .and_then(Value::as_array)
            .ok_or("no ServicesLastAccessed: not get-service-last-accessed-details output")?;
        // Only a finished job is complete; a file without JobStatus cannot show that it is.
        let status_ok = v.get("JobStatus").and_then(Value::as_str) == Some("COMPLETED");
        let truncated = v
            .get("IsTruncated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let action_level = v.get("JobType").and_then(Value::as_str) == Some("ACTION_LEVEL");
        let created_ms = date(v.get("JobCreationDate"), "JobCreationDate")?;
        let mut services = BTreeMap::new();
        let mut actions = BTreeMap::new();
        let mut action_namespaces = BTreeSet::new();
        for s in list {
            let ns = s
                .get("ServiceNamespace")
                .and_then(Value::as_str)
                .ok_or("a service without ServiceNamespace")?
                .to_ascii_lowercase();
            let last = date(
                s.get("LastAuthenticated"),
                &format!("{ns}: LastAuthenticated"),
            )?;
            services.insert(ns.clone(), last);
            // A SERVICE_LEVEL job has no action data; were a list there anyway, it could not
            // be told apart from a hand-edited file, so it is not read.
            let tracked = match s.get("TrackedActionsLastAccessed") {
                Some(Value::Array(t)) if action_level => t,
                None | Some(Value::Null) | Some(Value::Array(_)) => continue,
                Some(other) => {
                    return Err(format!(
                        "{ns}: TrackedActionsLastAccessed {other} is not a list"
                    ))
                }
            };
            action_namespaces.insert(ns.clone());
            for a in tracked {
                // Every member field is optional in the API model; a nameless one says
                // nothing about any action.
                let Some(name) = a.get("ActionName").and_then(Value::as_str) else {
                    continue;
                };
                let at = date(
                    a.get("LastAccessedTime"),
                    &format!("{ns}:{name}: LastAccessedTime"),
                )?;
                let key = format!("{ns}:{name}");
                // Listed twice (pages overlapping, files merged): the newest use wins.
                let e = actions.entry(key).or_insert(at);
                *e = (*e).max(at);
            }
        }
        Ok(AccessAdvisor {
            complete: status_ok && !truncated,
            services,
            action_level,
            created_ms,
            actions,
            action_namespaces,
        })
    }

    /// When the role last used `action` (`prefix:Name`, any case), at action level:
    /// `Some(Some(t))` tracked and last used at `t`; `Some(None)` tracked and not used in the
    /// tracking period; `None` unknown — the report is incomplete, not action level, or does
    /// not list the action (AWS may not track it).
    pub fn action_last(&self, action: &str) -> Option<Option<i64>> {
        if !self.complete || !self.action_level {
            return None;
        }
        let (prefix, name) = action.split_once(':')?;
        let prefix = prefix.to_ascii_lowercase();
        if let Some(last) = self.actions.get(&format!("{prefix}:{name}")) {
            return Some(*last);
        }
        // IAM action names are case-insensitive; the report writes them in their canonical
        // case, a policy may not.
        let from = format!("{prefix}:");
        self.actions
            .range(from.clone()..)
            .take_while(|(k, _)| k.starts_with(&from))
            .find(|(k, _)| k[from.len()..].eq_ignore_ascii_case(name))
            .map(|(_, last)| *last)
    }

    /// When the role last used any action of service `namespace`: `Some(Some(t))` at `t`,
    /// `Some(None)` listed and never used in the tracking period, `None` unknown (an
    /// incomplete report, or a service it does not list).
    pub fn service_last(&self, namespace: &str) -> Option<Option<i64>> {
        if !self.complete {
            return None;
        }
        self.services.get(&namespace.to_ascii_lowercase()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        iam::condition::parse_date(s).unwrap()
    }

    /// An action-level report as `aws iam get-service-last-accessed-details` prints it.
    const ACTION_LEVEL: &str = r#"{
        "JobStatus": "COMPLETED",
        "JobType": "ACTION_LEVEL",
        "JobCreationDate": "2026-12-05T09:14:02.118000+00:00",
        "JobCompletionDate": "2026-12-05T09:14:05.902000+00:00",
        "ServicesLastAccessed": [
            {"ServiceName": "Amazon Elastic Container Service", "ServiceNamespace": "ecs",
             "LastAuthenticated": "2026-12-04T22:31:00+00:00",
             "LastAuthenticatedEntity": "arn:aws:iam::123456789012:role/app",
             "LastAuthenticatedRegion": "eu-west-1", "TotalAuthenticatedEntities": 1},
            {"ServiceName": "Amazon Elastic Compute Cloud", "ServiceNamespace": "ec2",
             "LastAuthenticated": "2026-12-05T07:02:00+00:00",
             "LastAuthenticatedEntity": "arn:aws:iam::123456789012:role/app",
             "LastAuthenticatedRegion": "eu-west-1", "TotalAuthenticatedEntities": 1,
             "TrackedActionsLastAccessed": [
                {"ActionName": "DescribeInstances",
                 "LastAccessedEntity": "arn:aws:iam::123456789012:role/app",
                 "LastAccessedTime": "2026-12-05T07:02:00+00:00",
                 "LastAccessedRegion": "eu-west-1"},
                {"ActionName": "DescribeVolumes"}]},
            {"ServiceName": "Amazon Simple Storage Service", "ServiceNamespace": "s3",
             "LastAuthenticated": "2026-08-01T10:00:00Z", "TotalAuthenticatedEntities": 1,
             "TrackedActionsLastAccessed": [
                {"ActionName": "CreateBucket", "LastAccessedTime": "2026-08-01T10:00:00Z",
                 "LastAccessedRegion": "us-east-1"}]},
            {"ServiceName": "AWS Identity and Access Management", "ServiceNamespace": "iam",
             "TotalAuthenticatedEntities": 0}
        ],
        "IsTruncated": false
    }"#;

    fn report(text: &str) -> AccessAdvisor {
        AccessAdvisor::parse(&serde_json::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn action_level_report_is_read() {
        let a = report(ACTION_LEVEL);
        assert!(a.complete && a.action_level);
        assert_eq!(a.created_ms, Some(ms("2026-12-05T09:14:02.118Z")));
        assert_eq!(
            a.action_namespaces.iter().collect::<Vec<_>>(),
            ["ec2", "s3"]
        );
        assert_eq!(
            a.action_last("ec2:DescribeInstances"),
            Some(Some(ms("2026-12-05T07:02:00Z")))
        );
        // Listed without a time: tracked, not used.
        assert_eq!(a.action_last("ec2:DescribeVolumes"), Some(None));
        // Policies may spell actions in any case.
        assert_eq!(a.action_last("EC2:describevolumes"), Some(None));
        assert_eq!(
            a.action_last("s3:createbucket"),
            Some(Some(ms("2026-08-01T10:00:00Z")))
        );
        // The service is reported at action level, but this action is not listed: AWS may
        // not track it (data events such as s3:GetObject never are), so unknown.
        assert_eq!(a.action_last("s3:GetObject"), None);
        assert_eq!(a.action_last("ec2:TerminateInstances"), None);
        // Services without an action list, or not in the report at all.
        assert_eq!(a.action_last("ecs:RunTask"), None);
        assert_eq!(a.action_last("iam:PassRole"), None);
        assert_eq!(a.action_last("sqs:SendMessage"), None);
        assert_eq!(a.action_last("not-an-action"), None);
        assert_eq!(
            a.service_last("ecs"),
            Some(Some(ms("2026-12-04T22:31:00Z")))
        );
        assert_eq!(a.service_last("IAM"), Some(None));
        assert_eq!(a.service_last("sqs"), None);
    }

    #[test]
    fn incomplete_or_truncated_reports_show_nothing() {
        for (from, to) in [
            (
                r#""IsTruncated": false"#,
                r#""IsTruncated": true, "Marker": "AAIA""#,
            ),
            (
                r#""JobStatus": "COMPLETED""#,
                r#""JobStatus": "IN_PROGRESS""#,
            ),
            (r#""JobStatus": "COMPLETED""#, r#""JobStatus": "FAILED""#),
            (r#""JobStatus": "COMPLETED","#, ""),
        ] {
            let a = report(&ACTION_LEVEL.replace(from, to));
            assert!(!a.complete, "{to}");
            assert_eq!(a.action_last("ec2:DescribeVolumes"), None, "{to}");
            assert_eq!(a.action_last("ec2:DescribeInstances"), None, "{to}");
            assert_eq!(a.service_last("iam"), None, "{to}");
        }
    }

    #[test]
    fn service_level_report_has_no_actions() {
        let a = report(&ACTION_LEVEL.replace("ACTION_LEVEL", "SERVICE_LEVEL"));
        assert!(a.complete && !a.action_level);
        assert!(a.actions.is_empty() && a.action_namespaces.is_empty());
        assert_eq!(a.action_last("ec2:DescribeVolumes"), None);
        assert_eq!(a.service_last("iam"), Some(None));
        // The CLI's output of a service-level job (no JobType in older files) still reads.
        let old = report(
            r#"{"JobStatus": "COMPLETED", "IsTruncated": false, "ServicesLastAccessed": [
                {"ServiceName": "Amazon S3", "ServiceNamespace": "s3", "TotalAuthenticatedEntities": 0}]}"#,
        );
        assert!(old.complete && !old.action_level && old.created_ms.is_none());
        assert_eq!(old.service_last("s3"), Some(None));
    }

    #[test]
    fn bad_reports_are_refused() {
        for bad in [
            r#"{"JobStatus": "COMPLETED"}"#,
            r#"{"ServicesLastAccessed": [{"ServiceName": "x"}]}"#,
            r#"{"ServicesLastAccessed": [], "JobCreationDate": "yesterday"}"#,
            r#"{"JobType": "ACTION_LEVEL", "ServicesLastAccessed": [{"ServiceNamespace": "s3",
                "TrackedActionsLastAccessed": [{"ActionName": "CreateBucket", "LastAccessedTime": 12}]}]}"#,
            r#"{"JobType": "ACTION_LEVEL", "ServicesLastAccessed": [{"ServiceNamespace": "s3",
                "TrackedActionsLastAccessed": "CreateBucket"}]}"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(AccessAdvisor::parse(&v).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeated_actions_keep_the_newest_use() {
        let a = report(
            r#"{"JobStatus": "COMPLETED", "JobType": "ACTION_LEVEL", "IsTruncated": false,
                "ServicesLastAccessed": [{"ServiceNamespace": "ec2", "ServiceName": "EC2",
                  "TrackedActionsLastAccessed": [
                    {"ActionName": "RunInstances"},
                    {"ActionName": "RunInstances", "LastAccessedTime": "2026-11-01T00:00:00Z"},
                    {"ActionName": "RunInstances", "LastAccessedTime": "2026-10-01T00:00:00Z"},
                    {"LastAccessedTime": "2026-10-01T00:00:00Z"}]}]}"#,
        );
        assert_eq!(
            a.action_last("ec2:RunInstances"),
            Some(Some(ms("2026-11-01T00:00:00Z")))
        );
        assert_eq!(a.actions.len(), 1);
    }
}
