//! `static-key-use`: one finding per long-lived key, one more per new address, never per call.

mod common;

use std::collections::BTreeSet;

use common::{records, run_detector};
use std::path::PathBuf;

use cloudtrail::{decode_source, discover, EventTime, Record};
use detect::{Finding, Severity, StaticKeyConfig, StaticKeyDetector};
use proptest::prelude::*;
use serde_json::json;

fn call(min: i64, id: &str, key: &str, ip: &str) -> serde_json::Value {
    let t = EventTime::parse("2024-07-01T08:00:00Z")
        .unwrap()
        .plus_millis(min * 60_000);
    json!({"eventTime": t.to_string(), "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "eventID": id, "awsRegion": "us-east-1",
        "sourceIPAddress": ip, "userAgent": "aws-cli/2.15", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::111122223333:user/ci", "accountId": "111122223333", "accessKeyId": key, "userName": "ci"}})
}

fn run(records: &[Record]) -> Vec<Finding> {
    run_detector(
        Box::new(StaticKeyDetector::new(StaticKeyConfig::default())),
        records,
    )
}

#[test]
fn one_finding_per_key_then_one_per_new_address() {
    let mut v: Vec<_> = (0..50)
        .map(|i| call(i, &format!("a{i}"), "AKIACI0000000001", "203.0.113.50"))
        .collect();
    v.push(call(200, "b1", "AKIACI0000000001", "5.188.10.20"));
    v.extend((0..20).map(|i| {
        call(
            201 + i,
            &format!("b{}", i + 2),
            "AKIACI0000000001",
            "5.188.10.20",
        )
    }));
    let f = run(&records(&v));
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[0].severity, Severity::Medium);
    assert_eq!(f[0].source.ip.as_deref(), Some("203.0.113.50"));
    assert_eq!(
        f[0].principal.as_deref(),
        Some("arn:aws:iam::111122223333:user/ci")
    );
    assert_eq!(f[0].details["first_report_for_key"], true);
    assert_eq!(
        f[0].details["calls"], 5,
        "calls up to the end of the settling window"
    );
    assert_eq!(f[1].severity, Severity::High);
    assert_eq!(f[1].source.ip.as_deref(), Some("5.188.10.20"));
    assert_eq!(f[1].details["known_sources"], json!(["203.0.113.50"]));
    assert!(f[1].summary.contains("new address"));
}

#[test]
fn root_keys_are_critical_and_service_calls_are_not_sources() {
    let mut root = call(0, "r1", "AKIAROOT000000001", "198.51.100.1");
    root["userIdentity"] = json!({"type": "Root", "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333", "accessKeyId": "AKIAROOT000000001"});
    let mut via = call(30, "v1", "AKIACI0000000001", "cloudformation.amazonaws.com");
    via["userIdentity"]["invokedBy"] = json!("cloudformation.amazonaws.com");
    let f = run(&records(&[
        root,
        via,
        call(31, "c1", "AKIACI0000000001", "203.0.113.50"),
    ]));
    assert_eq!(f.len(), 2);
    let root_f = f
        .iter()
        .find(|f| f.access_key_id.as_deref() == Some("AKIAROOT000000001"))
        .unwrap();
    assert_eq!(root_f.severity, Severity::Critical);
    let ci = f
        .iter()
        .find(|f| f.access_key_id.as_deref() == Some("AKIACI0000000001"))
        .unwrap();
    assert_eq!(
        ci.details["calls"], 2,
        "the service call counts as a call, not as a source"
    );
}

#[test]
fn temporary_keys_are_not_static() {
    assert!(run(&records(&[call(
        0,
        "x",
        "ASIATEMP00000001",
        "198.51.100.1"
    )]))
    .is_empty());
}

#[test]
fn stratus_static_keys_match_the_annotation() {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/stratus-red-team");
    let (sources, _) = discover(&[root.join("detonation-logs")]).unwrap();
    let mut recs = Vec::new();
    for s in &sources {
        decode_source(s, &mut |r| recs.push(r));
    }
    let got: BTreeSet<String> = run(&recs)
        .into_iter()
        .filter_map(|f| f.access_key_id)
        .collect();
    let want: BTreeSet<String> = std::fs::read_to_string(root.join("expected_findings.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["detection"] == "static_access_key_in_use")
        .map(|v| v["accessKeyId"].as_str().unwrap().to_owned())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arrival order within the lateness allowance changes neither ids nor contents.
    #[test]
    fn arrival_order_within_lateness_changes_nothing(seed in any::<u64>()) {
        let mut v: Vec<_> = (0..12).map(|i| call(i, &format!("a{i}"), "AKIAK1", if i % 5 == 4 { "198.51.100.9" } else { "203.0.113.50" })).collect();
        v.extend((0..6).map(|i| call(100 + i, &format!("b{i}"), "AKIAK1", "5.188.10.20")));
        let want = run(&records(&v));
        // Shuffle within each half (each spans less than the lateness allowance).
        let mut s = seed;
        for range in [0..12usize, 12..18] {
            for i in (range.start + 1..range.end).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                v.swap(i, range.start + (s >> 33) as usize % (i + 1 - range.start));
            }
        }
        prop_assert_eq!(run(&records(&v)), want);
    }
}

/// Issue 12: the S3 console calls with the user's key from AWS's console fleet (private
/// addresses, `[S3Console/…, aws-internal/3 …]`). Those calls are AWS's, not a new source
/// of the key; the same user agent from a public address is still a source (a caller can
/// send any user agent, not a private source address without a VPC endpoint).
#[test]
fn console_calls_on_a_users_behalf_are_not_new_addresses() {
    let console_ua = "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.488 Linux/5.10 \
                      OpenJDK_64-Bit_Server_VM/25.372-b08 java/1.8.0_372]";
    let mut v: Vec<_> = (0..10)
        .map(|i| call(i, &format!("a{i}"), "AKIACI0000000001", "203.0.113.50"))
        .collect();
    for (i, ip) in ["10.4.17.200", "10.9.3.12", "10.0.250.7"]
        .iter()
        .enumerate()
    {
        let mut c = call(60 + i as i64, &format!("s{i}"), "AKIACI0000000001", ip);
        c["userAgent"] = json!(console_ua);
        v.push(c);
    }
    let f = run(&records(&v));
    assert_eq!(f.len(), 1, "only the key's first report: {f:#?}");
    assert_eq!(f[0].source.ip.as_deref(), Some("203.0.113.50"));

    let mut spoofed = call(120, "p1", "AKIACI0000000001", "5.188.10.20");
    spoofed["userAgent"] = json!(console_ua);
    v.push(spoofed);
    let f = run(&records(&v));
    assert_eq!(f.len(), 2, "{f:#?}");
    assert_eq!(f[1].source.ip.as_deref(), Some("5.188.10.20"));
    assert_eq!(f[1].severity, Severity::High);
}
