//! `credwarden broker serve` over TLS and `credwarden creds` as users run them: an AWS CLI
//! profile whose `credential_process` is `credwarden creds … --process` gets credentials that
//! boto3 uses against the moto server on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use broker::auth::testing::TestIdp;
use serde_json::json;
use testkit::{free_port, python, Moto, BOTO3_KW};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_credwarden"));
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/credwarden-test")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/credwarden-test",
        )
        .env_remove("CREDWARDEN_TOKEN")
        .env_remove("CREDWARDEN_BROKER");
    c
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn broker_over_tls_feeds_credential_process() {
    let moto = Moto::start();
    moto.python(
        &format!(
            r#"
import boto3, json, os
iam = boto3.client("iam", **{BOTO3_KW})
trust = json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::123456789012:root"}}, "Action": "sts:AssumeRole"}}]}})
iam.create_role(RoleName="payments-api", AssumeRolePolicyDocument=trust, Tags=[{{"Key": "credwarden:groups", "Value": "payments"}}])
"#
        ),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // A test CA and a server certificate it signs, for 127.0.0.1.
    let openssl = |args: &[&str]| {
        assert!(
            Command::new("openssl")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "openssl {args:?}"
        )
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=credwarden-test-ca",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &p("key.pem"),
                "-out",
                &p("leaf.csr"),
            ],
        ]
        .concat(),
    );
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &p("leaf.ext"),
        "-out",
        &p("cert.pem"),
    ]);
    let idp = TestIdp::new("k");
    std::fs::write(p("jwks.json"), &idp.jwks).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = idp.sign(
        json!({"alg": "ES256", "kid": "k"}),
        json!({"iss": "https://idp.test", "aud": "credwarden", "sub": "alice", "groups": ["payments"], "exp": now + 600}),
    );
    std::fs::write(p("token"), &token).unwrap();
    let port = free_port();
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{key}"
audit = "{audit}"
[auth]
mode = "jwt"
jwks_file = "{jwks}"
issuer = "https://idp.test"
audience = "credwarden"
[[networks]]
name = "loopback"
clients = ["127.0.0.0/8"]
egress = ["198.51.100.0/24"]
[aws]
endpoint_url = "{moto}"
region = "us-east-1"
"#,
        cert = p("cert.pem"),
        key = p("key.pem"),
        audit = p("audit.sqlite"),
        jwks = p("jwks.json"),
        moto = moto.url
    );
    std::fs::write(p("broker.toml"), &config).unwrap();
    let mut child = bin()
        .args(["broker", "serve", "--config", &p("broker.toml")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _broker = Killed(child);
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(
        line.contains(&format!("https://127.0.0.1:{port}")),
        "{line}"
    );
    let url = format!("https://127.0.0.1:{port}");

    // credwarden creds --process, as credential_process runs it.
    let out = bin()
        .args([
            "creds",
            "payments-api",
            "--process",
            // This test is about the broker round trip: nothing cached in the user's home.
            "--no-cache",
            "--broker",
            &url,
            "--token-file",
            &p("token"),
            "--ca-file",
            &p("ca.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Version"], 1);
    assert!(v["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));

    // An AWS profile with credential_process: boto3 gets the broker's credentials itself.
    let command = format!(
        "{} creds payments-api --process --no-cache --broker {url} --token-file {} --ca-file {}",
        env!("CARGO_BIN_EXE_credwarden"),
        p("token"),
        p("ca.pem")
    );
    std::fs::write(
        p("aws-config"),
        format!("[profile payments]\ncredential_process = {command}\n"),
    )
    .unwrap();
    let arn = python(
        r#"
import boto3, os
s = boto3.Session(profile_name="payments")
print(s.client("sts", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1").get_caller_identity()["Arn"])
"#,
        &[
            ("ENDPOINT", &moto.url),
            ("AWS_CONFIG_FILE", &p("aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", &p("none")),
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ],
        &[],
    );
    assert!(
        arn.trim().ends_with("assumed-role/payments-api/alice"),
        "{arn}"
    );

    // The laptop chain: `imds serve` fed by `creds --process`, then `imds proxy` in front of
    // it. boto3 finds the broker's credentials through the metadata endpoint; a non-SDK client
    // asking the proxy for them (an SSRF) is refused and reported.
    let imds_port = free_port();
    let serve = bin()
        .args([
            "imds",
            "serve",
            "--role",
            "payments-api",
            "--require-v2",
            "--listen",
            &format!("127.0.0.1:{imds_port}"),
            "--credential-process",
            &command,
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Killed(serve);
    let proxy_port = free_port();
    let proxy = bin()
        .args([
            "imds",
            "proxy",
            "--listen",
            &format!("127.0.0.1:{proxy_port}"),
            "--upstream",
            &format!("http://127.0.0.1:{imds_port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proxy = Killed(proxy);
    for port in [imds_port, proxy_port] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "port {port} never opened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let via = |endpoint: &str| {
        python(
            r#"
import boto3, os
print(boto3.Session().client("sts", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1").get_caller_identity()["Arn"])
"#,
            &[
                ("ENDPOINT", &moto.url),
                ("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint),
                ("AWS_CONFIG_FILE", &p("none")),
                ("AWS_SHARED_CREDENTIALS_FILE", &p("none")),
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", ""),
            ],
            &[],
        )
    };
    assert!(via(&format!("http://127.0.0.1:{imds_port}/"))
        .trim()
        .ends_with("assumed-role/payments-api/alice"));
    assert!(via(&format!("http://127.0.0.1:{proxy_port}/"))
        .trim()
        .ends_with("assumed-role/payments-api/alice"));
    let ssrf = python(
        r#"
import os, urllib.request
base = "http://127.0.0.1:" + os.environ["PORT"]
token = urllib.request.urlopen(urllib.request.Request(base + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})).read().decode()
try:
    urllib.request.urlopen(urllib.request.Request(base + "/latest/meta-data/iam/security-credentials/payments-api", headers={"X-aws-ec2-metadata-token": token}))
    print("LEAKED")
except urllib.error.HTTPError as e:
    print(e.code)
"#,
        &[("PORT", &proxy_port.to_string())],
        &[],
    );
    assert_eq!(
        ssrf.trim(),
        "403",
        "a Python-urllib client must not get instance credentials through the proxy"
    );
    let _ = proxy.0.kill();
    let mut findings = String::new();
    std::io::Read::read_to_string(proxy.0.stdout.as_mut().unwrap(), &mut findings).unwrap();
    let f: serde_json::Value = serde_json::from_str(
        findings
            .lines()
            .next()
            .expect("the proxy reported the blocked fetch"),
    )
    .unwrap();
    assert_eq!(f["detector"], "imds-proxy-blocked");
    assert_eq!(f["severity"], "high");

    // Without the CA the client refuses the broker's certificate: a clear error, exit 1.
    let out = bin()
        .args([
            "creds",
            "payments-api",
            "--no-cache",
            "--broker",
            &url,
            "--token-file",
            &p("token"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the broker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A refused request says why.
    let out = bin()
        .args([
            "creds",
            "someone-elses-role",
            "--no-cache",
            "--broker",
            &url,
            "--token-file",
            &p("token"),
            "--ca-file",
            &p("ca.pem"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not-authorised"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain HTTP off loopback is refused at start.
    std::fs::write(
        p("open.toml"),
        config
            .replace(
                &format!("listen = \"127.0.0.1:{port}\""),
                "listen = \"0.0.0.0:0\"",
            )
            .replace("tls_cert", "# tls_cert")
            .replace("tls_key", "# tls_key"),
    )
    .unwrap();
    let out = bin()
        .args(["broker", "serve", "--config", &p("open.toml")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only allowed on loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 12, item 8: `--broker` is parsed, not prefix-matched: the token never goes over
/// plain HTTP to `http://localhost@10.255.255.1` (user `localhost`, host 10.255.255.1).
#[test]
fn creds_sends_the_token_over_plain_http_only_to_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "not-a-real-token").unwrap();
    for url in [
        "http://localhost@10.255.255.1",
        "http://127.0.0.1@10.255.255.1:8700/",
        "http://127.0.0.1.nip.io:8700",
        "http://10.255.255.1",
    ] {
        let out = bin()
            .args(["creds", "payments-api", "--broker", url, "--token-file"])
            .arg(&token)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(
            stderr.contains("https://") || stderr.contains("user name"),
            "{url}: {stderr}"
        );
        assert!(
            !stderr.contains("cannot reach"),
            "{url} was contacted: {stderr}"
        );
    }
}
