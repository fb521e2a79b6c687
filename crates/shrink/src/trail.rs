//! What the trail records, from its own configuration: the proof that "not seen in
//! CloudTrail" means "not used".
//!
//! A role's silence in CloudTrail shows that it did not call an action only if the trail would
//! have written that call down — for the whole window, in every region, for the role's
//! account. That is a property of the trail's configuration (`describe-trails`,
//! `get-event-selectors` with basic or advanced selectors, `get-trail-status`), not of the
//! events that happen to be in the logs. This module reads that configuration (the AWS CLI's
//! JSON, or the same shape built live) and answers one question: which trail, if any,
//! provably recorded a given kind of event for an account throughout a window.
//!
//! Everything uncertain answers "not proven" with the reason: a selector field or operator it
//! does not model, a trail in one region only, logging started after the window began, a
//! delivery error, selectors never read. Proof is only ever given, never assumed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Why a trail configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}: not a trail configuration (expected the AWS CLI output of `cloudtrail describe-trails`, `get-event-selectors`, or `get-trail-status` given as TRAIL=FILE)")]
    NotTrail(String),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

/// `ReadWriteType` of a basic selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadWrite {
    All,
    ReadOnly,
    WriteOnly,
}

#[derive(Clone, Debug)]
struct BasicSelector {
    read_write: ReadWrite,
    management: bool,
    excluded_sources: Vec<String>,
    /// (resources.type, values)
    data: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug, Default)]
struct FieldSelector {
    field: String,
    equals: Vec<String>,
    not_equals: Vec<String>,
    /// StartsWith, EndsWith and their negations: never modelled, so never proof.
    other_operators: bool,
}

#[derive(Clone, Debug)]
enum Selectors {
    Basic(Vec<BasicSelector>),
    Advanced(Vec<Vec<FieldSelector>>),
}

#[derive(Clone, Debug)]
struct Status {
    is_logging: bool,
    start_logging_ms: Option<i64>,
    delivery_error: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Trail {
    arn: String,
    name: String,
    multi_region: bool,
    organization: bool,
    selectors: Option<Selectors>,
    status: Option<Status>,
}

/// The kind of event an action's call would be in CloudTrail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventKind {
    /// `s3.amazonaws.com`.
    pub source: String,
    /// The API name (`GetObject`): only ever matched for equality.
    pub name: String,
    /// `readOnly` as CloudTrail would write it, when known.
    pub read_only: Option<bool>,
    /// A data event of this `resources.type`; `None`: a management event.
    pub data_type: Option<String>,
}

/// The trails of an organisation or account.
#[derive(Clone, Debug, Default)]
pub struct TrailConfig {
    trails: BTreeMap<String, Trail>,
}

/// The event sources a management selector may exclude (the only two AWS allows).
const EXCLUDABLE: &[&str] = &["kms.amazonaws.com", "rdsdata.amazonaws.com"];

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// CLI v1 prints epoch seconds, v2 ISO 8601 strings: both are accepted.
fn time_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0) as i64),
        Value::String(s) => iam::condition::parse_date(s),
        _ => None,
    }
}

fn parse_basic(v: &Value) -> Result<BasicSelector, String> {
    let read_write = match v.get("ReadWriteType").and_then(Value::as_str) {
        None | Some("All") => ReadWrite::All,
        Some("ReadOnly") => ReadWrite::ReadOnly,
        Some("WriteOnly") => ReadWrite::WriteOnly,
        Some(other) => return Err(format!("ReadWriteType {other:?}")),
    };
    let data = v
        .get("DataResources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d.get("Type")?.as_str()?.to_owned(), strings(&d["Values"]))))
        .collect();
    Ok(BasicSelector {
        read_write,
        management: v
            .get("IncludeManagementEvents")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        excluded_sources: strings(&v["ExcludeManagementEventSources"]),
        data,
    })
}

fn parse_advanced(v: &Value) -> Vec<FieldSelector> {
    v.get("FieldSelectors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|f| FieldSelector {
            field: f["Field"].as_str().unwrap_or_default().to_owned(),
            equals: strings(&f["Equals"]),
            not_equals: strings(&f["NotEquals"]),
            other_operators: ["StartsWith", "EndsWith", "NotStartsWith", "NotEndsWith"]
                .iter()
                .any(|op| {
                    f.get(*op)
                        .and_then(Value::as_array)
                        .is_some_and(|a| !a.is_empty())
                }),
        })
        .collect()
}

impl TrailConfig {
    /// Read `describe-trails` or `get-event-selectors` output.
    pub fn add_file(&mut self, path: &Path) -> Result<(), TrailError> {
        let v = read_json(path)?;
        self.add_value(&path.display().to_string(), &v)
    }

    /// Read `get-trail-status` output for the trail `trail` (a name or ARN: the CLI's output
    /// does not say which trail it describes).
    pub fn add_status_file(&mut self, trail: &str, path: &Path) -> Result<(), TrailError> {
        let v = read_json(path)?;
        self.add_status(&path.display().to_string(), trail, &v)
    }

    /// Take one JSON document: `{"trailList": …}` or `{"TrailARN": …, "EventSelectors" |
    /// "AdvancedEventSelectors": …}`. `origin` names it in errors.
    pub fn add_value(&mut self, origin: &str, v: &Value) -> Result<(), TrailError> {
        let invalid = |m: String| TrailError::Invalid(origin.to_owned(), m);
        if let Some(list) = v.get("trailList").and_then(Value::as_array) {
            for t in list {
                let arn = t["TrailARN"]
                    .as_str()
                    .ok_or_else(|| invalid("a trail without TrailARN".into()))?;
                let entry = self.trails.entry(arn.to_owned()).or_default();
                entry.arn = arn.to_owned();
                entry.name = t["Name"].as_str().unwrap_or(arn).to_owned();
                entry.multi_region = t["IsMultiRegionTrail"].as_bool().unwrap_or(false);
                entry.organization = t["IsOrganizationTrail"].as_bool().unwrap_or(false);
            }
            return Ok(());
        }
        if let Some(arn) = v.get("TrailARN").and_then(Value::as_str) {
            let basic = v.get("EventSelectors").and_then(Value::as_array);
            let advanced = v.get("AdvancedEventSelectors").and_then(Value::as_array);
            let selectors = match (
                basic.filter(|b| !b.is_empty()),
                advanced.filter(|a| !a.is_empty()),
            ) {
                (Some(b), None) => Selectors::Basic(
                    b.iter()
                        .map(parse_basic)
                        .collect::<Result<_, _>>()
                        .map_err(invalid)?,
                ),
                (None, Some(a)) => Selectors::Advanced(a.iter().map(parse_advanced).collect()),
                // AWS returns one form or the other, never both and never neither (a trail
                // without selectors reports the default one): anything else is not understood.
                _ => {
                    return Err(invalid(
                        "selectors in neither or both forms (basic and advanced)".into(),
                    ))
                }
            };
            let entry = self.trails.entry(arn.to_owned()).or_default();
            entry.arn = arn.to_owned();
            if entry.name.is_empty() {
                entry.name = arn.rsplit('/').next().unwrap_or(arn).to_owned();
            }
            entry.selectors = Some(selectors);
            return Ok(());
        }
        Err(TrailError::NotTrail(origin.to_owned()))
    }

    /// Take `get-trail-status` output for `trail` (name or ARN of a trail already read).
    pub fn add_status(&mut self, origin: &str, trail: &str, v: &Value) -> Result<(), TrailError> {
        let Some(is_logging) = v.get("IsLogging").and_then(Value::as_bool) else {
            return Err(TrailError::NotTrail(origin.to_owned()));
        };
        let status = Status {
            is_logging,
            start_logging_ms: v.get("StartLoggingTime").and_then(time_ms),
            delivery_error: v
                .get("LatestDeliveryError")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
        };
        let found = self
            .trails
            .values_mut()
            .find(|t| t.arn == trail || t.name == trail)
            .ok_or_else(|| {
                TrailError::Invalid(
                    origin.to_owned(),
                    format!("status for trail {trail:?}, which no describe-trails output names"),
                )
            })?;
        found.status = Some(status);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.trails.is_empty()
    }

    /// One line per trail: what it is and whether it can prove anything.
    pub fn summary(&self) -> Vec<String> {
        self.trails
            .values()
            .map(|t| {
                let scope = match (t.organization, t.multi_region) {
                    (true, _) => "organisation",
                    (false, true) => "multi-region",
                    (false, false) => "one region",
                };
                let selectors = match &t.selectors {
                    None => "selectors not read",
                    Some(Selectors::Basic(_)) => "basic selectors",
                    Some(Selectors::Advanced(_)) => "advanced selectors",
                };
                let status = match &t.status {
                    None => "status not read".to_owned(),
                    Some(s) if !s.is_logging => "not logging".to_owned(),
                    Some(s) => match s.start_logging_ms {
                        Some(ms) => format!("logging since {}", credwarden_core::EventTime(ms)),
                        None => "logging (start unknown)".to_owned(),
                    },
                };
                format!("{} ({scope}, {selectors}, {status})", t.name)
            })
            .collect()
    }

    /// The trail that recorded events of `kind` for `account` throughout the window starting
    /// at `since_ms`: `Ok(trail name)`, or `Err(why none can be shown to)`.
    pub fn proves(&self, account: &str, kind: &EventKind, since_ms: i64) -> Result<String, String> {
        if self.trails.is_empty() {
            return Err("no trail configuration given (--trail-config)".into());
        }
        let mut why = Vec::new();
        for t in self.trails.values() {
            match t.proves(account, kind, since_ms) {
                Ok(()) => return Ok(t.name.clone()),
                Err(e) => why.push(format!("{}: {e}", t.name)),
            }
        }
        Err(why.join("; "))
    }
}

impl Trail {
    fn proves(&self, account: &str, kind: &EventKind, since_ms: i64) -> Result<(), String> {
        let trail_account = credwarden_core::account::arn_account(&self.arn).unwrap_or_default();
        if !self.organization && trail_account != account {
            return Err(format!(
                "a trail of account {trail_account}, not an organisation trail"
            ));
        }
        // A single-region trail does not see calls made in the other regions (nor sessions
        // issued by regional STS endpoints there).
        if !self.multi_region && !self.organization {
            return Err("records one region only".into());
        }
        let Some(status) = &self.status else {
            return Err("its status (get-trail-status) was not read".into());
        };
        if !status.is_logging {
            return Err("not logging".into());
        }
        if let Some(e) = &status.delivery_error {
            return Err(format!("delivery error: {e}"));
        }
        // Any stop and restart inside the window would have moved StartLoggingTime later.
        match status.start_logging_ms {
            Some(start) if start <= since_ms => {}
            Some(start) => {
                return Err(format!(
                    "logging only since {}",
                    credwarden_core::EventTime(start)
                ))
            }
            None => return Err("the start of logging is unknown".into()),
        }
        match &self.selectors {
            None => Err("its event selectors (get-event-selectors) were not read".into()),
            Some(Selectors::Basic(list)) => {
                if list.iter().any(|s| basic_records(s, kind)) {
                    Ok(())
                } else {
                    Err("no basic selector records this event".into())
                }
            }
            Some(Selectors::Advanced(list)) => {
                if list.iter().any(|s| advanced_records(s, kind)) {
                    Ok(())
                } else {
                    Err("no advanced selector provably records this event".into())
                }
            }
        }
    }
}

fn read_write_matches(rw: ReadWrite, read_only: Option<bool>) -> bool {
    match rw {
        ReadWrite::All => true,
        ReadWrite::ReadOnly => read_only == Some(true),
        ReadWrite::WriteOnly => read_only == Some(false),
    }
}

/// A basic data resource value that covers every resource of its type: `arn:aws:s3`,
/// `arn:aws:lambda`, `arn:aws:dynamodb` (the partition and service alone).
fn covers_all(value: &str) -> bool {
    let parts: Vec<&str> = value.trim_end_matches(':').split(':').collect();
    parts.len() == 3 && parts[0] == "arn" || value == "arn:aws:s3:::"
}

fn basic_records(s: &BasicSelector, kind: &EventKind) -> bool {
    if !read_write_matches(s.read_write, kind.read_only) {
        return false;
    }
    match &kind.data_type {
        None => {
            s.management
                // Only the two sources AWS lets a selector exclude are understood; a list
                // naming anything else is not a configuration this reads.
                && s.excluded_sources.iter().all(|e| EXCLUDABLE.contains(&e.as_str()))
                && !s.excluded_sources.contains(&kind.source)
        }
        Some(t) => s
            .data
            .iter()
            .any(|(ty, values)| ty == t && values.iter().any(|v| covers_all(v))),
    }
}

fn advanced_records(fields: &[FieldSelector], kind: &EventKind) -> bool {
    let category = if kind.data_type.is_some() {
        "Data"
    } else {
        "Management"
    };
    let mut saw_category = false;
    for f in fields {
        if f.other_operators {
            return false;
        }
        let ok = match f.field.as_str() {
            "eventCategory" => {
                saw_category = true;
                f.not_equals.is_empty() && f.equals.iter().any(|c| c == category)
            }
            "readOnly" => {
                f.not_equals.is_empty()
                    && (f.equals.is_empty()
                        || kind
                            .read_only
                            .is_some_and(|ro| f.equals.iter().any(|v| v == &ro.to_string())))
            }
            "resources.type" => {
                f.not_equals.is_empty()
                    && kind
                        .data_type
                        .as_ref()
                        .is_some_and(|t| f.equals.iter().any(|v| v == t))
            }
            // Management selectors may only exclude KMS and RDS Data API events; any other
            // condition on the source (or any on a data selector) is not modelled.
            "eventSource" => {
                kind.data_type.is_none()
                    && f.equals.is_empty()
                    && f.not_equals
                        .iter()
                        .all(|e| EXCLUDABLE.contains(&e.as_str()))
                    && !f.not_equals.contains(&kind.source)
            }
            // Only a positive list can be trusted: a negative one might exclude this call
            // under an API name that differs from the action's.
            "eventName" => f.not_equals.is_empty() && f.equals.contains(&kind.name),
            // resources.ARN and every newer field narrow by things an action does not say.
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    saw_category
}

fn read_json(path: &Path) -> Result<Value, TrailError> {
    let bytes = std::fs::read(path).map_err(|source| TrailError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| TrailError::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:cloudtrail:us-east-1:111122223333:trail/org";
    const SINCE: i64 = 1_700_000_000_000;

    fn trail(selectors: Value, status: Value, describe: Value) -> TrailConfig {
        let mut c = TrailConfig::default();
        c.add_value("describe", &json!({ "trailList": [describe] }))
            .unwrap();
        c.add_value("selectors", &selectors).unwrap();
        c.add_status("status", "org", &status).unwrap();
        c
    }

    fn org_trail(selectors: Value) -> TrailConfig {
        trail(
            selectors,
            json!({"IsLogging": true, "StartLoggingTime": (SINCE / 1000 - 86_400) as f64}),
            json!({"Name": "org", "TrailARN": ARN, "IsMultiRegionTrail": true, "IsOrganizationTrail": true}),
        )
    }

    fn management(source: &str, name: &str, read_only: bool) -> EventKind {
        EventKind {
            source: source.into(),
            name: name.into(),
            read_only: Some(read_only),
            data_type: None,
        }
    }

    fn data(ty: &str, name: &str, read_only: bool) -> EventKind {
        EventKind {
            source: "s3.amazonaws.com".into(),
            name: name.into(),
            read_only: Some(read_only),
            data_type: Some(ty.into()),
        }
    }

    #[test]
    fn basic_selectors_prove_management_events_except_excluded_sources() {
        let c = org_trail(json!({"TrailARN": ARN, "EventSelectors": [
            {"ReadWriteType": "All", "IncludeManagementEvents": true, "DataResources": [],
             "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]}));
        let ec2 = management("ec2.amazonaws.com", "DescribeInstances", true);
        assert_eq!(c.proves("444455556666", &ec2, SINCE), Ok("org".into()));
        let kms = management("kms.amazonaws.com", "Decrypt", true);
        assert!(c.proves("444455556666", &kms, SINCE).is_err());
        // Data events are not in it.
        let get = data("AWS::S3::Object", "GetObject", true);
        assert!(c.proves("444455556666", &get, SINCE).is_err());
    }

    #[test]
    fn write_only_selectors_prove_writes_only() {
        let c = org_trail(json!({"TrailARN": ARN, "EventSelectors": [
            {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": true}]}));
        assert!(c
            .proves(
                "1",
                &management("ec2.amazonaws.com", "RunInstances", false),
                SINCE
            )
            .is_ok());
        let read = management("ec2.amazonaws.com", "DescribeInstances", true);
        assert!(c.proves("1", &read, SINCE).is_err());
        // Read-only-ness unknown: never proven by a typed selector.
        let mut unknown = read.clone();
        unknown.read_only = None;
        assert!(c.proves("1", &unknown, SINCE).is_err());
    }

    #[test]
    fn data_events_need_a_selector_for_every_resource_of_their_type() {
        let all = org_trail(json!({"TrailARN": ARN, "EventSelectors": [
            {"ReadWriteType": "All", "IncludeManagementEvents": true,
             "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}));
        let get = data("AWS::S3::Object", "GetObject", true);
        assert!(all.proves("1", &get, SINCE).is_ok());
        let one_bucket = org_trail(json!({"TrailARN": ARN, "EventSelectors": [
            {"DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::logs/"]}]}]}));
        assert!(one_bucket.proves("1", &get, SINCE).is_err());
    }

    #[test]
    fn advanced_selectors_are_proof_only_where_every_condition_is_understood() {
        let c = org_trail(json!({"TrailARN": ARN, "AdvancedEventSelectors": [
            {"Name": "management", "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Management"]},
                {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com", "rdsdata.amazonaws.com"]}]},
            {"Name": "sqs", "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.type", "Equals": ["AWS::SQS::Queue"]}]},
            {"Name": "some buckets", "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::logs/"]}]}]}));
        assert!(c
            .proves(
                "1",
                &management("iam.amazonaws.com", "ListRoles", true),
                SINCE
            )
            .is_ok());
        assert!(c
            .proves(
                "1",
                &management("rdsdata.amazonaws.com", "ExecuteStatement", false),
                SINCE
            )
            .is_err());
        let send = EventKind {
            source: "sqs.amazonaws.com".into(),
            name: "SendMessage".into(),
            read_only: Some(false),
            data_type: Some("AWS::SQS::Queue".into()),
        };
        assert!(c.proves("1", &send, SINCE).is_ok());
        assert!(c
            .proves("1", &data("AWS::S3::Object", "GetObject", true), SINCE)
            .is_err());
        // A negative condition on event names proves nothing.
        let negative = org_trail(json!({"TrailARN": ARN, "AdvancedEventSelectors": [
            {"FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Management"]},
                {"Field": "eventName", "NotEquals": ["ListBuckets"]}]}]}));
        assert!(negative
            .proves(
                "1",
                &management("s3.amazonaws.com", "ListAllMyBuckets", true),
                SINCE
            )
            .is_err());
    }

    #[test]
    fn scope_and_logging_must_hold_for_the_whole_window() {
        let selectors = json!({"TrailARN": ARN, "EventSelectors": [{"ReadWriteType": "All"}]});
        let describe = json!({"Name": "org", "TrailARN": ARN, "IsMultiRegionTrail": true});
        let ec2 = management("ec2.amazonaws.com", "DescribeInstances", true);
        let logging = json!({"IsLogging": true, "StartLoggingTime": "2023-01-01T00:00:00Z"});
        // Not an organisation trail: the trail's own account only.
        let own = trail(selectors.clone(), logging.clone(), describe.clone());
        assert!(own.proves("111122223333", &ec2, SINCE).is_ok());
        assert!(own.proves("444455556666", &ec2, SINCE).is_err());
        // Logging restarted inside the window.
        let late = trail(
            selectors.clone(),
            json!({"IsLogging": true, "StartLoggingTime": (SINCE / 1000 + 60) as f64}),
            describe.clone(),
        );
        let e = late.proves("111122223333", &ec2, SINCE).unwrap_err();
        assert!(e.contains("logging only since"), "{e}");
        // Not logging, or a delivery error.
        let off = trail(
            selectors.clone(),
            json!({"IsLogging": false}),
            describe.clone(),
        );
        assert!(off.proves("111122223333", &ec2, SINCE).is_err());
        let failing = trail(
            selectors.clone(),
            json!({"IsLogging": true, "StartLoggingTime": 1.0, "LatestDeliveryError": "AccessDenied"}),
            describe.clone(),
        );
        assert!(failing.proves("111122223333", &ec2, SINCE).is_err());
        // One region only.
        let regional = trail(
            selectors,
            logging,
            json!({"Name": "org", "TrailARN": ARN, "IsMultiRegionTrail": false}),
        );
        assert!(regional.proves("111122223333", &ec2, SINCE).is_err());
    }

    #[test]
    fn files_that_are_not_trail_configuration_are_refused() {
        let mut c = TrailConfig::default();
        assert!(matches!(
            c.add_value("x", &json!({"Roles": []})),
            Err(TrailError::NotTrail(_))
        ));
        assert!(c
            .add_value(
                "x",
                &json!({"TrailARN": ARN, "EventSelectors": [], "AdvancedEventSelectors": []})
            )
            .is_err());
        assert!(c
            .add_status("s", "nope", &json!({"IsLogging": true}))
            .is_err());
    }
}
