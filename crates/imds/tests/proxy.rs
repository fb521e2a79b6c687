//! The metadata proxy in front of a real `imds::serve` upstream, attacked with a corpus of
//! SSRF and request-smuggling tricks over raw TCP. Each trick must be refused, or be
//! harmless (answered without credentials); SDK User-Agents must still get credentials.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use imds::log::{Finding, LogSink, MemoryLog};
use imds::proxy::{MetadataProxy, ProxyConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const ROLE: &str = "web-app";
const KEY: &str = "ASIAPROXYTEST0000001";

struct Setup {
    upstream: Running,
    proxy: SocketAddr,
    log: Arc<MemoryLog>,
    findings: mpsc::UnboundedReceiver<Finding>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn setup(adjust: impl FnOnce(&mut ProxyConfig)) -> Setup {
    let upstream = start_server(
        test_config(ROLE),
        static_source(KEY, Duration::from_secs(3600)),
    )
    .await;
    let mut cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: format!("http://{}", upstream.addr),
        ..ProxyConfig::default()
    };
    cfg.header_read_timeout = Duration::from_secs(1);
    cfg.account = Some("123456789012".into());
    adjust(&mut cfg);
    let log = Arc::new(MemoryLog::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let proxy = MetadataProxy::bind(cfg, log.clone() as Arc<dyn LogSink>, Arc::new(tx))
        .await
        .unwrap();
    let addr = proxy.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(proxy.run(async {
        let _ = stopped.await;
    }));
    Setup {
        upstream,
        proxy: addr,
        log,
        findings: rx,
        _stop: stop,
    }
}

fn leaked(r: &Reply) -> bool {
    r.body.contains(KEY) || r.body.contains("-secret")
}

const BOTO: &str = "Botocore/1.34.0 Python/3.12.1 Linux/6.1.0";

#[tokio::test]
async fn sdk_user_agents_get_credentials_and_other_paths_pass() {
    let mut s = setup(|_| {}).await;
    for ua in [
        BOTO,
        "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1",
        "aws-cli/2.15.0 md/awscrt#0.19.18 ua/2.0",
        "aws-sdk-java/2.21.0 Linux/6.1 OpenJDK_64-Bit_Server_VM/17",
        "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 api/imds#1.14.11",
        "aws-sdk-go/1.50.0 (go1.21.5; linux; amd64)",
        "aws-sdk-js/3.490.0 ua/2.0",
        "aws-sdk-nodejs/2.1530.0 linux/v18.19.0",
        "aws-sdk-rust/1.1.4 os/linux lang/rust/1.75.0",
        "aws-sdk-ruby3/3.190.0",
        "aws-sdk-dotnet-coreclr/3.7.300",
        "aws-sdk-php/3.295.0",
        "aws-sdk-cpp/1.11.200 Linux/6.1 x86_64 GCC/12",
    ] {
        // Every SDK fetches an IMDSv2 token first; credential paths need one.
        let t = request(
            s.proxy,
            "PUT",
            "/latest/api/token",
            &[
                ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
                ("User-Agent", ua),
            ],
        )
        .await
        .body;
        let list = get(
            s.proxy,
            "/latest/meta-data/iam/security-credentials/",
            &[("User-Agent", ua), ("X-aws-ec2-metadata-token", &t)],
        )
        .await;
        assert_eq!((list.status, list.body.as_str()), (200, ROLE), "{ua}");
        let doc = get(
            s.proxy,
            &format!("/latest/meta-data/iam/security-credentials/{ROLE}"),
            &[("User-Agent", ua), ("X-aws-ec2-metadata-token", &t)],
        )
        .await;
        assert_eq!(doc.json()["AccessKeyId"], KEY, "{ua}");
    }
    // IMDSv2 through the proxy: token PUT from any client, credentials only for the SDK.
    let t = request(
        s.proxy,
        "PUT",
        "/latest/api/token",
        &[
            ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("User-Agent", "curl/8.5.0"),
        ],
    )
    .await;
    assert_eq!(t.status, 200);
    let doc = get(
        s.proxy,
        &format!("/latest/meta-data/iam/security-credentials/{ROLE}"),
        &[("User-Agent", BOTO), ("X-aws-ec2-metadata-token", &t.body)],
    )
    .await;
    assert_eq!(doc.json()["AccessKeyId"], KEY);
    // Ordinary metadata is for everyone.
    for ua in ["curl/8.5.0", "python-requests/2.31.0"] {
        assert_eq!(
            get(
                s.proxy,
                "/latest/meta-data/instance-id",
                &[("User-Agent", ua)]
            )
            .await
            .body,
            "i-0c0ffee0c0ffee000"
        );
        assert_eq!(
            get(
                s.proxy,
                "/latest/dynamic/instance-identity/document",
                &[("User-Agent", ua)]
            )
            .await
            .json()["accountId"],
            "123456789012"
        );
        assert_eq!(
            get(s.proxy, "/latest/meta-data/iam/info", &[("User-Agent", ua)])
                .await
                .status,
            200
        );
    }
    assert!(
        s.findings.try_recv().is_err(),
        "no findings for allowed traffic"
    );
    let lines = s.log.lines();
    assert!(lines.iter().all(|l| l["decision"] == "allow"), "{lines:?}");
    assert!(lines.iter().any(|l| l["sensitive"] == true
        && l["user_agent"]
            .as_str()
            .unwrap_or("")
            .starts_with("Botocore/")));
    s.upstream.stop().await;
}

/// (name, raw request). Every one targets credentials.
fn corpus() -> Vec<(&'static str, String)> {
    let p = format!("/latest/meta-data/iam/security-credentials/{ROLE}");
    let sdk = format!("User-Agent: {BOTO}\r\n");
    let boto3 = "User-Agent: Boto3/1.34.0 md/Botocore#1.34.0\r\n";
    let req = |path: &str, headers: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n{headers}Connection: close\r\n\r\n"
        )
    };
    vec![
        ("python-requests", req(&p, "User-Agent: python-requests/2.31.0\r\n")),
        ("curl", req(&p, "User-Agent: curl/8.5.0\r\n")),
        ("java url fetcher", req(&p, "User-Agent: Java/1.8.0_392\r\n")),
        ("go http client", req(&p, "User-Agent: Go-http-client/1.1\r\n")),
        ("wget", req(&p, "User-Agent: Wget/1.21.4\r\n")),
        ("empty user agent", req(&p, "User-Agent: \r\n")),
        ("no user agent", req(&p, "")),
        ("prefixed botocore", req(&p, "User-Agent: xBotocore/1.0\r\n")),
        ("botocore inside a browser UA", req(&p, "User-Agent: Mozilla/5.0 Botocore/1.2\r\n")),
        ("lowercase botocore", req(&p, "User-Agent: botocore/1.34.0\r\n")),
        ("leading space", req(&p, "User-Agent:  \t \r\n")),
        ("botocore without version", req(&p, "User-Agent: Botocore/\r\n")),
        ("two user agents", req(&p, "User-Agent: curl/8.5.0\r\nUser-Agent: Botocore/1.34.0\r\n")),
        ("non-ascii user agent", format!("GET {p} HTTP/1.1\r\nHost: x\r\nUser-Agent: Botocore/1.0 \u{e9}\r\nConnection: close\r\n\r\n")),
        ("x-forwarded-for", req(&p, &format!("User-Agent: {BOTO}\r\nX-Forwarded-For: 203.0.113.9\r\n"))),
        ("X-FORWARDED-FOR", req(&p, &format!("User-Agent: {BOTO}\r\nX-FORWARDED-FOR: 203.0.113.9\r\n"))),
        ("x-forwarded_for underscore", req(&p, &format!("User-Agent: {BOTO}\r\nx-forwarded_for: 203.0.113.9\r\n"))),
        ("forwarded", req(&p, &format!("User-Agent: {BOTO}\r\nForwarded: for=203.0.113.9\r\n"))),
        ("via", req(&p, &format!("User-Agent: {BOTO}\r\nVia: 1.1 squid\r\n"))),
        ("header name case", req("/latest/meta-data/IAM/Security-Credentials/", "user-agent: curl/8\r\n")),
        ("versioned path", req("/2021-07-15/meta-data/iam/security-credentials/", "User-Agent: curl/8\r\n")),
        ("percent-encoded slash", req("/latest/meta-data/iam%2Fsecurity-credentials/", "User-Agent: curl/8\r\n")),
        ("percent-encoded letters", req("/latest/meta-data/iam/%73ecurity-credentials/", "User-Agent: curl/8\r\n")),
        ("encoded dot-dot", req("/latest/meta-data/iam/x/%2e%2e/security-credentials/", "User-Agent: curl/8\r\n")),
        ("double encoding", req("/latest/meta-data/iam/%2573ecurity-credentials/", "User-Agent: curl/8\r\n")),
        ("dot segments", req("/latest/meta-data/iam/./security-credentials/", "User-Agent: curl/8\r\n")),
        ("dot-dot segments", req("/latest/meta-data/x/../iam/security-credentials/", "User-Agent: curl/8\r\n")),
        ("double slashes", req("//latest//meta-data//iam//security-credentials//", "User-Agent: curl/8\r\n")),
        ("backslash", req("/latest/meta-data/iam\\security-credentials/", "User-Agent: curl/8\r\n")),
        ("path parameter", req("/latest/meta-data/iam/security-credentials;x=1/", "User-Agent: curl/8\r\n")),
        ("query junk", req(&format!("{p}?x=1"), "User-Agent: curl/8\r\n")),
        ("trailing junk", req(&format!("{p}%00"), "User-Agent: curl/8\r\n")),
        ("http/1.0 without host", format!("GET {p} HTTP/1.0\r\nUser-Agent: {BOTO}\r\n\r\n")),
        ("absolute-form target", format!("GET http://169.254.169.254{p} HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n")),
        (
            "absolute-form with SDK UA",
            format!("GET http://169.254.169.254{p} HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: {BOTO}\r\nConnection: close\r\n\r\n"),
        ),
        ("two hosts", req(&p, "Host: evil.example\r\nUser-Agent: curl/8\r\n")),
        ("identity credentials", req("/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance", "User-Agent: curl/8\r\n")),
        ("signed identity document", req("/latest/dynamic/instance-identity/pkcs7", "User-Agent: curl/8\r\n")),
        ("post with body", format!("POST {p} HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")),
        ("oversized headers", req(&p, &format!("User-Agent: {BOTO}\r\nX-Pad: {}\r\n", "a".repeat(9000)))),
        ("header smuggling (obs-fold)", req(&p, "User-Agent: curl/8\r\n Botocore/1.34.0\r\n")),
        // Issue 12, item 4: an AWS SDK aimed at the proxy as an API endpoint (S3 GetObject,
        // bucket "latest", path-style) has an allow-listed User-Agent; its headers differ.
        ("signed S3 GetObject", req(&p, &format!(
            "{boto3}X-Amz-Date: 20240501T120000Z\r\nX-Amz-Content-SHA256: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240501/us-east-1/s3/\
             aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\n\
             amz-sdk-invocation-id: 1\r\n",
            "e3b0".repeat(16)
        ))),
        ("authorization only", req(&p, &format!("{sdk}Authorization: Bearer x\r\n"))),
        ("x-amz-date only", req(&p, &format!("{sdk}X-Amz-Date: 20240501T120000Z\r\n"))),
        (
            "x_amz_content_sha256 underscore",
            req(&p, &format!("{sdk}x_amz_content_sha256: UNSIGNED-PAYLOAD\r\n")),
        ),
        ("security token", req(&p, &format!("{sdk}X-Amz-Security-Token: x\r\n"))),
        ("unsigned S3 GetObject", req(&p, &format!(
            "{boto3}x-amz-checksum-mode: ENABLED\r\namz-sdk-invocation-id: 1\r\n\
             amz-sdk-request: attempt=1\r\n"
        ))),
        (
            "unsigned, no x-amz headers (IMDSv1 GET)",
            req(&p, &format!("{boto3}amz-sdk-invocation-id: 1\r\n")),
        ),
        ("SDK user agent without a token", req(&p, &sdk)),
        ("identity document without a token", req("/latest/dynamic/instance-identity/pkcs7", &sdk)),
    ]
}

#[tokio::test]
async fn bypass_corpus_is_refused() {
    let mut s = setup(|_| {}).await;
    let cases = corpus();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (name, raw_req) in &cases {
        let r = raw(s.proxy, raw_req.as_bytes()).await;
        if leaked(&r) || r.status == 200 {
            failures.push(format!("{name}: {} {}", r.status, r.body));
        }
    }
    assert!(failures.is_empty(), "bypasses:\n{}", failures.join("\n"));
    // Blocked credential fetches are findings in the contract's shape.
    let mut findings = Vec::new();
    while let Ok(f) = s.findings.try_recv() {
        findings.push(f);
    }
    assert!(findings.len() >= 20, "{} findings", findings.len());
    let f = serde_json::to_value(&findings[0]).unwrap();
    for k in [
        "id",
        "detector",
        "severity",
        "time",
        "account",
        "region",
        "principal",
        "access_key_id",
        "source",
        "event_ids",
        "summary",
        "details",
        "remediation",
    ] {
        assert!(f.get(k).is_some(), "{k} missing in {f}");
    }
    assert_eq!(f["detector"], "imds-proxy-blocked");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["account"], "123456789012");
    assert_eq!(f["source"]["ip"], "127.0.0.1");
    assert_eq!(f["source"]["user_agent"], "python-requests/2.31.0");
    // Every request is logged, refused ones as "deny".
    let lines = s.log.lines();
    assert!(
        lines.iter().filter(|l| l["decision"] == "deny").count() >= cases.len() - 3,
        "{}",
        lines.len()
    );
    s.upstream.stop().await;
}

/// Issue 12, item 4: the token `PUT` is not an API call either; signing headers are refused.
#[tokio::test]
async fn signed_token_requests_are_refused() {
    let s = setup(|_| {}).await;
    for header in [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/x"),
        ("X-Amz-Date", "20240501T120000Z"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ] {
        let r = request(
            s.proxy,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60"), header],
        )
        .await;
        assert_eq!(r.status, 403, "{header:?}: {}", r.body);
    }
    s.upstream.stop().await;
}

/// Issue 12, item 5: user-data (bootstrap secrets) is gated by default; cloud-init reads it
/// when allowed by flag, and gets nothing else.
#[tokio::test]
async fn user_data_is_gated_by_default_and_cloud_init_is_allowed_by_flag() {
    const CLOUD_INIT: &str = "Cloud-Init/23.4.4";
    let mut s = setup(|_| {}).await;
    let token = |addr| async move {
        request(
            addr,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        )
        .await
        .body
    };
    let t = token(s.proxy).await;
    for ua in ["curl/8.5.0", "python-requests/2.31.0", CLOUD_INIT] {
        for path in ["/latest/user-data", "/2021-07-15/user-data/"] {
            let r = get(
                s.proxy,
                path,
                &[("User-Agent", ua), ("X-aws-ec2-metadata-token", &t)],
            )
            .await;
            assert_eq!(r.status, 403, "{ua} {path}: {}", r.body);
        }
    }
    let f = s
        .findings
        .try_recv()
        .expect("a blocked user-data read is a finding");
    assert_eq!(f.detector, "imds-proxy-blocked");
    assert_eq!(f.details["path"], "/latest/user-data");
    s.upstream.stop().await;

    let mut s = setup(|c| {
        c.user_data_user_agents = vec![imds::proxy::CLOUD_INIT_USER_AGENT.into()];
    })
    .await;
    let t = token(s.proxy).await;
    let r = get(
        s.proxy,
        "/latest/user-data",
        &[("User-Agent", CLOUD_INIT), ("X-aws-ec2-metadata-token", &t)],
    )
    .await;
    // Forwarded: the upstream (a local metadata server) has no user-data and says 404.
    assert_eq!(r.status, 404, "{}", r.body);
    let line = s.log.lines().pop().unwrap();
    assert_eq!(
        (&line["decision"], &line["sensitive"]),
        (&"allow".into(), &true.into())
    );
    // cloud-init is no SDK: no credentials for it, and curl still gets no user-data.
    let creds = get(
        s.proxy,
        &format!("/latest/meta-data/iam/security-credentials/{ROLE}"),
        &[("User-Agent", CLOUD_INIT), ("X-aws-ec2-metadata-token", &t)],
    )
    .await;
    assert_eq!(creds.status, 403);
    assert!(!leaked(&creds));
    let curl = get(
        s.proxy,
        "/latest/user-data",
        &[
            ("User-Agent", "curl/8.5.0"),
            ("X-aws-ec2-metadata-token", &t),
        ],
    )
    .await;
    assert_eq!(curl.status, 403);
    assert_eq!(
        s.findings.try_recv().unwrap().details["path"],
        format!("/latest/meta-data/iam/security-credentials/{ROLE}")
    );
    s.upstream.stop().await;
}

/// This machine's address on a non-loopback interface (no packet is sent: a UDP `connect`
/// only picks the route). The peer tests need one; a machine without any cannot run them.
fn non_loopback_ip() -> std::net::IpAddr {
    for probe in ["192.0.2.1:9", "10.255.255.1:9", "[2001:db8::1]:9"] {
        let bind = if probe.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        if let Ok(sock) = std::net::UdpSocket::bind(bind) {
            if sock.connect(probe).is_ok() {
                if let Ok(local) = sock.local_addr() {
                    if !local.ip().is_loopback() && !local.ip().is_unspecified() {
                        return local.ip();
                    }
                }
            }
        }
    }
    panic!("this test needs a non-loopback network interface");
}

/// Issue 12, item 4: the proxy answers this host only (unless networks are allowed). After the
/// README's `OUTPUT` DNAT a local process arrives from the instance's own address, not
/// 127.0.0.1: that is still this host, one hop from the metadata service, and gets tokens and
/// credentials. Foreign peers cannot be made on one machine; `ProxyConfig`'s unit tests cover
/// them (refused; an allowed network is two hops and needs `token_hop_limit` 2).
#[tokio::test]
async fn this_hosts_own_address_is_the_instance_and_documentation_addresses_are_not() {
    let ip = non_loopback_ip();
    assert!(imds::proxy::is_this_host(ip));
    for foreign in ["203.0.113.7", "198.51.100.2", "2001:db8::7"] {
        assert!(
            !imds::proxy::is_this_host(foreign.parse().unwrap()),
            "{foreign}"
        );
    }
    let mut s = setup(move |c: &mut ProxyConfig| {
        c.listen = SocketAddr::new(ip, 0);
        c.allow_non_loopback = true;
    })
    .await;
    let addr = SocketAddr::new(ip, s.proxy.port());
    let t = request(
        addr,
        "PUT",
        "/latest/api/token",
        &[
            ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("User-Agent", BOTO),
        ],
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.body);
    let r = get(
        addr,
        &format!("/latest/meta-data/iam/security-credentials/{ROLE}"),
        &[("User-Agent", BOTO), ("X-aws-ec2-metadata-token", &t.body)],
    )
    .await;
    assert_eq!(r.json()["AccessKeyId"], KEY);
    assert!(s.findings.try_recv().is_err());
    let line = s.log.lines().pop().unwrap();
    let remote: SocketAddr = line["remote"].as_str().unwrap().parse().unwrap();
    assert_eq!(remote.ip(), ip, "the peer really was not loopback: {line}");
    s.upstream.stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let s = setup(|_| {}).await;
    let mut c = tokio::net::TcpStream::connect(s.proxy).await.unwrap();
    c.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Slowloris: one header byte at a time, never finishing.
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut c, &mut buf),
    )
    .await;
    assert!(
        closed || started.elapsed() < Duration::from_secs(6),
        "connection held"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert!(
        eventually(Duration::from_secs(3), async || s
            .log
            .lines()
            .iter()
            .any(|l| l["event"] == "connection"))
        .await,
        "timeout logged"
    );
}

#[tokio::test]
async fn require_v2_and_gated_user_data() {
    let s = setup(|c| {
        c.require_v2 = true;
        c.gate_user_data = true;
    })
    .await;
    assert_eq!(
        get(
            s.proxy,
            "/latest/meta-data/instance-id",
            &[("User-Agent", "curl/8")]
        )
        .await
        .status,
        401
    );
    let t = request(
        s.proxy,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    )
    .await
    .body;
    assert_eq!(
        get(
            s.proxy,
            "/latest/meta-data/instance-id",
            &[("X-aws-ec2-metadata-token", &t)]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        get(
            s.proxy,
            "/latest/user-data",
            &[("X-aws-ec2-metadata-token", &t), ("User-Agent", "curl/8")]
        )
        .await
        .status,
        403
    );
    for ttl in ["0", "21601", "x"] {
        assert_eq!(
            request(
                s.proxy,
                "PUT",
                "/latest/api/token",
                &[("X-aws-ec2-metadata-token-ttl-seconds", ttl)]
            )
            .await
            .status,
            400
        );
    }
    let fwd = request(
        s.proxy,
        "PUT",
        "/latest/api/token",
        &[
            ("X-aws-ec2-metadata-token-ttl-seconds", "60"),
            ("x-forwarded-for", "1.2.3.4"),
        ],
    )
    .await;
    assert_eq!(fwd.status, 403);
    assert_eq!(get(s.proxy, "/latest/api/token", &[]).await.status, 405);
}

#[tokio::test]
async fn configuration_is_checked() {
    let bad = |c: ProxyConfig| async {
        MetadataProxy::bind(
            c,
            Arc::new(imds::log::NullLog),
            Arc::new(|_: imds::log::Finding| {}),
        )
        .await
        .is_err()
    };
    let base = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ProxyConfig::default()
    };
    assert!(
        bad(ProxyConfig {
            upstream: "https://169.254.169.254".into(),
            ..base.clone()
        })
        .await
    );
    assert!(
        bad(ProxyConfig {
            upstream: "http://169.254.169.254/latest".into(),
            ..base.clone()
        })
        .await
    );
    assert!(
        bad(ProxyConfig {
            allowed_user_agents: vec![String::new()],
            ..base.clone()
        })
        .await
    );
    assert!(
        bad(ProxyConfig {
            listen: "0.0.0.0:0".parse().unwrap(),
            ..base.clone()
        })
        .await
    );
    assert!(!bad(base).await);
}
