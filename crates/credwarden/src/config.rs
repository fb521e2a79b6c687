//! `credwarden.toml`: every key can also be given as a flag, and the flag wins. Besides the
//! detectors' settings it holds the notify routes (`[[notify.route]]`): which webhook each
//! finding goes to (checked and turned into routes by `delivery_args::config_routes`).
//!
//! The fuzzer compiles this file as it is (`crates/fuzz`, `#[path]`), with only serde, toml,
//! anyhow and credwarden-core: the schema must not reach into the rest of the binary.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use credwarden_core::Severity;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub detect: DetectConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
}

/// `[notify]`: where findings are posted, besides `--webhook`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `[[notify.route]]`: a finding goes to every route that matches it.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

/// One `[[notify.route]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique; stands for the URL in messages, dead letters and `webhook resend --route`.
    pub name: String,
    /// `https://`, or `http://` to loopback. Never printed: it may be a secret.
    pub url: String,
    #[serde(default)]
    pub format: RouteFormat,
    /// Matchers, all optional, all required to match; none: every finding.
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub detectors: Vec<String>,
    pub min_severity: Option<SeverityName>,
}

/// The URL is left out: it may be a secret.
impl std::fmt::Debug for RouteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteConfig")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("owners", &self.owners)
            .field("accounts", &self.accounts)
            .field("detectors", &self.detectors)
            .field("min_severity", &self.min_severity)
            .finish_non_exhaustive()
    }
}

/// A route's `format`: what its webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteFormat {
    /// The finding's JSON line.
    #[default]
    Json,
    /// A Slack incoming-webhook message.
    Slack,
}

/// `min_severity`, as findings write severities.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeverityName {
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityName> for Severity {
    fn from(s: SeverityName) -> Severity {
        match s {
            SeverityName::Low => Severity::Low,
            SeverityName::Medium => Severity::Medium,
            SeverityName::High => Severity::High,
            SeverityName::Critical => Severity::Critical,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// The company's egress addresses (NAT gateways, proxies, VPN): never a foreign source.
    #[serde(default)]
    pub egress_cidrs: Vec<String>,
    /// Accounts whose VPC endpoints count as ours (besides each credential's own account).
    #[serde(default)]
    pub known_accounts: Vec<String>,
    /// AWS's ip-ranges.json (from `credwarden ip-ranges fetch`).
    pub aws_ip_ranges: Option<PathBuf>,
    pub lateness_minutes: Option<u32>,
    pub expiry_margin_minutes: Option<u32>,
    pub threads: Option<usize>,
    /// canary-resource: access key ids and ARN patterns nobody should ever use.
    #[serde(default)]
    pub canaries: Vec<String>,
    /// foreign-role-pass: who owns which roles, and which application each principal is.
    #[serde(default)]
    pub ownership: OwnershipConfig,
    /// Baselines: hours an account or principal is watched before what it does counts as new (default 336).
    pub learning_hours: Option<u32>,
    /// enumeration-burst: denials within a minute that make a rate burst (default 10).
    pub burst_rate_threshold: Option<usize>,
    /// enumeration-burst: distinct denied actions (across three or more services) within five minutes that make a spread burst (default 6).
    pub burst_spread_actions: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipConfig {
    /// Role or instance-profile ARN pattern → owning application.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, String>,
    /// Principal ARN pattern → the caller's application (`*`: may pass any role).
    #[serde(default)]
    pub principals: std::collections::BTreeMap<String, String>,
    /// Tag key naming a role's (or user's) application, read from `--inventory` files.
    pub tag: Option<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let mut cfg = Config::parse(&text).with_context(|| format!("config {}", path.display()))?;
        // Relative paths in the file are relative to the file, not to the working directory.
        if let (Some(p), Some(dir)) = (&cfg.detect.aws_ip_ranges, path.parent()) {
            if p.is_relative() {
                cfg.detect.aws_ip_ranges = Some(dir.join(p));
            }
        }
        Ok(cfg)
    }

    /// Parse a configuration. The notify routes are checked where they are used
    /// (`delivery_args::config_routes`, before anything is read).
    pub fn parse(text: &str) -> Result<Config> {
        // The parser's own report quotes the offending line, which may be a route's `url`
        // (a secret): say where and what, not the line.
        toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            anyhow!("{}{}", at.unwrap_or_default(), e.message().trim_end())
        })
    }
}

pub const EXAMPLE: &str = r#"# credwarden.toml — every key can also be given as a flag; the flag wins.

[detect]
# Your egress addresses: NAT gateway EIPs, proxies, VPN. Calls from these are never
# "off-instance". Optional: the detector learns each instance's network on its own.
egress_cidrs = ["203.0.113.0/24", "2001:db8:1234::/48"]

# Accounts of your organisation whose VPC endpoints count as yours. A call through an
# endpoint owned by any other account is an off-instance finding.
known_accounts = ["111122223333", "444455556666"]

# AWS's published ranges (download with `credwarden ip-ranges fetch`). Enables the
# second signal: instance credentials used from outside AWS are a finding even when the
# attacker is the first to use them.
# aws_ip_ranges = "ip-ranges.json"

# How late (event time) CloudTrail may deliver a record and still be taken into account.
lateness_minutes = 15

# How long a credential's state is kept after it expires.
expiry_margin_minutes = 60

# Decoding threads; 0 = one per core.
threads = 0

# Canaries: honey access keys and ARN patterns (`*`, `?`) nobody should ever touch. Any use
# is a critical finding, learning or not.
canaries = ["AKIAIOSFODNN7EXAMPLE", "arn:aws:s3:::corp-backup-archive-2019*"]

# recon-call, new-role-behaviour, unused-service, unused-region: how long (hours) an account
# or principal is watched before what it does counts as new. Two weeks by default; the demo
# uses one hour.
learning_hours = 336

# enumeration-burst: a burst is this many denied calls within one minute ...
burst_rate_threshold = 10
# ... or denials on this many distinct actions (across three or more services) within five minutes.
burst_spread_actions = 6

# Notify routes: where findings are posted (detect --state, imds proxy --config, shrink
# schedule --config). A finding goes to EVERY route that matches it, each route through its
# own queue in the state file's spool (retried, dead letters per route): one endpoint that is
# down never delays another. `--webhook URL` on the command line is one more route, named
# "webhook", that takes every finding.
#
#   name          required, unique: shown in messages and dead letters instead of the URL
#                 (letters, digits, '.', '_', '-')
#   url           https:// (plain http:// only to loopback); it may hold a secret (a Slack
#                 incoming-webhook URL does) and is never printed
#   format        "json" (the finding, default) or "slack" (an incoming-webhook message)
#   owners        the account's owner from the registry (`credwarden accounts sync`),
#                 case-insensitive; findings carry it only when detect runs with that --state
#   accounts      account ids
#   detectors     detector names (those of `detect --detectors`, imds-proxy-blocked,
#                 broker-anomaly, shrink-scheduled)
#   min_severity  "low", "medium", "high" or "critical"
# Matchers are optional and must all match; a route without any takes every finding.

[[notify.route]]
name = "payments"
url = "https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX"
format = "slack"
owners = ["payments-team"]

[[notify.route]]
name = "canaries"
url = "https://hooks.slack.com/services/T0000000/B1111111/XXXXXXXXXXXXXXXXXXXXXXXX"
format = "slack"
detectors = ["canary-resource"]
min_severity = "high"

# A catch-all, for the SIEM: every finding, as JSON.
[[notify.route]]
name = "siem"
url = "https://siem.example.com/credwarden"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let cfg = Config::parse(EXAMPLE).unwrap();
        assert_eq!(cfg.detect.egress_cidrs.len(), 2);
        assert_eq!(cfg.detect.lateness_minutes, Some(15));
        let routes = &cfg.notify.routes;
        assert_eq!(
            routes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["payments", "canaries", "siem"]
        );
        assert_eq!(routes[0].format, RouteFormat::Slack);
        assert_eq!(routes[0].owners, ["payments-team"]);
        assert!(matches!(routes[1].min_severity, Some(SeverityName::High)));
        assert_eq!(routes[2].format, RouteFormat::Json);
        assert!(!format!("{:?}", routes[0]).contains("hooks.slack.com"));
    }

    /// The parser's report is placed by line and column, without quoting the line (which
    /// may hold a route's URL).
    #[test]
    fn parse_errors_never_quote_a_url() {
        for (text, expect) in [
            (
                "[[notify.route]]\nname = \"a\"\nurl = \"https://h.example/s3cr3t\"\ncolour = 1\n",
                "line 4, column 1: unknown field `colour`",
            ),
            (
                "[[notify.route]]\nname = \"a\"\nurl = \"https://h.example/s3cr3t\n",
                "line 3, column",
            ),
            (
                "[[notify.route]]\nname = \"a\"\nurl = \"https://h.example/s3cr3t\"\n\
                 format = \"xml\"\n",
                "unknown variant `xml`",
            ),
            ("[[notify.route]]\nname = \"a\"\n", "missing field `url`"),
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(expect), "{expect}: {e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<Config>("[detect]\negres_cidrs = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("egres_cidrs"), "{e}");
    }
}
