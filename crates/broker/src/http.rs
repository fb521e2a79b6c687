//! The broker's HTTP API (axum). Every error is a JSON object `{"error", "code",
//! "request_id"}`; bodies are capped; credentials are returned as JSON, in the AWS CLI
//! `credential_process` format, or as shell exports.
//!
//! | method, path | who | what |
//! |---|---|---|
//! | `GET /healthz` | anyone | `{"status":"ok"}` |
//! | `GET /metrics` | anyone | Prometheus text |
//! | `GET /v1/roles` | authenticated | `{"user","groups","roles"}` |
//! | `POST /v1/credentials` | authenticated | body `{"role", "duration_seconds"?, "format"?: "json"|"process"|"exports"}` |
//! | `GET /v1/audit?user=&limit=` | admin groups | audit entries, newest first |
//! | `POST /v1/access-requests` | authenticated | body `{"group", "reason"}`: audited, raised as a finding |

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::service::{Broker, Issued, Refusal, BUCKETS};

/// Requests larger than this are refused before they are parsed.
pub const MAX_BODY: usize = 16 * 1024;
/// Concurrent TLS connections at most.
pub const MAX_CONNECTIONS: usize = 1024;
/// A TLS connection (all its keep-alive requests) lives at most this long.
pub const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(120);

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/v1/roles", get(roles))
        .route("/v1/credentials", post(credentials))
        .route("/v1/audit", get(audit))
        .route("/v1/access-requests", post(access_request))
        .fallback(|| async {
            error(
                &Refusal {
                    status: 404,
                    code: "not-found",
                    message: "no such endpoint".into(),
                },
                "",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(broker)
}

fn request_id() -> String {
    let mut b = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn error(r: &Refusal, request_id: &str) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"error": r.message, "code": r.code, "request_id": request_id})),
    )
        .into_response()
}

fn all_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
        .collect()
}

fn caller(broker: &Broker, headers: &HeaderMap, peer: SocketAddr) -> Result<Caller, Refusal> {
    broker.authenticate(&|name: &str| all_values(headers, name), peer.ip())
}

async fn roles(
    State(b): State<Arc<Broker>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let rid = request_id();
    let result = async {
        let c = caller(&b, &headers, peer)?;
        let roles = b.roles_for(&c).await?;
        Ok::<_, Refusal>(
            Json(json!({"user": c.user, "groups": c.groups, "roles": roles})).into_response(),
        )
    }
    .await;
    result.unwrap_or_else(|r| error(&r, &rid))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialRequest {
    role: String,
    duration_seconds: Option<i32>,
    format: Option<String>,
}

async fn credentials(
    State(b): State<Arc<Broker>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let rid = request_id();
    let result = async {
        let c = caller(&b, &headers, peer)?;
        let req: CredentialRequest = serde_json::from_slice(&body).map_err(|e| Refusal {
            status: 400,
            code: "bad-request",
            message: format!("body must be {{\"role\", \"duration_seconds\"?, \"format\"?}}: {e}"),
        })?;
        let format = req.format.as_deref().unwrap_or("json");
        if !matches!(format, "json" | "process" | "exports") {
            return Err(Refusal {
                status: 400,
                code: "bad-request",
                message: "format is json, process or exports".into(),
            });
        }
        let client = b.client_ip(peer.ip(), &all_values(&headers, "x-forwarded-for"))?;
        let issued = b
            .issue(&c, client, &req.role, req.duration_seconds, &rid)
            .await?;
        Ok(render(&issued, format))
    }
    .await;
    let mut response = result.unwrap_or_else(|r| error(&r, &rid));
    // Credentials must not be cached by anything between the broker and the user.
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn render(i: &Issued, format: &str) -> Response {
    match format {
        "process" => Json(json!({"Version": 1, "AccessKeyId": i.access_key_id, "SecretAccessKey": i.secret_access_key, "SessionToken": i.session_token, "Expiration": i.expiration}))
            .into_response(),
        "exports" => (
            [("content-type", "text/plain; charset=utf-8")],
            format!(
                "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_SESSION_TOKEN={}\n# expires {} ({})\n",
                i.access_key_id, i.secret_access_key, i.session_token, i.expiration, i.role_arn
            ),
        )
            .into_response(),
        _ => Json(i).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessRequest {
    group: String,
    reason: String,
}

async fn access_request(
    State(b): State<Arc<Broker>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let rid = request_id();
    let result = async {
        let c = caller(&b, &headers, peer)?;
        let req: AccessRequest = serde_json::from_slice(&body).map_err(|e| Refusal {
            status: 400,
            code: "bad-request",
            message: format!("body must be {{\"group\", \"reason\"}}: {e}"),
        })?;
        let client = b.client_ip(peer.ip(), &all_values(&headers, "x-forwarded-for"))?;
        b.request_access(&c, client, &req.group, &req.reason, &rid)
            .await?;
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "recorded", "request_id": rid})),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(|r| error(&r, &rid))
}

#[derive(Deserialize)]
struct AuditQuery {
    user: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    State(b): State<Arc<Broker>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let rid = request_id();
    let result = async {
        let c = caller(&b, &headers, peer)?;
        if !b.is_admin(&c) {
            return Err(Refusal {
                status: 403,
                code: "not-admin",
                message: "reading the audit log needs one of the admin groups".into(),
            });
        }
        let entries = b.audit_entries(q.user, q.limit.unwrap_or(100)).await?;
        Ok(Json(json!({"entries": entries})).into_response())
    }
    .await;
    result.unwrap_or_else(|r| error(&r, &rid))
}

async fn metrics(State(b): State<Arc<Broker>>) -> Response {
    let m = &b.metrics;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut s = String::new();
    for (name, help, v) in [
        (
            "credwarden_broker_credential_requests_total",
            "Credential requests received.",
            get(&m.requests),
        ),
        (
            "credwarden_broker_credentials_issued_total",
            "Credentials issued (audited first).",
            get(&m.issued),
        ),
        (
            "credwarden_broker_requests_refused_total",
            "Credential requests refused.",
            get(&m.refused),
        ),
        (
            "credwarden_broker_audit_failures_total",
            "Audit writes that failed (no credentials were issued).",
            get(&m.audit_failures),
        ),
        (
            "credwarden_broker_sts_failures_total",
            "AssumeRole calls that failed.",
            get(&m.sts_failures),
        ),
    ] {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    let name = "credwarden_broker_issue_local_seconds";
    s.push_str(&format!("# HELP {name} Time the broker spends on an issuance, excluding the STS call.\n# TYPE {name} histogram\n"));
    for (i, bound) in BUCKETS.iter().enumerate() {
        s.push_str(&format!(
            "{name}_bucket{{le=\"{bound}\"}} {}\n",
            get(&m.local_buckets[i])
        ));
    }
    let count = get(&m.local_count);
    s.push_str(&format!(
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {}\n{name}_count {count}\n",
        get(&m.local_us_sum) as f64 / 1e6
    ));
    ([("content-type", "text/plain; version=0.0.4")], s).into_response()
}

/// Serve on an already-bound listener until `shutdown` completes.
pub async fn serve(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(broker).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serve over TLS (rustls on ring) until `shutdown` completes. The certificate chain and
/// key are PEM files; HTTP/1.1 only.
pub async fn serve_tls(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), crate::error::ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let io =
        |p: &std::path::Path, e: String| crate::error::ConfigError::Io(p.display().to_string(), e);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| io(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(io(cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| io(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::error::ConfigError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| crate::error::ConfigError::Invalid(format!("TLS certificate and key: {e}")))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = router(broker);
    let mut shutdown = std::pin::pin!(shutdown);
    // A bounded number of connections, each with a lifetime: a client that trickles bytes
    // holds one slot for a while, never the whole server.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, usually: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        tokio::spawn(async move {
            let _slot = slot;
            // A handshake that stalls must not hold a task forever.
            let Ok(Ok(stream)) =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                    .await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(std::time::Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}
