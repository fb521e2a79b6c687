//! The broker's decisions, independent of HTTP: who the caller is, which roles they may use,
//! which network they are on, the STS call, the audit entry and the anomaly findings.
//!
//! Ordering is the security property: a request is authenticated, rate-limited, matched to a
//! network and authorised; STS is called with the network's session policy; the audit entry
//! is committed (synchronously, to disk); only then are credentials returned. If the audit
//! write fails the credentials are dropped — they expire unused — and the caller gets an
//! error. Refusals are audited too.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_iam::types::EntityType;
use credwarden_core::Cidr;
use credwarden_core::EventTime;
use credwarden_core::{finding_id, Finding, FindingSource, Severity};
use serde::Serialize;
use sink::{DeliveryConfig, FindingDelivery, WebhookOptions, WebhookTarget};
use store::{AuditEntry, Store};

use crate::audit_store::{AuditPool, AuditStore, AuditStoreError};

use crate::auth::{self, Caller, HeaderRules, JwtRules, ProxySecret};
use crate::config::{AuthConfig, BrokerConfig};
use crate::error::{AuthError, ConfigError};
use crate::keyring::{JwksSource, KeyRing};
use crate::session_policy;

mod approvals;
mod web;
pub use approvals::is_request_id;

/// Why a request was not served: an HTTP status, a stable code and a sentence for the
/// client; `detail`, when set, is what the audit records instead (it may say more than the
/// client should learn, such as whether a role exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// What the audit records about this refusal (never sent to the client).
    pub fn detail(mut self, detail: impl Into<String>) -> Refusal {
        self.detail = Some(detail.into());
        self
    }
}

/// What every refusal of a role the caller may not use says, whether or not the role exists.
const NOT_AUTHORISED: &str = "no role of that name is available to you";

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Refusal {
        Refusal::new(401, "unauthenticated", e.to_string())
    }
}

/// Credentials handed out. The secret parts are never logged or audited. `Deserialize`:
/// the broker's JSON as clients read it (the client's credential cache keeps it so).
#[derive(Clone, Serialize, serde::Deserialize)]
pub struct Issued {
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
    #[serde(rename = "SessionToken")]
    pub session_token: String,
    #[serde(rename = "Expiration")]
    pub expiration: String,
    #[serde(rename = "RoleArn")]
    pub role_arn: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

enum Authenticator {
    Jwt { keys: Arc<KeyRing>, rules: JwtRules },
    Header(HeaderRules),
}

/// The two things a user can ask for often, each with its own per-user limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Limited {
    Credentials,
    AccessRequests,
}

/// Rate-limit refusals of one user not yet written to the audit: a streak of them is one
/// row when it starts, then one row with a count when it ends (or every minute it lasts).
struct Streak {
    unwritten: u64,
    first_unwritten_ms: i64,
    last_row: Instant,
    entry: AuditEntry,
}

/// How long a streak of rate-limit refusals goes without an audit row at most.
const STREAK_ROW_EVERY: Duration = Duration::from_secs(60);

struct Network {
    name: String,
    clients: Vec<Cidr>,
    session_policy: String,
}

struct Directory {
    path: PathBuf,
    modified: Option<SystemTime>,
    users: crate::directory::Directory,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub issued: AtomicU64,
    pub refused: AtomicU64,
    pub audit_failures: AtomicU64,
    pub sts_failures: AtomicU64,
    /// Issuance time without STS, microseconds: sum and count, and a histogram.
    pub local_us_sum: AtomicU64,
    pub local_count: AtomicU64,
    pub local_buckets: [AtomicU64; 6],
}

/// Histogram bounds (seconds) of the broker's own work per issuance.
pub const BUCKETS: [f64; 6] = [0.001, 0.002, 0.005, 0.01, 0.05, 0.25];

/// Role ARN → groups that may use it.
type RoleGroups = HashMap<String, BTreeSet<String>>;

/// One entry waiting for the group commit, and who to tell when it is on disk.
type PendingAudit = (AuditEntry, tokio::sync::oneshot::Sender<Result<(), String>>);

/// The audit writer: one thread with its own connection that commits whatever entries are
/// waiting in one transaction (group commit). Concurrent requests then share an fsync
/// instead of queueing for one each, and every request still waits for its own entry to be
/// on disk before it answers.
struct AuditWriter {
    queue: std::sync::mpsc::Sender<PendingAudit>,
}

impl AuditWriter {
    fn start(mut store: AuditStore) -> Result<AuditWriter, ConfigError> {
        let (queue, rx) = std::sync::mpsc::channel::<PendingAudit>();
        std::thread::Builder::new()
            .name("credwarden-audit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < 256 {
                        match rx.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    let entries: Vec<AuditEntry> = batch.iter().map(|(e, _)| e.clone()).collect();
                    let result = store
                        .audit_append_batch(&entries)
                        .map_err(|e| e.to_string());
                    for (_, done) in batch {
                        let _ = done.send(result.clone());
                    }
                }
            })
            .map_err(|source| ConfigError::Io {
                what: "cannot start the audit writer thread".into(),
                source,
            })?;
        Ok(AuditWriter { queue })
    }

    /// Commit one entry; resolves when it is durable (or failed).
    async fn append(&self, entry: AuditEntry) -> Result<(), String> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.queue
            .send((entry, done))
            .map_err(|_| "the audit writer stopped".to_owned())?;
        wait.await
            .map_err(|_| "the audit writer stopped".to_owned())?
    }
}

pub struct Broker {
    cfg: BrokerConfig,
    auth: Authenticator,
    networks: Vec<Network>,
    audit: Arc<AuditPool>,
    /// The audit store is shared with other replicas: rate limits are counted there too.
    shared_limits: bool,
    writer: AuditWriter,
    sts: aws_sdk_sts::Client,
    iam: aws_sdk_iam::Client,
    /// IAM in each member account of `[aws] role_tag_accounts`, through the assumed role.
    member_iams: Vec<(String, aws_sdk_iam::Client)>,
    /// Role tags by account ("" for the broker's own), and when they were read. Kept per
    /// account so that one unreadable account keeps its last known tags without holding
    /// back the others' changes (a removed tag must take effect).
    role_cache: tokio::sync::Mutex<Option<(Instant, HashMap<String, RoleGroups>)>>,
    directory: Mutex<Option<Directory>>,
    /// Account id → name, from `registry` (empty without one).
    account_names: HashMap<String, String>,
    limiter: Mutex<HashMap<(Limited, String), (f64, Instant)>>,
    streaks: Mutex<HashMap<(Limited, String), Streak>>,
    /// Last time a repeated-refusals finding was raised per user (one per burst window).
    burst_reported: Mutex<HashMap<String, i64>>,
    findings: Option<FindingDelivery>,
    /// The AWS federation endpoint for console sign-in (`[console]`).
    federation: crate::console::Federation,
    pub metrics: Metrics,
}

/// What an issuance is for: the audit tells plain credentials from a console sign-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Credentials,
    Console,
}

fn now_ms() -> i64 {
    credwarden_core::clock::now_millis()
}

/// The start of an audit row about `caller`'s request: who, with which groups (the identity
/// provider's apart, so that `access prune` can tell which it may remove), from where.
fn caller_entry(caller: &Caller, client: IpAddr, request_id: &str) -> AuditEntry {
    let join = |g: &BTreeSet<String>| g.iter().cloned().collect::<Vec<_>>().join(",");
    AuditEntry {
        time_ms: now_ms(),
        request_id: request_id.to_owned(),
        user: caller.user.clone(),
        groups: join(&caller.groups),
        idp_groups: Some(join(&caller.idp_groups)),
        client_ip: client.to_string(),
        ..Default::default()
    }
}

/// The user's RoleSessionName and SourceIdentity. STS accepts `[\w+=,.@-]{2,64}`; the
/// encoding is injective, so two users never share a name in CloudTrail: ASCII letters,
/// digits and `_+,.@-` stay, every other character (`=` included) becomes `=HH` per UTF-8
/// byte (`bob smith` → `bob=20smith`, `bob-smith` stays), and a one-character result gets a
/// trailing `=` (no encoded name ends in `=`). None when the result would be longer than 64
/// characters (or the user is empty): such a user is refused rather than truncated into
/// someone else's name.
pub fn sts_name(user: &str) -> Option<String> {
    use std::fmt::Write;
    let mut s = String::with_capacity(user.len());
    for c in user.chars() {
        if c.is_ascii_alphanumeric() || "_+,.@-".contains(c) {
            s.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(s, "={b:02X}");
            }
        }
        if s.len() > 64 {
            return None;
        }
    }
    match s.len() {
        0 => None,
        1 => Some(s + "="),
        _ => Some(s),
    }
}

/// The user a [`sts_name`] stands for (what CloudTrail shows as source identity or session
/// name back to the directory's user); `None` for a name `sts_name` never makes.
pub fn sts_name_user(name: &str) -> Option<String> {
    let body = match name.strip_suffix('=') {
        Some(one) if one.chars().count() == 1 => one,
        Some(_) => return None,
        None => name,
    };
    let mut bytes = Vec::with_capacity(body.len());
    let mut rest = body.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = tail.get(..2)?;
            // Upper-case hex only: the encoding writes it so, and one name has one form.
            if !hex
                .iter()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
            {
                return None;
            }
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let user = String::from_utf8(bytes).ok()?;
    // Only names the encoding produces: anything else is not a broker user's.
    (sts_name(&user).as_deref() == Some(name)).then_some(user)
}

impl Broker {
    /// Build the broker: verify every network's session policy, open the audit store, load
    /// the JWKS, connect the AWS clients.
    pub async fn new(cfg: BrokerConfig) -> Result<Broker, ConfigError> {
        if !(900..=43200).contains(&cfg.max_duration_seconds) {
            return Err(ConfigError::Invalid(
                "max_duration_seconds must be within 900..=43200 (STS limits)".into(),
            ));
        }
        if cfg.networks.is_empty() {
            return Err(ConfigError::Invalid("no [[networks]]: every credential is locked to its requester's network, so at least one is needed".into()));
        }
        let mut networks = Vec::new();
        for n in &cfg.networks {
            let clients = n
                .clients
                .iter()
                .map(|c| {
                    Cidr::parse(c).ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "network {:?}: client range {c:?} is not a CIDR",
                            n.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            networks.push(Network {
                name: n.name.clone(),
                clients,
                session_policy: session_policy::build(&cfg, n)?,
            });
        }
        let auth = match &cfg.auth {
            AuthConfig::Jwt {
                jwks_file,
                jwks_url,
                issuer,
                audience,
                user_claim,
                groups_claim,
                groups_delimiter,
                leeway_seconds,
                jwks_refresh_seconds,
                jwks_refetch_seconds,
            } => {
                let source = match (jwks_file, jwks_url) {
                    (Some(f), None) => JwksSource::File(f.clone()),
                    (None, Some(url)) => JwksSource::url(url)?,
                    _ => {
                        return Err(ConfigError::Invalid(
                            "[auth] mode = \"jwt\" needs exactly one of jwks_file, jwks_url".into(),
                        ))
                    }
                };
                let keys = KeyRing::load(
                    source,
                    Duration::from_secs(*jwks_refresh_seconds),
                    Duration::from_secs(*jwks_refetch_seconds),
                )
                .await?;
                Authenticator::Jwt {
                    keys,
                    rules: JwtRules {
                        issuer: issuer.clone(),
                        audience: audience.clone(),
                        user_claim: user_claim.clone(),
                        groups_claim: groups_claim.clone(),
                        groups_delimiter: groups_delimiter.clone().filter(|d| !d.is_empty()),
                        leeway_seconds: (*leeway_seconds).clamp(0, 300),
                    },
                }
            }
            AuthConfig::Header {
                user_header,
                groups_header,
                groups_delimiter,
                trusted_proxies,
                secret_file,
                secret_header,
            } => {
                let trusted = trusted_proxies
                    .iter()
                    .map(|c| {
                        Cidr::parse(c).ok_or_else(|| {
                            ConfigError::Invalid(format!("trusted proxy {c:?} is not a CIDR"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if trusted.is_empty() {
                    return Err(ConfigError::Invalid(
                        "[auth] mode = \"header\" needs trusted_proxies".into(),
                    ));
                }
                if groups_delimiter.trim().is_empty() {
                    return Err(ConfigError::Invalid(
                        "[auth] groups_delimiter must be a non-blank string".into(),
                    ));
                }
                let secret = match secret_file {
                    Some(f) => {
                        let text =
                            std::fs::read_to_string(f).map_err(|source| ConfigError::Io {
                                what: f.display().to_string(),
                                source,
                            })?;
                        let secret = ProxySecret::new(text.trim())
                            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", f.display())))?;
                        Some(secret)
                    }
                    None => {
                        eprintln!(
                            "broker: header mode without secret_file: any process that can reach \
                             the broker from a trusted proxy's address can name any user"
                        );
                        None
                    }
                };
                Authenticator::Header(HeaderRules {
                    user_header: user_header.to_ascii_lowercase(),
                    groups_header: groups_header.as_ref().map(|g| g.to_ascii_lowercase()),
                    groups_delimiter: groups_delimiter.clone(),
                    secret_header: secret_header.to_ascii_lowercase(),
                    secret,
                    trusted_proxies: trusted,
                })
            }
        };
        if cfg
            .role_groups_tag_delimiter
            .as_deref()
            .is_some_and(|d| d.trim().is_empty())
        {
            return Err(ConfigError::Invalid(
                "role_groups_tag_delimiter must be a non-blank string (leave it out for spaces)"
                    .into(),
            ));
        }
        // Two connections: the writer's own (group commits) and one for reads. Opened on a
        // blocking thread: the PostgreSQL client blocks on a runtime of its own.
        let (audit, writer_store) = {
            let url = cfg.audit.clone();
            tokio::task::spawn_blocking(move || {
                Ok::<_, ConfigError>((AuditPool::open(&url)?, AuditStore::open(&url)?))
            })
            .await
            .map_err(|e| ConfigError::Invalid(format!("opening the audit store: {e}")))??
        };
        let writer = AuditWriter::start(writer_store)?;
        // The registry is read once: account names change rarely, and a broker that could not
        // name accounts would still issue correctly, but a named file that cannot be read is
        // a configuration error, not something to find out from blank pages.
        let account_names: HashMap<String, String> = match &cfg.registry {
            None => HashMap::new(),
            Some(path) if !path.is_file() => {
                return Err(ConfigError::Invalid(format!(
                    "registry {}: no such file (credwarden accounts sync --state FILE makes it)",
                    path.display()
                )))
            }
            Some(path) => Store::open(path)?
                .accounts()?
                .into_iter()
                .map(|a| (a.id, a.name))
                .collect(),
        };
        let webhook_format = match cfg.findings_webhook_format.as_deref() {
            None | Some("json") => sink::PostFormat::Json,
            Some("slack") => sink::PostFormat::Slack,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "findings_webhook_format {other:?}: use \"json\" or \"slack\""
                )))
            }
        };
        // The webhook spool is a local SQLite file: the audit file itself, or with PostgreSQL
        // one of the replica's own.
        let spool = match (
            &cfg.findings_spool,
            crate::audit_store::is_postgres(&cfg.audit),
        ) {
            (Some(path), _) => path.clone(),
            (None, false) => PathBuf::from(&cfg.audit),
            (None, true) if cfg.findings_webhook.is_some() => {
                return Err(ConfigError::Invalid(
                    "findings_webhook with a PostgreSQL audit needs findings_spool = FILE (a \
                     local SQLite file where posts wait)"
                        .into(),
                ))
            }
            (None, true) => PathBuf::new(),
        };
        let findings = if cfg.findings.is_some() || cfg.findings_webhook.is_some() {
            Some(FindingDelivery::open(&DeliveryConfig {
                stdout: false,
                file: cfg.findings.clone(),
                webhook: cfg.findings_webhook.as_ref().map(|url| WebhookTarget {
                    url: url.clone(),
                    state: spool.clone(),
                    options: WebhookOptions {
                        format: webhook_format,
                        ..WebhookOptions::default()
                    },
                }),
            })?)
        } else {
            None
        };
        let sdk = aws::live::sdk_config(&aws::LiveOptions {
            endpoint_url: cfg.aws.endpoint_url.clone(),
            region: cfg.aws.region.clone(),
            regions: Vec::new(),
        })
        .await
        .map_err(|_| {
            ConfigError::Invalid("no AWS region: set [aws] region or AWS_REGION".into())
        })?;
        if !cfg.aws.role_tag_accounts.is_empty() && cfg.aws.assume_role_name.is_none() {
            return Err(ConfigError::Invalid(
                "[aws] role_tag_accounts needs assume_role_name: the role read in each".into(),
            ));
        }
        let mut member_iams = Vec::new();
        for account in &cfg.aws.role_tag_accounts {
            let role = cfg.aws.assume_role_name.as_deref().unwrap_or_default();
            let member = aws::members::member_config(&sdk, account, role)
                .await
                .map_err(|e| ConfigError::Invalid(format!("[aws] role_tag_accounts: {e}")))?;
            member_iams.push((account.clone(), aws_sdk_iam::Client::new(&member)));
        }
        let federation = crate::console::Federation::from_config(&cfg.console)?;
        crate::web::settings(&cfg)?;
        let directory = cfg.directory.clone().map(|path| Directory {
            path,
            modified: None,
            users: Default::default(),
        });
        Ok(Broker {
            sts: aws_sdk_sts::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            member_iams,
            auth,
            networks,
            shared_limits: audit.is_shared(),
            audit: Arc::new(audit),
            writer,
            role_cache: tokio::sync::Mutex::new(None),
            directory: Mutex::new(directory),
            account_names,
            limiter: Mutex::new(HashMap::new()),
            streaks: Mutex::new(HashMap::new()),
            burst_reported: Mutex::new(HashMap::new()),
            findings,
            federation,
            metrics: Metrics::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    /// Authenticate from the request's headers (lowercase names → every value given) and
    /// TCP peer. A header that must be single and is repeated is refused: proxies append
    /// their own copy after whatever the client sent, and the first copy is the client's.
    ///
    /// A token signed by a key the JWKS does not hold makes the broker read the JWKS again
    /// (rate-limited) and try once more.
    pub async fn authenticate(
        &self,
        headers: &(dyn Fn(&str) -> Vec<String> + Sync),
        peer: IpAddr,
    ) -> Result<Caller, Refusal> {
        let peer = peer.to_canonical();
        let one = |name: &str| -> Result<Option<String>, Refusal> {
            let mut v = headers(name);
            match v.len() {
                0 => Ok(None),
                1 => Ok(v.pop()),
                _ => Err(Refusal::new(
                    400,
                    "repeated-header",
                    format!("the {name} header appears more than once"),
                )),
            }
        };
        let mut caller = match &self.auth {
            Authenticator::Jwt { keys, rules } => {
                let header = one("authorization")?.ok_or(AuthError::Missing)?;
                let token = header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .ok_or(AuthError::Missing)?
                    .trim();
                keys.refresh_if_due();
                let now = now_ms() / 1000;
                match auth::verify_jwt(token, &keys.current(), rules, now) {
                    Err(AuthError::UnknownKey) if keys.refetch_for_unknown_key().await => {
                        auth::verify_jwt(token, &keys.current(), rules, now)?
                    }
                    verified => verified?,
                }
            }
            Authenticator::Header(rules) => {
                let secret = one(&rules.secret_header)?;
                let user = one(&rules.user_header)?;
                let groups = match rules.groups_header.as_deref() {
                    Some(h) => one(h)?,
                    None => None,
                };
                auth::from_headers(
                    peer,
                    secret.as_deref(),
                    user.as_deref(),
                    groups.as_deref(),
                    rules,
                )?
            }
        };
        caller.groups.extend(self.directory_groups(&caller.user));
        let granted = self.granted_groups(&caller.user, "").await?;
        caller.groups.extend(granted);
        Ok(caller)
    }

    /// True for an authenticating proxy's address (header mode): it carries every user's
    /// connections, so the per-address connection cap does not apply to it.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        match &self.auth {
            Authenticator::Header(rules) => rules.trusted_proxies.iter().any(|c| c.contains(peer)),
            Authenticator::Jwt { .. } => false,
        }
    }

    /// The address the request comes from: the TCP peer, or — in header mode, where the
    /// trusted proxy is the peer — the last `X-Forwarded-For` hop, which that proxy appended.
    /// Behind the proxy the header must be present exactly once and end in an address.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: &[String]) -> Result<IpAddr, Refusal> {
        let peer = peer.to_canonical();
        let Authenticator::Header(_) = &self.auth else {
            return Ok(peer);
        };
        let [xff] = forwarded_for else {
            return Err(Refusal::new(
                400,
                "client-address",
                "behind the authenticating proxy, X-Forwarded-For must appear exactly once",
            ));
        };
        xff.rsplit(',')
            .next()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .ok_or_else(|| {
                Refusal::new(
                    400,
                    "client-address",
                    "the last X-Forwarded-For hop is not an IP address",
                )
            })
    }

    fn directory_groups(&self, user: &str) -> BTreeSet<String> {
        let mut guard = self.directory.lock().unwrap_or_else(|p| p.into_inner());
        let Some(dir) = guard.as_mut() else {
            return BTreeSet::new();
        };
        let modified = std::fs::metadata(&dir.path).and_then(|m| m.modified()).ok();
        if modified != dir.modified {
            // Reload on change; a broken file keeps the last good directory.
            if let Ok(text) = std::fs::read_to_string(&dir.path) {
                match crate::directory::Directory::parse(&text) {
                    Ok(users) => {
                        self.observe_memberships(&dir.path, users.memberships());
                        dir.users = users;
                        dir.modified = modified;
                    }
                    Err(e) => eprintln!(
                        "broker: directory {}: {e}; keeping the previous one",
                        dir.path.display()
                    ),
                }
            }
        }
        dir.users.groups(user)
    }

    /// Record in the audit store when each membership of a freshly loaded directory was first
    /// seen: how `access prune` tells a membership made minutes ago from an old one. Off the
    /// request's path (a blocking task); a failure is logged and only leaves those memberships
    /// without a known age, which prune treats as young.
    fn observe_memberships(&self, path: &std::path::Path, memberships: BTreeSet<(String, String)>) {
        let audit = self.audit.clone();
        let key = crate::directory::tracking_key(path);
        let record = move || {
            if let Err(e) = audit.with(|s| s.observe_memberships(&key, &memberships, now_ms())) {
                eprintln!("broker: cannot record the directory's memberships: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(record)),
            Err(_) => record(),
        }
    }

    /// Role ARN → groups allowed to use it: the config's grants and the roles' tags.
    async fn role_groups(&self) -> Result<RoleGroups, Refusal> {
        let mut map = RoleGroups::new();
        for g in &self.cfg.roles {
            map.entry(g.arn.clone())
                .or_default()
                .extend(g.groups.iter().cloned());
        }
        if !self.cfg.read_role_tags {
            return Ok(map);
        }
        let mut cache = self.role_cache.lock().await;
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(self.cfg.role_cache_seconds));
        if !fresh {
            let mut by_account = cache.take().map(|(_, by)| by).unwrap_or_default();
            // Every account at once: requests wait on this refresh, and one slow or
            // unreachable account must cost its own timeout, not the sum of all of them.
            let mut reads = tokio::task::JoinSet::new();
            let sources = std::iter::once((String::new(), self.iam.clone()))
                .chain(self.member_iams.iter().map(|(a, c)| (a.clone(), c.clone())));
            for (account, client) in sources {
                let tag = self.cfg.role_groups_tag.clone();
                let delimiter = self.cfg.role_groups_tag_delimiter.clone();
                reads.spawn(async move {
                    let read = read_role_tags(&client, &tag, delimiter.as_deref()).await;
                    (account, read)
                });
            }
            while let Some(done) = reads.join_next().await {
                let (account, read) = match done {
                    Ok(done) => done,
                    Err(e) => {
                        eprintln!("broker: reading role tags stopped: {e}");
                        continue;
                    }
                };
                let account = account.as_str();
                let which = if account.is_empty() {
                    "the broker's account"
                } else {
                    account
                };
                match read {
                    Ok(mut tags) => {
                        // A member account's tags speak for its own roles only.
                        if !account.is_empty() {
                            tags.retain(|arn, _| {
                                credwarden_core::account::arn_account(arn) == Some(account)
                            });
                        }
                        by_account.insert(account.to_owned(), tags);
                    }
                    // A stale account beats refusing its users while IAM is briefly
                    // unreachable; an account never read grants nothing (fails closed).
                    Err(e) if by_account.contains_key(account) => eprintln!(
                        "broker: refreshing role tags in {which} failed ({e}); using the cached ones"
                    ),
                    Err(e) => eprintln!(
                        "broker: cannot read role tags in {which}: {e}; its roles are refused until it can be read"
                    ),
                }
            }
            if by_account.is_empty() {
                return Err(Refusal::new(
                    503,
                    "role-directory-unavailable",
                    "the broker cannot read role authorisations right now; try again later",
                ));
            }
            *cache = Some((Instant::now(), by_account));
        }
        if let Some((_, by_account)) = cache.as_ref() {
            for (arn, groups) in by_account.values().flatten() {
                map.entry(arn.clone())
                    .or_default()
                    .extend(groups.iter().cloned());
            }
        }
        Ok(map)
    }

    /// The roles this caller may use.
    pub async fn roles_for(&self, caller: &Caller) -> Result<Vec<String>, Refusal> {
        let map = self.role_groups().await?;
        let mut roles: Vec<String> = map
            .into_iter()
            .filter(|(_, groups)| !groups.is_disjoint(&caller.groups))
            .map(|(arn, _)| arn)
            .collect();
        roles.sort();
        Ok(roles)
    }

    pub fn is_admin(&self, caller: &Caller) -> bool {
        self.cfg
            .admin_groups
            .iter()
            .any(|g| caller.groups.contains(g))
    }

    /// A token bucket per user and kind of request: `capacity` requests at once, refilled
    /// at `capacity` per `period`.
    fn rate_limited(&self, kind: Limited, user: &str) -> bool {
        let (capacity, period) = match kind {
            Limited::Credentials => (self.cfg.rate_limit_per_minute, 60.0),
            Limited::AccessRequests => (self.cfg.access_requests_per_hour, 3600.0),
        };
        let capacity = f64::from(capacity.max(1));
        let mut buckets = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = buckets
            .entry((kind, user.to_owned()))
            .or_insert((capacity, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * capacity / period).min(capacity);
        *last = now;
        if *tokens < 1.0 {
            return true;
        }
        *tokens -= 1.0;
        false
    }

    /// With replicas sharing the store, the limit holds across them: each request is counted
    /// in the store's window for the user (a fixed window of the limit's period), and more
    /// than the limit in it is refused. A store that cannot count refuses the request: it
    /// could not audit it either.
    async fn shared_limit(&self, kind: Limited, entry: &AuditEntry) -> Result<bool, Refusal> {
        if !self.shared_limits {
            return Ok(false);
        }
        let (capacity, period_ms, name) = match kind {
            Limited::Credentials => (self.cfg.rate_limit_per_minute, 60_000, "credentials"),
            Limited::AccessRequests => (self.cfg.access_requests_per_hour, 3_600_000, "access"),
        };
        let user = entry.user.clone();
        match self
            .store(move |s| s.rate_hit(&user, name, period_ms, now_ms()))
            .await
        {
            Ok(hits) => Ok(hits.is_some_and(|h| h > i64::from(capacity.max(1)))),
            Err(e) => Err(self.audit_unavailable(&entry.request_id, &e, "; nothing was issued")),
        }
    }

    /// Apply the per-user limit for `kind` to the request `entry` describes. A refusal is
    /// audited once when a streak of them starts; the rest of the streak is counted and
    /// written as one row with the count when the streak ends (the user's next request
    /// within the limit) or after a minute, whichever comes first.
    async fn limit(&self, kind: Limited, entry: &AuditEntry) -> Result<(), Refusal> {
        let key = (kind, entry.user.clone());
        let limited =
            self.rate_limited(kind, &entry.user) || self.shared_limit(kind, entry).await?;
        let (message, unit) = match kind {
            Limited::Credentials => (
                format!(
                    "more than {} credential requests per minute",
                    self.cfg.rate_limit_per_minute
                ),
                "credential requests",
            ),
            Limited::AccessRequests => (
                format!(
                    "more than {} access requests per hour",
                    self.cfg.access_requests_per_hour
                ),
                "access requests",
            ),
        };
        let refusal = Refusal::new(429, "rate-limited", message);
        // What to write now: the first refusal of a streak, or a streak's count.
        let mut rows: Vec<(AuditEntry, Refusal)> = Vec::new();
        {
            let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
            let summary = |st: &Streak| {
                let mut e = st.entry.clone();
                e.time_ms = now_ms();
                let why = format!(
                    "rate-limited: {} more {unit} refused since {} (one row for all of them)",
                    st.unwritten,
                    EventTime(st.first_unwritten_ms)
                );
                (
                    e,
                    Refusal::new(429, "rate-limited", why.clone()).detail(why),
                )
            };
            if limited {
                match streaks.get_mut(&key) {
                    None => {
                        streaks.insert(
                            key.clone(),
                            Streak {
                                unwritten: 0,
                                first_unwritten_ms: 0,
                                last_row: Instant::now(),
                                entry: entry.clone(),
                            },
                        );
                        rows.push((entry.clone(), refusal.clone()));
                    }
                    Some(st) => {
                        if st.unwritten == 0 {
                            st.first_unwritten_ms = now_ms();
                        }
                        st.unwritten += 1;
                        st.entry = entry.clone();
                        if st.last_row.elapsed() >= STREAK_ROW_EVERY {
                            rows.push(summary(st));
                            st.unwritten = 0;
                            st.last_row = Instant::now();
                        }
                    }
                }
            } else if let Some(st) = streaks.remove(&key) {
                if st.unwritten > 0 {
                    rows.push(summary(&st));
                }
            }
            // Streaks of other users that went quiet: write their counts, forget them.
            let quiet: Vec<(Limited, String)> = streaks
                .iter()
                .filter(|(k, st)| **k != key && st.last_row.elapsed() >= STREAK_ROW_EVERY)
                .map(|(k, _)| k.clone())
                .collect();
            for k in quiet {
                if let Some(st) = streaks.remove(&k) {
                    if st.unwritten > 0 {
                        rows.push(summary(&st));
                    }
                }
            }
        }
        for (row, r) in rows {
            self.audit_refusal(row, r).await;
        }
        if limited {
            // Counted whether its row was written now or collapsed into a later one.
            self.metrics.refused.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        Ok(())
    }

    async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AuditStore) -> Result<T, AuditStoreError> + Send + 'static,
    ) -> Result<T, String> {
        let audit = self.audit.clone();
        tokio::task::spawn_blocking(move || audit.with(|s| f(s).map_err(|e| e.to_string())))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Read the audit log (the HTTP layer checks the caller is an admin).
    pub async fn audit_entries(
        &self,
        user: Option<String>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Refusal> {
        self.store(move |s| s.audit_entries(user.as_deref(), limit.min(1000)))
            .await
            .map_err(|e| self.audit_unavailable("", &e, ""))
    }

    /// The audit store failed: the details (file paths, SQLite's words) go to the server's
    /// log, the client gets a generic refusal.
    fn audit_unavailable(&self, request_id: &str, error: &str, consequence: &str) -> Refusal {
        eprintln!("broker: audit store failed (request {request_id:?}): {error}");
        Refusal::new(
            503,
            "audit-unavailable",
            format!("the audit log cannot be written or read right now{consequence}"),
        )
    }

    /// Issue credentials for `role` (ARN or name) to `caller` calling from `client`.
    pub async fn issue(
        &self,
        caller: &Caller,
        client: IpAddr,
        role: &str,
        duration: Option<i32>,
        request_id: &str,
    ) -> Result<Issued, Refusal> {
        self.issue_for(
            caller,
            client,
            role,
            duration,
            request_id,
            Purpose::Credentials,
        )
        .await
        .map(|(issued, _)| issued)
    }

    /// An AWS console sign-in URL for `role`: the same authentication, authorisation, rate
    /// limit, session policy and audit as [`Broker::issue`] (the audit row says it was for the
    /// console), then the session goes to the federation endpoint for a sign-in token. The
    /// console session lasts as long as the role session. `destination` (a console page) must
    /// be on an allowed domain. The credentials never leave the broker, only the URL.
    pub async fn console(
        &self,
        caller: &Caller,
        client: IpAddr,
        role: &str,
        duration: Option<i32>,
        destination: Option<&str>,
        request_id: &str,
    ) -> Result<crate::console::ConsoleLogin, Refusal> {
        // Checked before anything is issued: a bad destination costs no STS session.
        let destination = self
            .federation
            .destination(destination)
            .map_err(|e| Refusal::new(400, "bad-destination", e.to_string()))?;
        let (issued, seconds) = self
            .issue_for(caller, client, role, duration, request_id, Purpose::Console)
            .await?;
        let federation = self.federation.clone();
        let session = issued.clone();
        let token = tokio::task::spawn_blocking(move || federation.signin_token(&session, seconds))
            .await
            .map_err(|e| Refusal::new(500, "internal", e.to_string()))?;
        match token {
            Ok(token) => Ok(crate::console::ConsoleLogin {
                url: self.federation.login_url(&token, &destination),
                expiration: issued.expiration.clone(),
                role_arn: issued.role_arn.clone(),
                access_key_id: issued.access_key_id.clone(),
            }),
            Err(e) => {
                // The session was issued and audited as granted; this row says it never
                // became a console sign-in (the error holds no credentials).
                let entry = AuditEntry {
                    role: Some(issued.role_arn.clone()),
                    access_key_id: Some(issued.access_key_id.clone()),
                    reason: format!("console-failed: {e}"),
                    ..caller_entry(caller, client, request_id)
                };
                Err(self
                    .refuse(
                        entry,
                        Refusal::new(
                            502,
                            "federation-failed",
                            format!("the AWS console sign-in failed: {e}"),
                        ),
                    )
                    .await)
            }
        }
    }

    /// [`Broker::issue`], for `purpose`; also returns the session's length in seconds.
    async fn issue_for(
        &self,
        caller: &Caller,
        client: IpAddr,
        role: &str,
        duration: Option<i32>,
        request_id: &str,
        purpose: Purpose,
    ) -> Result<(Issued, i32), Refusal> {
        let started = Instant::now();
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let mut entry = AuditEntry {
            role: Some(role.to_owned()),
            decision: "refused".into(),
            ..caller_entry(caller, client, request_id)
        };
        let network = self
            .networks
            .iter()
            .find(|n| n.clients.iter().any(|c| c.contains(client)));
        entry.network = network.map(|n| n.name.clone());
        self.limit(Limited::Credentials, &entry).await?;
        let decided = self.decide(caller, client, role, duration, network).await;
        let (arn, duration, network, session_name) = match decided {
            Ok(ok) => ok,
            Err(refusal) => return Err(self.refuse(entry, refusal).await),
        };
        entry.role = Some(arn.clone());
        let sts_started = Instant::now();
        let out = self
            .sts
            .assume_role()
            .role_arn(&arn)
            .role_session_name(&session_name)
            .source_identity(&session_name)
            .duration_seconds(duration)
            .policy(&network.session_policy)
            .send()
            .await;
        let sts_time = sts_started.elapsed();
        let creds = match out.as_ref().ok().and_then(|o| o.credentials()) {
            Some(c) => c.clone(),
            None => {
                self.metrics.sts_failures.fetch_add(1, Ordering::Relaxed);
                let why = match out {
                    Err(e) => {
                        use aws_sdk_sts::error::ProvideErrorMetadata;
                        format!(
                            "{}: {}",
                            e.code().unwrap_or("error"),
                            e.message().unwrap_or("STS call failed")
                        )
                    }
                    Ok(_) => "STS returned no credentials".into(),
                };
                // The caller learns that STS failed; the details (which can name the broker's
                // own role and account) go to the audit only.
                entry.reason = format!("sts-failed: AssumeRole {arn}: {why}");
                return Err(self
                    .refuse(entry, Refusal::new(502, "sts-failed", "the credential service could not issue credentials; the request is audited"))
                    .await);
            }
        };
        let expiration = EventTime(creds.expiration().to_millis().unwrap_or(0)).to_string();
        let issued = Issued {
            access_key_id: creds.access_key_id().to_owned(),
            secret_access_key: creds.secret_access_key().to_owned(),
            session_token: creds.session_token().to_owned(),
            expiration: expiration.clone(),
            role_arn: arn.clone(),
        };
        entry.decision = "granted".into();
        entry.reason = format!(
            "{}member of a group allowed to use the role; locked to network {}",
            match purpose {
                Purpose::Credentials => "",
                Purpose::Console => "console sign-in: ",
            },
            network.name
        );
        entry.access_key_id = Some(issued.access_key_id.clone());
        entry.expiration = Some(expiration);
        entry.duration_seconds = Some(i64::from(duration));
        entry.session_policy = Some(network.session_policy.clone());
        let (first_for_role, new_network) = self.history(&entry).await;
        let committed = self.writer.append(entry.clone()).await;
        if let Err(e) = committed {
            // No audit, no credentials: they are dropped here and expire unused.
            self.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
            return Err(self.audit_unavailable(request_id, &e, "; no credentials issued"));
        }
        if first_for_role {
            self.finding(
                &entry,
                Severity::Low,
                "first-role-request",
                format!("{} requested {} for the first time", entry.user, arn),
            );
        }
        if new_network {
            self.finding(
                &entry,
                Severity::Medium,
                "new-network",
                format!(
                    "{} requested credentials from network {} for the first time",
                    entry.user, network.name
                ),
            );
        }
        self.metrics.issued.fetch_add(1, Ordering::Relaxed);
        let local = started.elapsed().saturating_sub(sts_time);
        self.observe_local(local);
        Ok((issued, duration))
    }

    fn observe_local(&self, local: Duration) {
        let us = local.as_micros() as u64;
        self.metrics.local_us_sum.fetch_add(us, Ordering::Relaxed);
        self.metrics.local_count.fetch_add(1, Ordering::Relaxed);
        for (i, bound) in BUCKETS.iter().enumerate() {
            if local.as_secs_f64() <= *bound {
                self.metrics.local_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Everything that must hold before STS is called.
    async fn decide<'n>(
        &self,
        caller: &Caller,
        client: IpAddr,
        role: &str,
        duration: Option<i32>,
        network: Option<&'n Network>,
    ) -> Result<(String, i32, &'n Network, String), Refusal> {
        let session_name = sts_name(&caller.user).ok_or_else(|| {
            Refusal::new(
                400,
                "user-name",
                "your user name does not fit an STS session name (64 characters once encoded)",
            )
        })?;
        let network = network.ok_or_else(|| {
            Refusal::new(403, "unknown-network", format!("{client} is in no configured network; credentials are only issued to known networks"))
        })?;
        // Without a request, an hour at most: a broker running on role credentials is itself
        // a role chain, and STS caps chained sessions at one hour.
        let duration = duration.unwrap_or(self.cfg.max_duration_seconds.min(3600));
        if !(900..=self.cfg.max_duration_seconds).contains(&duration) {
            return Err(Refusal::new(
                400,
                "bad-duration",
                format!(
                    "duration_seconds must be within 900..={}",
                    self.cfg.max_duration_seconds
                ),
            ));
        }
        let groups = self.role_groups().await?;
        let named: Vec<&String> = groups
            .keys()
            .filter(|arn| arn.as_str() == role || arn.rsplit('/').next() == Some(role))
            .collect();
        // Only roles the caller may use are told apart: whether a role exists, or how many
        // share a name, is not for someone who may use none of them. The audit says which.
        let usable: Vec<&String> = named
            .iter()
            .copied()
            .filter(|arn| !groups[*arn].is_disjoint(&caller.groups))
            .collect();
        let arn = match usable.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let detail = match named.as_slice() {
                    [] => format!("{role} is not a role the broker knows"),
                    arns => format!(
                        "none of the caller's groups may use {}",
                        arns.iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(Refusal::new(403, "not-authorised", NOT_AUTHORISED).detail(detail));
            }
            _ => {
                return Err(Refusal::new(
                    400,
                    "ambiguous-role",
                    format!("{role} names several roles you may use; ask for the role ARN"),
                ))
            }
        };
        Ok((arn, duration, network, session_name))
    }

    /// (first grant of this role to this user, first request of this user from this network)
    async fn history(&self, e: &AuditEntry) -> (bool, bool) {
        let (user, role, network) = (e.user.clone(), e.role.clone(), e.network.clone());
        self.store(move |s| s.audit_novelty(&user, role.as_deref(), network.as_deref()))
            .await
            .unwrap_or((false, false))
    }

    /// Audit a granted web sign-in: `Ok` once it is on record (a sign-in that cannot be
    /// recorded is refused, like a credential).
    pub async fn audit_sign_in(
        &self,
        caller: &Caller,
        client: IpAddr,
        request_id: &str,
    ) -> Result<(), Refusal> {
        let mut entry = caller_entry(caller, client, request_id);
        entry.decision = "granted".into();
        entry.reason = "web sign-in".into();
        self.writer.append(entry).await.map_err(|e| {
            self.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
            eprintln!("broker: audit write failed for a web sign-in: {e}");
            Refusal::new(503, "audit-unavailable", "the sign-in cannot be recorded")
        })
    }

    /// Refuse a web sign-in whose ID token verified but does not belong to this browser's
    /// sign-in (its nonce): counted and audited as refusals are, repeated ones reported.
    pub async fn refuse_sign_in(
        &self,
        caller: &Caller,
        client: IpAddr,
        request_id: &str,
        refusal: Refusal,
    ) -> Refusal {
        let mut entry = caller_entry(caller, client, request_id);
        entry.reason = format!("web sign-in refused: {}", refusal.code);
        self.refuse(entry, refusal).await
    }

    /// Count and audit a refusal (a refusal whose audit fails is still a refusal).
    async fn refuse(&self, entry: AuditEntry, refusal: Refusal) -> Refusal {
        self.metrics.refused.fetch_add(1, Ordering::Relaxed);
        self.audit_refusal(entry, refusal).await
    }

    /// Audit a refusal: the audit gets its detail when it has one, the client its message.
    async fn audit_refusal(&self, mut entry: AuditEntry, refusal: Refusal) -> Refusal {
        entry.decision = "refused".into();
        if entry.reason.is_empty() {
            let said = refusal.detail.as_deref().unwrap_or(&refusal.message);
            entry.reason = format!("{}: {said}", refusal.code);
        }
        let since = now_ms() - 10 * 60 * 1000;
        let burst = self.cfg.refusal_burst;
        let user = entry.user.clone();
        let recent = match self.writer.append(entry.clone()).await {
            Ok(()) => {
                self.store(move |s| s.audit_count(&user, None, None, Some("refused"), since))
                    .await
            }
            Err(e) => Err(e),
        };
        match recent {
            Ok(n) if n >= burst && self.first_burst_report(&entry.user, since) => self.finding(
                &entry,
                Severity::High,
                "repeated-refusals",
                format!(
                    "{} was refused {n} times in ten minutes (last: {})",
                    entry.user, refusal.code
                ),
            ),
            Ok(_) => {}
            Err(e) => {
                self.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("broker: audit write failed for a refusal: {e}");
            }
        }
        refusal
    }

    /// True once per user and ten-minute window: concurrent refusals committed together all
    /// see a count past the threshold, and one finding is enough.
    fn first_burst_report(&self, user: &str, window_start: i64) -> bool {
        let mut seen = self
            .burst_reported
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match seen.get(user) {
            Some(&at) if at >= window_start => false,
            _ => {
                seen.insert(user.to_owned(), now_ms());
                true
            }
        }
    }

    fn finding(&self, e: &AuditEntry, severity: Severity, kind: &str, summary: String) {
        let Some(out) = &self.findings else { return };
        let account = e
            .role
            .as_deref()
            .and_then(iam::wildcard::arn_parts)
            .map(|p| p[4].to_owned());
        let f = Finding {
            id: finding_id("broker-anomaly", &[kind, &e.user, e.role.as_deref().unwrap_or(""), e.network.as_deref().unwrap_or(""), &e.time_ms.to_string()]),
            detector: "broker-anomaly",
            severity,
            time: EventTime(e.time_ms).to_string(),
            account,
            account_name: None,
            account_owner: None,
            region: None,
            principal: Some(e.user.clone()),
            access_key_id: e.access_key_id.clone(),
            source: FindingSource { ip: Some(e.client_ip.clone()), vpc_endpoint: None, user_agent: None },
            event_ids: vec![e.request_id.clone()],
            summary,
            details: serde_json::json!({"kind": kind, "role": e.role, "network": e.network, "decision": e.decision, "reason": e.reason, "groups": e.groups}),
            remediation: match kind {
                "repeated-refusals" => {
                    "Ask the user whether they are trying something they need; repeated refusals can be a stolen broker token probing for roles.".into()
                }
                "new-network" => "Confirm with the user that they work from this network now.".into(),
                _ => "Confirm the user needs this role; the first use of a role is worth a glance.".into(),
            },
        };
        if let Err(err) = out.deliver(&f) {
            eprintln!("broker: cannot deliver finding {}: {err}", f.id);
        }
    }
}

/// Role ARN → groups, from the `tag` of every role of one account (`delimiter` as in the
/// config).
async fn read_role_tags(
    iam: &aws_sdk_iam::Client,
    tag: &str,
    delimiter: Option<&str>,
) -> Result<RoleGroups, String> {
    let mut out = HashMap::new();
    let mut marker = None;
    loop {
        let page = iam
            .get_account_authorization_details()
            .filter(EntityType::Role)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| {
                use aws_sdk_iam::error::ProvideErrorMetadata;
                e.code().map(str::to_owned).unwrap_or_else(|| e.to_string())
            })?;
        for r in page.role_detail_list() {
            if let (Some(arn), Some(t)) = (r.arn(), r.tags().iter().find(|t| t.key() == tag)) {
                out.insert(arn.to_owned(), auth::tag_groups(t.value(), delimiter));
            }
        }
        marker = page.marker().map(str::to_owned);
        if !page.is_truncated() || marker.is_none() {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{sts_name, sts_name_user};

    /// What CloudTrail shows as source identity leads back to the directory's user.
    #[test]
    fn session_names_decode_to_their_user() {
        for user in ["alice", "bob smith", "a", "zoë@example.com", "x=y"] {
            let name = sts_name(user).unwrap();
            assert_eq!(sts_name_user(&name).as_deref(), Some(user), "{name}");
        }
        // Not made by the encoding: lower-case hex, a trailing '=' on a longer name, a cut escape.
        assert_eq!(sts_name_user("bob=2f"), None);
        assert_eq!(sts_name_user("ab="), None);
        assert_eq!(sts_name_user("=4"), None);
        assert_eq!(sts_name_user("i-1234").as_deref(), Some("i-1234"));
    }

    /// Issue 12: `bob smith` and `bob-smith` must not share a session name / source identity.
    #[test]
    fn session_names_are_injective() {
        let names = [
            "bob smith",
            "bob-smith",
            "bob=20smith",
            "bob_smith",
            "a",
            "a=",
            "a-",
            "é",
            "alice@example.com",
            "org\\user",
        ];
        let encoded: Vec<String> = names.iter().map(|n| sts_name(n).unwrap()).collect();
        let distinct: std::collections::BTreeSet<&String> = encoded.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{encoded:?}");
        assert_eq!(sts_name("alice@example.com").unwrap(), "alice@example.com");
        assert_eq!(sts_name("bob smith").unwrap(), "bob=20smith");
        assert_eq!(sts_name("bob=20smith").unwrap(), "bob=3D20smith");
        for e in &encoded {
            assert!((2..=64).contains(&e.len()), "{e}");
            assert!(e
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
        }
        // Too long once encoded: refused, never truncated into someone else's name.
        assert_eq!(sts_name(&"a".repeat(64)).unwrap().len(), 64);
        assert!(sts_name(&"a".repeat(65)).is_none());
        assert!(sts_name(&format!("{} x", "a".repeat(61))).is_none());
        assert!(sts_name("").is_none());
    }
}
