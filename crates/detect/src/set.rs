//! The one place a set of detectors is built from settings: `detect`, the demo and the
//! benchmarks all ask here, so a detector added to [`ALL`] is built everywhere the same way.

use std::collections::HashSet;

use crate::burst::{BurstConfig, EnumerationBurstDetector};
use crate::canary::{CanaryConfig, CanaryDetector};
use crate::engine::{Detector, DEFAULT_LATENESS_MS};
use crate::foreign_role::{ForeignRolePassConfig, ForeignRolePassDetector, OwnershipMap};
use crate::netset::{AwsIpRanges, NetSet};
use crate::novelty::{Novelty, NoveltyConfig, NoveltyDetector};
use crate::off_instance::{OffInstanceConfig, OffInstanceDetector};
use crate::static_key::{StaticKeyConfig, StaticKeyDetector};

/// Every detector this build implements, in the order `all` runs them.
pub const ALL: &[&str] = &[
    crate::off_instance::NAME,
    crate::burst::NAME,
    crate::static_key::NAME,
    crate::recon::NAME,
    crate::canary::NAME,
    crate::novelty::NEW_ROLE_BEHAVIOUR,
    crate::novelty::UNUSED_SERVICE,
    crate::novelty::UNUSED_REGION,
    crate::foreign_role::NAME,
];

/// A detector name this build does not have.
#[derive(Debug, thiserror::Error)]
#[error("unknown detector {name:?}; this build has: {}", ALL.join(", "))]
pub struct UnknownDetector {
    pub name: String,
}

/// The names a `--detectors` list means: `all`, `none` (decode only) or comma-separated
/// names, each checked.
pub fn names(list: &str) -> Result<Vec<&'static str>, UnknownDetector> {
    match list.trim() {
        "all" => Ok(ALL.to_vec()),
        "none" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(str::trim)
            .map(|n| {
                ALL.iter()
                    .copied()
                    .find(|a| *a == n)
                    .ok_or_else(|| UnknownDetector { name: n.to_owned() })
            })
            .collect(),
    }
}

/// What the detectors are told, resolved from flags and configuration. `None` and empty
/// fields leave each detector's own default.
#[derive(Clone, Debug)]
pub struct DetectorSettings {
    /// How late (event time) a record may arrive and still count.
    pub lateness_ms: i64,
    /// How long an account or principal is watched before what it does counts as new.
    pub learning_ms: Option<i64>,
    /// Our egress ranges: never a foreign source.
    pub egress: NetSet,
    /// Accounts whose VPC endpoints count as ours.
    pub known_accounts: HashSet<String>,
    /// AWS's published ranges: enables the outside-AWS signal.
    pub aws_ranges: Option<AwsIpRanges>,
    /// How long a credential's state is kept after it expires.
    pub expiry_margin_ms: Option<i64>,
    pub burst_rate_threshold: Option<usize>,
    pub burst_spread_actions: Option<usize>,
    /// Which application owns which role and principal (foreign-role-pass).
    pub ownership: OwnershipMap,
    /// Access key ids or ARN patterns nobody should ever use.
    pub canaries: Vec<String>,
}

impl Default for DetectorSettings {
    fn default() -> DetectorSettings {
        DetectorSettings {
            lateness_ms: DEFAULT_LATENESS_MS,
            learning_ms: None,
            egress: NetSet::default(),
            known_accounts: HashSet::new(),
            aws_ranges: None,
            expiry_margin_ms: None,
            burst_rate_threshold: None,
            burst_spread_actions: None,
            ownership: OwnershipMap::default(),
            canaries: Vec::new(),
        }
    }
}

impl DetectorSettings {
    /// The detectors `names` name, in that order.
    pub fn build(&self, names: &[&str]) -> Result<Vec<Box<dyn Detector>>, UnknownDetector> {
        names.iter().map(|n| self.one(n)).collect()
    }

    fn one(&self, name: &str) -> Result<Box<dyn Detector>, UnknownDetector> {
        let lateness_ms = self.lateness_ms;
        if let Some(kind) = Novelty::by_name(name) {
            let mut config = NoveltyConfig {
                lateness_ms,
                ..Default::default()
            };
            if let Some(ms) = self.learning_ms {
                config.learning_ms = ms;
            }
            return Ok(Box::new(NoveltyDetector::new(kind, config)));
        }
        Ok(match name {
            crate::off_instance::NAME => {
                let mut config = OffInstanceConfig {
                    egress: self.egress.clone(),
                    known_accounts: self.known_accounts.clone(),
                    aws_ranges: self.aws_ranges.clone(),
                    lateness_ms,
                    ..Default::default()
                };
                if let Some(ms) = self.expiry_margin_ms {
                    config.expiry_margin_ms = ms;
                }
                Box::new(OffInstanceDetector::new(config))
            }
            crate::burst::NAME => {
                let mut config = BurstConfig {
                    lateness_ms,
                    ..Default::default()
                };
                if let Some(n) = self.burst_rate_threshold {
                    config.rate_threshold = n.max(1);
                }
                if let Some(n) = self.burst_spread_actions {
                    config.spread_actions = n.max(1);
                }
                Box::new(EnumerationBurstDetector::new(config))
            }
            crate::static_key::NAME => Box::new(StaticKeyDetector::new(StaticKeyConfig {
                lateness_ms,
                ..Default::default()
            })),
            crate::foreign_role::NAME => {
                Box::new(ForeignRolePassDetector::new(ForeignRolePassConfig {
                    ownership: self.ownership.clone(),
                    lateness_ms,
                }))
            }
            crate::canary::NAME => Box::new(CanaryDetector::new(CanaryConfig {
                canaries: self.canaries.clone(),
                lateness_ms,
            })),
            other => {
                return Err(UnknownDetector {
                    name: other.to_owned(),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_unknown_names_are_refused() {
        assert_eq!(names("all").unwrap(), ALL);
        assert!(names("none").unwrap().is_empty());
        assert_eq!(
            names(" recon-call , canary-resource").unwrap(),
            ["recon-call", "canary-resource"]
        );
        let e = names("recon-call,nope").unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let set = DetectorSettings::default().build(ALL).unwrap();
        let built: Vec<&str> = set.iter().map(|d| d.name()).collect();
        assert_eq!(built, ALL);
    }
}
