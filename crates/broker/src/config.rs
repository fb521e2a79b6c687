//! The broker's configuration (a TOML file; `credwarden broker example-config` prints one).

use std::path::PathBuf;

use serde::Deserialize;

fn default_listen() -> String {
    "127.0.0.1:8700".into()
}
fn default_max_duration() -> i32 {
    3600
}
fn default_rate() -> u32 {
    30
}
fn default_groups_tag() -> String {
    "credwarden:groups".into()
}
fn default_cache() -> u64 {
    300
}
fn default_burst() -> i64 {
    5
}
fn yes() -> bool {
    true
}
fn default_access_rate() -> u32 {
    5
}
fn default_membership_max() -> i64 {
    7 * 24 * 3600
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Address to listen on. Plain HTTP is refused on anything but loopback.
    #[serde(default = "default_listen")]
    pub listen: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The audit store: a SQLite file (created if missing), or `postgres://…` for replicas
    /// sharing one database (loopback or a Unix socket only).
    pub audit: String,
    /// `broker-anomaly` findings are appended here as JSON lines (0600, fsynced).
    pub findings: Option<PathBuf>,
    /// A credwarden state file holding the account registry (`credwarden accounts sync`):
    /// the web UI names each role's account. Read at start.
    #[serde(default)]
    pub registry: Option<PathBuf>,
    /// Also POST each finding as JSON to this URL: spooled in the audit store, posted in
    /// order with retries, permanent refusals kept as dead letters (`credwarden webhook
    /// dead-letters --state AUDIT`).
    pub findings_webhook: Option<String>,
    /// `slack` posts Slack incoming-webhook messages to `findings_webhook` instead of the
    /// findings' JSON.
    #[serde(default)]
    pub findings_webhook_format: Option<String>,
    /// The SQLite file that spools `findings_webhook` posts when the audit is PostgreSQL
    /// (each replica its own; with a SQLite audit the audit file spools them).
    #[serde(default)]
    pub findings_spool: Option<PathBuf>,
    /// Longest credential lifetime handed out (seconds, 900..=43200; default 3600).
    #[serde(default = "default_max_duration")]
    pub max_duration_seconds: i32,
    /// Groups allowed to read the audit log through the API.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Credential requests per user per minute.
    #[serde(default = "default_rate")]
    pub rate_limit_per_minute: u32,
    /// Access requests (`POST /v1/access-requests`) per user per hour: each one is an audit
    /// row and a finding, so a user cannot flood either.
    #[serde(default = "default_access_rate")]
    pub access_requests_per_hour: u32,
    /// The longest membership an access request may ask for (seconds; default a week). An
    /// approved request is a membership for the duration it asked, from the approval.
    #[serde(default = "default_membership_max")]
    pub membership_max_seconds: i64,
    /// Who approves access requests for a group: members of any of `approvers` (besides the
    /// `admin_groups`, who approve any group). Nobody approves their own request.
    #[serde(default)]
    pub approvers: Vec<ApproverConfig>,
    /// Refusals of one user within ten minutes that make a `broker-anomaly` finding.
    #[serde(default = "default_burst")]
    pub refusal_burst: i64,
    /// Read role authorisations from this tag on IAM roles.
    #[serde(default = "default_groups_tag")]
    pub role_groups_tag: String,
    /// What separates the groups in that tag's value. Unset: whitespace (IAM tag values allow
    /// no comma), so a group name in a tag may hold `:` `/` `=` `+` `@` but no space.
    pub role_groups_tag_delimiter: Option<String>,
    #[serde(default = "yes")]
    pub read_role_tags: bool,
    #[serde(default = "default_cache")]
    pub role_cache_seconds: u64,
    /// Roles and the groups that may use them, beside (or instead of) role tags.
    #[serde(default)]
    pub roles: Vec<RoleGrant>,
    /// Users → groups, reloaded when the file changes: `{"users": {"alice": ["payments"]}}`.
    pub directory: Option<PathBuf>,
    pub auth: AuthConfig,
    /// Where clients connect from, and the addresses their AWS calls leave from.
    pub networks: Vec<NetworkConfig>,
    /// Our VPCs and endpoints: calls through them are inside the session lock too.
    #[serde(default)]
    pub vpcs: Vec<String>,
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    #[serde(default)]
    pub aws: AwsConfig,
    /// Connection limits and timeouts of the HTTP(S) server.
    #[serde(default)]
    pub limits: Limits,
    /// AWS console sign-in through the federation endpoint (`POST /v1/console`).
    #[serde(default)]
    pub console: ConsoleConfig,
    /// The web UI (`/`, sign-in with the `[auth]` issuer); off unless this section is set.
    #[serde(default)]
    pub web: Option<WebConfig>,
}

fn default_session_seconds() -> u64 {
    8 * 3600
}

/// The broker's web UI: OIDC sign-in (authorization code with PKCE) against `[auth] issuer`,
/// whose ID tokens pass the same verification as API tokens, so the client id is
/// `[auth] audience`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// The broker's callback as registered with the identity provider: an `https://` URL
    /// ending in `/auth/callback` (`http://` only to a loopback address).
    pub redirect_url: String,
    /// The OAuth client id; must equal `[auth] audience` (the ID token's `aud`). Default: it.
    pub client_id: Option<String>,
    /// How long a web session lasts after sign-in (seconds; default 8 hours).
    #[serde(default = "default_session_seconds")]
    pub session_seconds: u64,
}

/// How the broker turns a role session into an AWS console sign-in URL.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The AWS federation endpoint (`getSigninToken`, `login`); `https://`, or `http://` to
    /// loopback for a test server. GovCloud and China have their own.
    pub federation_url: String,
    /// Where the console sends the user when the session ends (the `Issuer` parameter):
    /// usually the page that offered the sign-in. Left out of the URL when unset.
    pub issuer: Option<String>,
    /// The console page opened after sign-in when the client names none.
    pub destination: String,
    /// A destination the client names must be `https://` on one of these domains (or a
    /// subdomain), so that a sign-in URL never sends the user's session elsewhere.
    pub destination_domains: Vec<String>,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig {
            federation_url: "https://signin.aws.amazon.com/federation".into(),
            issuer: None,
            destination: "https://console.aws.amazon.com/".into(),
            destination_domains: vec![
                "aws.amazon.com".into(),
                "amazonaws-us-gov.com".into(),
                "amazonaws.cn".into(),
            ],
        }
    }
}

/// How much of the server one client may hold, and for how long. The TLS listener and the
/// loopback plain-HTTP listener are served by the same bounded server.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open connections at most, in all.
    pub connections: usize,
    /// Open connections at most from one source address (trusted proxies are exempt).
    pub connections_per_address: usize,
    /// The TLS handshake, and each request's headers, must arrive within this many seconds.
    pub header_seconds: u64,
    /// A request body must arrive within this many seconds (it is read only after the
    /// request is authenticated from its headers).
    pub body_seconds: u64,
    /// A connection that has not made an authenticated request is closed after this long.
    pub unauthenticated_seconds: u64,
    /// Any connection (all its keep-alive requests) is closed after this long.
    pub connection_seconds: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 1024,
            connections_per_address: 32,
            header_seconds: 10,
            body_seconds: 10,
            unauthenticated_seconds: 10,
            connection_seconds: 120,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverConfig {
    /// The group access is requested to.
    pub group: String,
    /// Groups whose members may approve or deny those requests.
    pub approvers: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    pub arn: String,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub name: String,
    /// Client address ranges (VPN pools, office ranges) that belong to this network.
    pub clients: Vec<String>,
    /// Public addresses (NAT, VPN egress) that this network's AWS calls come from.
    pub egress: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub id: String,
    pub vpc: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    /// Member accounts whose roles' tags are read too (the broker's own account always is),
    /// each through `assume_role_name`.
    #[serde(default)]
    pub role_tag_accounts: Vec<String>,
    /// The read role assumed in each of `role_tag_accounts` (session name "credwarden").
    pub assume_role_name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthConfig {
    Jwt {
        jwks_file: Option<PathBuf>,
        jwks_url: Option<String>,
        issuer: String,
        audience: String,
        #[serde(default = "default_user_claim")]
        user_claim: String,
        #[serde(default = "default_groups_claim")]
        groups_claim: String,
        /// A groups claim that is a string is one group, unless this delimiter is set; a
        /// JSON array is taken as it is.
        groups_delimiter: Option<String>,
        #[serde(default = "default_leeway")]
        leeway_seconds: i64,
        /// The JWKS is read again this often (seconds), and when a token names a key id
        /// it does not hold, at most once per `jwks_refetch_seconds`.
        #[serde(default = "default_jwks_refresh")]
        jwks_refresh_seconds: u64,
        #[serde(default = "default_jwks_refetch")]
        jwks_refetch_seconds: u64,
    },
    Header {
        #[serde(default = "default_user_header")]
        user_header: String,
        #[serde(default = "default_groups_header")]
        groups_header: Option<String>,
        /// The groups header is split on this delimiter only (each part trimmed); spaces,
        /// colons and slashes inside a group name are kept.
        #[serde(default = "default_groups_delimiter")]
        groups_delimiter: String,
        trusted_proxies: Vec<String>,
        /// A file holding a secret the proxy sends in `secret_header` on every request, so
        /// that other processes on the proxy's host cannot speak for users.
        secret_file: Option<PathBuf>,
        #[serde(default = "default_secret_header")]
        secret_header: String,
    },
}

fn default_user_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_leeway() -> i64 {
    60
}
fn default_jwks_refresh() -> u64 {
    3600
}
fn default_jwks_refetch() -> u64 {
    60
}
fn default_groups_delimiter() -> String {
    ",".into()
}
fn default_secret_header() -> String {
    "x-credwarden-proxy-secret".into()
}
fn default_user_header() -> String {
    "x-authenticated-user".into()
}
fn default_groups_header() -> Option<String> {
    // Opt-in: a proxy that sets only the user header would otherwise pass a client's own
    // groups header straight through.
    None
}

/// Parse a broker configuration file's text (TOML); unknown keys are refused.
pub fn parse(text: &str) -> Result<BrokerConfig, crate::error::ConfigError> {
    Ok(toml::from_str(text)?)
}

/// A commented example configuration.
pub const EXAMPLE: &str = r#"# credwarden broker configuration
listen = "127.0.0.1:8700"              # plain HTTP only on loopback; set tls_cert/tls_key otherwise
# tls_cert = "/etc/credwarden/broker.crt"
# tls_key = "/etc/credwarden/broker.key"
audit = "/var/lib/credwarden/broker-audit.sqlite"   # every request, granted or refused; written before credentials leave
# audit = "postgres://credwarden@127.0.0.1/credwarden"  # replicas sharing one PostgreSQL (loopback or socket)
# findings_spool = "/var/lib/credwarden/spool.sqlite"  # with a PostgreSQL audit: where findings_webhook posts wait
findings = "/var/lib/credwarden/broker-findings.jsonl"
# findings_webhook = "https://alerts.example.com/credwarden"   # findings, access requests and decisions, spooled and retried
# findings_webhook_format = "slack"    # Slack incoming-webhook messages instead of the findings' JSON
# registry = "/var/lib/credwarden/state.sqlite"   # account registry (`credwarden accounts sync`): the web UI names accounts
max_duration_seconds = 3600            # credentials live at most this long
admin_groups = ["security"]            # may read the audit through GET /v1/audit
rate_limit_per_minute = 30
access_requests_per_hour = 5           # POST /v1/access-requests per user
membership_max_seconds = 604800        # longest membership an access request may ask for
refusal_burst = 5                      # refusals in 10 minutes that raise a broker-anomaly finding
role_groups_tag = "credwarden:groups"  # IAM role tag naming the groups that may use the role
# role_groups_tag_delimiter = "+"      # default: groups in the tag separated by spaces
read_role_tags = true
role_cache_seconds = 300
# directory = "/etc/credwarden/directory.json"   # {"users": {"alice": ["payments", {"group": "search", "since": "2026-11-02T09:00:00Z"}]}}, reloaded on change

[auth]
mode = "jwt"
jwks_url = "https://idp.example.com/.well-known/jwks.json"   # or jwks_file = "..."
issuer = "https://idp.example.com"
audience = "credwarden"
user_claim = "email"                  # email claims must come with email_verified = true
groups_claim = "groups"               # a JSON array; a string is one group...
# groups_delimiter = ","               # ...unless a delimiter is set
# jwks_refresh_seconds = 3600          # read the JWKS again this often
# jwks_refetch_seconds = 60            # and on an unknown kid, at most this often

# [auth]
# mode = "header"                      # an authenticating reverse proxy sets these headers
# user_header = "x-authenticated-user"
# groups_header = "x-authenticated-groups"  # only if the proxy sets (and strips) it
# groups_delimiter = ","                # the only character that separates groups in it
# trusted_proxies = ["10.0.0.5/32"]
# secret_file = "/etc/credwarden/proxy-secret"  # the proxy sends it in every request...
# secret_header = "x-credwarden-proxy-secret"   # ...in this header

[[networks]]
name = "vpn"
clients = ["10.8.0.0/16"]              # where broker clients connect from
egress = ["198.51.100.10/32"]          # where their AWS calls leave from (VPN/NAT public addresses)

# vpcs = ["vpc-0a1b2c3d"]
# [[endpoints]]
# id = "vpce-0123456789abcdef0"
# vpc = "vpc-0a1b2c3d"

# [[approvers]]                        # who approves access requests to a group (admin_groups approve any)
# group = "payments"
# approvers = ["payments-leads"]

# [[roles]]                            # grants beside role tags
# arn = "arn:aws:iam::111122223333:role/payments-api"
# groups = ["payments"]

# [aws]
# endpoint_url = "https://sts.us-east-1.amazonaws.com"
# region = "us-east-1"
# role_tag_accounts = ["111122223333"]   # read role tags in these member accounts too...
# assume_role_name = "credwarden-read"   # ...through this role in each (needs iam:GetAccountAuthorizationDetails)

# [limits]                             # the defaults
# connections = 1024
# connections_per_address = 32         # trusted proxies are exempt
# header_seconds = 10                  # TLS handshake, and each request's headers
# body_seconds = 10                    # a body is read only after its headers authenticate
# unauthenticated_seconds = 10         # life of a connection with no authenticated request
# connection_seconds = 120

# [console]                            # `credwarden console ROLE`: AWS console sign-in (POST /v1/console)
# federation_url = "https://signin.aws.amazon.com/federation"   # GovCloud: https://signin.amazonaws-us-gov.com/federation
# issuer = "https://broker.example.com/"   # where the console sends users whose session ended
# destination = "https://console.aws.amazon.com/"
# destination_domains = ["aws.amazon.com", "amazonaws-us-gov.com", "amazonaws.cn"]

# [web]                                # the web UI at /, signing in with the [auth] issuer (OIDC code + PKCE)
# redirect_url = "https://broker.example.com/auth/callback"   # registered with the IdP
# client_id = "credwarden"             # must equal [auth] audience (the default)
# session_seconds = 28800              # sessions live in this replica's memory
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_parses_and_unknown_keys_are_refused() {
        let cfg = super::parse(super::EXAMPLE).unwrap();
        assert_eq!(cfg.max_duration_seconds, 3600);
        assert_eq!(cfg.networks[0].egress, ["198.51.100.10/32"]);
        let e = super::parse(&(super::EXAMPLE.replacen("[auth]", "max_durations = 5\n[auth]", 1)))
            .unwrap_err();
        assert!(e.to_string().contains("max_durations"), "{e}");
    }
}
