//! `credwarden shrink plan | apply | rollback | history`: right-sizing from observed use.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use shrink::{AccessAdvisor, Plan, PlanOptions, Usage, Verdict};

use crate::inventory::{AwsArgs, InventoryArgs};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// CloudTrail files or folders (any input form `detect` reads) covering the window.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    pub cloudtrail: Vec<PathBuf>,
    /// Access Advisor per role: ROLE=FILE with `aws iam get-service-last-accessed-details` output.
    #[arg(long, value_name = "ROLE=FILE")]
    pub access_advisor: Vec<String>,
    #[arg(long, default_value_t = 90)]
    pub window_days: i64,
    /// End of the window (RFC 3339); default: the newest event in the CloudTrail.
    #[arg(long)]
    pub now: Option<String>,
    /// Roles (names or ARNs) never touched.
    #[arg(long, value_name = "ROLE")]
    pub never_touch: Vec<String>,
    /// Roles with this tag set to never/false/off are not touched.
    #[arg(long, default_value = "credwarden:shrink")]
    pub opt_out_tag: String,
    /// Write the plan (JSON) here, for `shrink apply`.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn plan(args: &PlanArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<Plan> {
    let inv = args.inventory.load(err)?;
    if !inv.has_iam {
        bail!("right-sizing needs IAM inventory: get-account-authorization-details output (--inventory) or --live");
    }
    let usage = Usage::scan(&args.cloudtrail)?;
    writeln!(
        err,
        "cloudtrail: {} records, {} input error(s), {} principal(s), {} service(s) seen",
        usage.records,
        usage.input_errors,
        usage.used.len(),
        usage.services_seen.len()
    )?;
    if !usage.unknown_events.is_empty() {
        writeln!(
            err,
            "warning: {} event name(s) could not be mapped to IAM actions (kept as unknown): {}",
            usage.unknown_events.len(),
            usage.unknown_events.keys().take(10).cloned().collect::<Vec<_>>().join(", ")
        )?;
    }
    let now_ms = match &args.now {
        Some(t) => iam::condition::parse_date(t).with_context(|| format!("--now {t:?} is not a date"))?,
        None => usage.newest_ms.context("the CloudTrail holds no records: nothing shows what was used (give --now to plan anyway)")?,
    };
    let mut advisors = BTreeMap::new();
    for spec in &args.access_advisor {
        let (role, file) = spec.split_once('=').with_context(|| format!("--access-advisor {spec:?} is not ROLE=FILE"))?;
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{file}: not JSON"))?;
        let a = AccessAdvisor::parse(&v).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        if !a.complete {
            writeln!(err, "warning: {file}: Access Advisor report incomplete (job not finished or IsTruncated): used as no evidence")?;
        }
        advisors.insert(role.to_owned(), a);
    }
    let opts = PlanOptions { window_days: args.window_days, now_ms, opt_out_tag: args.opt_out_tag.clone(), never_touch: args.never_touch.clone() };
    let plan = shrink::plan(&inv, &usage, &advisors, &opts);
    writeln!(out, "right-sizing plan: {}-day window ending {}; catalogue {}", plan.window_days, plan.window_end, plan.catalogue)?;
    for r in &plan.roles {
        let verdict = match r.verdict {
            Verdict::Shrink => "shrink",
            Verdict::ToZero => "to zero",
            Verdict::Unchanged => "unchanged",
            Verdict::Skipped => "skipped",
        };
        writeln!(out, "\n== {} ({verdict}): {}", r.role, r.reason)?;
        if matches!(r.verdict, Verdict::Shrink | Verdict::ToZero) {
            write!(out, "{}", prevent::diff::line_diff(&r.before.render(), &r.after.render()))?;
        }
        if !r.kept_unknown.is_empty() {
            writeln!(out, "   kept without proof of use: {}", r.kept_unknown.keys().cloned().collect::<Vec<_>>().join(", "))?;
        }
    }
    if let Some(path) = &args.output {
        std::fs::write(path, serde_json::to_string_pretty(&plan)?).with_context(|| format!("cannot write {}", path.display()))?;
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
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub fn apply(args: &ApplyArgs, out: &mut dyn Write) -> Result<()> {
    let text = std::fs::read_to_string(&args.plan).with_context(|| format!("cannot read {}", args.plan.display()))?;
    let plan: Plan = serde_json::from_str(&text).with_context(|| format!("{}: not a credwarden plan", args.plan.display()))?;
    let store = store::Store::open(&args.state)?;
    let session = args.aws.connect()?;
    for a in shrink::apply::apply(&session, &store, &plan.roles)? {
        writeln!(
            out,
            "{}: {}{}",
            a.role,
            a.outcome,
            a.version.map(|v| format!(" (rollback: credwarden shrink rollback {} --to {v})", a.role)).unwrap_or_default()
        )?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    pub role: String,
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// The recorded version to restore (default: the newest).
    #[arg(long)]
    pub to: Option<i64>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub fn rollback(args: &RollbackArgs, out: &mut dyn Write) -> Result<()> {
    let store = store::Store::open(&args.state)?;
    let session = args.aws.connect()?;
    let a = shrink::apply::rollback(&session, &store, &args.role, args.to)?;
    writeln!(out, "{}: {}", a.role, a.outcome)?;
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
    for (version, at, reason, _) in store.history(&args.role)? {
        writeln!(out, "{version}\t{}\t{reason}", cloudtrail::EventTime(at))?;
    }
    Ok(())
}
