//! `recon-call`: a principal making an attacker's first-step call (`sts:GetCallerIdentity`,
//! `s3:ListBuckets`, `iam:ListAccessKeys`, … — the list is `data/recon-actions.txt`) that it
//! never made before, once it has been seen long enough to know its habits (the learning
//! window, 14 days by default). Applications settle into the same calls every day; someone
//! who just got hold of their credentials asks who they are first.
//!
//! The judging is the novelty engine's (`novelty.rs`): principals, learning window, grouping,
//! console browsing left out, order-free decisions. This module owns the list.

use crate::fasthash::FastMap;

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

/// Index of a record's call in the list, if it is a recon call. Every record is asked this
/// (recon-call judges them, off-instance marks evidence with it), so it is one hash of the
/// event name, not a walk of the list comparing strings.
pub fn recon_index(event_source: &str, event_name: &str) -> Option<usize> {
    type ByName = FastMap<&'static str, Vec<(&'static str, usize)>>;
    static BY_NAME: std::sync::OnceLock<ByName> = std::sync::OnceLock::new();
    let by_name = BY_NAME.get_or_init(|| {
        let mut m = ByName::default();
        for (i, (service, name)) in recon_actions().iter().enumerate() {
            m.entry(*name).or_default().push((*service, i));
        }
        m
    });
    let services = by_name.get(event_name)?;
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    services
        .iter()
        .find(|(s, _)| *s == service)
        .map(|&(_, i)| i)
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
        // The lookup by name answers what a walk of the list would, service included.
        for (i, (s, n)) in recon_actions().iter().enumerate() {
            let first = recon_actions().iter().position(|x| x == &(*s, *n));
            assert_eq!(recon_index(&format!("{s}.amazonaws.com"), n), first);
            assert_eq!(first, Some(i), "{s}:{n} is listed twice");
            assert_eq!(
                recon_index("ec2.amazonaws.com", n),
                None,
                "{n} is not ec2's"
            );
        }
        assert!(recon_actions()
            .iter()
            .all(|(s, n)| !s.is_empty() && !n.is_empty() && !n.contains(' ')));
    }
}
