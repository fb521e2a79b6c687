//! The finding: one JSON object per line, the contract every sink and downstream tool
//! relies on (see DESIGN.md, "contract — finding").

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FindingSource {
    pub ip: Option<String>,
    pub vpc_endpoint: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// Stable: a hash of the detector and what the finding is about, never of when or in
    /// which file it was seen. Same input, same id.
    pub id: String,
    pub detector: &'static str,
    pub severity: Severity,
    /// eventTime of the triggering record, RFC 3339.
    pub time: String,
    pub account: Option<String>,
    /// The account's name and owner from the account registry (`credwarden accounts sync`),
    /// when the run has one; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_owner: Option<String>,
    pub region: Option<String>,
    pub principal: Option<String>,
    pub access_key_id: Option<String>,
    pub source: FindingSource,
    pub event_ids: Vec<String>,
    pub summary: String,
    pub details: serde_json::Value,
    pub remediation: String,
}

/// The stable id of a finding: SHA-256 over the detector name and the key parts, each
/// length-prefixed so that ("ab","c") and ("a","bc") differ; 32 hex digits.
pub fn finding_id(detector: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in std::iter::once(detector).chain(parts.iter().copied()) {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    crate::encoding::hex(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_unambiguous() {
        assert_eq!(finding_id("d", &["a", "b"]), finding_id("d", &["a", "b"]));
        assert_ne!(finding_id("d", &["ab", "c"]), finding_id("d", &["a", "bc"]));
        assert_ne!(finding_id("d", &["a"]), finding_id("e", &["a"]));
        assert_eq!(finding_id("d", &["a"]).len(), 32);
    }
}
