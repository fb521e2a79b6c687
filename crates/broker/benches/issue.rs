//! Broker issuance latency and throughput without STS latency: the broker talks to a
//! loopback STS that answers `AssumeRole` at once, so what is measured is the broker's own
//! work — token verification, authorisation, the durable audit commit (an fsync), the
//! response. Prints p50/p99 and requests/s for the SQLite audit file and for PostgreSQL (a
//! server the test kit starts on loopback, the replicas' shared store; the target is p99
//! under 5 ms at 4 clients); run with `cargo bench -p credwarden-broker`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use broker::auth::testing::TestIdp;
use broker::Broker;
use serde_json::json;

const ASSUME_ROLE: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIABENCHMARK0000001</AccessKeyId>
      <SecretAccessKey>benchmark-secret-key-not-real-0000000000</SecretAccessKey>
      <SessionToken>benchmark-session-token</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser><AssumedRoleId>AROABENCHMARK:alice</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/payments-api/alice</Arn></AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;

fn main() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/credwarden-bench");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/credwarden-bench",
    );
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIdp::new("bench");
    std::fs::write(dir.path().join("jwks.json"), &idp.jwks).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = testkit::postgres::Postgres::start();
    let sqlite = dir.path().join("audit.sqlite").display().to_string();
    for (backend, audit) in [("SQLite", sqlite.as_str()), ("PostgreSQL", pg.url.as_str())] {
        measure(&rt, &idp, dir.path(), backend, audit);
    }
}

/// Start a broker on `audit` and measure issuance at 1 and 4 clients.
fn measure(
    rt: &tokio::runtime::Runtime,
    idp: &TestIdp,
    dir: &std::path::Path,
    backend: &str,
    audit: &str,
) {
    let (sts, broker_addr) = rt.block_on(async {
        let sts = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sts_addr: SocketAddr = sts.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/",
                post(|| async { ([("content-type", "text/xml")], ASSUME_ROLE) }),
            );
            axum::serve(sts, app).await.unwrap();
        });
        let cfg = broker::config::parse(&format!(
            r#"audit = "{}"
rate_limit_per_minute = 100000000
read_role_tags = false
[[roles]]
arn = "arn:aws:iam::123456789012:role/payments-api"
groups = ["payments"]
[auth]
mode = "jwt"
jwks_file = "{}"
issuer = "https://idp.test"
audience = "credwarden"
[[networks]]
name = "loopback"
clients = ["127.0.0.0/8"]
egress = ["198.51.100.0/24"]
[aws]
endpoint_url = "http://{sts_addr}"
region = "us-east-1"
"#,
            audit,
            dir.join("jwks.json").display()
        ))
        .unwrap();
        let broker = Arc::new(Broker::new(cfg).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(broker::http::serve(
            broker,
            listener,
            std::future::pending(),
        ));
        (sts_addr, addr)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = idp.sign(
        json!({"alg": "ES256", "kid": "bench"}),
        json!({"iss": "https://idp.test", "aud": "credwarden", "sub": "alice", "groups": ["payments"], "exp": now + 3600}),
    );
    let url = format!("http://{broker_addr}/v1/credentials");
    let body = json!({"role": "payments-api"}).to_string();
    let request = |agent: &ureq::Agent| {
        let t = Instant::now();
        let r = agent
            .post(&url)
            .set("authorization", &format!("Bearer {token}"))
            .set("content-type", "application/json")
            .send_string(&body)
            .expect("issued");
        assert_eq!(r.status(), 200);
        t.elapsed()
    };
    let warm = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    for _ in 0..50 {
        request(&warm);
    }
    println!("broker issuance against a loopback STS ({sts}), {backend} audit committed before each response");
    for clients in [1usize, 4] {
        let per_client = 2000 / clients;
        let started = Instant::now();
        let mut all: Vec<Duration> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    s.spawn(|| {
                        let agent = ureq::AgentBuilder::new()
                            .timeout(Duration::from_secs(10))
                            .build();
                        (0..per_client).map(|_| request(&agent)).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let secs = started.elapsed().as_secs_f64();
        all.sort();
        let q = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
        println!(
            "  {clients} client(s): {:>6} requests  p50 {:.2} ms  p99 {:.2} ms  {:.0} requests/s",
            all.len(),
            q(0.5),
            q(0.99),
            all.len() as f64 / secs
        );
    }
}
