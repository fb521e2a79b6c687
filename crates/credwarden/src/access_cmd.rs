//! `credwarden access prune`: directory memberships, and memberships approved through the
//! broker (kept in its store), that no role use backs, removed only when they are shown older
//! than the window; expired store memberships removed; the identity provider's groups
//! reported, not touched.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cloudtrail::EventTime;
use shrink::access::{AgeSource, Judgement};
use shrink::Usage;

#[derive(clap::Args, Debug)]
pub struct AccessPruneArgs {
    /// The broker's configuration: its directory file, audit store and role grants.
    #[arg(long, value_name = "FILE")]
    pub broker_config: PathBuf,
    /// Role tags (the broker's role_groups_tag) from an inventory, beside the config's grants.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub inventory: Vec<PathBuf>,
    /// CloudTrail showing broker-issued sessions in use (their source identity is the user).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub cloudtrail: Vec<PathBuf>,
    /// A membership unused this long, and at least this old, is removed.
    #[arg(long, default_value_t = 90)]
    pub unused_days: i64,
    /// The time to judge at (RFC 3339; default: now). Sightings are recorded at the real time.
    #[arg(long)]
    pub now: Option<String>,
    /// Rewrite the directory without the unused memberships (the old file is kept beside it),
    /// and delete the unused and expired memberships from the broker's store.
    #[arg(long)]
    pub apply: bool,
}

fn when(ms: i64) -> String {
    EventTime(ms).to_string()
}

fn last_used(ms: Option<i64>) -> String {
    ms.map(|t| format!("last used {}", when(t)))
        .unwrap_or_else(|| "never used".into())
}

/// `access prune`: directory and store memberships that no role use backs in the window.
pub fn access_prune(
    args: &AccessPruneArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let cfg = crate::broker_cmd::load_config(&args.broker_config)?;
    // Without a directory file, only the store's memberships (approved requests) are judged.
    let dir_path = cfg.directory.clone();
    let text = match &dir_path {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let directory = match (&text, &dir_path) {
        (Some(text), Some(path)) => broker::directory::Directory::parse(text)
            .with_context(|| format!("{}", path.display()))?,
        _ => broker::directory::Directory::default(),
    };
    let real_now = credwarden_core::clock::now_millis();
    let now_ms = match &args.now {
        Some(t) => {
            iam::condition::parse_date(t).with_context(|| format!("--now {t:?} is not a date"))?
        }
        None => real_now,
    };
    // Ages are measured from sightings at the real time: judged from a later --now, a
    // membership first seen a minute ago would pass for months old.
    if now_ms > real_now + 60_000 {
        bail!(
            "--now {} is in the future: memberships would look older than they are",
            when(now_ms)
        );
    }
    let mut role_groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in &cfg.roles {
        role_groups
            .entry(shrink::usage::role_key(&g.arn))
            .or_default()
            .extend(g.groups.iter().cloned());
    }
    if !args.inventory.is_empty() {
        for r in aws::Inventory::from_files(&args.inventory)?.roles {
            if let Some(tag) = r.tags.get(&cfg.role_groups_tag) {
                role_groups
                    .entry(shrink::usage::role_key(&r.arn))
                    .or_default()
                    .extend(broker::auth::tag_groups(
                        tag,
                        cfg.role_groups_tag_delimiter.as_deref(),
                    ));
            }
        }
    }
    // Opening would create an empty store, and an empty audit shows no use at all.
    if !broker::audit_store::is_postgres(&cfg.audit) && !std::path::Path::new(&cfg.audit).is_file()
    {
        bail!("the broker's audit store {} does not exist: without it no membership can be shown in use", cfg.audit);
    }
    // The broker's own store, SQLite or the PostgreSQL its replicas share.
    let mut audit = broker::audit_store::AuditStore::open(&cfg.audit)?;
    // This run is a sighting too: a membership nobody saw before starts its clock now (the
    // real time, not --now: a sighting dated in the past would make a membership look old).
    let tracking = dir_path.as_deref().map(broker::directory::tracking_key);
    let seen = match &tracking {
        Some(key) => audit.observe_memberships(key, &directory.memberships(), real_now)?,
        None => BTreeMap::new(),
    };
    // Memberships approved through the broker: each with its grant time (as stated: the
    // store wrote it at the approval) and expiry. Expired by the real clock: the broker
    // ignores them already, and they go.
    let granted = audit.memberships()?;
    if dir_path.is_none() && granted.is_empty() {
        bail!("the broker config names no directory file and its store holds no approved memberships: memberships come from the identity provider, prune them there");
    }
    let (expired, current): (Vec<store::Membership>, Vec<store::Membership>) =
        granted.into_iter().partition(|m| m.expires_ms <= real_now);
    let mut granted_users: BTreeMap<String, BTreeMap<String, Option<i64>>> = BTreeMap::new();
    for m in &current {
        granted_users
            .entry(m.user.clone())
            .or_default()
            .insert(m.group.clone(), Some(m.since_ms));
    }
    let entries: Vec<store::AuditEntry> = audit
        .audit_entries(None, usize::MAX >> 1)?
        .into_iter()
        .filter(|e| e.decision == "granted" && e.role.is_some())
        .collect();
    let grants: Vec<shrink::access::Grant<'_>> = entries
        .iter()
        .map(|e| shrink::access::Grant {
            user: &e.user,
            time_ms: e.time_ms,
            role: shrink::usage::role_key(e.role.as_deref().unwrap_or_default()),
            groups: &e.groups,
            idp_groups: e.idp_groups.as_deref(),
        })
        .collect();
    // Evidence of use: broker grants, and sessions in CloudTrail whose source identity is the user.
    let mut last_use: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut note = |user: &str, role: &str, t: i64| {
        let e = last_use
            .entry((user.to_owned(), role.to_owned()))
            .or_insert(t);
        *e = (*e).max(t);
    };
    for g in &grants {
        note(g.user, &g.role, g.time_ms);
    }
    if !args.cloudtrail.is_empty() {
        let usage = Usage::scan(&args.cloudtrail)?;
        let by_session_name: BTreeMap<String, &String> = directory
            .users
            .keys()
            .chain(granted_users.keys())
            .filter_map(|u| broker::service::sts_name(u).map(|name| (name, u)))
            .collect();
        for ((identity, role), t) in &usage.source_identity_use {
            if let Some(user) = by_session_name.get(identity) {
                note(user, role, *t);
            }
        }
    }
    let judged = shrink::access::judge(
        &directory.users,
        &seen,
        &role_groups,
        &last_use,
        now_ms,
        args.unused_days,
    );
    for m in &judged {
        let last = last_used(m.last_use_ms);
        let since = match (m.since_ms, m.age_source) {
            (Some(t), AgeSource::Stated) => format!("member since {} (directory)", when(t)),
            (Some(t), _) => format!("member since {} (first seen)", when(t)),
            (None, _) => "age unknown".into(),
        };
        match m.judgement {
            Judgement::Unused => writeln!(
                out,
                "remove {} from {} ({last}; {since}; unused for {} days)",
                m.user, m.group, args.unused_days
            )?,
            Judgement::Young if m.first_seen_now => writeln!(
                out,
                "keep {} in {}: not seen before, its age is unknown; recorded as first seen now, judged once it is {} days old",
                m.user, m.group, args.unused_days
            )?,
            Judgement::Young => writeln!(
                out,
                "keep {} in {}: younger than {} days ({since}; {last})",
                m.user, m.group, args.unused_days
            )?,
            Judgement::Used | Judgement::OpensNoRole => {}
        }
    }
    // The store's memberships by the same rules; their start is the approval, as recorded.
    let judged_granted = shrink::access::judge(
        &granted_users,
        &BTreeMap::new(),
        &role_groups,
        &last_use,
        now_ms,
        args.unused_days,
    );
    for m in &expired {
        writeln!(
            out,
            "store: remove {} from {} (approved by {}, expired {})",
            m.user,
            m.group,
            m.granted_by,
            when(m.expires_ms)
        )?;
    }
    for m in &judged_granted {
        let last = last_used(m.last_use_ms);
        let since = m.since_ms.map(when).unwrap_or_default();
        match m.judgement {
            Judgement::Unused => writeln!(
                out,
                "store: remove {} from {} ({last}; approved {since}; unused for {} days)",
                m.user, m.group, args.unused_days
            )?,
            Judgement::Young => writeln!(
                out,
                "store: keep {} in {}: younger than {} days (approved {since}; {last})",
                m.user, m.group, args.unused_days
            )?,
            Judgement::Used | Judgement::OpensNoRole => {}
        }
    }
    // Removed only as read: one approved again meanwhile is a new grant and stays.
    let store_remove: Vec<store::Membership> = expired
        .iter()
        .cloned()
        .chain(
            current
                .iter()
                .filter(|m| {
                    judged_granted
                        .iter()
                        .any(|j| !j.keep && j.user == m.user && j.group == m.group)
                })
                .cloned(),
        )
        .collect();
    let idp = shrink::access::idp_groups(&grants, &directory.users, &role_groups);
    for g in &idp {
        let used = g
            .last_use_ms
            .map(|t| format!("last used {}", when(t)))
            .unwrap_or_else(|| "no role it opens was granted".into());
        writeln!(
            out,
            "identity provider: {} in {} ({used}; last seen {}{}) — not in the directory, remove it in the identity provider",
            g.user,
            g.group,
            when(g.last_seen_ms),
            if g.inferred {
                "; inferred from audit rows that predate the record of the provider's groups"
            } else {
                ""
            }
        )?;
    }
    let remove: BTreeSet<(String, String)> = judged
        .iter()
        .filter(|m| !m.keep)
        .map(|m| (m.user.clone(), m.group.clone()))
        .collect();
    let young = judged
        .iter()
        .filter(|m| m.judgement == Judgement::Young)
        .count();
    writeln!(
        err,
        "{} membership(s): {} unused and old enough to remove, {young} too young to judge; {} identity-provider group membership(s) reported",
        judged.len(),
        remove.len(),
        idp.len()
    )?;
    writeln!(
        err,
        "{} store membership(s): {} expired, {} unused and old enough to remove",
        current.len() + expired.len(),
        expired.len(),
        store_remove.len() - expired.len()
    )?;
    if args.apply && !store_remove.is_empty() {
        let n = audit.memberships_remove(&store_remove)?;
        writeln!(
            out,
            "store: {n} membership(s) removed{}",
            if n < store_remove.len() {
                format!(
                    "; {} changed since they were read (approved again) and were kept",
                    store_remove.len() - n
                )
            } else {
                String::new()
            }
        )?;
    }
    if let (true, false, Some(text), Some(dir_path), Some(tracking)) =
        (args.apply, remove.is_empty(), &text, &dir_path, &tracking)
    {
        let rewritten = broker::directory::without(text, &remove)
            .with_context(|| format!("{}", dir_path.display()))?;
        let backup = dir_path.with_extension(format!("json.before-prune-{}", now_ms / 1000));
        std::fs::copy(dir_path, &backup)
            .with_context(|| format!("cannot keep the old directory as {}", backup.display()))?;
        // Write-then-rename: the broker never reads a half-written directory.
        let tmp = dir_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&rewritten)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, dir_path)
            .with_context(|| format!("cannot replace {}", dir_path.display()))?;
        // Forget the removed memberships: one added back later starts young.
        let kept: BTreeSet<(String, String)> = directory
            .memberships()
            .difference(&remove)
            .cloned()
            .collect();
        audit.observe_memberships(tracking, &kept, credwarden_core::clock::now_millis())?;
        writeln!(
            out,
            "directory rewritten; the previous one is {}",
            backup.display()
        )?;
    }
    Ok(())
}
