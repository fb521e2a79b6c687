//! The broker end to end against the moto server on loopback: a user in the right group gets
//! credentials that work with an AWS SDK (boto3 `sts get_caller_identity` on moto); a user
//! outside the group is refused and audited; the injected session policy, session name and
//! source identity are in the `AssumeRole` request moto received (seen by a recording relay
//! in between); the audit row exists when the response arrives; with the audit store locked
//! by another writer, the broker refuses to issue; anomalies become findings; tokens that are
//! not exactly right are refused.

use broker::auth::testing::TestIdp;
use broker::{Broker, BrokerConfig};
use serde_json::{json, Value};
use testkit::{Moto, Recorder, BOTO3_KW};

const ISSUER: &str = "https://idp.test";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Harness {
    url: String,
    idp: TestIdp,
    moto: Moto,
    recorder: Recorder,
    dir: tempfile::TempDir,
}

impl Harness {
    fn token(&self, user: &str, groups: &[&str]) -> String {
        self.idp.sign(json!({"alg": "ES256", "kid": "test"}), json!({"iss": ISSUER, "aud": "credwarden", "sub": user, "groups": groups, "exp": now() + 600}))
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, String) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        common::call(&self.url, method, path, &headers, body)
    }

    fn audit_rows(&self) -> Vec<(String, String, Option<String>)> {
        let c = rusqlite::Connection::open(self.dir.path().join("audit.sqlite")).unwrap();
        let mut s = c
            .prepare("SELECT user, decision, access_key_id FROM broker_audit ORDER BY seq")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn findings(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("findings.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

mod common;

fn start() -> Harness {
    common::aws_env();
    let moto = Moto::start();
    let recorder = Recorder::start(moto.port);
    moto.python(
        &format!(
            r#"
import boto3, json, os
iam = boto3.client("iam", **{BOTO3_KW})
trust = json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::123456789012:root"}}, "Action": "sts:AssumeRole"}}]}})
iam.create_role(RoleName="payments-api", AssumeRolePolicyDocument=trust, Tags=[{{"Key": "credwarden:groups", "Value": "payments payments-oncall"}}])
iam.create_role(RoleName="admin", AssumeRolePolicyDocument=trust, Tags=[{{"Key": "credwarden:groups", "Value": "security"}}])
# A member account's role, granted by its own tag: the broker reads it through the read role
# it assumes there ([aws] role_tag_accounts).
c = boto3.client("sts", **{BOTO3_KW}).assume_role(RoleArn="arn:aws:iam::222233334444:role/credwarden-read", RoleSessionName="seed")["Credentials"]
member = boto3.client("iam", **dict({BOTO3_KW}, aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"]))
member.create_role(RoleName="ledger-reader", AssumeRolePolicyDocument=trust, Tags=[{{"Key": "credwarden:groups", "Value": "ledger"}}])
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
findings = "{findings}"
admin_groups = ["security"]
rate_limit_per_minute = 12
refusal_burst = 3
directory = "{directory}"
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
role_tag_accounts = ["222233334444"]
assume_role_name = "credwarden-read"
"#,
        audit = dir.path().join("audit.sqlite").display(),
        findings = dir.path().join("findings.jsonl").display(),
        jwks = dir.path().join("jwks.json").display(),
        directory = dir.path().join("directory.json").display(),
        endpoint = recorder.url,
    );
    let addr = common::serve(toml_from(&config));
    Harness {
        url: format!("http://{addr}"),
        idp,
        moto,
        recorder,
        dir,
    }
}

fn toml_from(text: &str) -> BrokerConfig {
    broker::config::parse(text).unwrap()
}

#[test]
fn broker_end_to_end_on_moto() {
    let h = start();
    let alice = h.token("alice", &["payments"]);
    let bob = h.token("bob", &["marketing"]);

    // Alice sees the role her group may use, and only it.
    let (status, v, _) = h.call("GET", "/v1/roles", Some(&alice), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["roles"],
        json!(["arn:aws:iam::123456789012:role/payments-api"])
    );

    // Alice gets credentials; they work with boto3 against moto.
    let (status, creds, cache) = h.call(
        "POST",
        "/v1/credentials",
        Some(&alice),
        Some(json!({"role": "payments-api"})),
    );
    assert_eq!(status, 200, "{creds}");
    assert_eq!(cache, "no-store");
    let key = creds["AccessKeyId"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ASIA"), "{creds}");
    // The audit row is there by the time the response is.
    let rows = h.audit_rows();
    assert_eq!(
        rows.last().unwrap(),
        &("alice".to_owned(), "granted".to_owned(), Some(key.clone()))
    );
    let identity = h.moto.python(
        r#"
import boto3, os, sys
sts = boto3.client("sts", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2], aws_session_token=sys.argv[3])
print(sts.get_caller_identity()["Arn"])
"#,
        &[&key, creds["SecretAccessKey"].as_str().unwrap(), creds["SessionToken"].as_str().unwrap()],
    );
    assert!(
        identity
            .trim()
            .ends_with(":assumed-role/payments-api/alice"),
        "{identity}"
    );

    // What STS received: the session policy locking to the network, the user as session
    // name and source identity, at most an hour.
    let assume = h
        .recorder
        .bodies()
        .into_iter()
        .find(|b| b.contains("Action=AssumeRole") && b.contains("role%2Fpayments-api"))
        .expect("an AssumeRole request reached moto");
    for needle in [
        "RoleSessionName=alice",
        "SourceIdentity=alice",
        "DurationSeconds=3600",
        "Policy=",
        "aws%3ASourceIp",
        "198.51.100.0%2F24",
        "aws%3AViaAWSService",
    ] {
        assert!(assume.contains(needle), "{needle} missing from {assume}");
    }

    // The other formats.
    let (_, process, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&alice),
        Some(json!({"role": "payments-api", "format": "process"})),
    );
    assert_eq!(process["Version"], 1);
    let (_, exports, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&alice),
        Some(json!({"role": "arn:aws:iam::123456789012:role/payments-api", "format": "exports", "duration_seconds": 900})),
    );
    assert!(
        exports
            .as_str()
            .unwrap()
            .starts_with("export AWS_ACCESS_KEY_ID=ASIA"),
        "{exports}"
    );

    // A member account's role, authorised by its tag there, is issued like any other; the
    // broker's own account's users of other groups do not see it.
    let dave = h.token("dave", &["ledger"]);
    let (status, v, _) = h.call("GET", "/v1/roles", Some(&dave), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["roles"],
        json!(["arn:aws:iam::222233334444:role/ledger-reader"])
    );
    let (status, member_creds, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&dave),
        Some(json!({"role": "ledger-reader"})),
    );
    assert_eq!(status, 200, "{member_creds}");
    let identity = h.moto.python(
        r#"
import boto3, os, sys
sts = boto3.client("sts", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2], aws_session_token=sys.argv[3])
print(sts.get_caller_identity()["Arn"])
"#,
        &[
            member_creds["AccessKeyId"].as_str().unwrap(),
            member_creds["SecretAccessKey"].as_str().unwrap(),
            member_creds["SessionToken"].as_str().unwrap(),
        ],
    );
    assert_eq!(
        identity.trim(),
        "arn:aws:sts::222233334444:assumed-role/ledger-reader/dave"
    );
    // The member's tags were read through its read role, under a session name that says
    // who reads.
    assert!(
        h.recorder
            .bodies()
            .iter()
            .any(|b| b.contains("Action=AssumeRole")
                && b.contains("222233334444%3Arole%2Fcredwarden-read")
                && b.contains("RoleSessionName=credwarden")),
        "the broker did not assume the member's read role"
    );

    // Bob is not in the group: refused, audited, no credentials.
    for _ in 0..3 {
        let (status, v, _) = h.call(
            "POST",
            "/v1/credentials",
            Some(&bob),
            Some(json!({"role": "payments-api"})),
        );
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["code"], "not-authorised");
        assert!(v.get("AccessKeyId").is_none());
    }
    assert!(
        h.audit_rows()
            .iter()
            .filter(|r| r.0 == "bob" && r.1 == "refused")
            .count()
            == 3
    );

    // The directory file grants Bob the group; it is read again when it changes.
    std::fs::write(
        h.dir.path().join("directory.json"),
        r#"{"users": {"bob": ["payments"]}}"#,
    )
    .unwrap();
    let (status, v, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&bob),
        Some(json!({"role": "payments-api"})),
    );
    assert_eq!(status, 200, "{v}");

    // Anomalies: Alice's first use of the role; Bob's burst of refusals.
    let findings = h.findings();
    assert!(
        findings.iter().any(|f| f["detector"] == "broker-anomaly"
            && f["details"]["kind"] == "first-role-request"
            && f["principal"] == "alice"),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f["details"]["kind"] == "repeated-refusals"
                && f["principal"] == "bob"
                && f["severity"] == "high"),
        "{findings:?}"
    );
    assert_eq!(
        findings
            .iter()
            .filter(|f| f["details"]["kind"] == "first-role-request" && f["principal"] == "alice")
            .count(),
        1,
        "only the first request is new"
    );
    for f in &findings {
        for key in [
            "id",
            "severity",
            "time",
            "principal",
            "source",
            "event_ids",
            "summary",
            "details",
            "remediation",
        ] {
            assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
        }
    }

    // Admins read the audit; others may not. Secrets are never in it.
    let carol = h.token("carol", &["security"]);
    let (status, audit, _) = h.call("GET", "/v1/audit?limit=50", Some(&carol), None);
    assert_eq!(status, 200);
    let text = audit.to_string();
    assert!(
        text.contains(&key)
            && !text.contains(creds["SecretAccessKey"].as_str().unwrap())
            && !text.contains(creds["SessionToken"].as_str().unwrap())
    );
    assert_eq!(h.call("GET", "/v1/audit", Some(&alice), None).0, 403);

    // Bad requests and bad tokens.
    assert_eq!(
        h.call(
            "POST",
            "/v1/credentials",
            Some(&alice),
            Some(json!({"role": "payments-api", "duration_seconds": 7200}))
        )
        .0,
        400
    );
    assert_eq!(
        h.call(
            "POST",
            "/v1/credentials",
            Some(&alice),
            Some(json!({"rolle": "x"}))
        )
        .0,
        400
    );
    assert_eq!(
        h.call(
            "POST",
            "/v1/credentials",
            None,
            Some(json!({"role": "payments-api"}))
        )
        .0,
        401
    );
    let expired = h
        .idp
        .sign(json!({"alg": "ES256", "kid": "test"}), json!({"iss": ISSUER, "aud": "credwarden", "sub": "alice", "groups": ["payments"], "exp": now() - 3600}));
    let (status, v, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&expired),
        Some(json!({"role": "payments-api"})),
    );
    assert_eq!(status, 401);
    assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");
    let forged = TestIdp::new("test")
        .sign(json!({"alg": "ES256", "kid": "test"}), json!({"iss": ISSUER, "aud": "credwarden", "sub": "alice", "groups": ["security"], "exp": now() + 600}));
    assert_eq!(h.call("GET", "/v1/audit", Some(&forged), None).0, 401);
    // An oversized body is refused: 413, or the connection is closed while the client is still
    // sending (which side wins that race is up to the kernel).
    let big = json!({"role": "x".repeat(64 * 1024)}).to_string();
    match ureq::post(&format!("{}/v1/credentials", h.url))
        .set("Authorization", &format!("Bearer {alice}"))
        .set("content-type", "application/json")
        .send_string(&big)
    {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 413),
        Err(ureq::Error::Transport(t)) => assert!(
            t.to_string().contains("Broken pipe") || t.to_string().contains("reset"),
            "{t}"
        ),
        Ok(r) => panic!("an oversized request was accepted: {}", r.status()),
    }

    // With the audit store locked by another writer, nothing is issued.
    let lock = rusqlite::Connection::open(h.dir.path().join("audit.sqlite")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, v, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&alice),
        Some(json!({"role": "payments-api"})),
    );
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["code"], "audit-unavailable");
    assert!(
        v.get("AccessKeyId").is_none() && !v.to_string().contains("ASIA"),
        "{v}"
    );
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    let (status, _, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&alice),
        Some(json!({"role": "payments-api"})),
    );
    assert_eq!(status, 200, "issues again once the audit store is writable");

    // Self-service: asking to be added to a group is audited and raised for the directory's keepers.
    let (status, v, _) = h.call(
        "POST",
        "/v1/access-requests",
        Some(&alice),
        Some(json!({"group": "security", "reason": "on call this week"})),
    );
    assert_eq!(status, 202, "{v}");
    assert!(h
        .audit_rows()
        .iter()
        .any(|r| r.0 == "alice" && r.1 == "access-requested"));
    assert!(h
        .findings()
        .iter()
        .any(|f| f["details"]["kind"] == "access-request" && f["principal"] == "alice"));
    assert_eq!(
        h.call(
            "POST",
            "/v1/access-requests",
            Some(&alice),
            Some(json!({"group": "payments", "reason": "x"}))
        )
        .0,
        409
    );

    // Per-user rate limit: Alice runs out, Bob does not.
    let codes: Vec<u16> = (0..12)
        .map(|_| {
            h.call(
                "POST",
                "/v1/credentials",
                Some(&alice),
                Some(json!({"role": "payments-api"})),
            )
            .0
        })
        .collect();
    assert!(codes.contains(&429), "{codes:?}");
    let (status, v, _) = h.call(
        "POST",
        "/v1/credentials",
        Some(&alice),
        Some(json!({"role": "payments-api"})),
    );
    assert_eq!((status, v["code"].as_str()), (429, Some("rate-limited")));
    assert_eq!(
        h.call(
            "POST",
            "/v1/credentials",
            Some(&bob),
            Some(json!({"role": "payments-api"}))
        )
        .0,
        200
    );

    // Metrics reflect all of it.
    let (_, metrics, _) = h.call("GET", "/metrics", None, None);
    let m = metrics.as_str().unwrap();
    assert!(
        m.contains("credwarden_broker_audit_failures_total 1"),
        "{m}"
    );
    assert!(
        m.contains("credwarden_broker_issue_local_seconds_count"),
        "{m}"
    );
}

/// Header mode: identity only from the trusted proxy, each identity header exactly once, the
/// client address from the proxy's (last) X-Forwarded-For hop, groups only when configured.
#[test]
fn header_mode_trusts_only_the_proxy_and_single_headers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = broker::config::parse(&format!(
        r#"audit = "{}"
read_role_tags = false
[auth]
mode = "header"
trusted_proxies = ["10.0.0.5/32"]
[[networks]]
name = "vpn"
clients = ["10.8.0.0/16"]
egress = ["198.51.100.0/24"]
[aws]
region = "us-east-1"
"#,
        dir.path().join("audit.sqlite").display()
    ))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let b = rt.block_on(Broker::new(cfg)).unwrap();
    let proxy: std::net::IpAddr = "10.0.0.5".parse().unwrap();
    let headers = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .collect::<Vec<_>>()
        }
    };
    let c = rt
        .block_on(b.authenticate(
            &headers(&[
                ("x-authenticated-user", "alice"),
                ("x-authenticated-groups", "security"),
            ]),
            proxy,
        ))
        .unwrap();
    assert_eq!(c.user, "alice");
    assert!(c.groups.is_empty(), "the groups header is opt-in");
    let e = rt
        .block_on(b.authenticate(
            &headers(&[
                ("x-authenticated-user", "alice"),
                ("x-authenticated-user", "admin"),
            ]),
            proxy,
        ))
        .unwrap_err();
    assert_eq!(e.code, "repeated-header");
    assert_eq!(
        rt.block_on(b.authenticate(
            &headers(&[("x-authenticated-user", "alice")]),
            "192.0.2.9".parse().unwrap()
        ))
        .unwrap_err()
        .status,
        401
    );
    // IPv4 through an IPv6 socket is still the proxy.
    assert!(rt
        .block_on(b.authenticate(
            &headers(&[("x-authenticated-user", "alice")]),
            "::ffff:10.0.0.5".parse().unwrap()
        ))
        .is_ok());
    assert_eq!(
        b.client_ip(proxy, &["203.0.113.1, 10.8.0.7".into()])
            .unwrap()
            .to_string(),
        "10.8.0.7"
    );
    assert_eq!(b.client_ip(proxy, &[]).unwrap_err().code, "client-address");
    assert_eq!(
        b.client_ip(proxy, &["10.8.0.7".into(), "10.8.0.8".into()])
            .unwrap_err()
            .code,
        "client-address"
    );
    assert_eq!(
        b.client_ip(proxy, &["10.8.0.7:5555".into()])
            .unwrap_err()
            .code,
        "client-address"
    );
}
