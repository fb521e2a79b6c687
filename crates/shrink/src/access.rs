//! Unused account access: directory memberships (user → group) that no role use backs.
//!
//! A group is how the broker lets a user into roles (and so accounts). A membership is in
//! use when, within the window, the user was issued credentials for a role the group opens
//! (the broker's audit) or used such a role with their identity as the session's source
//! identity (CloudTrail). A membership is removed only when it is both unused and provably
//! older than the window: a membership made five minutes ago has had no chance to be used.
//!
//! A membership's age comes from two places. The directory file may state when it began
//! (`since`), and the audit store records when the broker (or `access prune`) first saw it.
//! A sighting proves age only in one direction: a membership that was already there when the
//! store began watching the directory is *at least* that old, so a `since` the directory
//! states is believed; one that appeared later is *at most* that old, so a `since` claiming
//! more is not. With neither, the age is unknown and the membership stays — and since prune
//! records the sighting, it is judged once the window has passed after it.
//!
//! Groups the identity provider asserts (token claims, the proxy's header) are not in the
//! directory and cannot be removed here: [`idp_groups`] reports them with their last use so
//! that whoever runs the provider can.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use store::MembershipSeen;

const DAY_MS: i64 = 86_400_000;

/// Where a membership's start comes from.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AgeSource {
    /// The directory's `since`.
    Stated,
    /// The store's first sighting (the broker's or prune's).
    FirstSeen,
    /// Nothing: never seen before and no `since`.
    Unknown,
}

/// Why a membership is kept or removed.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Judgement {
    /// A role the group opens was used in the window.
    Used,
    /// Not shown older than the window: it may not have had the chance to be used.
    Young,
    /// The group opens no role the broker knows: nothing could show it used.
    OpensNoRole,
    /// Older than the window and unused in it: removed.
    Unused,
}

/// One membership and what backs it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Membership {
    pub user: String,
    pub group: String,
    /// Last use of any role the group opens (ms), if any.
    pub last_use_ms: Option<i64>,
    /// When the membership began, as far as it can be shown (ms).
    pub since_ms: Option<i64>,
    pub age_source: AgeSource,
    /// First seen by this very run: nothing was known of it before.
    pub first_seen_now: bool,
    pub judgement: Judgement,
    pub keep: bool,
}

/// The start of a membership that can be shown, and where it comes from. `stated` is the
/// directory's `since`; `seen` what the store knows.
pub fn membership_start(
    stated: Option<i64>,
    seen: Option<&MembershipSeen>,
) -> (Option<i64>, AgeSource) {
    match (stated, seen) {
        // It appeared while watched: it is no older than its first sighting, whatever the
        // file says; a later `since` is believed (younger is the safe side).
        (Some(s), Some(seen)) if seen.appeared && s > seen.first_seen_ms => {
            (Some(s), AgeSource::Stated)
        }
        (_, Some(seen)) if seen.appeared => (Some(seen.first_seen_ms), AgeSource::FirstSeen),
        // There when watching began: at least that old, so a stated start is not contradicted.
        (Some(s), _) => (Some(s), AgeSource::Stated),
        (None, Some(seen)) => (Some(seen.first_seen_ms), AgeSource::FirstSeen),
        (None, None) => (None, AgeSource::Unknown),
    }
}

/// Judge every membership. `directory`: user → group → stated start; `seen`: the store's
/// sightings; `role_groups`: role ARN → groups allowed to use it; `last_use`: (user, role
/// ARN) → last use (ms).
pub fn judge(
    directory: &BTreeMap<String, BTreeMap<String, Option<i64>>>,
    seen: &BTreeMap<(String, String), MembershipSeen>,
    role_groups: &BTreeMap<String, BTreeSet<String>>,
    last_use: &BTreeMap<(String, String), i64>,
    now_ms: i64,
    unused_days: i64,
) -> Vec<Membership> {
    let window_start = now_ms - unused_days * DAY_MS;
    let mut out = Vec::new();
    for (user, groups) in directory {
        for (group, stated) in groups {
            let roles: Vec<&String> = role_groups
                .iter()
                .filter(|(_, g)| g.contains(group))
                .map(|(r, _)| r)
                .collect();
            let last = roles
                .iter()
                .filter_map(|r| last_use.get(&(user.clone(), (*r).clone())).copied())
                .max();
            let sighting = seen.get(&(user.clone(), group.clone()));
            let (since, age_source) = membership_start(*stated, sighting);
            let judgement = if roles.is_empty() {
                Judgement::OpensNoRole
            } else if last.is_some_and(|t| t >= window_start) {
                Judgement::Used
            } else if since.is_some_and(|s| s <= window_start) {
                Judgement::Unused
            } else {
                Judgement::Young
            };
            out.push(Membership {
                user: user.clone(),
                group: group.clone(),
                last_use_ms: last,
                since_ms: since,
                age_source,
                first_seen_now: sighting.is_some_and(|s| s.new) && stated.is_none(),
                keep: judgement != Judgement::Unused,
                judgement,
            });
        }
    }
    out
}

/// A broker grant, as the audit recorded it: who, when, which role, with which groups.
#[derive(Clone, Debug)]
pub struct Grant<'a> {
    pub user: &'a str,
    pub time_ms: i64,
    /// The role's [`crate::usage::role_key`].
    pub role: String,
    /// Every group the caller had (comma-separated, as audited).
    pub groups: &'a str,
    /// The identity provider's groups; `None` on audit rows older than that record.
    pub idp_groups: Option<&'a str>,
}

/// A group a user had from the identity provider.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IdpMembership {
    pub user: String,
    pub group: String,
    /// Last grant made while the user had it.
    pub last_seen_ms: i64,
    /// Last grant of a role this group opens.
    pub last_use_ms: Option<i64>,
    /// True when some of the evidence is from audit rows that did not record the provider's
    /// groups: there "not in the directory now" stood in for "from the provider".
    pub inferred: bool,
}

fn split(groups: &str) -> impl Iterator<Item = &str> {
    groups.split(',').filter(|g| !g.is_empty())
}

/// Groups users had from the identity provider in the broker's grants, with their last use.
pub fn idp_groups(
    grants: &[Grant<'_>],
    directory: &BTreeMap<String, BTreeMap<String, Option<i64>>>,
    role_groups: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<IdpMembership> {
    let mut found: BTreeMap<(String, String), IdpMembership> = BTreeMap::new();
    for g in grants {
        let (from_idp, inferred): (BTreeSet<&str>, bool) = match g.idp_groups {
            Some(idp) => (split(idp).collect(), false),
            None => {
                let listed = directory.get(g.user);
                (
                    split(g.groups)
                        .filter(|x| !listed.is_some_and(|l| l.contains_key(*x)))
                        .collect(),
                    true,
                )
            }
        };
        let opens = role_groups.get(&g.role);
        for group in from_idp {
            let m = found
                .entry((g.user.to_owned(), group.to_owned()))
                .or_insert_with(|| IdpMembership {
                    user: g.user.to_owned(),
                    group: group.to_owned(),
                    last_seen_ms: g.time_ms,
                    last_use_ms: None,
                    inferred: false,
                });
            m.last_seen_ms = m.last_seen_ms.max(g.time_ms);
            m.inferred |= inferred;
            if opens.is_some_and(|o| o.contains(group)) {
                m.last_use_ms = Some(m.last_use_ms.map_or(g.time_ms, |t| t.max(g.time_ms)));
            }
        }
    }
    found.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = DAY_MS;
    const NOW: i64 = 1000 * DAY;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn roles() -> BTreeMap<String, BTreeSet<String>> {
        BTreeMap::from([
            (
                "arn:aws:iam::1:role/payments".to_owned(),
                set(&["payments"]),
            ),
            ("arn:aws:iam::2:role/search".to_owned(), set(&["search"])),
        ])
    }

    fn seen(first: i64, appeared: bool) -> MembershipSeen {
        MembershipSeen {
            first_seen_ms: first,
            appeared,
            new: false,
        }
    }

    fn key(u: &str, g: &str) -> (String, String) {
        (u.to_owned(), g.to_owned())
    }

    #[test]
    fn old_unused_memberships_go_and_recent_use_keeps() {
        let dir = BTreeMap::from([(
            "alice".to_owned(),
            BTreeMap::from([
                ("payments".to_owned(), None),
                ("search".to_owned(), None),
                ("wiki".to_owned(), None),
            ]),
        )]);
        let sightings = BTreeMap::from([
            (key("alice", "payments"), seen(NOW - 400 * DAY, false)),
            (key("alice", "search"), seen(NOW - 400 * DAY, false)),
            (key("alice", "wiki"), seen(NOW - 400 * DAY, false)),
        ]);
        let used = BTreeMap::from([
            (key("alice", "arn:aws:iam::1:role/payments"), NOW - 10 * DAY),
            (key("alice", "arn:aws:iam::2:role/search"), NOW - 200 * DAY),
        ]);
        let j = judge(&dir, &sightings, &roles(), &used, NOW, 90);
        let of = |g: &str| j.iter().find(|m| m.group == g).unwrap().judgement;
        assert_eq!(of("payments"), Judgement::Used);
        assert_eq!(of("search"), Judgement::Unused, "last used 200 days ago");
        assert_eq!(of("wiki"), Judgement::OpensNoRole);
        assert_eq!(j.iter().filter(|m| !m.keep).count(), 1);
    }

    #[test]
    fn a_membership_not_shown_old_stays() {
        let five_minutes = 5 * 60_000;
        let dir = BTreeMap::from([(
            "bob".to_owned(),
            BTreeMap::from([
                // Stated five minutes ago.
                ("payments".to_owned(), Some(NOW - five_minutes)),
                // Nothing known: first seen by this run.
                ("search".to_owned(), None),
            ]),
        )]);
        let mut sightings = BTreeMap::from([
            (key("bob", "payments"), seen(NOW - 400 * DAY, false)),
            (key("bob", "search"), seen(NOW, false)),
        ]);
        sightings.get_mut(&key("bob", "search")).unwrap().new = true;
        let j = judge(&dir, &sightings, &roles(), &BTreeMap::new(), NOW, 90);
        for m in &j {
            assert_eq!(m.judgement, Judgement::Young, "{m:?}");
            assert!(m.keep);
        }
        let search = j.iter().find(|m| m.group == "search").unwrap();
        assert!(search.first_seen_now && search.age_source == AgeSource::FirstSeen);
        // No sighting and no statement at all: unknown, kept.
        let j = judge(&dir, &BTreeMap::new(), &roles(), &BTreeMap::new(), NOW, 90);
        let search = j.iter().find(|m| m.group == "search").unwrap();
        assert_eq!(
            (search.age_source, search.judgement, search.since_ms),
            (AgeSource::Unknown, Judgement::Young, None)
        );
    }

    #[test]
    fn a_stated_age_is_believed_only_where_sightings_do_not_contradict_it() {
        let old = Some(NOW - 300 * DAY);
        // Appeared while watched ten days ago: the file's "300 days" is contradicted.
        assert_eq!(
            membership_start(old, Some(&seen(NOW - 10 * DAY, true))),
            (Some(NOW - 10 * DAY), AgeSource::FirstSeen)
        );
        // Appeared 100 days ago, file says 5 days: the younger is taken.
        assert_eq!(
            membership_start(Some(NOW - 5 * DAY), Some(&seen(NOW - 100 * DAY, true))),
            (Some(NOW - 5 * DAY), AgeSource::Stated)
        );
        // There when watching began yesterday: it is at least a day old, the file may know more.
        assert_eq!(
            membership_start(old, Some(&seen(NOW - DAY, false))),
            (old, AgeSource::Stated)
        );
        assert_eq!(
            membership_start(None, Some(&seen(NOW - DAY, false))),
            (Some(NOW - DAY), AgeSource::FirstSeen)
        );
        // The stated age makes an unused membership removable at once.
        let dir = BTreeMap::from([(
            "carol".to_owned(),
            BTreeMap::from([("search".to_owned(), old)]),
        )]);
        let sightings = BTreeMap::from([(key("carol", "search"), seen(NOW, false))]);
        let j = judge(&dir, &sightings, &roles(), &BTreeMap::new(), NOW, 90);
        assert_eq!(j[0].judgement, Judgement::Unused);
    }

    #[test]
    fn idp_groups_are_the_providers_with_their_last_use() {
        let dir = BTreeMap::from([(
            "alice".to_owned(),
            BTreeMap::from([("payments".to_owned(), None)]),
        )]);
        let grant = |t: i64, role: &str, groups, idp| Grant {
            user: "alice",
            time_ms: t,
            role: role.to_owned(),
            groups,
            idp_groups: idp,
        };
        let grants = [
            grant(
                NOW - 3 * DAY,
                "arn:aws:iam::2:role/search",
                "payments,search,staff",
                Some("search,staff"),
            ),
            grant(
                NOW - DAY,
                "arn:aws:iam::1:role/payments",
                "payments,search,staff",
                Some("search,staff"),
            ),
            // An old row without the provider's groups: inferred from the directory.
            grant(
                NOW - 50 * DAY,
                "arn:aws:iam::1:role/payments",
                "payments,legacy",
                None,
            ),
        ];
        let got = idp_groups(&grants, &dir, &roles());
        let view: Vec<_> = got
            .iter()
            .map(|m| (m.group.as_str(), m.last_seen_ms, m.last_use_ms, m.inferred))
            .collect();
        assert_eq!(
            view,
            [
                ("legacy", NOW - 50 * DAY, None, true),
                ("search", NOW - DAY, Some(NOW - 3 * DAY), false),
                ("staff", NOW - DAY, None, false),
            ]
        );
    }
}
