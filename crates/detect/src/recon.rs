//! `recon-call`: a principal making an attacker's first-step call (`sts:GetCallerIdentity`,
//! `s3:ListBuckets`, `iam:ListAccessKeys`, … — the list is `data/recon-actions.txt`) that it
//! never made before, once it has been seen long enough to know its habits (the learning
//! window, 14 days by default). Applications settle into the same calls every day; someone
//! who just got hold of their credentials asks who they are first.
//!
//! The judging is the novelty engine's (`novelty.rs`): principals, learning window, grouping,
//! console browsing left out, order-free decisions. This module owns the list.

pub const NAME: &str = "recon-call";

/// The documented list, compiled in.
pub const RECON_ACTIONS: &str = include_str!("../data/recon-actions.txt");

/// `(service, eventName)` pairs of the list.
pub fn recon_actions() -> &'static [(&'static str, &'static str)] {
    static LIST: std::sync::OnceLock<Vec<(&'static str, &'static str)>> =
        std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        RECON_ACTIONS
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .collect()
    })
}

/// Index of a record's call in the list, if it is a recon call.
pub fn recon_index(event_source: &str, event_name: &str) -> Option<usize> {
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    recon_actions()
        .iter()
        .position(|(s, n)| *s == service && *n == event_name)
}

/// Recon-call settings: the novelty engine's.
pub type ReconConfig = crate::novelty::NoveltyConfig;

/// The `recon-call` detector: the novelty engine asking about first steps.
pub struct ReconCallDetector;

impl ReconCallDetector {
    #[allow(clippy::new_ret_no_self)]
    pub fn new(cfg: ReconConfig) -> crate::novelty::NoveltyDetector {
        crate::novelty::NoveltyDetector::new(crate::novelty::Novelty::ReconCall, cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_and_names_the_seeds_first_steps() {
        assert!(recon_actions().len() >= 15);
        for (s, n) in [
            ("sts.amazonaws.com", "GetCallerIdentity"),
            ("s3.amazonaws.com", "ListBuckets"),
            ("iam.amazonaws.com", "ListAccessKeys"),
            ("iam.amazonaws.com", "GetAccountAuthorizationDetails"),
        ] {
            assert!(recon_index(s, n).is_some(), "{s} {n}");
        }
        assert!(recon_index("s3.amazonaws.com", "GetObject").is_none());
        assert!(recon_actions()
            .iter()
            .all(|(s, n)| !s.is_empty() && !n.is_empty() && !n.contains(' ')));
    }
}
