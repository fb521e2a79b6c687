//! `recon-call`: an attacker's first steps by a principal that never made them.

mod common;

use std::path::PathBuf;

use common::{records, run_detector};

use cloudtrail::{decode_source, discover, EventTime, Record};
use detect::{Finding, ReconCallDetector, ReconConfig};
use serde_json::json;

fn call(min: i64, id: &str, source: &str, name: &str) -> serde_json::Value {
    let t = EventTime::parse("2024-08-01T00:00:00Z")
        .unwrap()
        .plus_millis(min * 60_000);
    json!({"eventTime": t.to_string(), "eventSource": source, "eventName": name, "eventID": id, "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.23", "userAgent": "aws-cli/2.15", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIAAPP", "arn": "arn:aws:sts::111122223333:assumed-role/app/i-0123456789abcdef0",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/app"}}}})
}

fn run(records: &[Record], learning_min: i64) -> Vec<Finding> {
    run_detector(
        Box::new(ReconCallDetector::new(ReconConfig {
            learning_ms: learning_min * 60_000,
            ..Default::default()
        })),
        records,
    )
}

fn daily_habit() -> Vec<serde_json::Value> {
    (0..120)
        .map(|i| call(i, &format!("h{i}"), "dynamodb.amazonaws.com", "GetItem"))
        .collect()
}

#[test]
fn after_learning_a_first_recon_call_is_high_and_reported_once() {
    let mut v = daily_habit();
    v.push(call(130, "r1", "sts.amazonaws.com", "GetCallerIdentity"));
    v.push(call(131, "r2", "sts.amazonaws.com", "GetCallerIdentity"));
    v.push(call(132, "r3", "s3.amazonaws.com", "ListBuckets"));
    v.push(call(200, "r4", "iam.amazonaws.com", "ListUsers"));
    let f = run(&records(&v), 60);
    assert_eq!(f.len(), 2, "one finding per burst of first steps: {f:#?}");
    assert_eq!(f[0].event_ids, vec!["r1", "r3"]);
    assert_eq!(
        f[0].principal.as_deref(),
        Some("arn:aws:iam::111122223333:role/app")
    );
    assert_eq!(
        f[0].details["actions"],
        json!(["sts:GetCallerIdentity", "s3:ListBuckets"])
    );
    assert_eq!(f[1].details["actions"], json!(["iam:ListUsers"]));
}

#[test]
fn during_learning_recon_calls_are_learned_not_reported() {
    let mut v = daily_habit();
    v.push(call(30, "r0", "sts.amazonaws.com", "GetCallerIdentity"));
    v.push(call(130, "r1", "sts.amazonaws.com", "GetCallerIdentity"));
    assert!(run(&records(&v), 60).is_empty());
    // The default window is 14 days: two hours of habit teach nothing yet.
    let mut v = daily_habit();
    v.push(call(130, "r1", "sts.amazonaws.com", "GetCallerIdentity"));
    assert!(run(&records(&v), 14 * 24 * 60).is_empty());
}

#[test]
fn the_earliest_call_is_the_one_reported_whatever_the_arrival_order() {
    let mut v = daily_habit();
    v.push(call(133, "late", "sts.amazonaws.com", "GetCallerIdentity"));
    v.push(call(130, "early", "sts.amazonaws.com", "GetCallerIdentity"));
    let f = run(&records(&v), 60);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].event_ids, vec!["early"]);
}

#[test]
fn service_calls_on_the_principals_behalf_are_not_its_recon() {
    let mut v = daily_habit();
    let mut c = call(130, "svc", "sts.amazonaws.com", "GetCallerIdentity");
    c["sourceIPAddress"] = json!("cloudformation.amazonaws.com");
    c["userIdentity"]["invokedBy"] = json!("cloudformation.amazonaws.com");
    v.push(c);
    assert!(run(&records(&v), 60).is_empty());
}

#[test]
fn stratus_first_steps_match_the_annotation_without_learning() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/stratus-red-team");
    let (sources, _) = discover(&[root.join("detonation-logs")]).unwrap();
    let mut recs = Vec::new();
    for s in &sources {
        decode_source(s, &mut |r| recs.push(r));
    }
    let f = run(&recs, 0);
    let annotated = std::fs::read_to_string(root.join("expected_findings.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("recon_first_step"))
        .count();
    assert_eq!(annotated, 3);
    let actions: Vec<&str> = f
        .iter()
        .flat_map(|f| {
            f.details["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
        })
        .collect();
    let whoami = actions
        .iter()
        .filter(|a| **a == "sts:GetCallerIdentity")
        .count();
    assert_eq!(whoami, annotated, "{f:#?}");
    // Beyond the annotation, the secret-stealing techniques list secrets and parameters
    // first: attacker first steps too (every Stratus file is an attack).
    let mut others: Vec<&str> = actions
        .into_iter()
        .filter(|a| *a != "sts:GetCallerIdentity")
        .collect();
    others.sort_unstable();
    assert_eq!(
        others,
        ["secretsmanager:ListSecrets", "ssm:DescribeParameters"]
    );
}

#[test]
fn console_browsing_is_a_person_not_a_program() {
    let mut v = daily_habit();
    let mut c = call(130, "c1", "iam.amazonaws.com", "ListUsers");
    c["userAgent"] = json!("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Safari/537.36");
    v.push(c);
    assert!(run(&records(&v), 60).is_empty());
}
