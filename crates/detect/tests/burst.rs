//! `enumeration-burst` on its edge cases and on real data: Stratus Red Team's detonations
//! (bursts) and Permiso's console sessions (scattered denials, no burst).

mod common;

use std::path::PathBuf;

use common::{records, run_detector};

use cloudtrail::{decode_bytes, decode_source, discover, EventTime, Record};
use detect::{BurstConfig, EnumerationBurstDetector, Finding};
use serde_json::json;

fn corpora() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora")
}

fn run(records: &[Record]) -> Vec<Finding> {
    run_detector(
        Box::new(EnumerationBurstDetector::new(BurstConfig::default())),
        records,
    )
}

fn denial(
    sec: i64,
    id: &str,
    source: &str,
    name: &str,
    code: &str,
    key: &str,
) -> serde_json::Value {
    let t = EventTime::parse("2024-06-01T12:00:00Z")
        .unwrap()
        .plus_millis(sec * 1000);
    json!({"eventTime": t.to_string(), "eventSource": source, "eventName": name, "eventID": id, "errorCode": code,
        "sourceIPAddress": "198.51.100.4", "awsRegion": "us-east-1", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "AssumedRole", "accessKeyId": key, "arn": "arn:aws:sts::111122223333:assumed-role/app/s",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::111122223333:role/app"}}}})
}

#[test]
fn a_rate_burst_of_one_action_is_one_finding() {
    let v: Vec<_> = (0..30)
        .map(|i| {
            denial(
                i / 5,
                &format!("e{i:02}"),
                "ec2.amazonaws.com",
                "GetPasswordData",
                "Client.UnauthorizedOperation",
                "ASIAK1",
            )
        })
        .collect();
    let f = run(&records(&v));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].details["shape"], "rate");
    assert_eq!(f[0].details["denied_calls"], 30);
    assert_eq!(
        f[0].time,
        EventTime::parse("2024-06-01T12:00:01Z")
            .unwrap()
            .to_string(),
        "the 10th denial triggers"
    );
    assert_eq!(
        f[0].principal.as_deref(),
        Some("arn:aws:iam::111122223333:role/app")
    );
}

#[test]
fn a_spread_burst_across_services_fires_even_slowly() {
    let calls = [
        ("iam.amazonaws.com", "ListUsers"),
        ("iam.amazonaws.com", "ListRoles"),
        ("s3.amazonaws.com", "ListBuckets"),
        ("ec2.amazonaws.com", "DescribeInstances"),
        ("secretsmanager.amazonaws.com", "ListSecrets"),
        ("lambda.amazonaws.com", "ListFunctions20150331"),
    ];
    let v: Vec<_> = calls
        .iter()
        .enumerate()
        .map(|(i, (s, n))| {
            denial(
                i as i64 * 40,
                &format!("e{i}"),
                s,
                n,
                if s.starts_with("ec2") {
                    "Client.UnauthorizedOperation"
                } else {
                    "AccessDenied"
                },
                "ASIAK2",
            )
        })
        .collect();
    let f = run(&records(&v));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].details["shape"], "spread");
    assert_eq!(f[0].severity, detect::Severity::High);
}

#[test]
fn scattered_denials_and_throttling_do_not_fire() {
    let mut v: Vec<_> = (0..20)
        .map(|i| {
            denial(
                i * 25,
                &format!("d{i}"),
                "organizations.amazonaws.com",
                "ListDelegatedAdministrators",
                "AccessDenied",
                "ASIAK3",
            )
        })
        .collect();
    v.extend((0..40).map(|i| {
        denial(
            i,
            &format!("t{i}"),
            "ec2.amazonaws.com",
            "DescribeInstances",
            "Client.RequestLimitExceeded",
            "ASIAK3",
        )
    }));
    v.extend((0..40).map(|i| {
        denial(
            i,
            &format!("x{i}"),
            "dynamodb.amazonaws.com",
            "GetItem",
            "ThrottlingException",
            "ASIAK3",
        )
    }));
    assert!(run(&records(&v)).is_empty());
}

#[test]
fn bursts_separated_by_quiet_time_are_separate_and_order_free() {
    let mut v: Vec<_> = (0..12)
        .map(|i| {
            denial(
                i,
                &format!("a{i:02}"),
                "s3.amazonaws.com",
                "GetObject",
                "AccessDenied",
                "ASIAK4",
            )
        })
        .collect();
    v.extend((0..12).map(|i| {
        denial(
            3600 + i,
            &format!("b{i:02}"),
            "s3.amazonaws.com",
            "GetObject",
            "AccessDenied",
            "ASIAK4",
        )
    }));
    let ordered = run(&records(&v));
    assert_eq!(ordered.len(), 2);
    v.reverse();
    let mut reversed = run(&records(&v));
    reversed.sort_by(|a, b| a.time.cmp(&b.time));
    let ids = |f: &[Finding]| f.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&ordered), ids(&reversed));
}

#[test]
fn stratus_bursts_fire_and_nothing_else_does() {
    let (sources, _) = discover(&[corpora().join("stratus-red-team/detonation-logs")]).unwrap();
    let mut recs = Vec::new();
    for s in &sources {
        decode_source(s, &mut |r| recs.push(r));
    }
    let f = run(&recs);
    let mut got: Vec<(String, u64)> = f
        .iter()
        .map(|f| {
            (
                f.details["actions"][0].as_str().unwrap().to_owned(),
                f.details["denied_calls"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    // expected_findings.jsonl: 30 GetPasswordData and 15 DescribeInstanceAttribute (plus the
    // stray denials of the same sessions, which belong to the same bursts).
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].0.contains("DescribeInstanceAttribute") && got[0].1 >= 15,
        "{got:?}"
    );
    assert!(
        got[1].0.contains("GetPasswordData")
            || f.iter()
                .any(|f| f.details["actions"].to_string().contains("GetPasswordData")),
        "{got:?}"
    );
}

#[test]
fn permiso_console_sessions_are_not_bursts() {
    let dir = corpora().join("permiso-cloudconsolecartographer/sessions");
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".events.jsonl") {
            continue;
        }
        // One session is one principal: give it one identity.
        let mut text = String::new();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["userIdentity"] = json!({"type": "AssumedRole", "accessKeyId": "ASIACONSOLE", "arn": "arn:aws:sts::111122223333:assumed-role/Admin/alice"});
            text.push_str(&v.to_string());
            text.push('\n');
        }
        let mut recs = Vec::new();
        decode_bytes("p", text.as_bytes(), &mut |r| recs.push(r));
        total += recs.len();
        let f = run(&recs);
        assert!(f.is_empty(), "{}: {:#?}", path.display(), f);
    }
    assert_eq!(total, 9226);
}

#[test]
fn a_late_denial_bridging_two_clusters_makes_them_one() {
    // 10 denials at 0:00, 10 at 0:08 (a gap of more than five minutes), then a late one at
    // 0:04: in time order one burst, and so in any arrival order.
    let mut v: Vec<_> = (0..10)
        .map(|i| {
            denial(
                i,
                &format!("a{i:02}"),
                "s3.amazonaws.com",
                "GetObject",
                "AccessDenied",
                "ASIAK9",
            )
        })
        .collect();
    v.extend((0..10).map(|i| {
        denial(
            480 + i,
            &format!("b{i:02}"),
            "s3.amazonaws.com",
            "GetObject",
            "AccessDenied",
            "ASIAK9",
        )
    }));
    let in_order = {
        let mut w = v.clone();
        w.insert(
            10,
            denial(
                240,
                "c00",
                "s3.amazonaws.com",
                "GetObject",
                "AccessDenied",
                "ASIAK9",
            ),
        );
        run(&records(&w))
    };
    v.push(denial(
        240,
        "c00",
        "s3.amazonaws.com",
        "GetObject",
        "AccessDenied",
        "ASIAK9",
    ));
    let late = run(&records(&v));
    assert_eq!(in_order.len(), 1);
    assert_eq!(
        late.iter().map(|f| &f.id).collect::<Vec<_>>(),
        in_order.iter().map(|f| &f.id).collect::<Vec<_>>()
    );
    assert_eq!(late[0].details["denied_calls"], 21);
}
