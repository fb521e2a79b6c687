//! The instance metadata proxy: the SSRF defence in front of 169.254.169.254.
//!
//! A server-side request forgery makes a server fetch a URL of the attacker's choosing, and
//! on EC2 the prize is `http://169.254.169.254/latest/meta-data/iam/security-credentials/…`.
//! The usual SSRF primitives (`requests`, `curl`, Java's `URL`, Go's `http.Get`) let the
//! attacker choose the URL, not the headers, so their `User-Agent` is their library's own.
//! The AWS SDKs and CLI announce themselves (`Botocore/1.34.0 …`, `aws-sdk-java/2.20.0 …`).
//! This proxy therefore answers *sensitive* paths only for requests whose `User-Agent` starts
//! with an allow-listed SDK prefix, forwards everything else, logs every request as one JSON
//! line, and turns each blocked sensitive request into a high-severity finding
//! (`imds-proxy-blocked`).
//!
//! Fail-closed rules, in order (every refusal is a JSON `{"Code","Message"}` error):
//! 0. Peers: loopback, plus the blocks in `allowed_peers` (container bridges DNATed here),
//!    else 403.
//! 1. Absolute-form (`GET http://host/…`) and authority-form targets: 400 — that is an HTTP
//!    proxy request, never an SDK.
//! 2. Exactly one `Host` header (so HTTP/1.0 without Host is refused): 400.
//! 3. `X-Forwarded-For`, `Forwarded`, `X-Real-IP`, `Via` in any case or with `_` for `-`:
//!    403 — something relayed this request, so its origin is not a local process.
//!    `Authorization`, `Proxy-Authorization` and `X-Amz-*` other than `X-Amz-User-Agent`: 403
//!    — AWS API signing headers, which no metadata client sends: an SDK pointed at the proxy
//!    as a custom endpoint (its User-Agent would pass rule 9) is an API client, not IMDS.
//! 4. Request line + headers above `max_header_bytes`: 431 (hyper itself closes anything that
//!    does not fit its 8 KiB minimum buffer, and cuts clients that have not sent a complete
//!    header block within `header_read_timeout`).
//! 5. A request body, or a query string: 400 (the metadata protocol has neither).
//! 6. Non-canonical paths: 400. Percent-encoding, empty segments (`//`), `.`/`..` segments,
//!    backslashes, `;` and control or non-ASCII bytes are *refused, not rewritten*: no SDK
//!    sends them, and refusing means the proxy never has to agree with the upstream about
//!    what an odd path means. If the path would reach a sensitive path under any lenient
//!    decoding, the refusal is also a finding.
//! 7. Methods: `PUT` only on `/latest/api/token` (with a valid TTL header, 1..=21600), `GET`
//!    and `HEAD` elsewhere: 405 / 400. The token `PUT` keeps the meaning of the instance's
//!    hop limit: a loopback peer is one hop away; any other peer (a container on a bridge) is
//!    at least two, and gets a token only when `token_hop_limit` is 2 or more, else 403.
//! 8. With `require_v2`, a GET without `X-aws-ec2-metadata-token`: 401.
//! 9. Sensitive paths (compared case-insensitively, under any version prefix such as
//!    `/2021-07-15/`): anything containing `security-credentials` or `identity-credentials`,
//!    the signed identity documents (`instance-identity/pkcs7|signature|rsa2048`, which log in
//!    to e.g. Vault's AWS auth), and `user-data` (bootstrap secrets) unless `gate_user_data`
//!    is cleared. Without an allow-listed `User-Agent` (for user-data, also one of
//!    `user_data_user_agents`, e.g. cloud-init's): 403 and a finding.
//! 10. Sensitive paths need an IMDSv2 token (`X-aws-ec2-metadata-token`) unless
//!     `v1_credentials` is set: 401. Every allow-listed SDK fetches one first; an API client
//!     that a URL was pointed here cannot send the token `PUT` (it needs the TTL header), so
//!     this also stops an *unsigned* SDK client that rule 3 cannot see.
//!
//! The token `PUT` is *not* gated by User-Agent: it grants nothing by itself (every sensitive
//! GET that uses the token is still gated), and tools that read ordinary metadata with IMDSv2
//! (`curl` scripts, cloud-init, ec2-metadata) would otherwise be pushed back to IMDSv1. It is
//! still checked for the rules IMDS applies (no forwarding headers, a valid TTL).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::error::ImdsError;
use crate::http::{self, Body, ConnLimits, Handler};
use crate::log::{Finding, FindingSink, FindingSource, LogSink};
use crate::serve::{MAX_TOKEN_TTL_SECONDS, TOKEN_HEADER, TOKEN_PATH, TOKEN_TTL_HEADER};
use crate::util::{imds_time, now};
pub use credwarden_core::Cidr;

pub const DETECTOR: &str = "imds-proxy-blocked";

/// User-Agent prefixes of the AWS SDKs and tools, as they send them to the metadata service.
/// A pattern matches at the start of the header only (anchored); a pattern ending in `/` also
/// needs a version digit right after it. Matching is case-sensitive: every SDK writes its
/// name in exactly one case, and a lowercase `botocore/` is not what botocore sends.
pub const DEFAULT_ALLOWED_USER_AGENTS: &[&str] = &[
    // Python: botocore's session UA `Botocore/1.34.0 Python/3.12 Linux/6.1 …`; boto3 renames
    // the agent: `Boto3/1.34.0 Python/… Botocore/1.34.0` (botocore/session.py user_agent()).
    "Botocore/",
    "Boto3/",
    // AWS CLI v1 and v2: `aws-cli/1.32.0 Python/…` / `aws-cli/2.15.0 md/awscrt#… ua/2.0 …`.
    "aws-cli/",
    // Java v1 `aws-sdk-java/1.12.600 Linux/… OpenJDK_64-Bit_Server_VM/…` and v2
    // `aws-sdk-java/2.21.0 Linux/… Java/17 …` share the product name.
    "aws-sdk-java/",
    // Go v1 `aws-sdk-go/1.50.0 (go1.21; linux; amd64)`; Go v2 `aws-sdk-go-v2/1.24.0 os/linux
    // lang/go#1.21 md/GOOS#linux md/GOARCH#amd64 api/imds#1.15.0`.
    "aws-sdk-go/",
    "aws-sdk-go-v2/",
    // JavaScript v2 `aws-sdk-nodejs/2.1500.0 linux/v18.0.0 …`; v3 `aws-sdk-js/3.400.0 …`.
    "aws-sdk-nodejs/",
    "aws-sdk-js/",
    // Rust `aws-sdk-rust/1.x os/linux lang/rust/1.x` (aws-config's IMDS client).
    "aws-sdk-rust/",
    // Ruby `aws-sdk-ruby3/3.190.0` (InstanceProfileCredentials sets exactly that), older
    // `aws-sdk-ruby2/…`.
    "aws-sdk-ruby",
    // .NET `aws-sdk-dotnet-coreclr/3.7.0 …`, `aws-sdk-dotnet-45/…`, v4 `aws-sdk-dotnet/4.0 …`.
    "aws-sdk-dotnet",
    // PHP `aws-sdk-php/3.290.0 …`; C++ `aws-sdk-cpp/1.11.0 Linux/… x86_64 GCC/…`.
    "aws-sdk-php/",
    "aws-sdk-cpp/",
    // SSM agent (builds its metadata client on aws-sdk-go, so `aws-sdk-go/` usually matches too).
    "amazon-ssm-agent/",
];

/// cloud-init's User-Agent (`Cloud-Init/23.4.4`, cloudinit/url_helper.py): it reads user-data
/// at boot. Add it to [`ProxyConfig::user_data_user_agents`] where cloud-init runs behind the
/// proxy (`credwarden imds proxy --allow-cloud-init`).
pub const CLOUD_INIT_USER_AGENT: &str = "Cloud-Init/";

/// Proxy configuration. Build with [`ProxyConfig::default`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Default 127.0.0.1:9912 (the DNAT target; see the crate README for the iptables rule).
    pub listen: SocketAddr,
    pub allow_non_loopback: bool,
    /// `http://host[:port]`, default `http://169.254.169.254`. Only plain HTTP: IMDS has no TLS.
    pub upstream: String,
    pub allowed_user_agents: Vec<String>,
    /// Refuse metadata GETs without an IMDSv2 session token, on every path.
    pub require_v2: bool,
    /// Answer sensitive paths without an IMDSv2 token (default false: every allow-listed SDK
    /// sends one, and an API client aimed at the proxy cannot obtain one).
    pub v1_credentials: bool,
    /// Treat `user-data` as sensitive (default true: it often holds bootstrap secrets).
    pub gate_user_data: bool,
    /// User-Agent prefixes allowed to read user-data besides `allowed_user_agents`, e.g.
    /// [`CLOUD_INIT_USER_AGENT`]. They get no credentials.
    pub user_data_user_agents: Vec<String>,
    /// Peers allowed besides loopback (container bridges whose metadata traffic is DNATed to
    /// the proxy). Default empty: loopback only.
    pub allowed_peers: Vec<Cidr>,
    /// The IMDSv2 hop limit the proxy enforces for the token `PUT`: loopback peers are one
    /// hop away, every other allowed peer two. Default 1: only the instance itself gets tokens
    /// (and so credentials), as on EC2 with a hop limit of 1.
    pub token_hop_limit: u8,
    pub header_read_timeout: Duration,
    /// Request line + headers, bytes.
    pub max_header_bytes: usize,
    pub upstream_timeout: Duration,
    /// Largest upstream body relayed (user-data is at most 16 KiB).
    pub max_response_bytes: usize,
    pub max_connections: usize,
    /// Copied into findings (null when unknown).
    pub account: Option<String>,
    pub region: Option<String>,
    pub principal: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9912)),
            allow_non_loopback: false,
            upstream: "http://169.254.169.254".into(),
            allowed_user_agents: DEFAULT_ALLOWED_USER_AGENTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            require_v2: false,
            v1_credentials: false,
            gate_user_data: true,
            user_data_user_agents: Vec::new(),
            allowed_peers: Vec::new(),
            token_hop_limit: 1,
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 8 * 1024,
            upstream_timeout: Duration::from_secs(5),
            max_response_bytes: 1024 * 1024,
            max_connections: 1024,
            account: None,
            region: None,
            principal: None,
        }
    }
}

/// Is `ip` this host? Loopback, or one of its own interface addresses: after the `OUTPUT`
/// DNAT that routes a local process to the proxy, the connection keeps the source address the
/// kernel chose for 169.254.169.254 — the instance's own address, not 127.0.0.1. Asks the
/// routing table without sending anything (the route to a local address leaves from that
/// address itself); any error answers no. Packets arriving from outside with one of this
/// host's addresses as their source are dropped by the kernel (martians).
pub fn is_this_host(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return true;
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    let any: SocketAddr = match ip {
        IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect((ip, 9))?;
            s.local_addr()
        })
        .is_ok_and(|local| local.ip() == ip)
}

impl ProxyConfig {
    /// How many hops `peer` is from the metadata service, or `None` when it may not use the
    /// proxy: this host is one hop (as on EC2), an `allowed_peers` network (a container
    /// bridge) two, anything else is refused.
    pub fn peer_hops(&self, peer: IpAddr) -> Option<u8> {
        self.hops_from(peer, is_this_host(peer))
    }

    fn hops_from(&self, peer: IpAddr, this_host: bool) -> Option<u8> {
        let peer = peer.to_canonical();
        if this_host {
            Some(1)
        } else if self.allowed_peers.iter().any(|c| c.contains(peer)) {
            Some(2)
        } else {
            None
        }
    }

    /// May this peer use the proxy at all?
    pub fn peer_allowed(&self, peer: IpAddr) -> bool {
        self.peer_hops(peer).is_some()
    }

    /// May this peer obtain an IMDSv2 token (its hops within `token_hop_limit`)?
    pub fn token_allowed(&self, peer: IpAddr) -> bool {
        self.peer_hops(peer)
            .is_some_and(|hops| hops <= self.token_hop_limit)
    }
}

/// Does `user_agent` start with one of `patterns` (see [`DEFAULT_ALLOWED_USER_AGENTS`])?
pub fn user_agent_allowed(patterns: &[String], user_agent: &str) -> bool {
    patterns
        .iter()
        .any(|p| match user_agent.strip_prefix(p.as_str()) {
            Some(rest) if p.ends_with('/') => {
                rest.as_bytes().first().is_some_and(u8::is_ascii_digit)
            }
            Some(_) => !p.is_empty(),
            None => false,
        })
}

/// Why a path is not canonical, or `Ok` when it is exactly what an SDK would send.
pub fn check_canonical(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("request target is not an absolute path");
    }
    if path.len() > 1024 {
        return Err("path too long");
    }
    for b in path.bytes() {
        match b {
            b'%' => return Err("percent-encoded path"),
            b'\\' => return Err("backslash in path"),
            b';' => return Err("path parameter (;) in path"),
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b':'
            | b'='
            | b'@'
            | b'+'
            | b',' => {}
            _ => return Err("disallowed character in path"),
        }
    }
    if path.contains("//") {
        return Err("empty path segment (//)");
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err("dot segment in path");
    }
    Ok(())
}

/// The path as the most lenient server could read it: percent-decoded repeatedly, `\` as `/`,
/// dot segments resolved, empty segments dropped, lowercase. Used only to recognise attempts
/// on sensitive paths among refused requests — never to route.
pub fn lenient_view(path: &str) -> String {
    let mut p = path.to_string();
    for _ in 0..4 {
        let d = percent_decode_lossy(&p);
        if d == p {
            break;
        }
        p = d;
    }
    let p = p.replace('\\', "/").to_ascii_lowercase();
    let p = p.split([';', '?', '#']).next().unwrap_or("");
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn percent_decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is this (lowercased) path one whose answer is a credential or proves the instance's identity?
pub fn is_sensitive(lower_path: &str, gate_user_data: bool) -> bool {
    const MARKERS: &[&str] = &[
        "security-credentials",
        "identity-credentials",
        "instance-identity/pkcs7",
        "instance-identity/signature",
        "instance-identity/rsa2048",
    ];
    MARKERS.iter().any(|m| lower_path.contains(m)) || (gate_user_data && is_user_data(lower_path))
}

fn is_user_data(lower_path: &str) -> bool {
    lower_path.contains("user-data")
}

/// A bound proxy.
pub struct MetadataProxy {
    listener: TcpListener,
    state: Arc<ProxyState>,
}

struct ProxyState {
    cfg: ProxyConfig,
    upstream_scheme_authority: (String, HeaderValue),
    client: Client<HttpConnector, Full<Bytes>>,
    log: Arc<dyn LogSink>,
    findings: Arc<dyn FindingSink>,
}

impl MetadataProxy {
    pub async fn bind(
        config: ProxyConfig,
        log: Arc<dyn LogSink>,
        findings: Arc<dyn FindingSink>,
    ) -> Result<MetadataProxy, ImdsError> {
        let uri: Uri = config.upstream.parse().map_err(|_| {
            ImdsError::Config(format!("upstream {:?} is not a URL", config.upstream))
        })?;
        if uri.scheme_str() != Some("http")
            || uri.authority().is_none()
            || !uri.path().trim_end_matches('/').is_empty()
            || uri.query().is_some()
        {
            return Err(ImdsError::Config(format!(
                "upstream {:?} must be http://host[:port] (the metadata service has no TLS and no base path)",
                config.upstream
            )));
        }
        if config
            .allowed_user_agents
            .iter()
            .chain(&config.user_data_user_agents)
            .any(|p| p.is_empty())
        {
            return Err(ImdsError::Config(
                "an empty User-Agent pattern would allow everything".into(),
            ));
        }
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let host = HeaderValue::from_str(&authority)
            .map_err(|_| ImdsError::Config("bad upstream host".into()))?;
        let listener = http::bind(config.listen, config.allow_non_loopback).await?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.upstream_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        let state = Arc::new(ProxyState {
            upstream_scheme_authority: (format!("http://{authority}"), host),
            cfg: config,
            client,
            log,
            findings,
        });
        Ok(MetadataProxy { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.cfg.listen)
    }

    fn limits(&self) -> ConnLimits {
        let c = &self.state.cfg;
        ConnLimits {
            header_read_timeout: c.header_read_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: 64,
            max_connections: c.max_connections,
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

    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ImdsError> {
        let limits = self.limits();
        http::serve(self.listener, limits, self.state, shutdown).await
    }
}

/// Bind and proxy until `shutdown` completes: what `credwarden imds proxy` calls.
pub async fn run(
    config: ProxyConfig,
    log: Arc<dyn LogSink>,
    findings: Arc<dyn FindingSink>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ImdsError> {
    MetadataProxy::bind(config, log, findings)
        .await?
        .run(shutdown)
        .await
}

/// One line of the request log.
#[derive(Serialize)]
struct LogLine<'a> {
    time: String,
    event: &'static str,
    remote: String,
    method: &'a str,
    path: String,
    user_agent: Option<String>,
    sensitive: bool,
    decision: &'static str,
    reason: &'a str,
    status: u16,
    upstream_status: Option<u16>,
    latency_us: u64,
}

/// A refusal: status, error code, reason (logged and returned), and whether it is a finding.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    reason: String,
    finding: bool,
}

fn refuse(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        reason: reason.into(),
        finding: false,
    }
}

const FORWARDING_HEADERS: &[&str] = &["x-forwarded-for", "forwarded", "x-real-ip", "via"];
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Printable-ASCII excerpt for logs (header values and paths come from attackers).
fn clean(s: &[u8], max: usize) -> String {
    let mut out: String = s
        .iter()
        .take(max)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if s.len() > max {
        out.push('…');
    }
    out
}

impl ProxyState {
    /// Apply the rules; `Ok(sensitive)` when the request may be forwarded.
    fn check(
        &self,
        req: &Request<Incoming>,
        peer: SocketAddr,
        user_agent: Option<&str>,
    ) -> Result<bool, Refusal> {
        let uri = req.uri();
        let lenient_sensitive = || {
            is_sensitive(&lenient_view(uri.path()), self.cfg.gate_user_data)
                || is_sensitive(&uri.path().to_ascii_lowercase(), self.cfg.gate_user_data)
        };
        if !self.cfg.peer_allowed(peer.ip()) {
            return Err(Refusal {
                finding: lenient_sensitive(),
                ..refuse(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "peer is neither loopback nor an allowed network",
                )
            });
        }
        if uri.scheme().is_some() || uri.authority().is_some() || req.method() == Method::CONNECT {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "absolute-form or authority-form request target (proxy request)",
            ));
        }
        if req.headers().get_all(hyper::header::HOST).iter().count() != 1 {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "exactly one Host header is required",
            ));
        }
        let mut header_bytes = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1) + 16;
        for (name, value) in req.headers() {
            header_bytes += name.as_str().len() + value.len() + 4;
            let canonical = name.as_str().replace('_', "-");
            if FORWARDING_HEADERS.contains(&canonical.as_str()) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!("forwarded request ({} header)", name.as_str()),
                ));
            }
        }
        if let Some(name) = http::api_client_header(req.headers()) {
            return Err(Refusal {
                finding: lenient_sensitive(),
                ..refuse(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "AWS API request ({} header): metadata clients never sign requests",
                        clean(name.as_bytes(), 64)
                    ),
                )
            });
        }
        if header_bytes > self.cfg.max_header_bytes {
            return Err(refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "HeadersTooLarge",
                "request headers too large",
            ));
        }
        if req
            .headers()
            .get_all(hyper::header::USER_AGENT)
            .iter()
            .count()
            > 1
        {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "more than one User-Agent header",
            ));
        }
        let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get_all(hyper::header::CONTENT_LENGTH)
                .iter()
                .any(|v| v.as_bytes() != b"0");
        if has_body {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the metadata service takes no request body",
            ));
        }
        let path = uri.path();
        if uri.query().is_some() {
            return Err(Refusal {
                finding: lenient_sensitive(),
                ..refuse(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "query strings are not part of the metadata protocol",
                )
            });
        }
        if let Err(why) = check_canonical(path) {
            return Err(Refusal {
                finding: lenient_sensitive(),
                ..refuse(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("ambiguous path: {why}"),
                )
            });
        }
        let sensitive = is_sensitive(&path.to_ascii_lowercase(), self.cfg.gate_user_data);
        let token_path = path.eq_ignore_ascii_case(TOKEN_PATH)
            || path.eq_ignore_ascii_case("/latest/api/token/");
        if token_path {
            if req.method() != Method::PUT {
                return Err(refuse(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "the token is obtained with PUT",
                ));
            }
            let ttl_ok = match req
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
                    .is_some_and(|t| (1..=MAX_TOKEN_TTL_SECONDS).contains(&t)),
                _ => false,
            };
            if !ttl_ok {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "X-aws-ec2-metadata-token-ttl-seconds must be one integer from 1 to 21600",
                ));
            }
            // The hop limit: a non-loopback peer is at least one hop beyond the instance.
            if !self.cfg.token_allowed(peer.ip()) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "token requests from beyond the instance exceed the hop limit",
                ));
            }
            return Ok(false);
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(Refusal {
                finding: sensitive,
                ..refuse(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "the metadata service answers GET",
                )
            });
        }
        if self.cfg.require_v2 && !req.headers().contains_key(TOKEN_HEADER) {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "IMDSv2 is required: PUT /latest/api/token first",
            ));
        }
        if sensitive {
            let lower = path.to_ascii_lowercase();
            let allowed = user_agent.is_some_and(|ua| {
                user_agent_allowed(&self.cfg.allowed_user_agents, ua)
                    || (is_user_data(&lower)
                        && !is_sensitive(&lower.replace("user-data", ""), false)
                        && user_agent_allowed(&self.cfg.user_data_user_agents, ua))
            });
            if !allowed {
                return Err(Refusal {
                    finding: true,
                    ..refuse(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        "credential paths are served only to AWS SDKs and tools \
                         (User-Agent not allow-listed)",
                    )
                });
            }
            if !self.cfg.v1_credentials && !req.headers().contains_key(TOKEN_HEADER) {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "credential paths need an IMDSv2 token: PUT /latest/api/token first",
                ));
            }
        }
        Ok(sensitive)
    }

    async fn forward(
        &self,
        req: &Request<Incoming>,
    ) -> Result<Response<Body>, (StatusCode, &'static str)> {
        let (base, host) = &self.upstream_scheme_authority;
        let uri: Uri = format!("{base}{}", req.uri().path())
            .parse()
            .map_err(|_| (StatusCode::BAD_REQUEST, "path cannot be forwarded"))?;
        let mut out = Request::builder().method(req.method().clone()).uri(uri);
        if let Some(h) = out.headers_mut() {
            for (name, value) in req.headers() {
                if name != hyper::header::HOST && !HOP_BY_HOP.contains(&name.as_str()) {
                    h.append(name.clone(), value.clone());
                }
            }
            h.insert(hyper::header::HOST, host.clone());
        }
        let out = out
            .body(Full::new(Bytes::new()))
            .map_err(|_| (StatusCode::BAD_REQUEST, "request cannot be forwarded"))?;
        let work = async {
            let resp = self.client.request(out).await.map_err(|_| {
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream metadata service unreachable",
                )
            })?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, self.cfg.max_response_bytes)
                .collect()
                .await
                .map_err(|_| {
                    (
                        StatusCode::BAD_GATEWAY,
                        "upstream response too large or broken",
                    )
                })?
                .to_bytes();
            let mut r = Response::new(Full::new(bytes));
            *r.status_mut() = parts.status;
            for (name, value) in &parts.headers {
                if !HOP_BY_HOP.contains(&name.as_str()) && name != hyper::header::CONTENT_LENGTH {
                    r.headers_mut().append(name.clone(), value.clone());
                }
            }
            Ok(r)
        };
        tokio::time::timeout(self.cfg.upstream_timeout, work)
            .await
            .unwrap_or(Err((
                StatusCode::GATEWAY_TIMEOUT,
                "upstream metadata service timed out",
            )))
    }

    fn finding(
        &self,
        req: &Request<Incoming>,
        peer: SocketAddr,
        user_agent: Option<&str>,
        reason: &str,
    ) -> Finding {
        let t = imds_time(now());
        let path = clean(
            req.uri()
                .path_and_query()
                .map_or(b"", |p| p.as_str().as_bytes()),
            512,
        );
        let ua = user_agent.map(|u| clean(u.as_bytes(), 256));
        let ua_text = ua.clone().unwrap_or_else(|| "(none)".into());
        Finding {
            id: credwarden_core::finding_id(DETECTOR, &[&t, &peer.to_string(), req.method().as_str(), &path, &ua_text]),
            detector: DETECTOR,
            severity: credwarden_core::Severity::High,
            time: t,
            account: self.cfg.account.clone(),
            account_name: None,
            account_owner: None,
            region: self.cfg.region.clone(),
            principal: self.cfg.principal.clone(),
            access_key_id: None,
            source: FindingSource { ip: Some(peer.ip().to_string()), vpc_endpoint: None, user_agent: ua },
            event_ids: Vec::new(),
            summary: format!("Blocked a request for instance credentials from a non-SDK client ({ua_text}): possible SSRF"),
            details: serde_json::json!({"method": req.method().as_str(), "path": path, "lenient_path": lenient_view(req.uri().path()),
                "reason": reason, "remote": peer.to_string(), "upstream": self.cfg.upstream}),
            remediation: "Find the process that made this request (a web application fetching user-supplied URLs is the usual cause) and \
                fix the server-side request forgery; if it is a legitimate tool, use an AWS SDK or add its User-Agent prefix to the allow-list."
                .into(),
        }
    }
}

impl Handler for ProxyState {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let ua_header = req.headers().get(hyper::header::USER_AGENT);
        // A User-Agent that is not visible ASCII is treated as absent (no SDK sends one).
        let user_agent = ua_header
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty());
        let decision = self.check(&req, peer, user_agent);
        let sensitive = match &decision {
            Ok(s) => *s,
            Err(r) => r.finding,
        };
        let (response, decision, reason, upstream_status) = match decision {
            Ok(_) => match self.forward(&req).await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    (r, "allow", String::from("forwarded"), Some(s))
                }
                Err((status, why)) => (
                    http::error(status, "UpstreamError", why),
                    "allow",
                    why.to_string(),
                    None,
                ),
            },
            Err(refusal) => {
                if refusal.finding {
                    self.findings
                        .deliver(self.finding(&req, peer, user_agent, &refusal.reason));
                }
                (
                    http::error(refusal.status, refusal.code, &refusal.reason),
                    "deny",
                    refusal.reason,
                    None,
                )
            }
        };
        let line = LogLine {
            time: imds_time(now()),
            event: "request",
            remote: peer.to_string(),
            method: req.method().as_str(),
            path: clean(
                req.uri()
                    .path_and_query()
                    .map_or(b"", |p| p.as_str().as_bytes()),
                512,
            ),
            user_agent: ua_header.map(|v| clean(v.as_bytes(), 256)),
            sensitive,
            decision,
            reason: &reason,
            status: response.status().as_u16(),
            upstream_status,
            latency_us: started.elapsed().as_micros() as u64,
        };
        if let Ok(v) = serde_json::to_value(&line) {
            self.log.log(&v);
        }
        response
    }

    fn connection_error(&self, peer: SocketAddr, error: &hyper::Error) {
        let reason = if error.is_timeout() {
            "header read timeout (slow client)"
        } else if error.is_parse_too_large() {
            "request headers too large"
        } else if error.is_parse() {
            "malformed request"
        } else {
            "connection error"
        };
        self.log.log(&serde_json::json!({"time": imds_time(now()), "event": "connection", "remote": peer.to_string(), "decision": "deny", "reason": reason}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents() {
        let p: Vec<String> = DEFAULT_ALLOWED_USER_AGENTS
            .iter()
            .map(|s| s.to_string())
            .collect();
        for ok in [
            "Botocore/1.34.0 Python/3.12",
            "Boto3/1.34.0 md/Botocore#1.34.0",
            "aws-cli/2.15.0 ua/2.0",
            "aws-sdk-java/2.21.0 Linux/6",
            "aws-sdk-go-v2/1.24.0 os/linux",
            "aws-sdk-go/1.50.0 (go1.21; linux; amd64)",
            "aws-sdk-ruby3/3.190.0",
            "aws-sdk-dotnet-coreclr/3.7.0",
            "aws-sdk-rust/1.3.0 os/linux",
        ] {
            assert!(user_agent_allowed(&p, ok), "{ok}");
        }
        for bad in [
            "",
            "botocore/1.0",
            "xBotocore/1.0",
            "Mozilla/5.0 Botocore/1.2",
            "Botocore/",
            "Botocore/x",
            "python-requests/2.31",
            "curl/8.0",
            "Java/1.8.0_392",
            "Go-http-client/1.1",
            " Botocore/1.0",
        ] {
            assert!(!user_agent_allowed(&p, bad), "{bad}");
        }
    }

    #[test]
    fn peers_and_the_token_hop_limit() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut c = ProxyConfig::default();
        for local in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(
                c.peer_allowed(ip(local)) && c.token_allowed(ip(local)),
                "{local}"
            );
        }
        // Documentation addresses are nobody's interface: foreign peers.
        for remote in [
            "203.0.113.7",
            "198.51.100.2",
            "::ffff:203.0.113.7",
            "0.0.0.0",
            "::",
        ] {
            assert!(
                !c.peer_allowed(ip(remote)) && !c.token_allowed(ip(remote)),
                "{remote}"
            );
        }
        assert_eq!(c.hops_from(ip("172.17.0.2"), false), None);
        assert_eq!(
            c.hops_from(ip("10.0.0.5"), true),
            Some(1),
            "the instance's own address"
        );
        c.allowed_peers = vec![Cidr::parse("203.0.113.0/24").unwrap()];
        assert!(c.peer_allowed(ip("203.0.113.7")) && c.peer_allowed(ip("::ffff:203.0.113.7")));
        assert!(
            !c.token_allowed(ip("203.0.113.7")),
            "hop limit 1: the instance only"
        );
        assert!(!c.peer_allowed(ip("198.51.100.2")));
        c.token_hop_limit = 2;
        assert!(c.token_allowed(ip("203.0.113.7")));
        assert!(
            !c.token_allowed(ip("198.51.100.2")),
            "a token never for a refused peer"
        );
    }

    #[test]
    fn canonical_paths() {
        assert!(check_canonical("/latest/meta-data/iam/security-credentials/").is_ok());
        assert!(check_canonical(
            "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/vpc-id"
        )
        .is_ok());
        for bad in [
            "latest",
            "/latest//meta-data",
            "/latest/./meta-data",
            "/latest/meta-data/../",
            "/latest/%2e%2e/",
            "/a\\b",
            "/a;b",
            "/a b",
            "/é",
        ] {
            assert!(check_canonical(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lenient_view_sees_through_tricks() {
        for p in [
            "/latest/meta-data/iam/%73ecurity-credentials/",
            "/latest/meta-data/iam/x/../security-credentials/",
            "/latest%2Fmeta-data%2Fiam%2Fsecurity-credentials",
            "/latest/meta-data/iam/%2573ecurity-credentials",
            "//latest//meta-data/IAM/Security-Credentials",
        ] {
            assert!(
                is_sensitive(&lenient_view(p), false),
                "{p} -> {}",
                lenient_view(p)
            );
        }
        assert_eq!(lenient_view("/a/%"), "/a/%");
    }
}
