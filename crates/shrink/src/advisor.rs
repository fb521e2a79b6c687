//! IAM Access Advisor (`get-service-last-accessed-details`) for one role: when each service
//! (and, for an action-level job, each tracked action) was last used.

use std::collections::BTreeMap;

use serde_json::Value;

/// Service-level Access Advisor for one role (`get-service-last-accessed-details` JSON).
#[derive(Clone, Debug, Default)]
pub struct AccessAdvisor {
    /// Complete: the job finished and the result is not truncated.
    pub complete: bool,
    /// Namespace → last authenticated (ms), `None` when never.
    pub services: BTreeMap<String, Option<i64>>,
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
        let mut services = BTreeMap::new();
        for s in list {
            let ns = s
                .get("ServiceNamespace")
                .and_then(Value::as_str)
                .ok_or("a service without ServiceNamespace")?;
            let last = match s.get("LastAuthenticated") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_str()
                        .and_then(iam::condition::parse_date)
                        .ok_or_else(|| format!("{ns}: LastAuthenticated {v} is not a date"))?,
                ),
            };
            services.insert(ns.to_owned(), last);
        }
        Ok(AccessAdvisor {
            complete: status_ok && !truncated,
            services,
        })
    }
}
