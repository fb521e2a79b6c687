//! Applying a plan and rolling it back.
//!
//! Before a role is changed its current policies are read from IAM and compared with the
//! plan's "before": a role that changed since the plan is skipped (the plan no longer
//! describes it). The current state is then recorded in the store — that record is what a
//! rollback restores — and only then are policies written, deleted and detached.
//!
//! A plan is a judgement about its window. Between planning and applying a role may start
//! using what the plan removes (a new release, a quarterly job), so apply re-checks: the
//! CloudTrail since the plan's window end is scanned, and a role that used a removed action
//! (or, going to zero, had a session) since is left as it is. Without that CloudTrail apply
//! refuses a plan whose window ended longer ago than the caller allows.

use aws::Session;
use serde::Serialize;
use store::Store;

use credwarden_core::EventTime;

use crate::plan::{Plan, PolicyState, RolePlan, Verdict};
use crate::usage::{role_key, Usage};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("role {0} has no recorded policy version {1}")]
    NoVersion(String, String),
    #[error("recorded snapshot for {role} is unreadable: {source}")]
    Snapshot {
        role: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("this plan was announced for {0}; it may not be applied before then")]
    NotYetDue(String),
    #[error("the plan's not_before {0:?} is not a date")]
    BadNotBefore(String),
    #[error("{0}: no recorded history; `credwarden shrink history` lists what is recorded")]
    NoHistory(String),
    #[error("{role} names roles in several accounts; give the role ARN: {}", arns.join(", "))]
    Ambiguous { role: String, arns: Vec<String> },
    #[error("{0}: its account is not one this command reached (--accounts, --assume-role-name)")]
    NotReached(String),
    #[error("managed policy {0}: {1}; the role is left as it was")]
    Conflict(String, String),
    #[error("schedule {id} was cancelled at {at}: {reason}; its plan is not applied")]
    Cancelled {
        id: String,
        at: String,
        reason: String,
    },
    #[error("the plan was announced as schedule {0}, which this state file does not record: give the --state it was scheduled with")]
    UnknownSchedule(String),
    #[error("the plan's window_end {0:?} is not a date")]
    BadWindowEnd(String),
    #[error(
        "nothing shows what was used since the plan's window ended ({window_end}); use is \
         checked up to {checked_until}, {hours} hour(s) ago, more than the {max_hours} allowed: \
         give the CloudTrail since then with --cloudtrail, or make a new plan"
    )]
    Unchecked {
        window_end: String,
        checked_until: String,
        hours: i64,
        max_hours: i64,
    },
    #[error(
        "the CloudTrail given to re-check the plan starts at {oldest}, after the plan's window \
         end {window_end}: use in between would go unseen; include the CloudTrail from before \
         {window_end}"
    )]
    RecheckGap { oldest: String, window_end: String },
    #[error(
        "the CloudTrail given to re-check the plan had {0} input error(s): what was not read \
         cannot show use; fix the input or make a new plan"
    )]
    RecheckInput(u64),
}

/// What apply re-checks a plan against: the CloudTrail since the plan (if given) and how
/// long use may go unchecked.
pub struct Recheck<'a> {
    /// CloudTrail reaching back to the plan's window end, or `None`.
    pub since_plan: Option<&'a Usage>,
    /// The longest time between the last checked use and now (ms).
    pub max_unchecked_ms: i64,
}

impl Recheck<'_> {
    /// Whether the plan may still be applied at `now`: use must be known up to no longer than
    /// `max_unchecked_ms` ago, from a CloudTrail that leaves no gap after the window.
    fn admit(&self, plan: &Plan, now: EventTime) -> Result<i64, ApplyError> {
        let window_end = iam::condition::parse_date(&plan.window_end)
            .ok_or_else(|| ApplyError::BadWindowEnd(plan.window_end.clone()))?;
        let checked_until = match self.since_plan {
            None => window_end,
            Some(u) => {
                if u.input_errors > 0 {
                    return Err(ApplyError::RecheckInput(u.input_errors));
                }
                match u.oldest_ms {
                    Some(oldest) if oldest <= window_end => {}
                    Some(oldest) => {
                        return Err(ApplyError::RecheckGap {
                            oldest: EventTime(oldest).to_string(),
                            window_end: plan.window_end.clone(),
                        })
                    }
                    None => {
                        return Err(ApplyError::RecheckGap {
                            oldest: "nowhere (no records)".into(),
                            window_end: plan.window_end.clone(),
                        })
                    }
                }
                u.newest_ms.unwrap_or(window_end).max(window_end)
            }
        };
        let unchecked = now.millis() - checked_until;
        if unchecked > self.max_unchecked_ms {
            return Err(ApplyError::Unchecked {
                window_end: plan.window_end.clone(),
                checked_until: EventTime(checked_until).to_string(),
                hours: unchecked / 3_600_000,
                max_hours: self.max_unchecked_ms / 3_600_000,
            });
        }
        Ok(window_end)
    }

    /// Why `r` must not be applied: use since the plan that the plan would take away.
    fn used_since(&self, r: &RolePlan, window_end: i64) -> Option<String> {
        let usage = self.since_plan?;
        let key = role_key(&r.arn);
        if r.verdict == Verdict::ToZero {
            if let Some(t) = usage.sessions.get(&key).filter(|t| **t > window_end) {
                return Some(format!(
                    "a session of it was issued or used at {} (after the plan's window)",
                    EventTime(*t)
                ));
            }
        }
        let used = usage.used.get(&key)?;
        let back: Vec<String> = r
            .removed
            .iter()
            .filter_map(|a| used.get(a).map(|t| format!("{a} at {}", EventTime(*t))))
            .collect();
        (!back.is_empty()).then(|| format!("it used {} since", back.join(", ")))
    }
}

/// The sessions a plan is applied through, one per account: each role is written in the
/// account its ARN names, never in whichever account the credentials happen to be.
pub struct AccountSessions<'a> {
    by_account: Vec<(String, &'a Session)>,
}

impl<'a> AccountSessions<'a> {
    /// `(account id, session in that account)` pairs.
    pub fn new(by_account: Vec<(String, &'a Session)>) -> AccountSessions<'a> {
        AccountSessions { by_account }
    }

    /// The session of the account `role_arn` is in.
    pub fn for_role(&self, role_arn: &str) -> Option<&'a Session> {
        let account = credwarden_core::account::arn_account(role_arn)?;
        self.by_account
            .iter()
            .find(|(a, _)| a == account)
            .map(|(_, s)| *s)
    }

    /// The single session, for history recorded before roles were keyed by ARN (a name
    /// only: it can be in the credentials' own account alone).
    fn only(&self) -> Option<&'a Session> {
        match &self.by_account[..] {
            [(_, s)] => Some(*s),
            _ => None,
        }
    }
}

/// The history key a role argument means: an ARN as it is; a name the one recorded role of
/// that name (by ARN, or a bare name recorded by earlier versions).
pub fn history_key(store: &Store, role: &str) -> Result<String, ApplyError> {
    if role.starts_with("arn:") {
        return Ok(role.to_owned());
    }
    let found: Vec<String> = store
        .history_roles()?
        .into_iter()
        .filter(|k| k == role || (k.starts_with("arn:") && k.rsplit('/').next() == Some(role)))
        .collect();
    match &found[..] {
        [] => Err(ApplyError::NoHistory(role.to_owned())),
        [one] => Ok(one.clone()),
        _ => Err(ApplyError::Ambiguous {
            role: role.to_owned(),
            arns: found,
        }),
    }
}

/// What happened to one role.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub role: String,
    /// The role's ARN (what `rollback` takes when a name is in several accounts).
    pub arn: String,
    pub outcome: String,
    pub version: Option<i64>,
}

fn current(session: &Session, role: &str) -> Result<PolicyState, ApplyError> {
    let (inline, attached) = session.role_state(role)?;
    Ok(PolicyState::from_live(&inline, &attached))
}

/// Move a role from its live state to `target`.
fn converge(
    session: &Session,
    role: &str,
    live: &PolicyState,
    target: &PolicyState,
) -> Result<(), ApplyError> {
    // Policies the plan creates exist before the role changes at all: a refusal here leaves
    // the role as it was.
    for arn in target
        .attached
        .iter()
        .filter(|a| !live.attached.contains(a))
    {
        if let Some(text) = target.created_text(arn) {
            create_managed(session, arn, &text)?;
        }
    }
    for (name, doc) in &target.inline {
        let same_text = match (live.inline_text.get(name), target.inline_text.get(name)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        if live.inline.get(name) != Some(doc) || !same_text {
            let text = target
                .document_text(name)
                .expect("the target holds this document");
            session.put_role_policy(role, name, &text)?;
        }
    }
    for arn in target
        .attached
        .iter()
        .filter(|a| !live.attached.contains(a))
    {
        session.attach_role_policy(role, arn)?;
    }
    for name in live
        .inline
        .keys()
        .filter(|n| !target.inline.contains_key(*n))
    {
        session.delete_role_policy(role, name)?;
    }
    for arn in live
        .attached
        .iter()
        .filter(|a| !target.attached.contains(a))
    {
        session.detach_role_policy(role, arn)?;
        // A policy a plan created goes with its last attachment: a rollback leaves nothing
        // of the shrink behind. Another entity still attached keeps it.
        if crate::split::is_created(arn) {
            if let Some(p) = session.managed_policy(arn)? {
                if p.attachments == 0 {
                    session.delete_policy(arn)?;
                }
            }
        }
    }
    Ok(())
}

/// Create the managed policy `arn` a plan holds (name and path from its ARN). One left by an
/// earlier apply with the same document is used as it is; with another document it is
/// refused: it is not credwarden's to overwrite.
fn create_managed(session: &Session, arn: &str, text: &str) -> Result<(), ApplyError> {
    let (path, name) = arn
        .split_once(":policy")
        .and_then(|(_, p)| p.rsplit_once('/'))
        .map(|(path, name)| (format!("{path}/"), name))
        .ok_or_else(|| ApplyError::Conflict(arn.to_owned(), "not a policy ARN".into()))?;
    if let Some(existing) = session.managed_policy(arn)? {
        let same = iam::Policy::parse(&existing.document)
            .ok()
            .zip(iam::Policy::parse(text).ok())
            .is_some_and(|(a, b)| a == b);
        if same {
            return Ok(());
        }
        return Err(ApplyError::Conflict(
            arn.to_owned(),
            "it exists with another document".into(),
        ));
    }
    let created = session.create_policy(&path, name, text)?;
    if created != arn {
        return Err(ApplyError::Conflict(
            arn.to_owned(),
            format!("IAM created {created} instead"),
        ));
    }
    Ok(())
}

/// Apply a plan at `now`: refused before the date a schedule announced (`not_before`), so the
/// notice's promise holds whoever applies it. See [`apply`].
pub fn apply_plan(
    sessions: &AccountSessions,
    store: &Store,
    plan: &Plan,
    opt_out_tag: &str,
    now: EventTime,
    recheck: &Recheck,
) -> Result<Vec<Applied>, ApplyError> {
    if let Some(not_before) = &plan.not_before {
        let at = iam::condition::parse_date(not_before)
            .ok_or_else(|| ApplyError::BadNotBefore(not_before.clone()))?;
        if now.millis() < at {
            return Err(ApplyError::NotYetDue(not_before.clone()));
        }
    }
    if let Some(id) = &plan.schedule_id {
        let recorded = store.schedule(id)?;
        let Some(schedule) = recorded.iter().find(|s| &s.id == id) else {
            return Err(ApplyError::UnknownSchedule(id.clone()));
        };
        if let Some(at) = schedule.cancelled_ms {
            return Err(ApplyError::Cancelled {
                id: id.clone(),
                at: EventTime(at).to_string(),
                reason: schedule.cancel_reason.clone().unwrap_or_default(),
            });
        }
    }
    let window_end = recheck.admit(plan, now)?;
    let applied = apply(sessions, store, &plan.roles, opt_out_tag, |r| {
        recheck.used_since(r, window_end)
    })?;
    // Applied once a role was changed: a run that skipped every role leaves it pending.
    if let (Some(id), true) = (
        &plan.schedule_id,
        applied.iter().any(|a| a.version.is_some()),
    ) {
        store.schedule_applied(id, now.millis())?;
    }
    Ok(applied)
}

/// Apply every shrinking role plan (through [`apply_plan`], which checks the date). A role
/// tagged `opt_out_tag` = never/false/off/no since the
/// plan was made is left alone: that tag is the remedy the schedule notice offers its owners.
fn apply(
    sessions: &AccountSessions,
    store: &Store,
    roles: &[RolePlan],
    opt_out_tag: &str,
    used_since: impl Fn(&RolePlan) -> Option<String>,
) -> Result<Vec<Applied>, ApplyError> {
    let mut out = Vec::new();
    for r in roles {
        if !matches!(r.verdict, Verdict::Shrink | Verdict::ToZero) {
            continue;
        }
        if let Some(why) = used_since(r) {
            out.push(Applied {
                role: r.role.clone(),
                arn: r.arn.clone(),
                outcome: format!("skipped: {why}; make a new plan"),
                version: None,
            });
            continue;
        }
        let Some(session) = sessions.for_role(&r.arn) else {
            out.push(Applied {
                role: r.role.clone(),
                arn: r.arn.clone(),
                outcome: "skipped: its account was not reached (--accounts, --assume-role-name)"
                    .into(),
                version: None,
            });
            continue;
        };
        let tags = session.role_tags(&r.role)?;
        if tags.get(opt_out_tag).is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "never" | "false" | "off" | "no"
            )
        }) {
            out.push(Applied {
                role: r.role.clone(),
                arn: r.arn.clone(),
                outcome: format!("skipped: opted out with tag {opt_out_tag}"),
                version: None,
            });
            continue;
        }
        let live = current(session, &r.role)?;
        if live != r.before {
            out.push(Applied {
                role: r.role.clone(),
                arn: r.arn.clone(),
                outcome: "skipped: its policies changed since the plan was made".into(),
                version: None,
            });
            continue;
        }
        let snapshot = serde_json::to_string(&live).expect("state serialises");
        // Keyed by ARN: the same role name in two accounts is two histories.
        let version =
            store.history_record(&r.arn, &format!("before shrink: {}", r.reason), &snapshot)?;
        converge(session, &r.role, &live, &r.after)?;
        out.push(Applied {
            role: r.role.clone(),
            arn: r.arn.clone(),
            outcome: format!("applied ({} permission(s) removed)", r.removed.len()),
            version: Some(version),
        });
    }
    Ok(out)
}

/// Restore a role's recorded policies (`role`: its ARN, or a name recorded once): the
/// state before the last shrink, or `version`.
pub fn rollback(
    sessions: &AccountSessions,
    store: &Store,
    role: &str,
    version: Option<i64>,
) -> Result<Applied, ApplyError> {
    let key = history_key(store, role)?;
    let session = if key.starts_with("arn:") {
        sessions.for_role(&key)
    } else {
        sessions.only()
    }
    .ok_or_else(|| ApplyError::NotReached(key.clone()))?;
    let role = key.as_str();
    let name = role.rsplit('/').next().unwrap_or(role);
    let history = store.history(role)?;
    let (v, _, _, snapshot) = match version {
        Some(v) => history
            .into_iter()
            .find(|h| h.0 == v)
            .ok_or_else(|| ApplyError::NoVersion(role.into(), v.to_string()))?,
        // By default the state before the last shrink: a retried rollback must not restore
        // the "before rollback" record (the shrunk state) it wrote itself.
        None => history
            .into_iter()
            .find(|h| h.2.starts_with("before shrink"))
            .ok_or_else(|| ApplyError::NoVersion(role.into(), "(before shrink)".into()))?,
    };
    let target: PolicyState =
        serde_json::from_str(&snapshot).map_err(|source| ApplyError::Snapshot {
            role: role.into(),
            source,
        })?;
    let live = current(session, name)?;
    // The state being replaced is recorded too: a rollback can itself be rolled back.
    store.history_record(
        role,
        &format!("before rollback to version {v}"),
        &serde_json::to_string(&live).expect("state serialises"),
    )?;
    converge(session, name, &live, &target)?;
    Ok(Applied {
        role: name.into(),
        arn: role.into(),
        outcome: format!("restored version {v}"),
        version: Some(v),
    })
}
