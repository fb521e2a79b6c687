//! The group directory file: `{"users": {"alice": ["payments", …]}}`.
//!
//! A membership may also be written `{"group": "payments", "since": "2026-11-02T09:00:00Z"}`:
//! the time it was granted, as whoever keeps the directory knows it. `access prune` uses it to
//! leave young memberships alone; without it a membership's age comes from the audit store,
//! which records when the broker (or `access prune`) first saw it. Plain names stay valid, so
//! every directory written before keeps working.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// What is wrong with a directory file: the place (`users.alice[1].since`) and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{place}: {reason}")]
pub struct DirectoryError {
    pub place: String,
    pub reason: String,
}

fn bad(place: impl Into<String>, reason: impl Into<String>) -> DirectoryError {
    DirectoryError {
        place: place.into(),
        reason: reason.into(),
    }
}

/// A parsed directory: user → group → the membership's stated start (ms), if stated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    pub users: BTreeMap<String, BTreeMap<String, Option<i64>>>,
}

impl Directory {
    pub fn parse(text: &str) -> Result<Directory, DirectoryError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| bad("(file)", e.to_string()))?;
        let users = doc
            .get("users")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("users", "missing or not an object of user → [groups]"))?;
        let mut out = Directory::default();
        for (user, entries) in users {
            let entries = entries
                .as_array()
                .ok_or_else(|| bad(format!("users.{user}"), "not a list of groups"))?;
            let groups = out.users.entry(user.clone()).or_default();
            for (i, entry) in entries.iter().enumerate() {
                let place = format!("users.{user}[{i}]");
                let (group, since) = match entry {
                    Value::String(g) => (g.clone(), None),
                    Value::Object(o) => {
                        if let Some(k) = o.keys().find(|k| *k != "group" && *k != "since") {
                            return Err(bad(
                                place,
                                format!("unknown field {k:?} (a membership has group and since)"),
                            ));
                        }
                        let group = o.get("group").and_then(Value::as_str).ok_or_else(|| {
                            bad(format!("{place}.group"), "missing or not a string")
                        })?;
                        let since = match o.get("since") {
                            None | Some(Value::Null) => None,
                            Some(Value::String(t)) => {
                                Some(iam::condition::parse_date(t).ok_or_else(|| {
                                    bad(
                                        format!("{place}.since"),
                                        format!("{t:?} is not an RFC 3339 time"),
                                    )
                                })?)
                            }
                            Some(_) => {
                                return Err(bad(format!("{place}.since"), "not a string"));
                            }
                        };
                        (group.to_owned(), since)
                    }
                    _ => {
                        return Err(bad(
                            place,
                            "neither a group name nor {\"group\", \"since\"}",
                        ))
                    }
                };
                if group.is_empty() {
                    return Err(bad(place, "empty group name"));
                }
                // Listed twice: the earlier stated start is the membership's start.
                let slot = groups.entry(group).or_insert(since);
                *slot = match (*slot, since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(out)
    }

    /// The groups of `user`.
    pub fn groups(&self, user: &str) -> BTreeSet<String> {
        self.users
            .get(user)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every (user, group) membership.
    pub fn memberships(&self) -> BTreeSet<(String, String)> {
        self.users
            .iter()
            .flat_map(|(u, gs)| gs.keys().map(move |g| (u.clone(), g.clone())))
            .collect()
    }
}

/// `text` (a directory file) without the memberships in `remove`, everything else — other
/// keys, entry forms, `since` — as it was.
pub fn without(text: &str, remove: &BTreeSet<(String, String)>) -> Result<Value, DirectoryError> {
    let mut doc: Value = serde_json::from_str(text).map_err(|e| bad("(file)", e.to_string()))?;
    let users = doc
        .get_mut("users")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad("users", "missing or not an object of user → [groups]"))?;
    for (user, entries) in users.iter_mut() {
        if let Some(list) = entries.as_array_mut() {
            list.retain(|e| {
                let group = match e {
                    Value::String(g) => Some(g.as_str()),
                    Value::Object(o) => o.get("group").and_then(Value::as_str),
                    _ => None,
                };
                !group.is_some_and(|g| remove.contains(&(user.clone(), g.to_owned())))
            });
        }
    }
    Ok(doc)
}

/// The key a directory file's memberships are tracked under in the audit store: its
/// canonical path, so the broker and `access prune` (run from anywhere) agree.
pub fn tracking_key(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_dated_memberships_parse() {
        let d = Directory::parse(
            r#"{"users": {"alice": ["payments", {"group": "search", "since": "2026-11-02T09:00:00Z"}],
                          "bob": [{"group": "wiki"}]}, "note": "kept by IT"}"#,
        )
        .unwrap();
        assert_eq!(d.users["alice"]["payments"], None);
        assert_eq!(
            d.users["alice"]["search"],
            iam::condition::parse_date("2026-11-02T09:00:00Z")
        );
        assert_eq!(d.groups("bob"), BTreeSet::from(["wiki".to_owned()]));
        assert_eq!(d.memberships().len(), 3);
    }

    #[test]
    fn errors_name_the_place() {
        let e = |t: &str| Directory::parse(t).unwrap_err().to_string();
        assert_eq!(
            e(r#"{"users": {"alice": [{"group": "g", "since": "last week"}]}}"#),
            "users.alice[0].since: \"last week\" is not an RFC 3339 time"
        );
        assert!(e(r#"{"users": {"alice": [{"grop": "g"}]}}"#)
            .starts_with("users.alice[0]: unknown field \"grop\""));
        assert!(e(r#"{"users": {"alice": "g"}}"#).starts_with("users.alice: not a list"));
        assert!(e(r#"{"people": {}}"#).starts_with("users: missing"));
        assert!(e(r#"{"users": {"alice": [7]}}"#).starts_with("users.alice[0]: neither"));
    }

    #[test]
    fn removal_keeps_the_rest_as_written() {
        let text = r#"{"users": {"alice": ["payments", {"group": "search", "since": "2026-11-02T09:00:00Z"}], "bob": ["search"]}, "note": "x"}"#;
        let remove = BTreeSet::from([
            ("alice".to_owned(), "payments".to_owned()),
            ("bob".to_owned(), "search".to_owned()),
        ]);
        let v = without(text, &remove).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"users": {"alice": [{"group": "search", "since": "2026-11-02T09:00:00Z"}], "bob": []}, "note": "x"})
        );
    }
}
