//! Scoring findings against the ground truth.

use detect::Finding;

use crate::truth::TruthEntry;

/// Outcome of scoring findings against the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub findings: usize,
    /// Findings some truth entry expects.
    pub true_positives: usize,
    /// Findings no truth entry expects.
    pub false_positives: usize,
    /// Truth entries (expected findings).
    pub attacks: usize,
    /// Truth entries some finding matches.
    pub attacks_found: usize,
}

impl Score {
    pub fn precision(&self) -> f64 {
        if self.findings == 0 {
            1.0
        } else {
            self.true_positives as f64 / self.findings as f64
        }
    }

    pub fn recall(&self) -> f64 {
        if self.attacks == 0 {
            1.0
        } else {
            self.attacks_found as f64 / self.attacks as f64
        }
    }
}

/// A finding matches a truth entry when it is the entry's detector and names the entry's
/// credential and source.
pub fn matches(f: &Finding, t: &TruthEntry) -> bool {
    f.detector == t.detector
        && f.access_key_id.as_deref() == Some(t.access_key_id.as_str())
        && f.source.ip.as_deref() == Some(t.source_ip.as_str())
}

pub fn score(findings: &[Finding], truth: &[TruthEntry]) -> Score {
    let tp = findings
        .iter()
        .filter(|f| truth.iter().any(|t| matches(f, t)))
        .count();
    let found = truth
        .iter()
        .filter(|t| findings.iter().any(|f| matches(f, t)))
        .count();
    Score {
        findings: findings.len(),
        true_positives: tp,
        false_positives: findings.len() - tp,
        attacks: truth.len(),
        attacks_found: found,
    }
}
