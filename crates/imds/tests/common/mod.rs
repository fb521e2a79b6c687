//! Shared helpers for the integration tests: real servers on loopback, a raw HTTP client for
//! requests no well-behaved client would send, credential scripts, moto.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imds::creds::{CredentialSource, Credentials, ProcessSource, StaticSource};
use imds::log::{LogSink, MemoryLog};
use imds::serve::{MetadataServer, ServeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Send raw bytes, read until the server closes (or 5 s pass), parse the first response.
/// status 0 means the server closed without answering.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    parse(&buf)
}

pub fn parse(buf: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A well-formed request with `Connection: close`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut r =
        format!("{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "PUT" {
        r.push_str("Content-Length: 0\r\n");
    }
    r.push_str("\r\n");
    raw(addr, r.as_bytes()).await
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers).await
}

pub struct Running {
    pub addr: SocketAddr,
    pub log: Arc<MemoryLog>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn test_config(role: &str) -> ServeConfig {
    let mut c = ServeConfig::new(role);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.role_arn = Some(format!("arn:aws:iam::123456789012:role/{role}"));
    c.region = "eu-west-1".into();
    // Most tests speak IMDSv1 for brevity (and the proxy's upstream plays an instance that
    // allows it); the default, IMDSv2 only, has its own tests.
    c.ec2 = imds::serve::Ec2Access::V1AndV2;
    c
}

pub async fn start_server(config: ServeConfig, source: Arc<dyn CredentialSource>) -> Running {
    let log = Arc::new(MemoryLog::default());
    let server = MetadataServer::bind(config, source, log.clone() as Arc<dyn LogSink>)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap()
    });
    Running {
        addr,
        log,
        stop: Some(tx),
        task,
    }
}

pub fn static_source(key: &str, lifetime: Duration) -> Arc<dyn CredentialSource> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    Arc::new(StaticSource(Credentials {
        access_key_id: key.into(),
        secret_access_key: format!("{key}-secret"),
        session_token: Some(format!("{key}-token")),
        expiration: credwarden_core::EventTime(now + lifetime.as_millis() as i64),
        last_updated: credwarden_core::EventTime(now),
    }))
}

/// A credential_process script: prints credentials living `life` seconds, numbered by
/// invocation (count in `dir/count`); fails (exit 3) on invocations listed in `fail_from`
/// onwards when given.
pub fn script(dir: &Path, life_secs: u64, fail_from: Option<u32>) -> PathBuf {
    let path = dir.join("creds.sh");
    let fail = fail_from.map_or(String::new(), |n| {
        format!("if [ \"$n\" -ge {n} ]; then echo 'broker unreachable' >&2; exit 3; fi\n")
    });
    let body = format!(
        "#!/bin/sh\nset -e\nd='{dir}'\nn=$(cat \"$d/count\" 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > \"$d/count\"\n{fail}\
         exp=$(date -u -d \"+{life_secs} seconds\" +%Y-%m-%dT%H:%M:%SZ)\n\
         printf '{{\"Version\":1,\"AccessKeyId\":\"ASIATEST%08d\",\"SecretAccessKey\":\"secret-%d\",\"SessionToken\":\"token-%d\",\"Expiration\":\"%s\"}}' $n $n $n $exp\n",
        dir = dir.display()
    );
    std::fs::write(&path, body).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub fn process_source(script: &Path) -> Arc<dyn CredentialSource> {
    Arc::new(ProcessSource::new(
        script.display().to_string(),
        Vec::<String>::new(),
    ))
}

pub fn count(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("count"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Poll until `f` is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub use testkit::Moto;

/// The moto server, from the workspace's shared test kit.
pub fn start_moto() -> Moto {
    Moto::start()
}
