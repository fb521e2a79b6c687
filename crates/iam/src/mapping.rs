//! CloudTrail event → the IAM action(s) it exercised.
//!
//! Most events are `<eventSource prefix>:<eventName>`, but not all: some services log under
//! another name than their IAM prefix (`monitoring` is `cloudwatch`), some API names differ
//! from the action that authorises them (S3's `ListObjects` is `s3:ListBucket`), Lambda and
//! CloudFront append API versions (`ListFunctions20150331`), and one call can need several
//! actions (`kms:ReEncrypt`). Those facts live in a small reviewed overlay,
//! `data/event-actions.tsv`; everything else follows the general rule. An event is never
//! silently dropped: it maps to actions, to "needs no permission", to "not mappable" with a
//! reason, or to `Unknown`.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

use crate::catalogue::{Catalogue, CatalogueError};

const BUILTIN: &str = include_str!("../data/event-actions.tsv");

/// What an event exercised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventActions {
    /// Catalogue actions, canonical spelling.
    Actions { actions: Vec<String> },
    /// No IAM action authorises this event (console sign-in, `sts:GetCallerIdentity`).
    NoPermission { reason: String },
    /// Known event that credwarden cannot attribute to an action.
    Unmappable { reason: String },
    /// Not in the catalogue and not in the overlay: keep the evidence, mark it unknown.
    Unknown { guess: String },
}

/// The overlay: source prefixes, aliases and listed exceptions.
#[derive(Debug, Default)]
pub struct EventMap {
    sources: HashMap<String, String>,
    aliases: HashMap<(String, String), Vec<String>>,
    no_permission: HashMap<(String, String), String>,
    unmappable: HashMap<(String, String), String>,
}

impl EventMap {
    /// The overlay compiled into this binary, checked against the built-in catalogue by tests.
    pub fn builtin() -> &'static EventMap {
        static MAP: OnceLock<EventMap> = OnceLock::new();
        MAP.get_or_init(|| EventMap::parse(BUILTIN).expect("the built-in event overlay is tested"))
    }

    pub fn parse(text: &str) -> Result<EventMap, CatalogueError> {
        let mut m = EventMap::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: &str| CatalogueError {
                line: i + 1,
                message: message.to_owned(),
            };
            let f: Vec<&str> = line.split('\t').collect();
            match f[..] {
                ["source", source, prefix] => {
                    m.sources
                        .insert(source.to_ascii_lowercase(), prefix.to_owned());
                }
                ["alias", source, name, actions] => {
                    let list: Vec<String> = actions
                        .split(',')
                        .map(|a| a.trim().to_owned())
                        .filter(|a| !a.is_empty())
                        .collect();
                    if list.is_empty() || list.iter().any(|a| !a.contains(':')) {
                        return Err(err("alias needs prefix:Action[,prefix:Action…]"));
                    }
                    m.aliases.insert(key(source, name), list);
                }
                ["none", source, name, reason] => {
                    m.no_permission.insert(key(source, name), reason.to_owned());
                }
                ["unmappable", source, name, reason] => {
                    m.unmappable.insert(key(source, name), reason.to_owned());
                }
                _ => {
                    return Err(err(
                        "expected source/alias/none/unmappable with tab-separated fields",
                    ))
                }
            }
        }
        Ok(m)
    }

    /// Every action an alias names (for validating the overlay against a catalogue).
    pub fn alias_actions(&self) -> impl Iterator<Item = &str> {
        self.aliases.values().flatten().map(String::as_str)
    }

    /// The IAM prefix of an `eventSource`.
    pub fn prefix(&self, event_source: &str) -> String {
        let lower = event_source.to_ascii_lowercase();
        if let Some(p) = self.sources.get(&lower) {
            return p.clone();
        }
        let stripped = lower.strip_suffix(".amazonaws.com").unwrap_or(&lower);
        let stripped = stripped.strip_prefix("api.").unwrap_or(stripped);
        stripped.split('.').next().unwrap_or(stripped).to_owned()
    }

    /// Map one event.
    pub fn map(&self, catalogue: &Catalogue, event_source: &str, event_name: &str) -> EventActions {
        let k = key(event_source, event_name);
        if let Some(actions) = self.aliases.get(&k) {
            let actions = actions
                .iter()
                .map(|a| catalogue.canonical(a).unwrap_or_else(|| a.clone()))
                .collect();
            return EventActions::Actions { actions };
        }
        let any = key(event_source, "*");
        if let Some(reason) = self
            .no_permission
            .get(&k)
            .or_else(|| self.no_permission.get(&any))
        {
            return EventActions::NoPermission {
                reason: reason.clone(),
            };
        }
        let prefix = self.prefix(event_source);
        let name = strip_api_version(event_name);
        let guess = format!("{prefix}:{name}");
        if let Some(action) = catalogue.canonical(&guess) {
            return EventActions::Actions {
                actions: vec![action],
            };
        }
        if let Some(reason) = self
            .unmappable
            .get(&k)
            .or_else(|| self.unmappable.get(&any))
        {
            return EventActions::Unmappable {
                reason: reason.clone(),
            };
        }
        EventActions::Unknown { guess }
    }
}

fn key(source: &str, name: &str) -> (String, String) {
    (source.to_ascii_lowercase(), name.to_owned())
}

/// Strip an API version suffix: a trailing date (`20150331`, `2020_05_31`) and an optional
/// `v<digits>`. Nothing looser: `CreateEnvironmentEC2` keeps its `2`.
pub fn strip_api_version(name: &str) -> &str {
    let b = name.as_bytes();
    let mut end = b.len();
    // optional v\d+
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 && end > digits && b[end - digits - 1] == b'v' {
        let candidate = end - digits - 1;
        if date_suffix_len(&b[..candidate]).is_some() {
            end = candidate;
        }
    }
    match date_suffix_len(&b[..end]) {
        Some(n) if n < end => &name[..end - n],
        _ => name,
    }
}

/// Length of a trailing `\d{8}` or `\d{4}_\d{2}_\d{2}`.
fn date_suffix_len(b: &[u8]) -> Option<usize> {
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let n = b.len();
    if n >= 10
        && b[n - 3] == b'_'
        && b[n - 6] == b'_'
        && [1, 2, 4, 5, 7, 8, 9, 10].iter().all(|&k| digit(n - k))
    {
        return Some(10);
    }
    if n >= 8 && (1..=8).all(|k| digit(n - k)) {
        return Some(8);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_suffixes() {
        assert_eq!(strip_api_version("ListFunctions20150331"), "ListFunctions");
        assert_eq!(strip_api_version("GetFunction20150331v2"), "GetFunction");
        assert_eq!(
            strip_api_version("CreateDistribution2020_05_31"),
            "CreateDistribution"
        );
        assert_eq!(
            strip_api_version("CreateEnvironmentEC2"),
            "CreateEnvironmentEC2"
        );
        assert_eq!(strip_api_version("GetObjectv2"), "GetObjectv2");
        assert_eq!(strip_api_version("20150331"), "20150331");
    }

    #[test]
    fn general_rule_and_overlay() {
        let (c, m) = (Catalogue::builtin(), EventMap::builtin());
        let acts = |s, n| match m.map(c, s, n) {
            EventActions::Actions { actions } => actions,
            other => panic!("{s} {n}: {other:?}"),
        };
        assert_eq!(
            acts("ec2.amazonaws.com", "DescribeInstances"),
            ["ec2:DescribeInstances"]
        );
        // Conservative: a launch may pass a role, so right-sizing never removes PassRole a launch needed.
        assert_eq!(
            acts("ec2.amazonaws.com", "RunInstances"),
            ["ec2:RunInstances", "iam:PassRole"]
        );
        assert_eq!(
            acts("monitoring.amazonaws.com", "PutMetricData"),
            ["cloudwatch:PutMetricData"]
        );
        assert_eq!(
            acts("lambda.amazonaws.com", "ListFunctions20150331"),
            ["lambda:ListFunctions"]
        );
        assert_eq!(acts("s3.amazonaws.com", "ListObjects"), ["s3:ListBucket"]);
        assert_eq!(
            acts("s3.amazonaws.com", "ListBuckets"),
            ["s3:ListAllMyBuckets"]
        );
        let mut re = acts("kms.amazonaws.com", "ReEncrypt");
        re.sort();
        assert_eq!(re, ["kms:ReEncryptFrom", "kms:ReEncryptTo"]);
        assert!(matches!(
            m.map(c, "sts.amazonaws.com", "GetCallerIdentity"),
            EventActions::NoPermission { .. }
        ));
        assert!(matches!(
            m.map(c, "signin.amazonaws.com", "ConsoleLogin"),
            EventActions::NoPermission { .. }
        ));
        assert_eq!(
            m.map(c, "example.amazonaws.com", "DoThing"),
            EventActions::Unknown {
                guess: "example:DoThing".into()
            }
        );
    }

    #[test]
    fn overlay_names_only_catalogue_actions() {
        let (c, m) = (Catalogue::builtin(), EventMap::builtin());
        let bad: Vec<&str> = m
            .alias_actions()
            .filter(|a| c.lookup(a).is_none())
            .collect();
        assert!(
            bad.is_empty(),
            "overlay aliases not in the catalogue: {bad:?}"
        );
    }
}
