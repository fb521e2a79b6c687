//! `credwarden webhook`: the dead letters of `detect --webhook` — findings the endpoint
//! refused for good or that passed the retry limit — listed, and sent again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use run::{WebhookOptions, WebhookSender};
use store::{DeadLetter, Store};

#[derive(clap::Args, Debug)]
pub struct DeadLettersArgs {
    /// The state file `detect --webhook` ran with.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// One JSON object per dead letter (with the finding) instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ResendArgs {
    /// The state file `detect --webhook` ran with.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Only the finding with this id (repeatable); default: every dead letter.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Post now to URL (with whatever else waits in the spool, in order). Without it the
    /// findings go back to the spool and the next `detect --webhook` run posts them.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// With --url: seconds to wait for the spool to empty.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub wait: u64,
    /// With --url: failed attempts after which a finding is a dead letter again [default: 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
}

fn open_existing(state: &Path) -> Result<Store> {
    if !state.is_file() {
        bail!("no state file at {}", state.display());
    }
    Ok(Store::open(state)?)
}

/// The finding's detector, from its JSON (the listing shows it, never the whole body).
fn detector(d: &DeadLetter) -> String {
    serde_json::from_str::<serde_json::Value>(&d.finding)
        .ok()
        .and_then(|v| v["detector"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "-".into())
}

/// `webhook dead-letters`: one line (or JSON object) per dead letter, oldest first.
pub fn dead_letters(
    args: &DeadLettersArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let store = open_existing(&args.state)?;
    let dead = store.dead_letters()?;
    if dead.is_empty() {
        writeln!(err, "no dead letters in {}", args.state.display())?;
        return Ok(());
    }
    if !args.json {
        writeln!(out, "ID\tSTATUS\tATTEMPTS\tDEAD-AT\tDETECTOR\tREASON")?;
    }
    for d in &dead {
        if args.json {
            let finding: serde_json::Value =
                serde_json::from_str(&d.finding).unwrap_or(serde_json::Value::Null);
            let line = serde_json::json!({
                "id": d.id,
                "status": d.status,
                "reason": d.reason,
                "attempts": d.attempts,
                "dead_at": cloudtrail::EventTime(d.dead_at.saturating_mul(1000)).to_string(),
                "finding": finding,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}",
                d.id,
                d.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                d.attempts,
                cloudtrail::EventTime(d.dead_at.saturating_mul(1000)),
                detector(d),
                d.reason
            )?;
        }
    }
    Ok(())
}

/// `webhook resend`: move dead letters back to the spool, and with `--url` post them.
pub fn resend(args: &ResendArgs, out: &mut dyn Write) -> Result<()> {
    let _lock = run::lock_state(&args.state)?;
    let mut store = open_existing(&args.state)?;
    let known: Vec<String> = store.dead_letters()?.into_iter().map(|d| d.id).collect();
    let unknown: Vec<&str> = args
        .ids
        .iter()
        .filter(|id| !known.contains(id))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        bail!(
            "not in the dead letters of {}: {} (see credwarden webhook dead-letters)",
            args.state.display(),
            unknown.join(", ")
        );
    }
    let moved = store.dead_letters_requeue(&args.ids)?;
    drop(store);
    let Some(url) = &args.url else {
        writeln!(
            out,
            "{} finding(s) moved back to the spool of {}; the next detect --webhook run posts \
             them",
            moved.len(),
            args.state.display()
        )?;
        return Ok(());
    };
    let sender = WebhookSender::start_with(
        args.state.clone(),
        url.clone(),
        WebhookOptions {
            max_attempts: args.max_attempts.unwrap_or(run::WEBHOOK_MAX_ATTEMPTS),
            ..WebhookOptions::default()
        },
    )?;
    let sent = sender.finish(Duration::from_secs(args.wait))?;
    writeln!(
        out,
        "{} finding(s) sent again: {} posted (with what else waited in the spool), {} back in \
         the dead letters, {} wait in the spool{}",
        moved.len(),
        sent.posted,
        sent.dead,
        sent.left,
        if sent.failing {
            " (the endpoint is failing)"
        } else {
            ""
        }
    )?;
    Ok(())
}
