//! The baselines: unused-region, unused-service, new-role-behaviour.

mod common;

use std::path::PathBuf;

use common::{records, run_detector};

use cloudtrail::{EventTime, Record};
use detect::{Detector, Finding, Novelty, NoveltyConfig, NoveltyDetector, Severity};
use serde_json::json;

fn call(min: i64, id: &str, source: &str, name: &str, region: &str) -> serde_json::Value {
    let t = EventTime::parse("2024-10-01T00:00:00Z")
        .unwrap()
        .plus_millis(min * 60_000);
    json!({"eventTime": t.to_string(), "eventSource": source, "eventName": name, "eventID": id, "awsRegion": region,
        "sourceIPAddress": "198.51.100.23", "userAgent": "aws-sdk-go/1.44", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIAAPP", "arn": "arn:aws:sts::111122223333:assumed-role/app/s1",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/app"}}}})
}

fn run(kind: Novelty, records: &[Record]) -> Vec<Finding> {
    run_detector(
        Box::new(NoveltyDetector::new(
            kind,
            NoveltyConfig {
                learning_ms: 60 * 60_000,
                ..Default::default()
            },
        )),
        records,
    )
}

/// Two hours of an application's habit in us-east-1.
fn habit() -> Vec<serde_json::Value> {
    (0..120)
        .map(|i| {
            call(
                i,
                &format!("h{i}"),
                "dynamodb.amazonaws.com",
                if i % 2 == 0 { "GetItem" } else { "PutItem" },
                "us-east-1",
            )
        })
        .collect()
}

#[test]
fn a_spray_across_regions_is_one_high_finding_and_global_services_do_not_count() {
    let mut v = habit();
    v.push(call(
        5,
        "iam",
        "iam.amazonaws.com",
        "ListRoles",
        "us-east-1",
    ));
    v.push(call(130, "g1", "iam.amazonaws.com", "GetUser", "us-east-1"));
    v.push(call(
        130,
        "g2",
        "sts.amazonaws.com",
        "GetCallerIdentity",
        "us-east-1",
    ));
    for (i, r) in ["eu-north-1", "ap-south-1", "sa-east-1", "me-south-1"]
        .iter()
        .enumerate()
    {
        v.push(call(
            131 + i as i64,
            &format!("r{i}"),
            "ec2.amazonaws.com",
            "DescribeInstances",
            r,
        ));
    }
    let f = run(Novelty::UnusedRegion, &records(&v));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].severity, Severity::High);
    assert_eq!(
        f[0].details["new"],
        json!(["eu-north-1", "ap-south-1", "sa-east-1", "me-south-1"])
    );
}

#[test]
fn a_first_call_to_a_service_after_learning_is_medium() {
    let mut v = habit();
    v.push(call(
        130,
        "s1",
        "rds.amazonaws.com",
        "DescribeDBInstances",
        "us-east-1",
    ));
    let f = run(Novelty::UnusedService, &records(&v));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Medium);
    assert_eq!(f[0].details["new"], json!(["rds"]));
    // The same during learning: baseline, nothing to report.
    let mut v = habit();
    v.push(call(
        30,
        "s1",
        "rds.amazonaws.com",
        "DescribeDBInstances",
        "us-east-1",
    ));
    assert!(run(Novelty::UnusedService, &records(&v)).is_empty());
}

#[test]
fn new_role_behaviour_is_low_for_an_action_and_medium_for_a_service() {
    let mut v = habit();
    v.push(call(
        130,
        "a1",
        "dynamodb.amazonaws.com",
        "DeleteTable",
        "us-east-1",
    ));
    let f = run(Novelty::NewRoleBehaviour, &records(&v));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Low);
    let mut v = habit();
    v.push(call(
        130,
        "a1",
        "s3.amazonaws.com",
        "GetObject",
        "us-east-1",
    ));
    v.push(call(
        131,
        "a2",
        "s3.amazonaws.com",
        "PutObject",
        "us-east-1",
    ));
    let f = run(Novelty::NewRoleBehaviour, &records(&v));
    assert_eq!(f.len(), 1, "grouped: {f:#?}");
    assert_eq!(f[0].severity, Severity::Medium);
    assert_eq!(f[0].details["new_services"], json!(["s3"]));
}

#[test]
fn service_calls_on_behalf_teach_and_tell_nothing() {
    let mut v = habit();
    let mut c = call(130, "x", "kms.amazonaws.com", "Decrypt", "eu-west-3");
    c["userIdentity"]["invokedBy"] = json!("s3.amazonaws.com");
    c["sourceIPAddress"] = json!("s3.amazonaws.com");
    v.push(c);
    for kind in [
        Novelty::UnusedRegion,
        Novelty::UnusedService,
        Novelty::NewRoleBehaviour,
    ] {
        assert!(run(kind, &records(&v)).is_empty(), "{kind:?}");
    }
}

/// A real console session (Permiso), after a learning day of one page view: the session's
/// fan-out across services and regions comes out as a handful of findings, not one per call.
#[test]
fn a_console_session_fanning_out_is_grouped() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/permiso-cloudconsolecartographer/sessions/28a37129c4bb7737.events.jsonl");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = EventTime::parse(
        lines
            .iter()
            .map(|v| v["eventTime"].as_str().unwrap())
            .min()
            .unwrap(),
    )
    .unwrap();
    let identity = json!({"type": "AssumedRole", "accessKeyId": "ASIACONSOLE", "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/Admin"}}});
    // One call a day before: the account exists, learning (one hour) is over.
    let mut v = vec![
        json!({"eventTime": first.plus_millis(-24 * 3_600_000).to_string(), "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
        "eventID": "seed", "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.23", "userAgent": "aws-cli/2", "recipientAccountId": "111122223333", "userIdentity": identity}),
    ];
    for mut l in lines {
        l["userIdentity"] = identity.clone();
        l["recipientAccountId"] = json!("111122223333");
        l["sourceIPAddress"] = json!("198.51.100.23");
        v.push(l);
    }
    let recs = records(&v);
    let calls = recs.len();
    for kind in [Novelty::UnusedRegion, Novelty::UnusedService] {
        let f = run(kind, &recs);
        assert!(calls > 200);
        let listed: usize = f
            .iter()
            .map(|f| f.details["new"].as_array().unwrap().len())
            .sum();
        // 247 calls across a dozen services: a couple of findings, each listing several.
        assert!(
            !f.is_empty() && f.len() <= 3,
            "{kind:?}: {} findings for {listed} new items in {calls} calls",
            f.len()
        );
        assert!(listed >= f.len());
    }
}

/// A detector that has learned the habit, its state saved and taken back by another run.
fn learned_then_restored(
    saved: impl FnOnce(&mut serde_json::Value),
) -> Result<NoveltyDetector, String> {
    let cfg = NoveltyConfig {
        learning_ms: 60 * 60_000,
        ..Default::default()
    };
    let mut first = NoveltyDetector::new(Novelty::NewRoleBehaviour, cfg.clone());
    let mut out = Vec::new();
    for r in &records(&habit()) {
        first.observe(r, &mut out);
        first.advance(r.event_time, &mut out);
    }
    assert!(out.is_empty());
    let mut state = first.save_state();
    saved(&mut state);
    let mut second = NoveltyDetector::new(Novelty::NewRoleBehaviour, cfg);
    second.restore_state(state).map(|()| second)
}

/// Judged items are kept as their time alone (an entity keeps every item it ever did), and
/// still count as known after a restore.
#[test]
fn a_learned_baseline_is_kept_small_and_survives_a_restore() {
    let mut second = learned_then_restored(|state| {
        let items = state["entities"]["arn:aws:iam::111122223333:role/app"]["items"]
            .as_object()
            .unwrap();
        assert_eq!(items.len(), 2);
        for (key, item) in items {
            assert!(item.is_i64(), "{key} kept whole: {item}");
        }
    })
    .unwrap();
    let mut out = Vec::new();
    let later = records(&[
        call(200, "k1", "dynamodb.amazonaws.com", "GetItem", "us-east-1"),
        call(
            201,
            "n1",
            "dynamodb.amazonaws.com",
            "DeleteTable",
            "us-east-1",
        ),
    ]);
    for r in &later {
        second.observe(r, &mut out);
    }
    second.finish(&mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].details["new"], json!(["dynamodb:DeleteTable"]));
}

/// Earlier versions saved judged items whole, as `[call, true]`: still read, as judged.
#[test]
fn a_baseline_saved_by_an_earlier_version_is_read() {
    let mut second = learned_then_restored(|state| {
        let items = state["entities"]["arn:aws:iam::111122223333:role/app"]["items"]
            .as_object_mut()
            .unwrap();
        for item in items.values_mut() {
            let t = item.clone();
            *item = json!([{"time": t, "event_id": "old", "caller": "ASIAAPP", "access_key": "ASIAAPP",
                "principal": "arn:aws:iam::111122223333:role/app", "ip": "198.51.100.23", "user_agent": null,
                "region": "us-east-1", "account": "111122223333", "error_code": null, "event": "x"}, true]);
        }
    })
    .unwrap();
    let mut out = Vec::new();
    for r in &records(&[call(
        200,
        "k1",
        "dynamodb.amazonaws.com",
        "PutItem",
        "us-east-1",
    )]) {
        second.observe(r, &mut out);
    }
    second.finish(&mut out);
    assert!(out.is_empty(), "{out:#?}");
}

/// A state whose pending list names an item already judged cannot have been written by
/// credwarden: refused, never a crash later.
#[test]
fn a_state_pending_a_judged_item_is_refused() {
    let err = learned_then_restored(|state| {
        let who = &mut state["entities"]["arn:aws:iam::111122223333:role/app"];
        who["pending"] = json!(["dynamodb:GetItem"]);
    })
    .err()
    .expect("refused");
    assert!(err.contains("dynamodb:GetItem"), "{err}");
}

#[test]
fn global_services_are_known_by_name_and_nothing_else_is() {
    use detect::novelty::{is_global_service, GLOBAL_SERVICES};
    for s in GLOBAL_SERVICES {
        assert!(is_global_service(s), "{s}");
    }
    for s in [
        "ec2",
        "s3",
        "lambda",
        "",
        "iam.amazonaws.com",
        "IAM",
        "stss",
    ] {
        assert!(!is_global_service(s), "{s}");
    }
}
