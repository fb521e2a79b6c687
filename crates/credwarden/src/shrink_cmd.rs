//! `credwarden shrink plan | apply | rollback | history`: right-sizing from observed use.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use shrink::{AccessAdvisor, Plan, PlanOptions, Usage, Verdict};

use crate::inventory::{AwsArgs, InventoryArgs, MemberArgs, Reach, Target};

/// The CloudTrail that shows use, and the window it is judged over.
#[derive(clap::Args, Debug)]
pub struct UsageWindow {
    /// CloudTrail files or folders (any input form `detect` reads) covering the window.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    pub cloudtrail: Vec<PathBuf>,
    #[arg(long, default_value_t = 90)]
    pub window_days: i64,
    /// End of the window (RFC 3339); default: the newest event in the CloudTrail.
    #[arg(long)]
    pub now: Option<String>,
}

impl UsageWindow {
    /// Scan the CloudTrail; the window's end.
    pub(crate) fn scan(&self) -> Result<(Usage, i64)> {
        let usage = Usage::scan(&self.cloudtrail)?;
        let now_ms = match (&self.now, usage.newest_ms) {
            (None, None) => {
                bail!("the CloudTrail holds no records: nothing shows what was used (give --now)")
            }
            (arg, newest) => now_arg(arg, newest)?,
        };
        Ok((usage, now_ms))
    }
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    #[command(flatten)]
    pub window: UsageWindow,
    /// Access Advisor per role: ROLE=FILE with `aws iam get-service-last-accessed-details`
    /// output. With --live every other role's report is generated through the IAM API.
    #[arg(long, value_name = "ROLE=FILE")]
    pub access_advisor: Vec<String>,
    /// With --live: do not generate Access Advisor reports through the IAM API.
    #[arg(long)]
    pub no_access_advisor: bool,
    /// Roles (names or ARNs) never touched.
    #[arg(long, value_name = "ROLE")]
    pub never_touch: Vec<String>,
    /// Roles with this tag set to never/false/off are not touched.
    #[arg(long, default_value = "credwarden:shrink")]
    pub opt_out_tag: String,
    /// Write the plan (JSON) here, for `shrink apply`.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Plan even if the CloudTrail does not span the window or had input errors (what was not
    /// read cannot show use; prefer fixing the input).
    #[arg(long)]
    pub allow_partial_cloudtrail: bool,
    /// The trails' configuration, AWS CLI JSON: `cloudtrail describe-trails` and
    /// `get-event-selectors` outputs. What proves that a call the role did not make would
    /// have been recorded.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub trail_config: Vec<PathBuf>,
    /// `cloudtrail get-trail-status` output of a trail: TRAIL=FILE (its name or ARN).
    #[arg(long, value_name = "TRAIL=FILE")]
    pub trail_status: Vec<String>,
    /// Permissions granted within this many days of the window's end are not removed.
    #[arg(long, default_value_t = 7)]
    pub grace_days: i64,
    /// With --live: do not read the trails' configuration through the CloudTrail API
    /// (--trail-config files are used instead when given).
    #[arg(long)]
    pub no_live_trails: bool,
}

/// The trails' configuration: `--trail-config` and `--trail-status` files, else with `--live`
/// read through the CloudTrail API of every reached account (a refusal is reported, and the
/// plan goes on without the proof it would have given).
fn trail_config(
    args: &PlanArgs,
    reach: Option<&Reach>,
    err: &mut dyn Write,
) -> Result<shrink::trail::TrailConfig> {
    let mut trails = shrink::trail::TrailConfig::default();
    for path in &args.trail_config {
        trails.add_file(path)?;
    }
    for spec in &args.trail_status {
        let (trail, file) = spec
            .split_once('=')
            .with_context(|| format!("--trail-status {spec:?} is not TRAIL=FILE"))?;
        trails.add_status_file(trail, std::path::Path::new(file))?;
    }
    if let (Some(reach), true) = (reach, args.trail_config.is_empty() && !args.no_live_trails) {
        for target in &reach.targets {
            let live = match target.session.trails() {
                Ok(live) => live,
                Err(e) => {
                    writeln!(
                        err,
                        "warning: account {}: trails not read ({e}); planning without their proof",
                        target.label
                    )?;
                    continue;
                }
            };
            let origin = format!("account {}: DescribeTrails", target.label);
            trails.add_value(&origin, &live.describe)?;
            for sel in &live.selectors {
                trails.add_value(&format!("account {}: GetEventSelectors", target.label), sel)?;
            }
            for (arn, status) in &live.status {
                trails.add_status(
                    &format!("account {}: GetTrailStatus", target.label),
                    arn,
                    status,
                )?;
            }
            for (arn, why) in &live.unread {
                writeln!(
                    err,
                    "warning: trail {arn}: {why}; it proves nothing in this plan"
                )?;
            }
        }
    }
    if trails.is_empty() {
        writeln!(
            err,
            "warning: no trail configuration (--trail-config, or --live): an action the role did \
             not call counts as unused only where Access Advisor or others' calls in the \
             CloudTrail show it is recorded"
        )?;
    }
    for line in trails.summary() {
        writeln!(err, "trail: {line}")?;
    }
    Ok(trails)
}

pub fn plan(args: &PlanArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<Plan> {
    let (inv, reach) = args.inventory.load_reached(err)?;
    if !inv.has_iam {
        bail!("right-sizing needs IAM inventory: get-account-authorization-details output (--inventory) or --live");
    }
    let (usage, now_ms) = args.window.scan()?;
    writeln!(
        err,
        "cloudtrail: {} records, {} input error(s), {} principal(s), {} service(s) seen, {} \
         role session(s), {} grant(s), {} trail change(s)",
        usage.records,
        usage.input_errors,
        usage.used.len(),
        usage
            .actions_seen
            .iter()
            .filter_map(|(_, a)| a.split_once(':').map(|(prefix, _)| prefix))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        usage.sessions.len(),
        usage.grants.len(),
        usage.trail_changes.len()
    )?;
    if !usage.unknown_events.is_empty() {
        writeln!(
            err,
            "warning: {} event name(s) could not be mapped to IAM actions (kept as unknown): {}",
            usage.unknown_events.len(),
            usage
                .unknown_events
                .keys()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    let advisors = access_advisors(args, &inv, reach.as_ref(), now_ms, err)?;
    let window_days = args.window.window_days;
    let opts = PlanOptions {
        window_days,
        now_ms,
        opt_out_tag: args.opt_out_tag.clone(),
        never_touch: args.never_touch.clone(),
        allow_partial_cloudtrail: args.allow_partial_cloudtrail,
        trails: trail_config(args, reach.as_ref(), err)?,
        grace_days: args.grace_days.max(0),
    };
    let plan = shrink::plan(&inv, &usage, &advisors, &opts)?;
    writeln!(
        out,
        "right-sizing plan: {}-day window ending {}; catalogue {}",
        plan.window_days, plan.window_end, plan.catalogue
    )?;
    for r in &plan.roles {
        let verdict = match r.verdict {
            Verdict::Shrink => "shrink",
            Verdict::ToZero => "to zero",
            Verdict::Unchanged => "unchanged",
            Verdict::Skipped => "skipped",
        };
        writeln!(out, "\n== {} ({verdict}): {}", r.role, r.reason)?;
        if matches!(r.verdict, Verdict::Shrink | Verdict::ToZero) {
            write!(
                out,
                "{}",
                prevent::diff::line_diff(&r.before.render(), &r.after.render())
            )?;
        }
        let mut by_proof: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (action, proof) in &r.proofs {
            by_proof.entry(proof).or_default().push(action);
        }
        for (proof, actions) in by_proof {
            let shown: Vec<&str> = actions.iter().take(4).copied().collect();
            writeln!(
                out,
                "   removed {} ({}{}): {proof}",
                actions.len(),
                shown.join(", "),
                if actions.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            )?;
        }
        if !r.kept_unknown.is_empty() {
            writeln!(
                out,
                "   kept without proof of use: {}",
                r.kept_unknown
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
    }
    if let Some(path) = &args.output {
        std::fs::write(path, serde_json::to_string_pretty(&plan)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(err, "plan written to {}", path.display())?;
    }
    Ok(plan)
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The plan written by `shrink plan --output`.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// The state file that records every role's previous policies (for rollback).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// The current time for the announcement check (RFC 3339; default: now).
    #[arg(long)]
    pub now: Option<String>,
    /// Roles tagged with this (never/false/off) are left alone, even if the plan includes them.
    #[arg(long, default_value = "credwarden:shrink")]
    pub opt_out_tag: String,
    /// CloudTrail since the plan's window end (from before it on): a role that used a
    /// removed permission since, or had a session when going to zero, is left alone.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub cloudtrail: Vec<PathBuf>,
    /// Refuse the plan when use is unchecked for longer than this: from the plan's window
    /// end (or the newest --cloudtrail record) to now.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub max_unchecked_hours: i64,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub members: MemberArgs,
}

fn read_plan(path: &std::path::Path) -> Result<Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a credwarden plan", path.display()))
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub action: Option<ScheduleAction>,
    /// The plan written by `shrink plan --output`.
    #[arg(long, value_name = "FILE", required = true)]
    pub plan: Option<PathBuf>,
    /// Days of notice before the plan may be applied.
    #[arg(long, default_value_t = 7)]
    pub days: i64,
    /// Write the announced plan here (what `shrink apply` will accept from the date on).
    #[arg(long, short, value_name = "FILE", required = true)]
    pub output: Option<PathBuf>,
    /// Where the notices go besides stdout: a findings file, a spooled webhook; and `--state`,
    /// the state file the schedule is recorded in (what `schedule list` and `cancel` read and
    /// `shrink apply` checks: give apply the same file). Required.
    #[command(flatten)]
    pub delivery: crate::delivery_args::DeliveryArgs,
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum ScheduleAction {
    /// The announced plans: pending, due, applied or cancelled.
    List {
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        #[arg(long)]
        now: Option<String>,
    },
    /// Withdraw an announced plan: `shrink apply` refuses it from now on.
    Cancel {
        /// The schedule id (or a unique prefix of it, at least 6 characters).
        id: String,
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// Why (kept with the schedule and shown by `list`).
        #[arg(long, default_value = "cancelled")]
        reason: String,
        #[arg(long)]
        now: Option<String>,
    },
}

/// `shrink schedule`: announce the plan (one finding per affected role on stdout), record the
/// schedule and write the plan with the date from which it may be applied; or list / cancel.
pub fn schedule(args: &ScheduleArgs, out: &mut dyn Write) -> Result<()> {
    match &args.action {
        Some(ScheduleAction::List { state, now }) => return schedule_list(state, now, out),
        Some(ScheduleAction::Cancel {
            id,
            state,
            reason,
            now,
        }) => return schedule_cancel(id, state, reason, now, out),
        None => {}
    }
    let delivery_config = args.delivery.config(false)?;
    let (Some(plan_path), Some(output)) = (&args.plan, &args.output) else {
        bail!("shrink schedule needs --plan and --output");
    };
    let Some(state) = &args.delivery.state else {
        bail!(
            "shrink schedule needs --state: the schedule is recorded there, for `schedule list`, \
             `schedule cancel` and `shrink apply`"
        );
    };
    let mut plan = read_plan(plan_path)?;
    if plan.not_before.is_some() {
        bail!(
            "{} is already announced (not before {}): schedule the plan `shrink plan` wrote",
            plan_path.display(),
            plan.not_before.as_deref().unwrap_or_default()
        );
    }
    let now = now_arg(&args.now, None)?;
    let store = store::Store::open(state)?;
    let notices = shrink::schedule(&mut plan, now, args.days.max(0));
    let id = plan.schedule_id.clone().expect("schedule sets the id");
    // Recorded before anything is announced: a notice never names a schedule that cannot be
    // listed or cancelled.
    store.schedule_record(&store::Schedule {
        id: id.clone(),
        announced_ms: now,
        not_before: plan.not_before.clone().unwrap_or_default(),
        window_end: plan.window_end.clone(),
        roles: plan
            .roles
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Shrink | Verdict::ToZero))
            .map(|r| r.arn.clone())
            .collect(),
        plan_file: output.display().to_string(),
        cancelled_ms: None,
        cancel_reason: None,
        applied_ms: None,
    })?;
    std::fs::write(output, serde_json::to_string_pretty(&plan)?)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let delivery = sink::FindingDelivery::open(&delivery_config)?;
    for n in &notices {
        writeln!(out, "{}", serde_json::to_string(n)?)?;
        delivery.deliver(n)?;
    }
    args.delivery.finish(&delivery)?;
    eprintln!(
        "schedule {id}: {} role(s), not before {}; `credwarden shrink schedule cancel {} --state {}` withdraws it",
        notices.len(),
        plan.not_before.as_deref().unwrap_or_default(),
        &id[..12],
        state.display()
    );
    Ok(())
}

fn schedule_list(state: &std::path::Path, now: &Option<String>, out: &mut dyn Write) -> Result<()> {
    let store = store::Store::open(state)?;
    let now = now_arg(now, None)?;
    writeln!(out, "ID	ANNOUNCED	NOT BEFORE	ROLES	STATUS	PLAN")?;
    for s in store.schedules()? {
        let status = match (s.cancelled_ms, s.applied_ms) {
            (Some(at), _) => format!(
                "cancelled {} ({})",
                cloudtrail::EventTime(at),
                s.cancel_reason.as_deref().unwrap_or_default()
            ),
            (None, Some(at)) => format!("applied {}", cloudtrail::EventTime(at)),
            (None, None) => match iam::condition::parse_date(&s.not_before) {
                Some(t) if t <= now => "due".to_owned(),
                _ => "pending".to_owned(),
            },
        };
        writeln!(
            out,
            "{}	{}	{}	{}	{status}	{}",
            &s.id[..12.min(s.id.len())],
            cloudtrail::EventTime(s.announced_ms),
            s.not_before,
            s.roles.len(),
            s.plan_file
        )?;
    }
    Ok(())
}

fn schedule_cancel(
    id: &str,
    state: &std::path::Path,
    reason: &str,
    now: &Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    if id.len() < 6 {
        bail!("give at least 6 characters of the schedule id (`shrink schedule list` shows them)");
    }
    if !std::path::Path::new(state).is_file() {
        bail!("{}: no such state file", state.display());
    }
    let store = store::Store::open(state)?;
    let found = store.schedule(id)?;
    let s = match &found[..] {
        [] => bail!("no schedule {id} in {}", state.display()),
        [one] => one,
        many => bail!(
            "{id} names {} schedules; give more of the id: {}",
            many.len(),
            many.iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if let Some(at) = s.applied_ms {
        bail!(
            "schedule {} was applied at {}: cancelling cannot undo it; `credwarden shrink rollback ROLE` restores a role",
            s.id,
            cloudtrail::EventTime(at)
        );
    }
    if !store.schedule_cancel(&s.id, now_arg(now, None)?, reason)? {
        bail!("schedule {} is already cancelled", s.id);
    }
    writeln!(
        out,
        "schedule {} cancelled: `shrink apply` refuses its plan ({} role(s) keep their permissions)",
        s.id,
        s.roles.len()
    )?;
    Ok(())
}

pub fn apply(args: &ApplyArgs, out: &mut dyn Write) -> Result<()> {
    let plan = read_plan(&args.plan)?;
    let now = credwarden_core::EventTime(now_arg(&args.now, None)?);
    let since_plan = if args.cloudtrail.is_empty() {
        None
    } else {
        Some(Usage::scan(&args.cloudtrail)?)
    };
    let recheck = shrink::apply::Recheck {
        since_plan: since_plan.as_ref(),
        max_unchecked_ms: args.max_unchecked_hours.max(0) * 3_600_000,
    };
    let store = store::Store::open(&args.state)?;
    let reach = args.members.reach(&args.aws, &[])?;
    for (label, why) in &reach.failed {
        writeln!(
            out,
            "account {label}: not reached ({why}); its roles are skipped"
        )?;
    }
    let sessions = account_sessions(&reach)?;
    let members = args.members.is_set();
    for a in shrink::apply::apply_plan(&sessions, &store, &plan, &args.opt_out_tag, now, &recheck)?
    {
        // With member accounts a role is named by its ARN: the same name may be in several.
        let role = if members { &a.arn } else { &a.role };
        writeln!(
            out,
            "{role}: {}{}",
            a.outcome,
            a.version
                .map(|v| format!(" (rollback: credwarden shrink rollback {role} --to {v})"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Each reached account's session by account id (the credentials' own account asked of STS).
fn account_sessions(reach: &Reach) -> Result<shrink::apply::AccountSessions<'_>> {
    let mut by_account = Vec::new();
    for t in &reach.targets {
        by_account.push((t.account_id()?, &t.session));
    }
    Ok(shrink::apply::AccountSessions::new(by_account))
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// The role: its ARN, or its name when one account's history holds it.
    pub role: String,
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// The recorded version to restore (default: the newest).
    #[arg(long)]
    pub to: Option<i64>,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub members: MemberArgs,
}

pub fn rollback(args: &RollbackArgs, out: &mut dyn Write) -> Result<()> {
    let store = store::Store::open(&args.state)?;
    let reach = args.members.reach(&args.aws, &[])?;
    let sessions = account_sessions(&reach)?;
    let a = shrink::apply::rollback(&sessions, &store, &args.role, args.to)?;
    writeln!(out, "{}: {}", args.role, a.outcome)?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    pub role: String,
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
}

pub fn history(args: &HistoryArgs, out: &mut dyn Write) -> Result<()> {
    let store = store::Store::open(&args.state)?;
    let key = shrink::apply::history_key(&store, &args.role)?;
    for (version, at, reason, _) in store.history(&key)? {
        writeln!(out, "{version}\t{}\t{reason}", cloudtrail::EventTime(at))?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct KeysAuditArgs {
    /// `aws iam get-credential-report` output: the JSON (Content base64 or decoded) or the CSV itself.
    #[arg(long, value_name = "FILE", conflicts_with = "live")]
    pub credential_report: Option<PathBuf>,
    /// Generate and read the credential report through the IAM API.
    #[arg(long)]
    pub live: bool,
    /// CloudTrail that shows static keys in use (a key used there is not unused).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub cloudtrail: Vec<PathBuf>,
    #[arg(long, default_value_t = 90)]
    pub max_age_days: i64,
    #[arg(long, default_value_t = 90)]
    pub unused_days: i64,
    /// The audit's "now" (RFC 3339); default: the current time.
    #[arg(long)]
    pub now: Option<String>,
    /// Deactivate (never delete) the keys unused for --unused-days; `keys reactivate` undoes it.
    #[arg(long)]
    pub apply: bool,
    /// One JSON object per key instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub members: MemberArgs,
}

fn report_text(path: &std::path::Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !text.trim_start().starts_with('{') {
        return Ok(text);
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let content = v["Content"].as_str().with_context(|| {
        format!(
            "{}: no Content (the report itself); AWS's documented example omits it",
            path.display()
        )
    })?;
    if content.starts_with("user,") {
        return Ok(content.to_owned());
    }
    let bytes = iam::condition::base64_decode(content)
        .with_context(|| format!("{}: Content is neither CSV nor base64", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{}: Content is not text", path.display()))
}

pub fn keys_audit(args: &KeysAuditArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    if args.members.is_set() && !(args.live || args.apply) {
        bail!("--assume-role-name reads member accounts live: add --live");
    }
    let reach = if args.live || args.apply {
        let reach = args.members.reach(&args.aws, &[])?;
        for (label, why) in &reach.failed {
            writeln!(err, "warning: account {label} could not be reached: {why}")?;
        }
        Some(reach)
    } else {
        None
    };
    let usage = if args.cloudtrail.is_empty() {
        Usage::default()
    } else {
        Usage::scan(&args.cloudtrail)?
    };
    let now_ms = now_arg(&args.now, None)?;
    // One credential report per account: the report file, or each reached account's own.
    let reports: Vec<(Option<&Target>, String)> = match (&args.credential_report, &reach) {
        (Some(path), reach) => {
            if reach
                .as_ref()
                .is_some_and(|r| r.targets.len() + r.failed.len() > 1)
            {
                bail!(
                    "a --credential-report file is one account's: give one account with --accounts"
                );
            }
            vec![(
                reach.as_ref().and_then(|r| r.targets.first()),
                report_text(path)?,
            )]
        }
        (None, Some(reach)) if args.live => {
            let mut reports = Vec::new();
            for t in &reach.targets {
                match t.session.credential_report() {
                    Ok(csv) => reports.push((Some(t), csv)),
                    // One refusing account must not hide the others' keys.
                    Err(e) if t.account.is_some() => {
                        writeln!(err, "warning: account {}: {e}", t.label)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            reports
        }
        _ => bail!("give --credential-report FILE or --live"),
    };
    for (target, csv) in &reports {
        let rows = shrink::keys::parse_report(csv)?;
        let findings = shrink::keys::audit(
            &rows,
            &usage.static_key_use,
            now_ms,
            args.max_age_days,
            args.unused_days,
        );
        let prefix = match target {
            Some(t) if t.account.is_some() => format!("{}: ", t.label),
            _ => String::new(),
        };
        writeln!(
            err,
            "{prefix}{} user(s) in the report, {} key finding(s)",
            rows.len(),
            findings.len()
        )?;
        print_key_findings(&findings, &prefix, args.json, out)?;
        if args.apply {
            let session = &target.expect("connected for --apply").session;
            let undo = match (
                target.and_then(|t| t.account.as_deref()),
                &args.members.assume_role_name,
            ) {
                (Some(account), Some(role)) => {
                    format!(" --accounts {account} --assume-role-name {role}")
                }
                _ => String::new(),
            };
            deactivate_unused(session, &findings, (&prefix, &undo), out, err)?;
        }
    }
    Ok(())
}

fn print_key_findings(
    findings: &[shrink::keys::KeyFinding],
    prefix: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    for f in findings {
        if json {
            serde_json::to_writer(&mut *out, f)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{:<8} {prefix}{} key {}: {}{}",
                f.severity,
                f.user,
                f.slot,
                f.problems.join("; "),
                if f.deactivate { " [deactivate]" } else { "" }
            )?;
        }
    }
    Ok(())
}

/// Deactivate (never delete) the keys the audit found unused.
fn deactivate_unused(
    session: &aws::Session,
    findings: &[shrink::keys::KeyFinding],
    (prefix, undo): (&str, &str),
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    for f in findings.iter().filter(|f| f.deactivate) {
        // The report names a slot; the key is the one created (or rotated) when the report
        // says. A key rotated since the report matches nothing and is left alone.
        let keys = session.access_keys(&f.user)?;
        let Some((id, status, _)) = keys
            .iter()
            .find(|(_, _, created)| f.rotated_ms.is_some_and(|r| (created - r).abs() <= 120_000))
        else {
            writeln!(err, "warning: {prefix}{} key {}: no key was created when the report says (rotated since?); left alone", f.user, f.slot)?;
            continue;
        };
        if status != "Active" {
            continue;
        }
        session.set_access_key_status(&f.user, id, false)?;
        // An access key id is an identifier (CloudTrail shows it), not a secret.
        writeln!(
            out,
            "{prefix}deactivated {} key {id} (undo: credwarden keys reactivate {} {id}{undo})",
            f.user, f.user
        )?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct KeysReactivateArgs {
    pub user: String,
    pub access_key_id: String,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub members: MemberArgs,
}

pub fn keys_reactivate(args: &KeysReactivateArgs, out: &mut dyn Write) -> Result<()> {
    let reach = args.members.reach(&args.aws, &[])?;
    let session = match (&reach.targets[..], &reach.failed[..]) {
        ([one], []) => &one.session,
        (_, [(label, why), ..]) => bail!("account {label} could not be reached: {why}"),
        _ => bail!("a key is in one account: give one account with --accounts"),
    };
    session.set_access_key_status(&args.user, &args.access_key_id, true)?;
    writeln!(out, "reactivated {} key {}", args.user, args.access_key_id)?;
    Ok(())
}

pub use crate::access_cmd::{access_prune, AccessPruneArgs};
pub use crate::per_user_cmd::{per_user, PerUserArgs};

/// The `--now` of a command: the given RFC 3339 time, else `default` (e.g. the newest record),
/// else the wall clock.
fn now_arg(arg: &Option<String>, default: Option<i64>) -> Result<i64> {
    match (arg, default) {
        (Some(t), _) => {
            iam::condition::parse_date(t).with_context(|| format!("--now {t:?} is not a date"))
        }
        (None, Some(d)) => Ok(d),
        (None, None) => Ok(credwarden_core::clock::now_millis()),
    }
}

/// A report created this long before the window's end is refused: it cannot show the use
/// made since, and "unused" read from it would remove what is in use (Repokid's lesson).
const ADVISOR_MAX_AGE_MS: i64 = 5 * 86_400_000;

/// The Access Advisor report of each role, keyed as the plan looks them up (role name or
/// ARN): the `--access-advisor` files, and with `--live` (unless `--no-access-advisor`) an
/// action-level report generated through the IAM API of the role's own account for every
/// other role the plan may change. A missing, refused or failed report only means the role
/// is planned without one: it never stands for "unused".
fn access_advisors(
    args: &PlanArgs,
    inv: &aws::Inventory,
    reach: Option<&Reach>,
    now_ms: i64,
    err: &mut dyn Write,
) -> Result<BTreeMap<String, AccessAdvisor>> {
    let mut advisors = BTreeMap::new();
    for spec in &args.access_advisor {
        let (role, file) = spec
            .split_once('=')
            .with_context(|| format!("--access-advisor {spec:?} is not ROLE=FILE"))?;
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{file}: not JSON"))?;
        let a = AccessAdvisor::parse(&v).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        if let Some(a) = admit_advisor(a, file, now_ms, err)? {
            advisors.insert(role.to_owned(), a);
        }
    }
    let Some(reach) = reach.filter(|_| !args.no_access_advisor) else {
        return Ok(advisors);
    };
    // A role is asked of the session of its ARN's account.
    let mut by_account: BTreeMap<String, &Target> = BTreeMap::new();
    for t in &reach.targets {
        let id = match t.account_id() {
            Ok(id) => id,
            Err(e) => {
                writeln!(
                    err,
                    "warning: Access Advisor: {}: {e}; planning without it",
                    t.label
                )?;
                continue;
            }
        };
        by_account.insert(id, t);
    }
    // (account label, why) of the accounts whose API refused: asked no further.
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut refused_ids: Vec<String> = Vec::new();
    let mut read = 0;
    for role in &inv.roles {
        // Service-linked and never-touched roles are not planned; a role given a file keeps it.
        if role.path.starts_with("/aws-service-role/")
            || args
                .never_touch
                .iter()
                .any(|n| *n == role.name || *n == role.arn)
            || advisors.contains_key(&role.arn)
            || advisors.contains_key(&role.name)
        {
            continue;
        }
        let Some(account) = credwarden_core::account::arn_account(&role.arn) else {
            continue;
        };
        // A role read from a file in an account this command did not reach has no session.
        let Some(target) = by_account.get(account) else {
            continue;
        };
        if refused_ids.iter().any(|a| a == account) {
            continue;
        }
        match target.session.access_advisor(&role.arn) {
            Ok(v) => match AccessAdvisor::parse(&v) {
                Ok(a) => {
                    if let Some(a) = admit_advisor(a, &role.arn, now_ms, err)? {
                        advisors.insert(role.arn.clone(), a);
                        read += 1;
                    }
                }
                Err(e) => writeln!(
                    err,
                    "warning: Access Advisor for {}: {e}; planning the role without it",
                    role.arn
                )?,
            },
            Err(e @ aws::AwsError::Refused { .. }) => {
                refused_ids.push(account.to_owned());
                refused.push((target.label.clone(), e.to_string()));
            }
            Err(e) => writeln!(
                err,
                "warning: Access Advisor for {}: {e}; planning the role without it",
                role.arn
            )?,
        }
    }
    // One line a run: the same refusal for every role would bury the plan.
    if let Some((label, why)) = refused.first() {
        let whose = if reach.targets.iter().any(|t| t.account.is_some()) {
            format!("account {label}: ")
        } else {
            String::new()
        };
        let others = match refused.len() {
            1 => String::new(),
            n => format!(" (and in {} other account(s))", n - 1),
        };
        writeln!(
            err,
            "warning: Access Advisor unavailable: {whose}{why}{others}; planning without it"
        )?;
    }
    writeln!(err, "access advisor: {read} live report(s) read")?;
    Ok(advisors)
}

/// A report the plan may use (`what` names it in warnings): a stale one is refused; an
/// incomplete one is kept but, as the plan ignores it, shows nothing.
fn admit_advisor(
    a: AccessAdvisor,
    what: &str,
    now_ms: i64,
    err: &mut dyn Write,
) -> Result<Option<AccessAdvisor>> {
    if let Some(created) = a.created_ms.filter(|c| *c < now_ms - ADVISOR_MAX_AGE_MS) {
        writeln!(
            err,
            "warning: {what}: Access Advisor report of {} is more than 5 days older than the window's end {}: stale, planning without it",
            cloudtrail::EventTime(created),
            cloudtrail::EventTime(now_ms)
        )?;
        return Ok(None);
    }
    if !a.complete {
        writeln!(err, "warning: {what}: Access Advisor report incomplete (job not finished or IsTruncated): used as no evidence")?;
    }
    Ok(Some(a))
}
