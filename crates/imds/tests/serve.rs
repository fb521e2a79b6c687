//! The local metadata server over real loopback HTTP: IMDSv2 tokens, IMDSv1 policy, the
//! credential documents, the ECS endpoint, and the refresher (real credential_process
//! scripts, counted invocations, expiry, backoff).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use imds::creds::RefreshPolicy;
use imds::serve::{Ec2Access, EcsEndpoint, MetadataServer};

const ROLE: &str = "dev-laptop";
const CREDS: &str = "/latest/meta-data/iam/security-credentials/";

#[tokio::test]
async fn imdsv2_token_flow_and_credentials_document() {
    let srv = start_server(
        test_config(ROLE),
        static_source("ASIASTATIC0000000001", Duration::from_secs(3600)),
    )
    .await;
    let put = request(
        srv.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    )
    .await;
    assert_eq!(put.status, 200);
    assert_eq!(
        put.header("x-aws-ec2-metadata-token-ttl-seconds")
            .as_deref(),
        Some("60")
    );
    let token = put.body.clone();
    assert!(token.len() >= 40);
    let again = request(
        srv.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    )
    .await;
    assert_ne!(again.body, token, "tokens are random");

    let list = get(srv.addr, CREDS, &[("X-aws-ec2-metadata-token", &token)]).await;
    assert_eq!((list.status, list.body.as_str()), (200, ROLE));
    let doc = get(
        srv.addr,
        &format!("{CREDS}{ROLE}"),
        &[("X-aws-ec2-metadata-token", &token)],
    )
    .await;
    assert_eq!(doc.status, 200);
    let j = doc.json();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "Code",
        "LastUpdated",
        "Type",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
    ] {
        assert!(keys.contains(&k), "{k} missing in {j}");
    }
    assert_eq!(j["Code"], "Success");
    assert_eq!(j["Type"], "AWS-HMAC");
    assert_eq!(j["AccessKeyId"], "ASIASTATIC0000000001");
    assert_eq!(j["Token"], "ASIASTATIC0000000001-token");
    let exp = j["Expiration"].as_str().unwrap();
    assert!(
        exp.len() == 20 && exp.ends_with('Z') && exp.as_bytes()[10] == b'T',
        "{exp}"
    );
    // EC2 writes the keys in this order; some hand-written parsers depend on it.
    assert!(
        doc.body.find("\"Code\"") < doc.body.find("\"AccessKeyId\"")
            && doc.body.find("\"Token\"") < doc.body.find("\"Expiration\"")
    );

    let unknown = get(
        srv.addr,
        &format!("{CREDS}admin"),
        &[("X-aws-ec2-metadata-token", &token)],
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["Code"], "NotFound");
    let bad = get(srv.addr, CREDS, &[("X-aws-ec2-metadata-token", "forged")]).await;
    assert_eq!(
        bad.status, 401,
        "an invalid token is refused even when v1 is allowed"
    );

    let info = get(srv.addr, "/latest/meta-data/iam/info", &[])
        .await
        .json();
    assert_eq!(info["Code"], "Success");
    assert_eq!(
        info["InstanceProfileArn"],
        format!("arn:aws:iam::123456789012:instance-profile/{ROLE}")
    );
    assert!(info["InstanceProfileId"]
        .as_str()
        .unwrap()
        .starts_with("AIPA"));
    let id = get(srv.addr, "/latest/dynamic/instance-identity/document", &[])
        .await
        .json();
    assert_eq!(
        (id["accountId"].as_str(), id["region"].as_str()),
        (Some("123456789012"), Some("eu-west-1"))
    );
    assert!(id["instanceId"].as_str().unwrap().starts_with("i-"));
    assert_eq!(
        get(srv.addr, "/latest/meta-data/placement/region", &[])
            .await
            .body,
        "eu-west-1"
    );
    assert_eq!(
        get(
            srv.addr,
            "/latest/meta-data/placement/availability-zone/",
            &[]
        )
        .await
        .body,
        "eu-west-1a"
    );
    assert!(get(srv.addr, "/latest/meta-data/", &[])
        .await
        .body
        .contains("iam/"));
    assert_eq!(get(srv.addr, "/latest/api/token", &[]).await.status, 405);
    assert_eq!(
        request(srv.addr, "POST", "/latest/meta-data/", &[])
            .await
            .status,
        405
    );

    // Nothing secret in the log.
    let log = serde_json::to_string(&srv.log.lines()).unwrap();
    assert!(
        !log.contains("ASIASTATIC0000000001-secret")
            && !log.contains(&token)
            && !log.contains("-token\"")
    );
    srv.stop().await;
}

#[tokio::test]
async fn token_ttl_bounds_and_forwarded_put() {
    let srv = start_server(
        test_config(ROLE),
        static_source("ASIASTATIC0000000002", Duration::from_secs(3600)),
    )
    .await;
    for (ttl, want) in [
        ("0", 400),
        ("21601", 400),
        ("-1", 400),
        ("abc", 400),
        ("", 400),
        ("1", 200),
        ("21600", 200),
    ] {
        let r = request(
            srv.addr,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", ttl)],
        )
        .await;
        assert_eq!(r.status, want, "ttl {ttl:?}: {}", r.body);
    }
    assert_eq!(
        request(srv.addr, "PUT", "/latest/api/token", &[])
            .await
            .status,
        400,
        "TTL header required"
    );
    let fwd = request(
        srv.addr,
        "PUT",
        "/latest/api/token",
        &[
            ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("X-Forwarded-For", "10.0.0.1"),
        ],
    )
    .await;
    assert_eq!(fwd.status, 403);
    // Tokens expire.
    let t = request(
        srv.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "1")],
    )
    .await
    .body;
    assert_eq!(
        get(srv.addr, CREDS, &[("X-aws-ec2-metadata-token", &t)])
            .await
            .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        get(srv.addr, CREDS, &[("X-aws-ec2-metadata-token", &t)])
            .await
            .status,
        401,
        "expired token"
    );
    srv.stop().await;
}

#[tokio::test]
async fn imdsv1_refused_when_v2_required() {
    let mut cfg = test_config(ROLE);
    cfg.ec2 = Ec2Access::V2;
    let srv = start_server(
        cfg,
        static_source("ASIASTATIC0000000003", Duration::from_secs(3600)),
    )
    .await;
    let r = get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["Code"], "Unauthorized");
    let t = request(
        srv.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
    )
    .await
    .body;
    let ok = get(
        srv.addr,
        &format!("{CREDS}{ROLE}"),
        &[("X-aws-ec2-metadata-token", &t)],
    )
    .await;
    assert_eq!(ok.json()["AccessKeyId"], "ASIASTATIC0000000003");
    srv.stop().await;
}

#[tokio::test]
async fn ecs_endpoint_requires_the_authorization_token() {
    let mut cfg = test_config(ROLE);
    cfg.ecs = Some(EcsEndpoint {
        path: "/v2/credentials/credwarden".into(),
        authorization_token: "s3cr3t-container-token".into(),
    });
    let srv = start_server(
        cfg,
        static_source("ASIASTATIC0000000004", Duration::from_secs(3600)),
    )
    .await;
    assert_eq!(
        get(srv.addr, "/v2/credentials/credwarden", &[])
            .await
            .status,
        401
    );
    assert_eq!(
        get(
            srv.addr,
            "/v2/credentials/credwarden",
            &[("Authorization", "wrong")]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        get(
            srv.addr,
            "/v2/credentials/credwarden",
            &[
                ("Authorization", "s3cr3t-container-token"),
                ("Authorization", "x")
            ]
        )
        .await
        .status,
        401
    );
    let ok = get(
        srv.addr,
        "/v2/credentials/credwarden",
        &[("Authorization", "s3cr3t-container-token")],
    )
    .await;
    assert_eq!(ok.status, 200);
    let j = ok.json();
    assert_eq!(j["AccessKeyId"], "ASIASTATIC0000000004");
    assert_eq!(
        j["RoleArn"],
        format!("arn:aws:iam::123456789012:role/{ROLE}")
    );
    for k in ["SecretAccessKey", "Token", "Expiration"] {
        assert!(j[k].is_string(), "{k}");
    }
    assert_eq!(
        get(
            srv.addr,
            "/v2/credentials/other",
            &[("Authorization", "s3cr3t-container-token")]
        )
        .await
        .status,
        404
    );
    srv.stop().await;
}

#[tokio::test]
async fn refuses_bad_configs() {
    let mut cfg = test_config(ROLE);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let e = MetadataServer::bind(
        cfg,
        static_source("ASIAX", Duration::from_secs(60)),
        Arc::new(imds::log::NullLog),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, imds::ImdsError::NonLoopback(_)), "{e}");
    let mut cfg = test_config(ROLE);
    cfg.ecs = Some(EcsEndpoint {
        path: "/v2/credentials/x".into(),
        authorization_token: "short".into(),
    });
    assert!(MetadataServer::bind(
        cfg,
        static_source("ASIAX", Duration::from_secs(60)),
        Arc::new(imds::log::NullLog)
    )
    .await
    .is_err());
    let cfg = test_config("bad/role");
    assert!(MetadataServer::bind(
        cfg,
        static_source("ASIAX", Duration::from_secs(60)),
        Arc::new(imds::log::NullLog)
    )
    .await
    .is_err());
}

fn policy(refresh_before_ms: u64, margin_ms: u64) -> RefreshPolicy {
    RefreshPolicy {
        refresh_before: Duration::from_millis(refresh_before_ms),
        serve_margin: Duration::from_millis(margin_ms),
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        request_wait: Duration::from_millis(800),
    }
}

#[tokio::test]
async fn refreshes_before_expiry_from_a_credential_process() {
    let dir = tempfile::tempdir().unwrap();
    let script = script(dir.path(), 6, None);
    let mut cfg = test_config(ROLE);
    cfg.refresh = policy(4000, 1000);
    let srv = start_server(cfg, process_source(&script)).await;
    let first = get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await.json();
    assert_eq!(first["AccessKeyId"], "ASIATEST00000001");
    // 6 s credentials refreshed 4 s before expiry: a new fetch about every 2 s, before expiry.
    let mut seen = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(5500) {
        let r = get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        let exp = credwarden_core::EventTime::parse(j["Expiration"].as_str().unwrap()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(exp.millis() > now, "served expired credentials");
        seen.insert(j["AccessKeyId"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = count(dir.path());
    assert!((3..=5).contains(&n), "{n} invocations in 5.5 s");
    assert!(seen.len() >= 3, "{seen:?}");
    let refreshed = srv
        .log
        .lines()
        .iter()
        .filter(|l| l["event"] == "credentials-refreshed")
        .count();
    assert!(refreshed >= 3);
    let log = serde_json::to_string(&srv.log.lines()).unwrap();
    assert!(
        !log.contains("secret-1") && !log.contains("token-1") && !log.contains("ASIATEST00000001"),
        "only key prefixes are logged"
    );
    srv.stop().await;
}

#[tokio::test]
async fn never_serves_expired_credentials() {
    let dir = tempfile::tempdir().unwrap();
    // First call succeeds with 3 s credentials, every later one fails.
    let script = script(dir.path(), 3, Some(2));
    let mut cfg = test_config(ROLE);
    cfg.refresh = policy(1000, 1000);
    let mut ecs_cfg = cfg.clone();
    cfg.ecs = Some(EcsEndpoint {
        path: "/creds".into(),
        authorization_token: "0123456789abcdef0123".into(),
    });
    let srv = start_server(cfg, process_source(&script)).await;
    assert_eq!(
        get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await.json()["AccessKeyId"],
        "ASIATEST00000001"
    );
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let r = get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["Code"], "CredentialsUnavailable");
    assert!(!r.body.contains("ASIATEST"), "{}", r.body);
    assert!(
        !r.body.contains("broker unreachable") && !r.body.contains("creds.sh"),
        "the source's error stays in the server's log: {}",
        r.body
    );
    assert_eq!(
        get(
            srv.addr,
            "/creds",
            &[("Authorization", "0123456789abcdef0123")]
        )
        .await
        .status,
        503
    );
    srv.stop().await;

    // A source that hands out already-expired credentials is a failure, not something to serve.
    let dir = tempfile::tempdir().unwrap();
    let expired = common::script(dir.path(), 0, None);
    ecs_cfg.refresh = policy(1000, 1000);
    let srv = start_server(ecs_cfg, process_source(&expired)).await;
    let r = get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await;
    assert_eq!(r.status, 503);
    assert!(!r.body.contains("too soon to serve"), "{}", r.body);
    let log = serde_json::to_string(&srv.log.lines()).unwrap();
    assert!(
        log.contains("too soon to serve"),
        "the reason is logged: {log}"
    );
    srv.stop().await;
}

/// Issue 12, item 10: a failing credential command's name, arguments and stderr reach the
/// server's log (stderr for `credwarden imds serve`), never the client.
#[tokio::test]
async fn the_503_names_neither_the_credential_command_nor_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fetch-from-vault.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         echo \"vault at https://vault.internal:8200 refused token hvs.EXAMPLE\" >&2\nexit 7\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = test_config(ROLE);
    cfg.refresh = policy(1000, 1000);
    cfg.ecs = Some(EcsEndpoint {
        path: "/creds".into(),
        authorization_token: "0123456789abcdef0123".into(),
    });
    let source = Arc::new(imds::creds::ProcessSource::new(
        script.display().to_string(),
        ["--role", "payments-admin"],
    ));
    let srv = start_server(cfg, source).await;
    for r in [
        get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await,
        get(
            srv.addr,
            "/creds",
            &[("Authorization", "0123456789abcdef0123")],
        )
        .await,
    ] {
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.json()["Code"], "CredentialsUnavailable");
        for private in [
            "vault",
            "hvs.EXAMPLE",
            "fetch-from-vault",
            "payments-admin",
            "exit",
        ] {
            assert!(!r.body.contains(private), "{private} in {}", r.body);
        }
    }
    let log = serde_json::to_string(&srv.log.lines()).unwrap();
    assert!(
        log.contains("credentials-unavailable") && log.contains("refused token"),
        "the operator still learns why: {log}"
    );
    srv.stop().await;
}

/// Issue 12, item 2: IMDSv2 is the default; IMDSv1 only when asked for, with a warning.
#[tokio::test]
async fn imdsv1_is_refused_by_default_and_served_only_when_asked_for() {
    let mut cfg = imds::serve::ServeConfig::new(ROLE);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let key = "ASIASTATIC0000000005";
    let srv = start_server(cfg.clone(), static_source(key, Duration::from_secs(3600))).await;
    // A GET-only request forgery: no token, no credentials, not even the role's name.
    for path in [CREDS.to_string(), format!("{CREDS}{ROLE}")] {
        let r = get(srv.addr, &path, &[]).await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(
            !r.body.contains(key) && !r.body.contains(ROLE),
            "{}",
            r.body
        );
    }
    let t = request(
        srv.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    )
    .await
    .body;
    let ok = get(
        srv.addr,
        &format!("{CREDS}{ROLE}"),
        &[("X-aws-ec2-metadata-token", &t)],
    )
    .await;
    assert_eq!(ok.json()["AccessKeyId"], key);
    assert!(!srv.log.lines().iter().any(|l| l["event"] == "warning"));
    srv.stop().await;

    cfg.ec2 = Ec2Access::V1AndV2;
    let srv = start_server(cfg, static_source(key, Duration::from_secs(3600))).await;
    assert_eq!(
        get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await.json()["AccessKeyId"],
        key
    );
    assert!(
        srv.log
            .lines()
            .iter()
            .any(|l| l["event"] == "warning" && l["message"].as_str().unwrap().contains("IMDSv1")),
        "IMDSv1 is announced in the log"
    );
    srv.stop().await;
}

/// Issue 12, item 2: a server started for the ECS endpoint does not also serve the EC2 paths
/// (no token, no role name, no credentials to any local process) unless asked.
#[tokio::test]
async fn an_ecs_server_serves_no_ec2_paths_unless_asked() {
    let mut cfg = test_config(ROLE);
    cfg.ecs = Some(EcsEndpoint {
        path: "/v2/credentials/credwarden".into(),
        authorization_token: "s3cr3t-container-token".into(),
    });
    cfg.ec2 = Ec2Access::Off;
    let key = "ASIASTATIC0000000006";
    let srv = start_server(cfg.clone(), static_source(key, Duration::from_secs(3600))).await;
    let put = request(
        srv.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    )
    .await;
    assert_eq!(put.status, 404, "no IMDSv2 token either: {}", put.body);
    for path in [
        CREDS.to_string(),
        format!("{CREDS}{ROLE}"),
        "/latest/meta-data/iam/info".into(),
        "/latest/dynamic/instance-identity/document".into(),
        "/latest/meta-data/".into(),
    ] {
        let r = get(srv.addr, &path, &[]).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(
            !r.body.contains(key) && !r.body.contains(ROLE),
            "{}",
            r.body
        );
    }
    let ecs = get(
        srv.addr,
        "/v2/credentials/credwarden",
        &[("Authorization", "s3cr3t-container-token")],
    )
    .await;
    assert_eq!(ecs.json()["AccessKeyId"], key);
    srv.stop().await;

    // Nothing to serve at all is a configuration error.
    cfg.ecs = None;
    let e = MetadataServer::bind(
        cfg,
        static_source("ASIAX", Duration::from_secs(60)),
        Arc::new(imds::log::NullLog),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, imds::ImdsError::Config(_)), "{e}");
}

/// Issue 12, item 4 (defence in depth on the laptop): an AWS SDK aimed at the server as an API
/// endpoint signs its request; metadata clients never do.
#[tokio::test]
async fn signed_api_requests_get_no_credentials() {
    let key = "ASIASTATIC0000000007";
    let srv = start_server(
        test_config(ROLE),
        static_source(key, Duration::from_secs(3600)),
    )
    .await;
    let path = format!("{CREDS}{ROLE}");
    let slashed = format!("/{path}/");
    for header in [
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240501/us-east-1/s3/aws4_request",
        ),
        ("X-Amz-Date", "20240501T120000Z"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("X-Amz-Security-Token", "x"),
        ("x-amz-checksum-mode", "ENABLED"),
    ] {
        for p in [&path, &slashed] {
            let r = get(srv.addr, p, &[header]).await;
            assert_eq!(r.status, 403, "{p} {header:?}: {}", r.body);
            assert!(!r.body.contains(key));
        }
    }
    // The Rust and Go SDKs' metadata clients send X-Amz-User-Agent: still a metadata client.
    let r = get(
        srv.addr,
        &path,
        &[("x-amz-user-agent", "aws-sdk-rust/1.3.0 api/imds")],
    )
    .await;
    assert_eq!(r.json()["AccessKeyId"], key);
    srv.stop().await;
}

#[tokio::test]
async fn backs_off_when_the_source_fails() {
    let dir = tempfile::tempdir().unwrap();
    let script = script(dir.path(), 60, Some(1));
    let mut cfg = test_config(ROLE);
    cfg.refresh = policy(1000, 1000);
    let srv = start_server(cfg, process_source(&script)).await;
    // Requests keep coming; they must not defeat the backoff (100, 200, 400, 400 ms, …).
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let r = get(srv.addr, &format!("{CREDS}{ROLE}"), &[]).await;
        assert_eq!(r.status, 503);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = count(dir.path());
    assert!(
        (4..=10).contains(&n),
        "{n} invocations in 2.5 s: backoff not applied"
    );
    let failures: Vec<_> = srv
        .log
        .lines()
        .into_iter()
        .filter(|l| l["event"] == "credentials-refresh-failed")
        .collect();
    let retries: Vec<u64> = failures
        .iter()
        .map(|l| l["retry_in_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(&retries[..4], &[100, 200, 400, 400], "{retries:?}");
    srv.stop().await;
}
