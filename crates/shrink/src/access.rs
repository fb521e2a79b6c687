//! Unused account access: directory memberships (user → group) that no role use backs.
//!
//! A group is how the broker lets a user into roles (and so accounts). A membership is in
//! use when, within the window, the user was issued credentials for a role the group opens
//! (the broker's audit) or used such a role with their identity as the session's source
//! identity (CloudTrail). Memberships without either are removed; getting one back is a
//! request to whoever keeps the directory, and the broker audits every use after that.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One membership and what backs it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Membership {
    pub user: String,
    pub group: String,
    /// Last use of any role the group opens (ms), if any.
    pub last_use_ms: Option<i64>,
    pub keep: bool,
}

/// Judge every membership. `role_groups`: role ARN → groups allowed to use it;
/// `last_use`: (user, role ARN) → last use (ms).
pub fn judge(
    directory: &BTreeMap<String, BTreeSet<String>>,
    role_groups: &BTreeMap<String, BTreeSet<String>>,
    last_use: &BTreeMap<(String, String), i64>,
    now_ms: i64,
    unused_days: i64,
) -> Vec<Membership> {
    let since = now_ms - unused_days * 86_400_000;
    let mut out = Vec::new();
    for (user, groups) in directory {
        for group in groups {
            let roles: Vec<&String> = role_groups
                .iter()
                .filter(|(_, g)| g.contains(group))
                .map(|(r, _)| r)
                .collect();
            let last = roles
                .iter()
                .filter_map(|r| last_use.get(&(user.clone(), (*r).clone())).copied())
                .max();
            // A group that opens no role the broker knows is not judged: nothing could show it used.
            let keep = roles.is_empty() || last.is_some_and(|t| t >= since);
            out.push(Membership {
                user: user.clone(),
                group: group.clone(),
                last_use_ms: last,
                keep,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memberships_without_recent_use_go() {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let mut dir = BTreeMap::new();
        dir.insert("alice".to_owned(), set(&["payments", "search", "wiki"]));
        let mut roles = BTreeMap::new();
        roles.insert(
            "arn:aws:iam::1:role/payments".to_owned(),
            set(&["payments"]),
        );
        roles.insert("arn:aws:iam::2:role/search".to_owned(), set(&["search"]));
        let day = 86_400_000;
        let now = 1000 * day;
        let mut used = BTreeMap::new();
        used.insert(
            (
                "alice".to_owned(),
                "arn:aws:iam::1:role/payments".to_owned(),
            ),
            now - 10 * day,
        );
        used.insert(
            ("alice".to_owned(), "arn:aws:iam::2:role/search".to_owned()),
            now - 200 * day,
        );
        let j = judge(&dir, &roles, &used, now, 90);
        let keep = |g: &str| j.iter().find(|m| m.group == g).unwrap().keep;
        assert!(keep("payments"));
        assert!(!keep("search"), "last used 200 days ago");
        assert!(keep("wiki"), "opens no known role: not judged");
    }
}
