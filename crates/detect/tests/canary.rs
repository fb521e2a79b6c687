//! `canary-resource`: any touch of a canary is critical; one finding per canary and caller.

mod common;

use cloudtrail::EventTime;
use common::{records, run_detector};
use detect::{CanaryConfig, CanaryDetector, Finding, Severity};
use serde_json::json;

fn call(min: i64, id: &str, key: &str) -> serde_json::Value {
    let t = EventTime::parse("2024-09-01T00:00:00Z")
        .unwrap()
        .plus_millis(min * 60_000);
    json!({"eventTime": t.to_string(), "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "eventID": id, "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.66", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/x", "accountId": "111122223333", "accessKeyId": key}})
}

fn run(values: &[serde_json::Value], canaries: &[&str]) -> Vec<Finding> {
    let cfg = CanaryConfig {
        canaries: canaries.iter().map(|s| s.to_string()).collect(),
        lateness_ms: 15 * 60_000,
    };
    run_detector(Box::new(CanaryDetector::new(cfg)), &records(values))
}

#[test]
fn a_honey_key_fires_once_per_caller_however_often_it_is_used() {
    let v: Vec<_> = (0..30)
        .map(|i| call(i, &format!("e{i}"), "AKIAHONEY0000000001"))
        .collect();
    let f = run(&v, &["AKIAHONEY0000000001"]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Critical);
    assert_eq!(f[0].event_ids, vec!["e0"]);
    assert!(run(&v, &[]).is_empty());
    assert!(run(&v, &["AKIAOTHER0000000001"]).is_empty());
}

#[test]
fn honey_buckets_match_resources_and_honey_roles_match_assume_role() {
    let mut get = call(0, "g1", "ASIAATTACKER");
    get["eventName"] = json!("GetObject");
    get["resources"] = json!([{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::corp-backup-archive-2019/db.sql"}, {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::corp-backup-archive-2019"}]);
    let f = run(&[get.clone()], &["arn:aws:s3:::corp-backup-archive-2019*"]);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].details["matched"],
        "arn:aws:s3:::corp-backup-archive-2019/db.sql"
    );
    assert!(run(&[get], &["arn:aws:s3:::other-bucket*"]).is_empty());

    let mut assume = call(1, "a1", "AKIAUSER");
    assume["eventSource"] = json!("sts.amazonaws.com");
    assume["eventName"] = json!("AssumeRole");
    assume["requestParameters"] = json!({"roleArn": "arn:aws:iam::111122223333:role/break-glass-canary", "roleSessionName": "x"});
    assume["responseElements"] =
        json!({"credentials": {"accessKeyId": "ASIANEW", "expiration": "2024-09-01T01:00:00Z"}});
    let f = run(&[assume], &["arn:aws:iam::*:role/*-canary"]);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].access_key_id.as_deref(), Some("AKIAUSER"));
}
