//! Edge cases of the off-instance detector, each from DETECTION-NOTES.md, fed through the
//! real decoder so the records are what production would see.

mod common;

use cloudtrail::EventTime;
use common::records;
use detect::{
    AwsIpRanges, Detector, Engine, Finding, NetSet, OffInstanceConfig, OffInstanceDetector,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const ACCT: &str = "111122223333";
const ROLE: &str = "arn:aws:iam::111122223333:role/web";

fn t(min: i64) -> String {
    EventTime::parse("2024-03-01T00:00:00Z")
        .unwrap()
        .plus_millis(min * 60_000)
        .to_string()
}

fn issue(min: i64, key: &str, instance: &str, request: &str) -> Value {
    json!({"eventTime": t(min), "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "eventID": format!("iss-{key}"),
        "requestID": request, "awsRegion": "us-east-1", "sourceIPAddress": "ec2.amazonaws.com", "userAgent": "ec2.amazonaws.com",
        "userIdentity": {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}, "recipientAccountId": ACCT,
        "requestParameters": {"roleArn": ROLE, "roleSessionName": instance},
        "responseElements": {"credentials": {"accessKeyId": key, "sessionToken": "never-logged", "expiration": "Mar 1, 2024, 6:00:00 AM"}}})
}

fn call(min: i64, id: &str, key: &str, instance: &str, ip: &str) -> Value {
    json!({"eventTime": t(min), "eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances", "eventID": id,
        "awsRegion": "us-east-1", "sourceIPAddress": ip, "userAgent": "aws-sdk-go/1.44 (go1.21; linux; amd64)", "recipientAccountId": ACCT,
        "userIdentity": {"type": "AssumedRole", "principalId": format!("AROAEXAMPLE:{instance}"), "accountId": ACCT, "accessKeyId": key,
            "arn": format!("arn:aws:sts::{ACCT}:assumed-role/web/{instance}"),
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": ROLE}, "ec2RoleDelivery": "2.0"}}})
}

fn with(mut v: Value, patch: Value) -> Value {
    for (k, val) in patch.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

fn run_cfg(values: &[Value], cfg: OffInstanceConfig) -> Vec<Finding> {
    let mut engine = Engine::new(vec![Box::new(OffInstanceDetector::new(cfg))]);
    let mut out = Vec::new();
    for r in records(values) {
        engine.process(&r, &mut out);
    }
    engine.finish(&mut out);
    out
}

fn run(values: &[Value]) -> Vec<Finding> {
    run_cfg(values, OffInstanceConfig::default())
}

fn pairs(f: &[Finding]) -> Vec<(String, String)> {
    let mut v: Vec<_> = f
        .iter()
        .map(|f| {
            (
                f.access_key_id.clone().unwrap(),
                f.source.ip.clone().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn use_from_a_second_source_is_a_finding_with_its_evidence_chain() {
    let f = run(&[
        issue(0, "ASIAKEY1", "i-0123456789abcdef0", "r1"),
        call(1, "e1", "ASIAKEY1", "i-0123456789abcdef0", "54.0.0.1"),
        call(90, "e2", "ASIAKEY1", "i-0123456789abcdef0", "198.51.100.9"),
        call(91, "e3", "ASIAKEY1", "i-0123456789abcdef0", "198.51.100.9"),
    ]);
    assert_eq!(pairs(&f), vec![("ASIAKEY1".into(), "198.51.100.9".into())]);
    let f = &f[0];
    assert_eq!(f.detector, "off-instance-credential-use");
    assert_eq!(f.event_ids, vec!["iss-ASIAKEY1", "e1", "e2"]);
    assert_eq!(f.time, t(90));
    assert_eq!(f.principal.as_deref(), Some(ROLE));
    assert_eq!(f.details["reason"], "different-source");
    assert_eq!(f.details["locked_source"]["source"], "54.0.0.1");
    assert_eq!(f.details["locked_source"]["locked_at"], t(1));
    assert_eq!(f.details["credential_identified_by"], "issuance");
    assert!(f.summary.contains("198.51.100.9") && f.summary.contains("54.0.0.1"));
    assert!(
        !serde_json::to_string(f).unwrap().contains("never-logged"),
        "session token leaked into a finding"
    );
}

#[test]
fn aws_service_calls_and_non_addresses_never_lock_or_alert() {
    let i = "i-0123456789abcdef0";
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        with(call(1, "a", "ASIAKEY1", i, "AWS Internal"), json!({})),
        call(2, "b", "ASIAKEY1", i, "redacted"),
        call(3, "c", "ASIAKEY1", i, "54.0.0.1"),
        call(4, "d", "ASIAKEY1", i, "ec2.amazonaws.com"),
        with(
            call(5, "e", "ASIAKEY1", i, "203.0.113.50"),
            json!({"userIdentity": {"type": "AssumedRole", "accessKeyId": "ASIAKEY1", "invokedBy": "cloudformation.amazonaws.com", "arn": format!("arn:aws:sts::{ACCT}:assumed-role/web/{i}")}}),
        ),
        call(6, "f", "ASIAKEY1", i, "AWS Internal/3"),
    ]);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn a_sibling_credential_never_used_on_the_instance_is_caught() {
    let i = "i-0123456789abcdef0";
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        issue(0, "ASIAKEY2", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        call(30, "b", "ASIAKEY2", i, "198.51.100.9"),
    ]);
    assert_eq!(pairs(&f), vec![("ASIAKEY2".into(), "198.51.100.9".into())]);
}

#[test]
fn issuance_not_seen_falls_back_to_session_name() {
    let i = "i-786a3A8B5C0d92eF4";
    let f = run(&[
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        call(20, "b", "ASIAKEY1", i, "198.51.100.9"),
    ]);
    assert_eq!(pairs(&f), vec![("ASIAKEY1".into(), "198.51.100.9".into())]);
    assert_eq!(
        f[0].details["credential_identified_by"],
        "session-name+ec2RoleDelivery"
    );
}

#[test]
fn sessions_that_are_not_instances_are_ignored() {
    let f = run(&[
        call(1, "a", "ASIAKEY1", "alice@example.com", "54.0.0.1"),
        call(20, "b", "ASIAKEY1", "alice@example.com", "198.51.100.9"),
        call(21, "c", "AKIAKEY", "i-0123456789abcdef0", "198.51.100.9"),
    ]);
    assert!(f.is_empty());
}

#[test]
fn declared_egress_is_never_foreign() {
    let i = "i-0123456789abcdef0";
    let cfg = OffInstanceConfig {
        egress: NetSet::parse_list(&["198.51.100.0/24"]).unwrap(),
        ..Default::default()
    };
    let f = run_cfg(
        &[
            issue(0, "ASIAKEY1", i, "r1"),
            call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
            call(30, "b", "ASIAKEY1", i, "198.51.100.9"),
        ],
        cfg,
    );
    assert!(f.is_empty());
}

fn aws_ranges() -> AwsIpRanges {
    AwsIpRanges::parse(
        br#"{"syncToken":"1","createDate":"x","prefixes":[{"ip_prefix":"54.0.0.0/8","region":"us-east-1","service":"AMAZON"}],"ipv6_prefixes":[]}"#,
    )
    .unwrap()
}

#[test]
fn attacker_as_first_user_is_caught_only_with_aws_ranges() {
    let i = "i-0123456789abcdef0";
    let recs = [
        issue(0, "ASIAKEY1", i, "r1"),
        issue(0, "ASIAKEY2", i, "r1"),
        call(2, "a", "ASIAKEY2", i, "198.51.100.9"),
    ];
    assert!(
        run(&recs).is_empty(),
        "without a second signal the first user is the lock"
    );
    let f = run_cfg(
        &recs,
        OffInstanceConfig {
            aws_ranges: Some(aws_ranges()),
            ..Default::default()
        },
    );
    assert_eq!(pairs(&f), vec![("ASIAKEY2".into(), "198.51.100.9".into())]);
    assert_eq!(f[0].details["reason"], "outside-aws");
}

#[test]
fn with_aws_ranges_an_outside_first_use_does_not_become_the_lock() {
    let i = "i-0123456789abcdef0";
    let f = run_cfg(
        &[
            issue(0, "ASIAKEY1", i, "r1"),
            call(1, "a", "ASIAKEY1", i, "198.51.100.9"),
            call(3, "b", "ASIAKEY1", i, "54.0.0.1"),
            call(60, "c", "ASIAKEY1", i, "54.0.0.1"),
        ],
        OffInstanceConfig {
            aws_ranges: Some(aws_ranges()),
            ..Default::default()
        },
    );
    assert_eq!(pairs(&f), vec![("ASIAKEY1".into(), "198.51.100.9".into())]);
}

#[test]
fn vpc_endpoints_ours_and_foreign() {
    let i = "i-0123456789abcdef0";
    let own = with(
        call(2, "b", "ASIAKEY1", i, "10.0.1.5"),
        json!({"vpcEndpointId": "vpce-own", "vpcEndpointAccountId": ACCT}),
    );
    let own_again = with(
        call(50, "c", "ASIAKEY1", i, "10.0.1.5"),
        json!({"vpcEndpointId": "vpce-own", "vpcEndpointAccountId": ACCT}),
    );
    let foreign = with(
        call(60, "d", "ASIAKEY1", i, "10.9.9.9"),
        json!({"vpcEndpointId": "vpce-evil", "vpcEndpointAccountId": "999999999999"}),
    );
    let other_host = with(
        call(70, "e", "ASIAKEY1", i, "10.0.2.77"),
        json!({"vpcEndpointId": "vpce-own", "vpcEndpointAccountId": ACCT}),
    );
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        own,
        own_again,
        foreign,
        other_host,
    ]);
    let mut reasons: Vec<_> = f
        .iter()
        .map(|f| f.details["reason"].as_str().unwrap().to_owned())
        .collect();
    reasons.sort();
    assert_eq!(reasons, vec!["different-source", "foreign-vpc-endpoint"]);
    assert!(f
        .iter()
        .any(|f| f.source.vpc_endpoint.as_deref() == Some("vpce-evil")));
}

#[test]
fn address_change_accepts_the_next_new_address() {
    let i = "i-0123456789abcdef0";
    let assoc = json!({"eventTime": t(40), "eventSource": "ec2.amazonaws.com", "eventName": "AssociateAddress", "eventID": "assoc", "recipientAccountId": ACCT,
        "sourceIPAddress": "203.0.113.1", "userIdentity": {"type": "IAMUser", "accountId": ACCT, "accessKeyId": "AKIAOPS"},
        "requestParameters": {"instanceId": i, "allocationId": "eipalloc-1"}});
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        assoc,
        call(41, "b", "ASIAKEY1", i, "54.0.0.2"),
        call(100, "c", "ASIAKEY1", i, "54.0.0.3"),
    ]);
    assert_eq!(pairs(&f), vec![("ASIAKEY1".into(), "54.0.0.3".into())]);
}

#[test]
fn nat_with_several_addresses_is_learned_from_the_fleet() {
    let (a, b) = ("i-0000000000000000a", "i-0000000000000000b");
    let f = run(&[
        issue(0, "ASIAA", a, "r1"),
        issue(0, "ASIAB", b, "r2"),
        call(1, "1", "ASIAA", a, "54.0.0.1"),
        call(2, "2", "ASIAA", a, "54.0.0.2"),
        call(3, "3", "ASIAB", b, "54.0.0.2"),
        call(4, "4", "ASIAB", b, "54.0.0.1"),
    ]);
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn ipv6_is_compared_by_its_64_and_apart_from_ipv4() {
    let i = "i-0123456789abcdef0";
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        call(2, "b", "ASIAKEY1", i, "2600:1f18:1:2::10"),
        call(30, "c", "ASIAKEY1", i, "2600:1f18:1:2::99"),
        call(40, "d", "ASIAKEY1", i, "2a00:1:2:3::1"),
    ]);
    assert_eq!(pairs(&f), vec![("ASIAKEY1".into(), "2a00:1:2:3::1".into())]);
}

#[test]
fn a_recon_first_call_from_a_cli_does_not_win_the_lock() {
    let i = "i-0123456789abcdef0";
    let recon = with(
        call(1, "a", "ASIAKEY1", i, "198.51.100.9"),
        json!({"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "userAgent": "aws-cli/2.15.0 Python/3.11 Darwin/23"}),
    );
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        recon,
        call(3, "b", "ASIAKEY1", i, "54.0.0.1"),
    ]);
    assert_eq!(pairs(&f), vec![("ASIAKEY1".into(), "198.51.100.9".into())]);
}

#[test]
fn duplicate_delivery_gives_one_finding() {
    let i = "i-0123456789abcdef0";
    let bad = call(30, "b", "ASIAKEY1", i, "198.51.100.9");
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        bad.clone(),
        bad.clone(),
        bad,
    ]);
    assert_eq!(f.len(), 1);
}

#[test]
fn state_is_dropped_after_expiry() {
    let mut det = OffInstanceDetector::new(OffInstanceConfig::default());
    let mut out = Vec::new();
    let recs = records(&[
        issue(0, "ASIAKEY1", "i-0123456789abcdef0", "r1"),
        call(1, "a", "ASIAKEY1", "i-0123456789abcdef0", "54.0.0.1"),
    ]);
    for r in &recs {
        det.observe(r, &mut out);
        det.advance(r.event_time, &mut out);
    }
    assert_eq!(det.live_state(), 2);
    // Expiration is 06:00; margin one hour; instance dropped one margin after last use.
    det.advance(EventTime::parse("2024-03-01T07:00:01Z").unwrap(), &mut out);
    det.advance(EventTime::parse("2024-03-01T07:00:02Z").unwrap(), &mut out);
    assert_eq!(det.live_state(), 0);
    assert!(out.is_empty());
}

#[test]
fn a_new_key_using_a_known_foreign_source_is_reported_too() {
    let i = "i-0123456789abcdef0";
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        call(30, "b", "ASIAKEY1", i, "198.51.100.9"),
        issue(60, "ASIAKEY3", i, "r3"),
        call(61, "c", "ASIAKEY3", i, "54.0.0.1"),
        call(200, "d", "ASIAKEY3", i, "198.51.100.9"),
    ]);
    assert_eq!(
        pairs(&f),
        vec![
            ("ASIAKEY1".into(), "198.51.100.9".into()),
            ("ASIAKEY3".into(), "198.51.100.9".into())
        ]
    );
}

fn scenario() -> Vec<Value> {
    let (a, b) = ("i-0000000000000000a", "i-0000000000000000b");
    vec![
        issue(0, "ASIAA1", a, "r1"),
        issue(0, "ASIAA2", a, "r1"),
        issue(1, "ASIAB1", b, "r2"),
        call(2, "1", "ASIAA1", a, "54.0.0.1"),
        call(3, "2", "ASIAB1", b, "54.0.0.7"),
        call(4, "3", "ASIAA2", a, "198.51.100.9"),
        call(5, "4", "ASIAB1", b, "AWS Internal"),
        call(6, "5", "ASIAA1", a, "203.0.113.3"),
        call(7, "6", "ASIAB1", b, "54.0.0.7"),
        call(8, "7", "ASIAB1", b, "198.51.100.9"),
        call(9, "8", "ASIAA1", a, "54.0.0.1"),
    ]
}

proptest! {
    /// Within the lateness allowance, arrival order changes nothing: not the findings, not
    /// their ids, not their evidence.
    #[test]
    fn arrival_order_within_lateness_changes_nothing(seed in any::<u64>()) {
        let base = run(&scenario());
        prop_assert_eq!(base.len(), 3);
        let mut shuffled = scenario();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut got = run(&shuffled);
        let mut want = base;
        got.sort_by(|x, y| x.id.cmp(&y.id));
        want.sort_by(|x, y| x.id.cmp(&y.id));
        prop_assert_eq!(got, want);
    }
}

#[test]
fn an_attackers_address_never_vouches_for_itself_on_another_instance() {
    let (a, b) = ("i-0000000000000000a", "i-0000000000000000b");
    let recon = with(
        call(1, "x1", "ASIAB", b, "3.9.9.9"),
        json!({"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "userAgent": "aws-cli/2.15.0"}),
    );
    let f = run(&[
        issue(0, "ASIAA", a, "r1"),
        issue(0, "ASIAB", b, "r2"),
        call(0, "a1", "ASIAA", a, "54.0.0.1"),
        recon,
        call(2, "b1", "ASIAB", b, "54.0.0.7"),
        call(40, "x2", "ASIAA", a, "3.9.9.9"),
    ]);
    assert_eq!(
        pairs(&f),
        vec![
            ("ASIAA".into(), "3.9.9.9".into()),
            ("ASIAB".into(), "3.9.9.9".into())
        ]
    );
}

#[test]
fn a_network_family_taken_up_late_must_be_corroborated() {
    let i = "i-0123456789abcdef0";
    // IPv4 for an hour, then an IPv6 /64 nobody else uses: not the instance's to claim.
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        call(60, "b", "ASIAKEY1", i, "2600:1f18:dead:beef::5"),
    ]);
    assert_eq!(
        pairs(&f),
        vec![("ASIAKEY1".into(), "2600:1f18:dead:beef::5".into())]
    );
    assert_eq!(f[0].details["reason"], "unverified-new-network");
    // The same late endpoint: without an owner in the record it is unverified; with our
    // account as owner it is ours.
    let late_vpce = |owner: Option<&str>| {
        let mut v = call(60, "c", "ASIAKEY1", i, "10.0.1.5");
        v["vpcEndpointId"] = json!("vpce-1");
        if let Some(o) = owner {
            v["vpcEndpointAccountId"] = json!(o);
        }
        run(&[
            issue(0, "ASIAKEY1", i, "r1"),
            call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
            v,
        ])
    };
    assert_eq!(late_vpce(None).len(), 1);
    assert!(late_vpce(Some(ACCT)).is_empty());
}

#[test]
fn declared_egress_never_pushes_the_instance_address_aside() {
    let i = "i-0123456789abcdef0";
    let cfg = OffInstanceConfig {
        egress: NetSet::parse_list(&["198.51.100.0/24"]).unwrap(),
        ..Default::default()
    };
    let f = run_cfg(
        &[
            issue(0, "ASIAKEY1", i, "r1"),
            call(1, "a", "ASIAKEY1", i, "198.51.100.7"),
            call(2, "b", "ASIAKEY1", i, "54.0.0.1"),
            call(50, "c", "ASIAKEY1", i, "54.0.0.1"),
        ],
        cfg,
    );
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn an_absurd_expiration_does_not_keep_state_alive() {
    let mut det = OffInstanceDetector::new(OffInstanceConfig::default());
    let mut out = Vec::new();
    let mut iss = issue(0, "ASIAKEY1", "i-0123456789abcdef0", "r1");
    iss["responseElements"]["credentials"]["expiration"] = json!("Dec 31, 9999, 11:59:59 PM");
    for r in records(&[
        iss,
        call(1, "a", "ASIAKEY1", "i-0123456789abcdef0", "54.0.0.1"),
    ]) {
        det.observe(&r, &mut out);
        det.advance(r.event_time, &mut out);
    }
    det.advance(EventTime::parse("2024-03-03T00:00:00Z").unwrap(), &mut out);
    det.advance(EventTime::parse("2024-03-03T00:00:01Z").unwrap(), &mut out);
    assert_eq!(det.live_state(), 0);
}

#[test]
fn a_record_from_the_future_does_not_freeze_event_time() {
    let i = "i-0123456789abcdef0";
    let future = with(
        call(2, "f", "ASIAOTHER", "i-0fffffffffffffff0", "54.9.9.9"),
        json!({"eventTime": "9999-12-31T23:59:59Z"}),
    );
    let mut engine = Engine::new(vec![Box::new(OffInstanceDetector::new(
        OffInstanceConfig::default(),
    ))]);
    let mut out = Vec::new();
    for r in records(&[
        issue(0, "ASIAKEY1", i, "r1"),
        call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
        future,
        call(30, "b", "ASIAKEY1", i, "198.51.100.9"),
        call(120, "c", "ASIAKEY1", i, "54.0.0.1"),
    ]) {
        engine.process(&r, &mut out);
    }
    assert_eq!(engine.stats.future, 1);
    assert_eq!(
        pairs(&out),
        vec![("ASIAKEY1".into(), "198.51.100.9".into())],
        "decided while streaming, not only at the end"
    );
}

/// Issue 12 (public attack data): the instance's own key is used from its public address;
/// six seconds later the sibling key of the same instance session is first used from a
/// private address with no VPC endpoint by a Go SDK tool whose first calls are
/// `GetCallerIdentity` then `DescribeInstances`. The private address took a lock of its own
/// (its own family) and nothing was reported.
#[test]
fn a_sibling_first_used_from_a_private_address_with_a_recon_call_is_caught() {
    let i = "i-0123456789abcdef0";
    let at = |secs: i64| {
        EventTime::parse("2024-03-01T00:01:00Z")
            .unwrap()
            .plus_millis(secs * 1000)
            .to_string()
    };
    let recon = json!({"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity"});
    let stolen = |secs: i64, id: &str, first: bool| {
        let mut v = with(
            call(1, id, "ASIAKEY2", i, "10.20.30.40"),
            json!({"eventTime": at(secs)}),
        );
        if first {
            v = with(v, recon.clone());
        }
        v
    };
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        issue(0, "ASIAKEY2", i, "r1"),
        with(
            call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
            json!({"eventTime": at(0)}),
        ),
        stolen(6, "b", true),
        stolen(7, "c", false),
        with(
            call(1, "d", "ASIAKEY1", i, "54.0.0.1"),
            json!({"eventTime": at(60)}),
        ),
    ]);
    assert_eq!(pairs(&f), vec![("ASIAKEY2".into(), "10.20.30.40".into())]);
    assert_eq!(f[0].details["reason"], "unverified-private-source");

    // Without the recon first step a private source keeps its own family's lock, as before
    // (an instance that calls some services from a private address is not reported) ...
    let f = run(&[
        issue(0, "ASIAKEY1", i, "r1"),
        issue(0, "ASIAKEY2", i, "r1"),
        with(
            call(1, "a", "ASIAKEY1", i, "54.0.0.1"),
            json!({"eventTime": at(0)}),
        ),
        stolen(6, "b", false),
    ]);
    assert!(f.is_empty(), "{f:#?}");
    // ... and a private source that is the instance's first source is its lock.
    let f = run(&[
        issue(0, "ASIAKEY2", i, "r1"),
        stolen(6, "b", true),
        stolen(7, "c", false),
    ]);
    assert!(f.is_empty(), "{f:#?}");
}
