//! `credwarden.toml`: every key can also be given as a flag, and the flag wins.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub detect: DetectConfig,
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
        let mut cfg: Config =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        // Relative paths in the file are relative to the file, not to the working directory.
        if let (Some(p), Some(dir)) = (&cfg.detect.aws_ip_ranges, path.parent()) {
            if p.is_relative() {
                cfg.detect.aws_ip_ranges = Some(dir.join(p));
            }
        }
        Ok(cfg)
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
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses() {
        let cfg: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(cfg.detect.egress_cidrs.len(), 2);
        assert_eq!(cfg.detect.lateness_minutes, Some(15));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<Config>("[detect]\negres_cidrs = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("egres_cidrs"), "{e}");
    }
}
