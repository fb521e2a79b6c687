//! Evaluations per second on an environment-lock policy (the seeds' form: deny unless the
//! call comes from our NAT addresses, our VPCs or our VPC endpoints, AWS-service calls
//! exempt) next to an ordinary allow policy. Prints figures; run with `cargo bench -p
//! credwarden-iam`.

use std::hint::black_box;
use std::time::Instant;

use iam::{Decision, NamedPolicy, Policy, PolicySet, RequestContext};

const LOCK: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"EnvironmentLock","Effect":"Deny","Action":"*","Resource":"*",
 "Condition":{"NotIpAddressIfExists":{"aws:SourceIp":["198.51.100.10/32","198.51.100.11/32","203.0.113.0/28","2001:db8:ee::/48"]},
 "StringNotEqualsIfExists":{"aws:SourceVpc":["vpc-0a1b2c3d","vpc-0e1f2a3b"],"aws:SourceVpce":["vpce-01234567","vpce-89abcdef"]},
 "BoolIfExists":{"aws:ViaAWSService":"false"}}}]}"#;

const ALLOW: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Sid":"Read","Effect":"Allow","Action":["s3:Get*","s3:List*"],"Resource":["arn:aws:s3:::app-data","arn:aws:s3:::app-data/*"]},
 {"Sid":"Queue","Effect":"Allow","Action":"sqs:SendMessage","Resource":"arn:aws:sqs:*:123456789012:app-*"},
 {"Sid":"Home","Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::app-data/home/${aws:username}/*"}]}"#;

fn context(ip: &str, vpc: Option<&str>) -> RequestContext {
    let mut c =
        RequestContext::new("s3:GetObject", "arn:aws:s3:::app-data/reports/2026.csv").unwrap();
    c.add("aws:SourceIp", ip)
        .add("aws:ViaAWSService", "false")
        .add("aws:username", "alice");
    if let Some(v) = vpc {
        c.add("aws:SourceVpc", v)
            .add("aws:SourceVpce", "vpce-01234567");
    }
    c
}

fn main() {
    let lock = Policy::parse(LOCK).unwrap();
    let allow = Policy::parse(ALLOW).unwrap();
    let set = PolicySet {
        identity: vec![
            NamedPolicy {
                name: "allow",
                policy: &allow,
            },
            NamedPolicy {
                name: "lock",
                policy: &lock,
            },
        ],
        ..Default::default()
    };
    let cases = [
        (
            "from a NAT address",
            context("198.51.100.10", None),
            Decision::Allow,
        ),
        (
            "through our VPC endpoint",
            context("10.0.1.5", Some("vpc-0a1b2c3d")),
            Decision::Allow,
        ),
        (
            "from the internet",
            context("192.0.2.77", None),
            Decision::ExplicitDeny,
        ),
        (
            "from the internet, IPv6",
            context("2001:db8:ff::1", None),
            Decision::ExplicitDeny,
        ),
    ];
    for (name, ctx, want) in &cases {
        assert_eq!(set.evaluate(ctx).decision, *want, "{name}");
    }
    let n = 400_000;
    println!(
        "policy evaluation, environment-lock + allow policy ({} cases, {n} evaluations each)",
        cases.len()
    );
    for (name, ctx, _) in &cases {
        let start = Instant::now();
        for _ in 0..n {
            black_box(set.evaluate(black_box(ctx)));
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "  {name:<28} {:>10.0} evaluations/s  ({:.2} µs each)",
            n as f64 / secs,
            secs * 1e6 / n as f64
        );
    }
}
