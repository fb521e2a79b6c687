//! `credwarden shrink per-user ROLE`: one role per person who used a shared role, each fitted
//! to what that person did and bound to them (`sts:SourceIdentity`); `--apply` creates them,
//! `--undo` deletes what `--apply` created; the broker configuration that grants each person
//! their own role is printed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use shrink::people::{Created, Proposal, Undone};
use shrink::PlanOptions;

use crate::inventory::{InventoryArgs, Reach};
use crate::shrink_cmd::UsageWindow;

#[derive(clap::Args, Debug)]
pub struct PerUserArgs {
    /// The shared role to split (name or ARN).
    pub role: String,
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// CloudTrail files or folders covering the window (required unless --undo).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub cloudtrail: Vec<PathBuf>,
    #[arg(long, default_value_t = 90)]
    pub window_days: i64,
    /// End of the window (RFC 3339); default: the newest event in the CloudTrail.
    #[arg(long)]
    pub now: Option<String>,
    /// Write one JSON file per proposed role here (RoleName, AssumeRolePolicyDocument, PolicyDocument).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// The principal allowed to assume each person's role (the broker's role ARN) [default:
    /// the AWS principals the shared role's trust names].
    #[arg(long, value_name = "ARN")]
    pub broker_principal: Option<String>,
    /// Create the roles through IAM, in the shared role's account (recorded in --state). A
    /// role of the same name with other content is refused, never overwritten.
    #[arg(long, requires = "state", conflicts_with = "undo")]
    pub apply: bool,
    /// Delete the roles --apply created from ROLE: only those, and only while unchanged.
    #[arg(long, requires = "state")]
    pub undo: bool,
    /// The state file recording the roles --apply created.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

/// The session of the account `arn` is in.
fn session_for<'a>(reach: &'a Reach, arn: &str) -> Result<&'a aws::Session> {
    let account = credwarden_core::account::arn_account(arn)
        .with_context(|| format!("{arn} is not a role ARN"))?;
    for t in &reach.targets {
        if t.account_id()? == account {
            return Ok(&t.session);
        }
    }
    match reach.failed.iter().find(|(label, _)| label.starts_with(account)) {
        Some((label, why)) => bail!("account {label} could not be reached: {why}"),
        None => bail!("account {account} (of {arn}) is not among the accounts reached: give it with --accounts and --assume-role-name"),
    }
}

fn toml_string(s: &str) -> String {
    // A JSON string is a TOML basic string: the same quotes and escapes.
    serde_json::to_string(s).expect("a string serialises")
}

/// `shrink per-user ROLE`.
pub fn per_user(args: &PerUserArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    if args.undo {
        return undo(args, out);
    }
    if args.cloudtrail.is_empty() {
        bail!(
            "--cloudtrail is required: it shows what each person did with {}",
            args.role
        );
    }
    let inv = args.inventory.load(err)?;
    let window = UsageWindow {
        cloudtrail: args.cloudtrail.clone(),
        window_days: args.window_days,
        now: args.now.clone(),
    };
    let (usage, now_ms) = window.scan()?;
    let opts = PlanOptions {
        window_days: args.window_days,
        now_ms,
        opt_out_tag: String::new(),
        never_touch: Vec::new(),
        // One role per person keeps what each person used; it removes nothing by silence.
        allow_partial_cloudtrail: true,
        trails: Default::default(),
        grace_days: 0,
    };
    let proposal = shrink::people::propose(
        &inv,
        &usage,
        &args.role,
        &opts,
        args.broker_principal.as_deref(),
    )?;
    if proposal.roles.is_empty() {
        writeln!(err, "nobody used {} in the window (sessions are told apart by source identity, else session name)", args.role)?;
        return Ok(());
    }
    for note in &proposal.notes {
        writeln!(
            err,
            "trust of {}: not carried over: {note}",
            proposal.shared_role
        )?;
    }
    for p in &proposal.roles {
        writeln!(
            out,
            "{}: {} action(s) used → proposed role {}, assumable only by sessions with source identity {}",
            p.person,
            p.used.len(),
            p.name,
            p.source_identity
        )?;
        if !p.seen_with_source_identity {
            writeln!(
                err,
                "{}: seen by session name only; the new role admits only sessions that set source identity {} (the broker's do)",
                p.person, p.source_identity
            )?;
        }
        if let Some(dir) = &args.output_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let doc = serde_json::json!({"RoleName": p.name, "SourceIdentity": p.source_identity, "AssumeRolePolicyDocument": p.trust, "PolicyDocument": p.policy, "UsedActions": p.used});
            let path = dir.join(format!("{}.json", p.name));
            std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let mut refused = 0;
    if args.apply {
        let state = args.state.as_ref().expect("clap requires --state");
        let store = store::Store::open(state)?;
        let reach = args.inventory.members.reach(&args.inventory.aws, &[])?;
        let session = session_for(&reach, &proposal.shared_arn)?;
        for (name, outcome) in shrink::people::create(session, &store, &proposal, now_ms)? {
            match outcome {
                Created::Created { arn } => writeln!(
                    out,
                    "created {arn} (undo: credwarden shrink per-user {} --undo --state {})",
                    proposal.shared_arn,
                    state.display()
                )?,
                Created::AlreadyThere { arn, ours } => writeln!(
                    out,
                    "{arn}: already there as proposed{}",
                    if ours {
                        ""
                    } else {
                        " (not created by this state file: --undo leaves it)"
                    }
                )?,
                Created::Refused { reason } => {
                    refused += 1;
                    writeln!(out, "{name}: {reason}")?
                }
                Created::NothingToGrant => writeln!(
                    out,
                    "{name}: the person used nothing {} grants; no role created",
                    proposal.shared_role
                )?,
            }
        }
    }
    print_broker_config(&proposal, out)?;
    if refused > 0 {
        bail!("{refused} role(s) not created: a role of the same name holds something else");
    }
    Ok(())
}

/// The broker's `[[roles]]` grants of each person's role to a group of its own, and the
/// directory entries that put each person in it.
fn print_broker_config(proposal: &Proposal, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "\n# Broker configuration: each person's own role, through a group only they are in."
    )?;
    for p in proposal.roles.iter().filter(|p| p.policy.is_some()) {
        let group = format!("per-user:{}", p.name);
        writeln!(out, "[[roles]]")?;
        writeln!(
            out,
            "arn = {}",
            toml_string(&shrink::people::role_arn_beside(
                &proposal.shared_arn,
                &p.name
            ))
        )?;
        writeln!(out, "groups = [{}]", toml_string(&group))?;
        match broker::service::sts_name_user(&p.source_identity) {
            Some(user) => writeln!(
                out,
                "# directory: add {} to the groups of {}; remove them from {}'s group once they use it",
                serde_json::to_string(&group)?,
                serde_json::to_string(&user)?,
                proposal.shared_role
            )?,
            None => writeln!(
                out,
                "# {} is no name the broker gives a user: put the person who had it in {} by hand",
                p.source_identity,
                serde_json::to_string(&group)?
            )?,
        }
    }
    Ok(())
}

/// `--undo`: delete the roles `--apply` created from the shared role, each only unchanged.
fn undo(args: &PerUserArgs, out: &mut dyn Write) -> Result<()> {
    let state = args.state.as_ref().expect("clap requires --state");
    let store = store::Store::open(state)?;
    let mut sources: Vec<String> = store
        .created_roles(None)?
        .into_iter()
        .map(|c| c.source_role)
        .filter(|arn| *arn == args.role || arn.rsplit('/').next() == Some(args.role.as_str()))
        .collect();
    sources.sort();
    sources.dedup();
    let shared_arn = match &sources[..] {
        [] => bail!(
            "{} records no role created from {}",
            state.display(),
            args.role
        ),
        [one] => one.clone(),
        many => bail!(
            "{} is the name of several roles with per-user roles ({}): give its ARN",
            args.role,
            many.join(", ")
        ),
    };
    let reach = args.inventory.members.reach(&args.inventory.aws, &[])?;
    let session = session_for(&reach, &shared_arn)?;
    let mut changed = 0;
    for (c, outcome) in shrink::people::undo(session, &store, &shared_arn)? {
        match outcome {
            Undone::Deleted => writeln!(out, "deleted {}", c.arn)?,
            Undone::AlreadyGone => writeln!(out, "{}: already gone", c.arn)?,
            Undone::Changed { what } => {
                changed += 1;
                writeln!(
                    out,
                    "{}: changed since it was created ({what}): left in place",
                    c.arn
                )?
            }
        }
    }
    if changed > 0 {
        bail!("{changed} role(s) not deleted: changed since they were created");
    }
    Ok(())
}
