//! A local EC2 instance metadata service and ECS container credential endpoint for laptops.
//!
//! Point the SDKs at it with `AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:PORT/`, or
//! (preferred: one request per refresh, and an authorization token) with
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/<ecs path>` and
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN=<token>`. Credentials come from a
//! [`CredentialSource`](crate::creds::CredentialSource) through the refreshing
//! [`CredentialCache`].
//!
//! What it implements of the EC2 protocol, and why:
//! * IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` 1..=21600
//!   (else 400), refused with 403 when `X-Forwarded-For` is present (AWS does the same: a
//!   forwarding proxy in front means the caller is not on this machine). Tokens are 256 random
//!   bits from /dev/urandom and expire after their TTL. A GET carrying an invalid or expired
//!   token gets 401, and so does a GET carrying none unless IMDSv1 was asked for
//!   ([`Ec2Access::V1AndV2`]): a plain GET is all a request forgery in any local application
//!   can send, and with IMDSv1 that GET is the credentials.
//! * The EC2 paths only when [`ServeConfig::ec2`] is not [`Ec2Access::Off`]: a server started
//!   for the ECS endpoint (token-protected) does not also hand the same credentials to every
//!   local process through `/latest/…`.
//! * Requests with AWS API signing headers (`Authorization`, `X-Amz-*`) on the EC2 paths are
//!   refused: an SDK pointed here as a custom endpoint is not a metadata client.
//! * The credential paths, `iam/info`, the instance identity document, the listings and
//!   `placement/*` that SDKs read to find their region.
//! * Unknown paths are 404, other methods 405, credentials unavailable 503 — all as JSON
//!   `{"Code", "Message"}`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::creds::{CredentialCache, CredentialSource, Credentials, RefreshPolicy};
use crate::error::ImdsError;
use crate::http::{self, Body, ConnLimits, Handler};
use crate::log::LogSink;
use crate::util::{constant_time_eq, imds_time, now, random_token};

pub const TOKEN_PATH: &str = "/latest/api/token";
pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub const MAX_TOKEN_TTL_SECONDS: u64 = 21_600;

/// The ECS container credential endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` semantics).
#[derive(Debug, Clone)]
pub struct EcsEndpoint {
    /// Request path, e.g. `/v2/credentials/credwarden`.
    pub path: String,
    /// The `Authorization` header must equal this exactly (`AWS_CONTAINER_AUTHORIZATION_TOKEN`).
    /// Required: an unauthenticated credential endpoint on a shared machine is what this
    /// crate exists to prevent.
    pub authorization_token: String,
}

/// Which EC2 instance-metadata paths the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ec2Access {
    /// None: every `/latest/…` request is 404. For a server that only serves the ECS endpoint.
    Off,
    /// IMDSv2 only (the default): metadata GETs need a token from `PUT /latest/api/token`.
    V2,
    /// IMDSv1 as well: a GET without a token is answered. Any local process, and any request
    /// forgery in any local application, gets the credentials with one GET. Logged as a
    /// warning when the server starts.
    V1AndV2,
}

/// Everything `serve` needs. Build with [`ServeConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Default 127.0.0.1:9911.
    pub listen: SocketAddr,
    /// Binding anything but loopback is refused unless this is set.
    pub allow_non_loopback: bool,
    /// The one role served under `iam/security-credentials/`.
    pub role_name: String,
    /// Reported as ECS `RoleArn`; its account becomes the document's `accountId`.
    pub role_arn: Option<String>,
    /// Overrides the account taken from `role_arn` (default 000000000000 when neither is set).
    pub account_id: Option<String>,
    pub region: String,
    /// Default `<region>a`.
    pub availability_zone: Option<String>,
    pub instance_id: String,
    pub instance_type: String,
    pub image_id: String,
    pub private_ip: String,
    /// The EC2 paths: IMDSv2 only by default; off for an ECS-only server.
    pub ec2: Ec2Access,
    pub ecs: Option<EcsEndpoint>,
    pub refresh: RefreshPolicy,
    pub header_read_timeout: Duration,
    /// Live IMDSv2 tokens kept at most; beyond it the one closest to expiry is dropped.
    pub max_tokens: usize,
}

impl ServeConfig {
    pub fn new(role_name: impl Into<String>) -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9911)),
            allow_non_loopback: false,
            role_name: role_name.into(),
            role_arn: None,
            account_id: None,
            region: "us-east-1".into(),
            availability_zone: None,
            instance_id: "i-0c0ffee0c0ffee000".into(),
            instance_type: "t3.medium".into(),
            image_id: "ami-0c0ffee0c0ffee000".into(),
            private_ip: "10.0.0.10".into(),
            ec2: Ec2Access::V2,
            ecs: None,
            refresh: RefreshPolicy::default(),
            header_read_timeout: Duration::from_secs(10),
            max_tokens: 10_000,
        }
    }

    fn validate(&self) -> Result<(), ImdsError> {
        let bad = |m: String| Err(ImdsError::Config(m));
        if self.role_name.is_empty()
            || !self
                .role_name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+=,.@_-".contains(&c))
        {
            return bad(format!(
                "role name {:?} is not an IAM role name",
                self.role_name
            ));
        }
        if let Some(ecs) = &self.ecs {
            if !ecs.path.starts_with('/')
                || ecs.path.starts_with("/latest")
                || ecs.path.contains(['?', '#'])
                || ecs.path == "/"
            {
                return bad(format!(
                    "ECS credential path {:?} must start with / and not overlap the metadata paths",
                    ecs.path
                ));
            }
            if ecs.authorization_token.len() < 16
                || HeaderValue::from_str(&ecs.authorization_token).is_err()
            {
                return bad(
                    "the ECS authorization token must be at least 16 printable characters".into(),
                );
            }
        }
        if self.ec2 == Ec2Access::Off && self.ecs.is_none() {
            return bad(
                "nothing to serve: the EC2 paths are off and there is no ECS endpoint".into(),
            );
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        Ok(())
    }

    fn account(&self) -> String {
        self.account_id
            .clone()
            .or_else(|| {
                self.role_arn
                    .as_deref()
                    .and_then(credwarden_core::account::arn_account)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "000000000000".into())
    }

    fn role_arn(&self) -> String {
        self.role_arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:iam::{}:role/{}", self.account(), self.role_name))
    }
}

/// A bound, ready metadata server. [`MetadataServer::bind`] starts the credential refresher
/// at once so the first request usually finds credentials waiting.
pub struct MetadataServer {
    listener: TcpListener,
    state: Arc<ServeState>,
    refresher: tokio::task::JoinHandle<()>,
}

struct ServeState {
    cfg: ServeConfig,
    account: String,
    cache: Arc<CredentialCache>,
    tokens: Mutex<HashMap<String, Instant>>,
    log: Arc<dyn LogSink>,
}

impl MetadataServer {
    pub async fn bind(
        config: ServeConfig,
        source: Arc<dyn CredentialSource>,
        log: Arc<dyn LogSink>,
    ) -> Result<MetadataServer, ImdsError> {
        config.validate()?;
        let listener = http::bind(config.listen, config.allow_non_loopback).await?;
        let (cache, refresher) =
            CredentialCache::start(source, config.refresh.clone(), log.clone());
        let account = config.account();
        if config.ec2 == Ec2Access::V1AndV2 {
            log.log(
                &serde_json::json!({"time": imds_time(now()), "event": "warning",
                "message": "IMDSv1 is enabled: any local process, and any request forgery in a \
                    local application, can read the role's credentials with one GET"}),
            );
        }
        let state = Arc::new(ServeState {
            cfg: config,
            account,
            cache,
            tokens: Mutex::new(HashMap::new()),
            log,
        });
        Ok(MetadataServer {
            listener,
            state,
            refresher,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.cfg.listen)
    }

    fn limits(&self) -> ConnLimits {
        ConnLimits {
            header_read_timeout: self.state.cfg.header_read_timeout,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_connections: 512,
        }
    }

    /// Serve one HTTP/1.1 connection over `stream` as a TCP connection from `peer` would be
    /// served. For the fuzz targets (an in-memory pipe instead of a socket); not an API.
    #[doc(hidden)]
    pub async fn serve_stream<S>(&self, stream: S, peer: SocketAddr) -> Result<(), hyper::Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        http::serve_stream(stream, &self.limits(), self.state.clone(), peer).await
    }

    /// Serve until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ImdsError> {
        let limits = self.limits();
        let refresher = self.refresher;
        let result = http::serve(self.listener, limits, self.state, shutdown).await;
        refresher.abort();
        result
    }
}

/// Bind and serve until `shutdown` completes: what `credwarden imds serve` calls.
pub async fn run(
    config: ServeConfig,
    source: Arc<dyn CredentialSource>,
    log: Arc<dyn LogSink>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ImdsError> {
    MetadataServer::bind(config, source, log)
        .await?
        .run(shutdown)
        .await
}

/// The EC2 credential document, fields in EC2's order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Ec2Credentials<'a> {
    code: &'static str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
}

/// The ECS container credential document.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EcsCredentials<'a> {
    access_key_id: &'a str,
    expiration: String,
    role_arn: String,
    secret_access_key: &'a str,
    token: &'a str,
}

enum Auth {
    Ok,
    Reject(Response<Body>),
}

impl ServeState {
    fn issue_token(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.headers().contains_key("x-forwarded-for") {
            return http::error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "token requests carrying X-Forwarded-For are refused",
            );
        }
        let ttl = match req
            .headers()
            .get_all(TOKEN_TTL_HEADER)
            .iter()
            .collect::<Vec<_>>()
            .as_slice()
        {
            [v] => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|t| (1..=MAX_TOKEN_TTL_SECONDS).contains(t)),
            _ => None,
        };
        let Some(ttl) = ttl else {
            return http::error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "X-aws-ec2-metadata-token-ttl-seconds must be one integer from 1 to 21600",
            );
        };
        let Ok(token) = random_token() else {
            return http::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "no randomness available for a token",
            );
        };
        let now = Instant::now();
        let Ok(mut tokens) = self.tokens.lock() else {
            return http::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "token store unavailable",
            );
        };
        tokens.retain(|_, exp| *exp > now);
        if tokens.len() >= self.cfg.max_tokens {
            if let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, e)| **e)
                .map(|(k, _)| k.clone())
            {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(token.clone(), now + Duration::from_secs(ttl));
        drop(tokens);
        let mut r = http::text(StatusCode::OK, token);
        r.headers_mut()
            .insert(TOKEN_TTL_HEADER, HeaderValue::from(ttl));
        r
    }

    /// IMDSv2 session check for a metadata GET.
    fn check_session(&self, req: &Request<Incoming>) -> Auth {
        let values: Vec<_> = req.headers().get_all(TOKEN_HEADER).iter().collect();
        match values.as_slice() {
            [] if self.cfg.ec2 == Ec2Access::V1AndV2 => Auth::Ok,
            [] => Auth::Reject(http::error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "IMDSv2 is required: PUT /latest/api/token first",
            )),
            [v] => {
                let valid = v
                    .to_str()
                    .ok()
                    .and_then(|t| self.tokens.lock().ok().and_then(|m| m.get(t).copied()))
                    .is_some_and(|exp| exp > Instant::now());
                if valid {
                    Auth::Ok
                } else {
                    Auth::Reject(http::error(
                        StatusCode::UNAUTHORIZED,
                        "Unauthorized",
                        "the metadata token is invalid or expired",
                    ))
                }
            }
            _ => Auth::Reject(http::error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "more than one metadata token",
            )),
        }
    }

    /// The current credentials, or a 503 that says nothing about the source: the credential
    /// command, its arguments and its stderr are the server's business, written to its log.
    async fn credentials(&self) -> Result<Arc<Credentials>, Response<Body>> {
        self.cache.current().await.map_err(|e| {
            self.log.log(&serde_json::json!({"time": imds_time(now()),
                "event": "credentials-unavailable", "reason": e.0}));
            http::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "CredentialsUnavailable",
                "credentials are temporarily unavailable; the metadata server's log says why",
            )
        })
    }

    fn metadata_leaf(&self, path: &str) -> Option<String> {
        let c = &self.cfg;
        let az = c
            .availability_zone
            .clone()
            .unwrap_or_else(|| format!("{}a", c.region));
        let hostname = format!("ip-{}.ec2.internal", c.private_ip.replace('.', "-"));
        Some(match path {
            "" | "latest" => "latest".into(),
            "latest/meta-data" => "ami-id\nhostname\niam/\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nplacement/".into(),
            "latest/meta-data/ami-id" => c.image_id.clone(),
            "latest/meta-data/hostname" | "latest/meta-data/local-hostname" => hostname,
            "latest/meta-data/instance-id" => c.instance_id.clone(),
            "latest/meta-data/instance-type" => c.instance_type.clone(),
            "latest/meta-data/local-ipv4" => c.private_ip.clone(),
            "latest/meta-data/placement" => "availability-zone\nregion".into(),
            "latest/meta-data/placement/availability-zone" => az,
            "latest/meta-data/placement/region" => c.region.clone(),
            "latest/meta-data/iam" => "info\nsecurity-credentials/".into(),
            "latest/dynamic" => "instance-identity/".into(),
            "latest/dynamic/instance-identity" => "document".into(),
            "latest/dynamic/instance-identity/document" => {
                let doc = serde_json::json!({
                    "accountId": self.account, "architecture": "x86_64", "availabilityZone": az,
                    "billingProducts": null, "devpayProductCodes": null, "marketplaceProductCodes": null,
                    "imageId": c.image_id, "instanceId": c.instance_id, "instanceType": c.instance_type,
                    "kernelId": null, "pendingTime": imds_time(self.cache_started()), "privateIp": c.private_ip,
                    "ramdiskId": null, "region": c.region, "version": "2017-09-30"});
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            }
            _ => return None,
        })
    }

    fn cache_started(&self) -> credwarden_core::EventTime {
        // A stable, plausible launch time: the start of the current day.
        let t = now().millis();
        credwarden_core::EventTime(t - t.rem_euclid(86_400_000))
    }

    async fn route(&self, req: &Request<Incoming>) -> Response<Body> {
        // DNS rebinding: a web page whose name re-resolves to 127.0.0.1 talks to this server as
        // its own origin. Browsers send Origin / Sec-Fetch-* and the page's host name; SDKs
        // send neither and name loopback or the metadata address. Refuse anything else.
        let from_browser = [
            "origin",
            "sec-fetch-site",
            "sec-fetch-mode",
            "sec-fetch-dest",
        ]
        .iter()
        .any(|h| req.headers().contains_key(*h));
        let host_ok = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_none_or(trusted_host);
        if from_browser || !host_ok {
            return http::error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "requests from browsers or for other host names are refused (DNS rebinding)",
            );
        }
        let path = req.uri().path();
        if let Some(ecs) = &self.cfg.ecs {
            if path == ecs.path {
                if req.method() != Method::GET {
                    return http::error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "MethodNotAllowed",
                        "use GET",
                    );
                }
                let presented = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .map(|v| v.as_bytes())
                    .unwrap_or(b"");
                if req
                    .headers()
                    .get_all(hyper::header::AUTHORIZATION)
                    .iter()
                    .count()
                    != 1
                    || !constant_time_eq(presented, ecs.authorization_token.as_bytes())
                {
                    return http::error(
                        StatusCode::UNAUTHORIZED,
                        "Unauthorized",
                        "the Authorization header does not carry the container authorization token",
                    );
                }
                return match self.credentials().await {
                    Ok(c) => http::json(
                        StatusCode::OK,
                        &serde_json::to_value(EcsCredentials {
                            access_key_id: &c.access_key_id,
                            expiration: imds_time(c.expiration),
                            role_arn: self.cfg.role_arn(),
                            secret_access_key: &c.secret_access_key,
                            token: c.session_token.as_deref().unwrap_or(""),
                        })
                        .unwrap_or_default(),
                    ),
                    Err(r) => r,
                };
            }
        }
        if self.cfg.ec2 == Ec2Access::Off {
            return http::error(StatusCode::NOT_FOUND, "NotFound", "no such path");
        }
        // Every EC2 route is matched on the path without its slashes (`//latest/…` too).
        let ec2_path =
            path.trim_matches('/').is_empty() || path.trim_matches('/').starts_with("latest");
        if let Some(name) = http::api_client_header(req.headers()).filter(|_| ec2_path) {
            return http::error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("metadata clients do not send {name}: refused as an AWS API request"),
            );
        }
        if path == TOKEN_PATH {
            return if req.method() == Method::PUT {
                self.issue_token(req)
            } else {
                http::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "use PUT to obtain a token",
                )
            };
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return http::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the metadata service answers GET",
            );
        }
        if let Auth::Reject(r) = self.check_session(req) {
            return r;
        }
        let trimmed = path.trim_matches('/');
        let role_prefix = "latest/meta-data/iam/security-credentials";
        if trimmed == role_prefix {
            return http::text(StatusCode::OK, self.cfg.role_name.clone());
        }
        if let Some(role) = trimmed
            .strip_prefix(role_prefix)
            .and_then(|r| r.strip_prefix('/'))
        {
            if role != self.cfg.role_name {
                return http::error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "no such role on this instance",
                );
            }
            return match self.credentials().await {
                Ok(c) => {
                    let body = Ec2Credentials {
                        code: "Success",
                        last_updated: imds_time(c.last_updated),
                        kind: "AWS-HMAC",
                        access_key_id: &c.access_key_id,
                        secret_access_key: &c.secret_access_key,
                        token: c.session_token.as_deref().unwrap_or(""),
                        expiration: imds_time(c.expiration),
                    };
                    http::text(
                        StatusCode::OK,
                        serde_json::to_string_pretty(&body).unwrap_or_default(),
                    )
                }
                Err(r) => r,
            };
        }
        if trimmed == "latest/meta-data/iam/info" {
            let last = self
                .cache
                .current()
                .await
                .map(|c| c.last_updated)
                .unwrap_or_else(|_| now());
            let info = serde_json::json!({"Code": "Success", "LastUpdated": imds_time(last),
                "InstanceProfileArn": format!("arn:aws:iam::{}:instance-profile/{}", self.account, self.cfg.role_name),
                "InstanceProfileId": format!("AIPA{}", profile_id(&self.cfg.role_name))});
            return http::text(
                StatusCode::OK,
                serde_json::to_string_pretty(&info).unwrap_or_default(),
            );
        }
        match self.metadata_leaf(trimmed) {
            Some(body) => http::text(StatusCode::OK, body),
            None => http::error(StatusCode::NOT_FOUND, "NotFound", "no such metadata path"),
        }
    }
}

/// A stable, plausible 17-character instance profile id suffix derived from the role name.
fn profile_id(role: &str) -> String {
    credwarden_core::finding_id("imds-instance-profile-id", &[role])
        .to_ascii_uppercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(17)
        .collect()
}

impl Handler for ServeState {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let response = self.route(&req).await;
        let ua = req
            .headers()
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.log.log(&serde_json::json!({"time": imds_time(now()), "event": "request", "remote": peer.to_string(), "method": req.method().as_str(),
            "path": req.uri().path(), "user_agent": ua, "status": response.status().as_u16()}));
        response
    }
}

/// Host names a metadata client legitimately uses: loopback, the link-local metadata
/// addresses, `localhost` — with or without a port.
fn trusted_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "169.254.169.254"
        || name == "169.254.170.2"
        || name.eq_ignore_ascii_case("fd00:ec2::254")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod host_tests {
    #[test]
    fn rebinding_hosts_are_refused() {
        for ok in [
            "127.0.0.1:9911",
            "localhost",
            "169.254.169.254",
            "[::1]:9911",
            "[fd00:ec2::254]",
            "127.0.0.2:80",
        ] {
            assert!(super::trusted_host(ok), "{ok}");
        }
        for bad in [
            "rebind.evil:9911",
            "evil.example",
            "10.0.0.1",
            "127.0.0.1.evil.com",
            "",
        ] {
            assert!(!super::trusted_host(bad), "{bad}");
        }
    }
}
