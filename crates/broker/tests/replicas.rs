//! Two broker replicas on one PostgreSQL (a real server started by the test kit on loopback)
//! and moto's STS: each replica's decisions are in the one audit both read, the per-user rate
//! limit holds across them, and with PostgreSQL down no credentials leave either replica —
//! until it is back, when they recover by themselves.

use broker::auth::testing::TestIdp;
use serde_json::{json, Value};
use testkit::postgres::Postgres;
use testkit::{Moto, Recorder, BOTO3_KW};

const ISSUER: &str = "https://idp.test";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

mod common;

/// Start one replica with `config`; its base URL.
fn replica(config: String) -> String {
    format!(
        "http://{}",
        common::serve(broker::config::parse(&config).unwrap())
    )
}

fn call(base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, v, _) = common::call(base, method, path, &[("Authorization", &auth)], body);
    (status, v)
}

#[test]
fn two_replicas_share_one_postgres_audit_limit_and_fail_closed() {
    common::aws_env();
    let pg = Postgres::start();
    let moto = Moto::start();
    let recorder = Recorder::start(moto.port);
    moto.python(
        &format!(
            r#"
import boto3, json, os
iam = boto3.client("iam", **{BOTO3_KW})
trust = json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::123456789012:root"}}, "Action": "sts:AssumeRole"}}]}})
iam.create_role(RoleName="payments-api", AssumeRolePolicyDocument=trust)
"#
        ),
        &[],
    );
    let idp = TestIdp::new("test");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), &idp.jwks).unwrap();
    let config = format!(
        r#"
audit = "{audit}"
admin_groups = ["security"]
rate_limit_per_minute = 4
read_role_tags = false
[[roles]]
arn = "arn:aws:iam::123456789012:role/payments-api"
groups = ["payments"]
[auth]
mode = "jwt"
jwks_file = "{jwks}"
issuer = "{ISSUER}"
audience = "credwarden"
[[networks]]
name = "loopback-lab"
clients = ["127.0.0.0/8"]
egress = ["198.51.100.0/24"]
[aws]
endpoint_url = "{endpoint}"
region = "us-east-1"
"#,
        audit = pg.url,
        jwks = dir.path().join("jwks.json").display(),
        endpoint = recorder.url,
    );
    let a = replica(config.clone());
    let b = replica(config);
    let token = |user: &str, groups: &[&str]| {
        idp.sign(
            json!({"alg": "ES256", "kid": "test"}),
            json!({"iss": ISSUER, "aud": "credwarden", "sub": user, "groups": groups, "exp": now() + 600}),
        )
    };
    let alice = token("alice", &["payments"]);
    let admin = token("sam", &["security"]);
    let creds = |base: &str| {
        call(
            base,
            "POST",
            "/v1/credentials",
            &alice,
            Some(json!({"role": "payments-api"})),
        )
    };

    // One grant through each replica: both are in the audit either replica reads.
    let (status, first) = creds(&a);
    assert_eq!(status, 200, "{first}");
    let (status, second) = creds(&b);
    assert_eq!(status, 200, "{second}");
    let (status, audit) = call(&b, "GET", "/v1/audit?user=alice", &admin, None);
    assert_eq!(status, 200, "{audit}");
    let keys: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["decision"] == "granted")
        .map(|e| e["access_key_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            second["AccessKeyId"].as_str().unwrap(),
            first["AccessKeyId"].as_str().unwrap()
        ],
        "newest first, from both replicas"
    );

    // Four a minute in all: two more anywhere, then both replicas refuse (each replica's own
    // bucket alone would still allow four of its own).
    assert_eq!(creds(&a).0, 200);
    assert_eq!(creds(&b).0, 200);
    let assumed = recorder.count_action("AssumeRole");
    let (status, refused) = creds(&a);
    assert_eq!(
        (status, refused["code"].as_str()),
        (429, Some("rate-limited")),
        "{refused}"
    );
    assert_eq!(creds(&b).0, 429);
    assert_eq!(
        recorder.count_action("AssumeRole"),
        assumed,
        "no STS call when limited"
    );

    // PostgreSQL down: no credentials from either replica, a 503 that says why without the
    // database's details, and STS not asked.
    let bob = token("bob", &["payments"]);
    pg.stop();
    for base in [&a, &b] {
        let (status, v) = call(
            base,
            "POST",
            "/v1/credentials",
            &bob,
            Some(json!({"role": "payments-api"})),
        );
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["code"], "audit-unavailable", "{v}");
        assert!(v.get("AccessKeyId").is_none());
        let text = v.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains("postgres"),
            "{text}"
        );
    }
    assert_eq!(recorder.count_action("AssumeRole"), assumed);

    // Back up: both replicas recover by themselves, at the first request (a connection the
    // server closed is replaced before it is used).
    pg.restart();
    for base in [&a, &b] {
        let (status, v) = call(
            base,
            "POST",
            "/v1/credentials",
            &bob,
            Some(json!({"role": "payments-api"})),
        );
        assert_eq!(status, 200, "{base}: {v}");
    }
    let mut raw = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let granted: i64 = raw
        .query_one(
            "SELECT count(*) FROM broker_audit WHERE decision = 'granted'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(granted, 6, "4 for alice, 2 for bob, every one audited");
}
