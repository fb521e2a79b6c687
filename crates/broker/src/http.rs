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
//! | `POST /v1/access-requests` | authenticated | body `{"group" or "role", "reason", "duration_seconds"?}`: a pending request (`{"id", "status", "request"}`), audited, its approvers notified |
//! | `GET /v1/access-requests?status=` | authenticated | `{"requests"}`: those the caller may decide (their groups' approvers, admins: all) and their own, newest first |
//! | `POST /v1/access-requests/{id}/approve`, `/deny` | the group's approvers, admin groups; never the requester | body `{"comment"?}`: `{"request", "membership"}`; a pending request only, once |
//! | `POST /v1/console` | authenticated | body `{"role", "duration_seconds"?, "destination"?}`: `{"url", "expiration", "role_arn", "access_key_id"}`, an AWS console sign-in URL |
//! | `/`, `/request`, `/approvals`, `/audit`, `/auth/…` | web sessions | the web UI when `[web]` is set ([`crate::web`]) |
//!
//! A request is authenticated from its headers before its body is read, and the body then
//! has `[limits] body_seconds` to arrive. The server (TLS, or plain HTTP on loopback — the
//! same code) admits a bounded number of connections in all and per source address, gives
//! each request's headers (and the TLS handshake) `header_seconds`, closes a connection that
//! has made no authenticated request after `unauthenticated_seconds` and any connection after
//! `connection_seconds`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::config::Limits;
use crate::service::{Broker, Issued, Refusal, BUCKETS};

/// Requests larger than this are refused before they are parsed.
pub const MAX_BODY: usize = 16 * 1024;

pub fn router(broker: Arc<Broker>) -> Router {
    let web = crate::web::routes(&broker);
    Router::new()
        .merge(web)
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/v1/roles", get(roles))
        .route("/v1/credentials", post(credentials))
        .route("/v1/console", post(console))
        .route("/v1/audit", get(audit))
        .route(
            "/v1/access-requests",
            post(access_request).get(list_access_requests),
        )
        .route("/v1/access-requests/{id}/approve", post(approve))
        .route("/v1/access-requests/{id}/deny", post(deny))
        .fallback(|| async { error(&Refusal::new(404, "not-found", "no such endpoint"), "") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(broker)
}

pub(crate) fn request_id() -> String {
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

/// What the server knows about the connection a request came on.
#[derive(Clone, Default)]
pub struct ConnectionState {
    authenticated: Arc<AtomicBool>,
}

impl ConnectionState {
    pub fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    /// A request on this connection was authenticated (a bearer token, or a web session).
    pub(crate) fn mark_authenticated(&self) {
        self.authenticated.store(true, Ordering::Release);
    }
}

/// Authenticate a request from its headers alone (its body is not read yet), and mark its
/// connection as one that may live the full `connection_seconds`.
async fn caller(broker: &Broker, parts: &Parts) -> Result<(Caller, SocketAddr), Refusal> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .ok_or_else(|| Refusal::new(500, "internal", "the request has no peer address"))?;
    let headers = &parts.headers;
    let c = broker
        .authenticate(&|name: &str| all_values(headers, name), peer.ip())
        .await?;
    if let Some(state) = parts.extensions.get::<ConnectionState>() {
        state.mark_authenticated();
    }
    Ok((c, peer))
}

/// The request's body (read within the body limits) as JSON of type `T`; `shape` names the
/// fields the refusal says the body must have.
async fn json_body<T: serde::de::DeserializeOwned>(
    broker: &Broker,
    parts: &Parts,
    body: Body,
    shape: &str,
) -> Result<T, Refusal> {
    let body = read_body(broker, parts, body).await?;
    parse_body(&body, shape)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::new(400, "bad-request", format!("body must be {shape}: {e}")))
}

/// The client's address: the peer, or what trusted proxies say in `X-Forwarded-For`.
pub(crate) fn client_of(
    broker: &Broker,
    parts: &Parts,
    peer: SocketAddr,
) -> Result<IpAddr, Refusal> {
    broker.client_ip(peer.ip(), &all_values(&parts.headers, "x-forwarded-for"))
}

/// Read an authenticated request's body: at most `MAX_BODY` bytes (a larger declared length
/// is refused without reading), within `body_seconds`.
pub(crate) async fn read_body(
    broker: &Broker,
    parts: &Parts,
    body: Body,
) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal::new(
            413,
            "too-large",
            format!("bodies are at most {MAX_BODY} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let within = Duration::from_secs(broker.config().limits.body_seconds);
    match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => Err(Refusal::new(
            408,
            "body-timeout",
            "the request body came too slowly",
        )),
        Ok(Err(_)) => Err(too_large()),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

async fn roles(State(b): State<Arc<Broker>>, req: Request) -> Response {
    let rid = request_id();
    let (parts, _) = req.into_parts();
    let result = async {
        let (c, _) = caller(&b, &parts).await?;
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

async fn credentials(State(b): State<Arc<Broker>>, req: Request) -> Response {
    let rid = request_id();
    let (parts, body) = req.into_parts();
    let result = async {
        let (c, peer) = caller(&b, &parts).await?;
        let req: CredentialRequest = json_body(
            &b,
            &parts,
            body,
            r#"{"role", "duration_seconds"?, "format"?}"#,
        )
        .await?;
        let format = req.format.as_deref().unwrap_or("json");
        if !matches!(format, "json" | "process" | "exports") {
            return Err(Refusal::new(
                400,
                "bad-request",
                "format is json, process or exports",
            ));
        }
        let client = client_of(&b, &parts, peer)?;
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
struct ConsoleRequest {
    role: String,
    duration_seconds: Option<i32>,
    destination: Option<String>,
}

/// A console sign-in URL: authenticated, authorised, rate-limited and audited exactly like
/// `/v1/credentials` (the same code), the session's credentials kept in the broker.
async fn console(State(b): State<Arc<Broker>>, req: Request) -> Response {
    let rid = request_id();
    let (parts, body) = req.into_parts();
    let result = async {
        let (c, peer) = caller(&b, &parts).await?;
        let req: ConsoleRequest = json_body(
            &b,
            &parts,
            body,
            r#"{"role", "duration_seconds"?, "destination"?}"#,
        )
        .await?;
        let client = client_of(&b, &parts, peer)?;
        let login = b
            .console(
                &c,
                client,
                &req.role,
                req.duration_seconds,
                req.destination.as_deref(),
                &rid,
            )
            .await?;
        Ok(Json(login).into_response())
    }
    .await;
    let mut response = result.unwrap_or_else(|r| error(&r, &rid));
    // The URL signs its holder in: nothing between the broker and the user may keep it.
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessRequest {
    /// The group asked for, or…
    group: Option<String>,
    /// …a role: the one group with approvers that opens it.
    role: Option<String>,
    reason: String,
    duration_seconds: Option<i64>,
}

async fn access_request(State(b): State<Arc<Broker>>, req: Request) -> Response {
    let rid = request_id();
    let (parts, body) = req.into_parts();
    let result = async {
        let (c, peer) = caller(&b, &parts).await?;
        let req: AccessRequest = json_body(
            &b,
            &parts,
            body,
            r#"{"group" or "role", "reason", "duration_seconds"?}"#,
        )
        .await?;
        let group = match (req.group, req.role.as_deref()) {
            (Some(group), None) => group,
            (None, Some(role)) => b.group_for_role(role).await?,
            _ => {
                return Err(Refusal::new(
                    400,
                    "bad-request",
                    "name either a group or a role to ask for",
                ))
            }
        };
        let client = client_of(&b, &parts, peer)?;
        let made = b
            .request_access(&c, client, &group, &req.reason, req.duration_seconds, &rid)
            .await?;
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": made.status, "id": made.id, "request": made, "request_id": rid})),
        )
            .into_response())
    }
    .await;
    result.unwrap_or_else(|r| error(&r, &rid))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestsQuery {
    status: Option<String>,
}

async fn list_access_requests(State(b): State<Arc<Broker>>, req: Request) -> Response {
    let rid = request_id();
    let (parts, _) = req.into_parts();
    let result = async {
        let (c, _) = caller(&b, &parts).await?;
        let Query(q) = Query::<RequestsQuery>::try_from_uri(&parts.uri)
            .map_err(|_| Refusal::new(400, "bad-request", "query is ?status="))?;
        let requests = b.access_requests(&c, q.status).await?;
        Ok(Json(json!({"requests": requests})).into_response())
    }
    .await;
    result.unwrap_or_else(|r| error(&r, &rid))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    comment: String,
}

async fn approve(State(b): State<Arc<Broker>>, Path(id): Path<String>, req: Request) -> Response {
    decide(b, id, store::Decision::Approve, req).await
}

async fn deny(State(b): State<Arc<Broker>>, Path(id): Path<String>, req: Request) -> Response {
    decide(b, id, store::Decision::Deny, req).await
}

async fn decide(b: Arc<Broker>, id: String, decision: store::Decision, req: Request) -> Response {
    let rid = request_id();
    let (parts, body) = req.into_parts();
    let result = async {
        let (c, peer) = caller(&b, &parts).await?;
        let body = read_body(&b, &parts, body).await?;
        // No body is no comment.
        let req: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
            DecisionBody::default()
        } else {
            parse_body(&body, r#"{"comment"?}"#)?
        };
        let client = client_of(&b, &parts, peer)?;
        let (request, membership) = b
            .decide_access(&c, client, &id, decision, &req.comment, &rid)
            .await?;
        Ok(Json(json!({"request": request, "membership": membership})).into_response())
    }
    .await;
    result.unwrap_or_else(|r| error(&r, &rid))
}

#[derive(Deserialize)]
struct AuditQuery {
    user: Option<String>,
    limit: Option<usize>,
}

async fn audit(State(b): State<Arc<Broker>>, req: Request) -> Response {
    let rid = request_id();
    let (parts, _) = req.into_parts();
    let result = async {
        let (c, _) = caller(&b, &parts).await?;
        if !b.is_admin(&c) {
            return Err(Refusal::new(
                403,
                "not-admin",
                "reading the audit log needs one of the admin groups",
            ));
        }
        let Query(q) = Query::<AuditQuery>::try_from_uri(&parts.uri)
            .map_err(|_| Refusal::new(400, "bad-request", "query is ?user=&limit="))?;
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

/// Serve plain HTTP on an already-bound listener until `shutdown` completes, through the
/// same bounded server as TLS (the caller checks the address is loopback).
pub async fn serve(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_bounded(broker, listener, None, shutdown).await;
    Ok(())
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
    use crate::error::ConfigError;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |p: &std::path::Path| {
        let path = p.to_path_buf();
        move |source| ConfigError::Pem { path, source }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(pem(cert))?
        .collect::<Result<_, _>>()
        .map_err(pem(cert))?;
    if chain.is_empty() {
        return Err(ConfigError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| crate::error::ConfigError::Invalid(format!("TLS certificate and key: {e}")))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    serve_bounded(broker, listener, Some(acceptor), shutdown).await;
    Ok(())
}

/// Open connections, in all and per source address.
struct Gate {
    limits: Limits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it gives its place back.
struct Admitted {
    gate: Arc<Gate>,
    ip: Option<IpAddr>,
}

impl Gate {
    fn admit(self: &Arc<Self>, ip: IpAddr, exempt: bool) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.limits.connections.max(1) {
            return None;
        }
        if !exempt {
            let n = open.1.entry(ip).or_insert(0);
            if *n >= self.limits.connections_per_address.max(1) {
                return None;
            }
            *n += 1;
        }
        open.0 += 1;
        Some(Admitted {
            gate: self.clone(),
            ip: (!exempt).then_some(ip),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = open.1.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(&ip);
                }
            }
        }
    }
}

/// The accept loop both listeners share.
async fn serve_bounded(
    broker: Arc<Broker>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let limits = broker.config().limits.clone();
    let gate = Arc::new(Gate {
        limits: limits.clone(),
        open: Mutex::new((0, HashMap::new())),
    });
    let app = router(broker.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, usually: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let started = tokio::time::Instant::now();
        let ip = peer.ip().to_canonical();
        let Some(admitted) = gate.admit(ip, broker.is_trusted_proxy(ip)) else {
            drop(tcp);
            continue;
        };
        let state = ConnectionState::default();
        let app = app
            .clone()
            .layer(Extension(ConnectInfo(peer)))
            .layer(Extension(state.clone()));
        let tls = tls.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            match tls {
                Some(acceptor) => {
                    // A handshake that stalls must not hold a place for long.
                    let handshake = Duration::from_secs(limits.header_seconds);
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    run_connection(stream, app, state, &limits, started).await;
                }
                None => run_connection(tcp, app, state, &limits, started).await,
            }
        });
    }
}

/// Serve one connection's requests within its time limits; dropping the connection closes
/// it.
async fn run_connection<S>(
    io: S,
    app: Router,
    state: ConnectionState,
    limits: &Limits,
    started: tokio::time::Instant,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Duration::from_secs(limits.header_seconds))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let short = started + Duration::from_secs(limits.unauthenticated_seconds);
    tokio::select! {
        _ = &mut connection => return,
        _ = tokio::time::sleep_until(short) => {}
    }
    if !state.authenticated() {
        return;
    }
    let life = started + Duration::from_secs(limits.connection_seconds);
    let _ = tokio::time::timeout_at(life, connection).await;
}
