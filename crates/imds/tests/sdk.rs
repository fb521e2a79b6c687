//! Real SDK clients against the local metadata server: boto3's own credential chain finds the
//! served credentials through the IMDS endpoint, through the ECS container endpoint, and
//! through the proxy, and the moto server accepts them for `sts get_caller_identity`.
//! Needs python3 with boto3 and moto (`pip install 'moto[server]'`); fails rather than skips.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use imds::log::{LogSink, MemoryLog};
use imds::proxy::{MetadataProxy, ProxyConfig};
use imds::serve::{Ec2Access, EcsEndpoint};

const ROLE: &str = "sdk-role";
const KEY: &str = "ASIABOTOTEST00000001";

const BOTO: &str = r#"
import boto3, json, os
s = boto3.session.Session(region_name="us-east-1")
c = s.get_credentials()
f = c.get_frozen_credentials()
ident = s.client("sts", endpoint_url=os.environ["MOTO"]).get_caller_identity()
print(json.dumps({"method": c.method, "key": f.access_key, "secret": f.secret_key, "token": f.token, "account": ident["Account"]}))
"#;

async fn boto(env: Vec<(&'static str, String)>, moto: &str) -> serde_json::Value {
    let moto = moto.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg("-c").arg(BOTO);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_CONFIG_FILE", "/nonexistent/credwarden-imds-test")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/credwarden-imds-test",
            )
            .env("MOTO", moto);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_resolves_served_credentials_and_moto_accepts_them() {
    let moto = start_moto();
    let mut cfg = test_config(ROLE);
    cfg.ecs = Some(EcsEndpoint {
        path: "/v2/credentials/credwarden".into(),
        authorization_token: "container-token-0123456789".into(),
    });
    cfg.ec2 = Ec2Access::V2;
    let srv = start_server(cfg, static_source(KEY, Duration::from_secs(3600))).await;

    // 1. EC2 instance metadata (IMDSv2, since v1 is refused here).
    let r = boto(
        vec![(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{}/", srv.addr),
        )],
        &moto.url,
    )
    .await;
    assert_eq!(r["method"], "iam-role");
    assert_eq!(r["key"], KEY);
    assert_eq!(r["secret"], format!("{KEY}-secret"));
    assert_eq!(r["token"], format!("{KEY}-token"));
    assert_eq!(r["account"].as_str().unwrap().len(), 12);
    let uas: Vec<String> = srv
        .log
        .lines()
        .iter()
        .filter_map(|l| l["user_agent"].as_str().map(str::to_owned))
        .collect();
    assert!(
        uas.iter()
            .any(|u| u.starts_with("Boto3/") || u.starts_with("Botocore/")),
        "boto3's IMDS User-Agent: {uas:?}"
    );

    // 2. ECS container credentials with the authorization token.
    let r = boto(
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{}/v2/credentials/credwarden", srv.addr),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                "container-token-0123456789".into(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ],
        &moto.url,
    )
    .await;
    assert_eq!(r["method"], "container-role");
    assert_eq!(r["key"], KEY);

    // 3. Through the proxy: boto3's User-Agent is allow-listed, so the proxy passes it.
    let log = Arc::new(MemoryLog::default());
    let proxy_cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: format!("http://{}", srv.addr),
        ..ProxyConfig::default()
    };
    let (tx, mut findings) = tokio::sync::mpsc::unbounded_channel();
    let proxy = MetadataProxy::bind(proxy_cfg, log.clone() as Arc<dyn LogSink>, Arc::new(tx))
        .await
        .unwrap();
    let paddr = proxy.local_addr();
    tokio::spawn(proxy.run(std::future::pending()));
    let r = boto(
        vec![(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{paddr}/"),
        )],
        &moto.url,
    )
    .await;
    assert_eq!(r["key"], KEY);
    assert!(findings.try_recv().is_err());
    assert!(log
        .lines()
        .iter()
        .any(|l| l["sensitive"] == true && l["decision"] == "allow"));
    srv.stop().await;
}

/// boto3 aimed at the proxy as a custom S3 endpoint: `get_object(Bucket="latest",
/// Key="meta-data/iam/security-credentials/ROLE")` with path-style addressing asks for exactly
/// the credential path, with an allow-listed User-Agent. Signed (the application's own keys) or
/// unsigned, it must not get the instance's credentials (issue 12, item 4).
const S3_TRICK: &str = r#"
import boto3, json, os, sys
from botocore import UNSIGNED
from botocore.config import Config
out = {}
for name, extra in [("signed", {}), ("unsigned", {"signature_version": UNSIGNED}),
                    ("unsigned-no-checksum", {"signature_version": UNSIGNED,
                                              "response_checksum_validation": "when_required"})]:
    s3 = boto3.client("s3", endpoint_url=os.environ["PROXY"], region_name="us-east-1",
                      aws_access_key_id="AKIAAPPLICATIONKEY01", aws_secret_access_key="app-secret",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                    **extra))
    try:
        body = s3.get_object(Bucket="latest", Key=os.environ["KEY"])["Body"].read().decode()
        out[name] = {"leaked": body}
    except s3.exceptions.ClientError as e:
        out[name] = {"status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_aimed_at_the_proxy_as_an_s3_endpoint_gets_no_credentials() {
    // The upstream plays an instance that still allows IMDSv1, as in the reported attack.
    let mut cfg = test_config(ROLE);
    cfg.ec2 = Ec2Access::V1AndV2;
    let srv = start_server(cfg, static_source(KEY, Duration::from_secs(3600))).await;
    let log = Arc::new(MemoryLog::default());
    let proxy_cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: format!("http://{}", srv.addr),
        ..ProxyConfig::default()
    };
    let (tx, mut findings) = tokio::sync::mpsc::unbounded_channel();
    let proxy = MetadataProxy::bind(proxy_cfg, log.clone() as Arc<dyn LogSink>, Arc::new(tx))
        .await
        .unwrap();
    let paddr = proxy.local_addr();
    tokio::spawn(proxy.run(std::future::pending()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(S3_TRICK)
            .env("PROXY", format!("http://{paddr}"))
            .env("KEY", format!("meta-data/iam/security-credentials/{ROLE}"))
            .env("AWS_CONFIG_FILE", "/nonexistent/credwarden-imds-test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(KEY), "credentials leaked: {stdout}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // Signed: refused for its signing headers. Unsigned: x-amz-checksum-mode gives it away,
    // and without that header it has no IMDSv2 token, which credential paths need.
    assert_eq!(r["signed"]["status"], 403, "{r}");
    assert_eq!(r["unsigned"]["status"], 403, "{r}");
    assert_eq!(r["unsigned-no-checksum"]["status"], 401, "{r}");
    let f = findings
        .try_recv()
        .expect("the signed attempt is a finding");
    assert_eq!(f.detector, "imds-proxy-blocked");
    assert!(
        f.details["reason"]
            .as_str()
            .unwrap()
            .contains("AWS API request"),
        "{}",
        f.details
    );
    let denied = log
        .lines()
        .iter()
        .filter(|l| l["decision"] == "deny" && l["sensitive"] == true)
        .count();
    assert!(denied >= 2, "{:?}", log.lines());
    srv.stop().await;
}

/// The AWS SDK for Rust's own IMDS credential provider (IMDSv2, the server requiring it)
/// resolves the served credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_resolves_served_credentials() {
    use aws_config::imds::credentials::ImdsCredentialsProvider;
    use aws_config::provider_config::ProviderConfig;
    use aws_credential_types::provider::ProvideCredentials;
    let key = "ASIARUSTSDKTEST00001";
    let mut cfg = test_config(ROLE);
    cfg.ec2 = Ec2Access::V2;
    let srv = start_server(cfg, static_source(key, Duration::from_secs(3600))).await;
    let http = aws_smithy_http_client::Builder::new().build_http();
    let provider_config = ProviderConfig::without_region().with_http_client(http);
    let client = aws_config::imds::Client::builder()
        .configure(&provider_config)
        .endpoint(format!("http://{}/", srv.addr))
        .unwrap()
        .build();
    let provider = ImdsCredentialsProvider::builder()
        .configure(&provider_config)
        .imds_client(client)
        .build();
    let creds = provider
        .provide_credentials()
        .await
        .expect("the SDK gets credentials from the metadata server");
    assert_eq!(creds.access_key_id(), key);
    // Through the proxy too: its metadata client sends X-Amz-User-Agent, which is not an API
    // signing header, and fetches a token before the credentials.
    let proxy_cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: format!("http://{}", srv.addr),
        ..ProxyConfig::default()
    };
    let (tx, mut findings) = tokio::sync::mpsc::unbounded_channel();
    let proxy = MetadataProxy::bind(proxy_cfg, Arc::new(imds::log::NullLog), Arc::new(tx))
        .await
        .unwrap();
    let paddr = proxy.local_addr();
    tokio::spawn(proxy.run(std::future::pending()));
    let via_proxy = ImdsCredentialsProvider::builder()
        .configure(&provider_config)
        .imds_client(
            aws_config::imds::Client::builder()
                .configure(&provider_config)
                .endpoint(format!("http://{paddr}/"))
                .unwrap()
                .build(),
        )
        .build()
        .provide_credentials()
        .await
        .expect("the SDK gets credentials through the proxy");
    assert_eq!(via_proxy.access_key_id(), key);
    assert!(findings.try_recv().is_err());
    assert_eq!(creds.session_token(), Some(format!("{key}-token").as_str()));
    assert!(
        srv.log
            .lines()
            .iter()
            .any(|l| l.to_string().contains("security-credentials")),
        "the request went through this server"
    );
    srv.stop().await;
}
