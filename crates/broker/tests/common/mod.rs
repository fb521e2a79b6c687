//! What the broker's integration tests share: the AWS environment of a test against moto, a
//! broker served on loopback from its own runtime thread, and one HTTP call.

#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::{Broker, BrokerConfig};
use serde_json::Value;

/// The broker's own AWS identity, for moto: fixed test credentials, no profile files, no
/// instance metadata — nothing of the machine's own AWS set-up.
pub fn aws_env() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/credwarden-test");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/credwarden-test",
    );
}

/// Serve a broker built from `cfg` over plain HTTP on a free loopback port (the same bounded
/// server as TLS), on a runtime thread of its own; its address.
pub fn serve(cfg: BrokerConfig) -> SocketAddr {
    serve_on(cfg, std::net::TcpListener::bind("127.0.0.1:0").unwrap())
}

/// [`serve`] on a listener already bound (a test whose configuration names the port).
pub fn serve_on(cfg: BrokerConfig, listener: std::net::TcpListener) -> SocketAddr {
    aws_env();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let broker = Arc::new(Broker::new(cfg).await.expect("broker starts"));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tx.send(()).unwrap();
            broker::http::serve(broker, listener, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("broker listening");
    addr
}

/// One request: (status, JSON body or the text as a string, Cache-Control).
pub fn call(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut req = ureq::request(method, &format!("{base}{path}")).timeout(Duration::from_secs(30));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match body {
        Some(b) => req
            .set("content-type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let cache = resp.header("cache-control").unwrap_or("").to_owned();
    let text = resp.into_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        cache,
    )
}

/// The time in seconds since the epoch (token lifetimes).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// moto with one role `name` in account 123456789012 that the account may assume, and a
/// recorder in front of it (count the broker's STS calls).
pub fn moto_with_role(name: &str) -> (testkit::Moto, testkit::Recorder) {
    aws_env();
    let moto = testkit::Moto::start();
    let recorder = testkit::Recorder::start(moto.port);
    moto.python(
        &format!(
            r#"
import boto3, json, os
iam = boto3.client("iam", **{kw})
trust = json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::123456789012:root"}}, "Action": "sts:AssumeRole"}}]}})
iam.create_role(RoleName="{name}", AssumeRolePolicyDocument=trust)
"#,
            kw = testkit::BOTO3_KW
        ),
        &[],
    );
    (moto, recorder)
}
