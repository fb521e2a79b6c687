//! `credwarden webhook`: the dead letters of the notify routes (`detect --webhook`, the
//! `[[notify.route]]`s of credwarden.toml) — findings an endpoint refused for good or that
//! passed the retry limit — listed with their route, and sent again, per route or all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use sink::{Route, RouteFilter, RouteSenders, WebhookOptions};
use store::{DeadLetter, Store, DEFAULT_DESTINATION};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct DeadLettersArgs {
    /// The state file holding the spool and dead letters (`detect --state`, or the one
    /// `imds proxy`, `shrink schedule` or the broker's audit store deliver through).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Only the dead letters of this route (repeatable); default: every route's.
    #[arg(long = "route", value_name = "NAME")]
    pub routes: Vec<String>,
    /// One JSON object per dead letter (with the finding) instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ResendArgs {
    /// The state file holding the spool and dead letters (as for `webhook dead-letters`).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Only the dead letters of this route (repeatable; "webhook" is --webhook's); default:
    /// every route's.
    #[arg(long = "route", value_name = "NAME")]
    pub routes: Vec<String>,
    /// Only the finding with this id (repeatable); default: every dead letter.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Post now to URL, the one route's (--route NAME, or the route the dead letters are
    /// of), with whatever else waits in that route's spool, in order. Without --url or
    /// --config the findings go back to their routes' spools and the next run posts them.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    pub url: Option<String>,
    /// With --url: what that endpoint takes (a Slack route's dead letters go back as Slack
    /// messages). With --config each route's own format is used.
    #[arg(long, value_enum, default_value_t = crate::delivery_args::WebhookFormat::Json, requires = "url")]
    pub format: crate::delivery_args::WebhookFormat,
    /// Post now, each route's spool to its URL in this credwarden.toml's [[notify.route]]s.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// With --url or --config: seconds to wait for the spools to empty.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub wait: u64,
    /// With --url or --config: failed attempts after which a finding is a dead letter again
    /// [default: 10].
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
    let dead: Vec<DeadLetter> = store
        .dead_letters()?
        .into_iter()
        .filter(|d| args.routes.is_empty() || args.routes.contains(&d.destination))
        .collect();
    if dead.is_empty() {
        writeln!(err, "no dead letters in {}", args.state.display())?;
        return Ok(());
    }
    if !args.json {
        writeln!(
            out,
            "ID\tROUTE\tSTATUS\tATTEMPTS\tDEAD-AT\tDETECTOR\tREASON"
        )?;
    }
    for d in &dead {
        if args.json {
            let finding: serde_json::Value =
                serde_json::from_str(&d.finding).unwrap_or(serde_json::Value::Null);
            let line = serde_json::json!({
                "id": d.id,
                "route": d.destination,
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
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                d.id,
                d.destination,
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

/// The routes `resend` posts to now: the configuration's (those asked for), or the one route
/// `--url` stands for. `None`: nothing is posted now.
fn resend_routes(
    args: &ResendArgs,
    dead: &[DeadLetter],
    options: &WebhookOptions,
) -> Result<Option<Vec<Route>>> {
    if let Some(path) = &args.config {
        let all = crate::delivery_args::config_routes(&Config::load(path)?, options)?;
        if let Some(r) = args
            .routes
            .iter()
            .find(|r| !all.iter().any(|a| a.name == **r))
        {
            bail!(
                "--route {r}: {} has no [[notify.route]] of that name",
                path.display()
            );
        }
        return Ok(Some(
            all.into_iter()
                .filter(|r| args.routes.is_empty() || args.routes.contains(&r.name))
                .collect(),
        ));
    }
    let Some(url) = &args.url else {
        return Ok(None);
    };
    // One URL is one route's endpoint: which one must be clear, or a finding meant for one
    // team's channel would be posted to another's.
    let name = match args.routes.as_slice() {
        [one] => one.clone(),
        [] => {
            let mut of: Vec<&str> = dead
                .iter()
                .filter(|d| args.ids.is_empty() || args.ids.contains(&d.id))
                .map(|d| d.destination.as_str())
                .collect();
            of.sort_unstable();
            of.dedup();
            match of.as_slice() {
                [] => DEFAULT_DESTINATION.to_owned(),
                [one] => (*one).to_owned(),
                many => bail!(
                    "--url is one route's endpoint, and the dead letters are of routes {}: give \
                     --route NAME (or --config FILE to post each route to its own URL)",
                    many.join(", ")
                ),
            }
        }
        _ => bail!("--url is one route's endpoint: give one --route with it"),
    };
    let route = Route {
        name,
        url: url.clone(),
        options: WebhookOptions {
            format: args.format.into(),
            ..options.clone()
        },
        filter: RouteFilter::default(),
    };
    route.check()?;
    Ok(Some(vec![route]))
}

/// `webhook resend`: move dead letters back to their routes' spools, and with `--url` or
/// `--config` post them now.
pub fn resend(args: &ResendArgs, out: &mut dyn Write) -> Result<()> {
    let _lock = run::lock_state(&args.state)?;
    let mut store = open_existing(&args.state)?;
    let dead = store.dead_letters()?;
    let unknown: Vec<&str> = args
        .ids
        .iter()
        .filter(|id| {
            !dead.iter().any(|d| {
                d.id == **id && (args.routes.is_empty() || args.routes.contains(&d.destination))
            })
        })
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        bail!(
            "not in the dead letters{} of {}: {} (see credwarden webhook dead-letters)",
            if args.routes.is_empty() {
                String::new()
            } else {
                format!(" of route(s) {}", args.routes.join(", "))
            },
            args.state.display(),
            unknown.join(", ")
        );
    }
    let options = WebhookOptions {
        max_attempts: args.max_attempts.unwrap_or(run::WEBHOOK_MAX_ATTEMPTS),
        ..WebhookOptions::default()
    };
    // Decided (and checked) before anything moves: a bad URL leaves the dead letters as
    // they are.
    let now = resend_routes(args, &dead, &options)?;
    // Posting now moves only the dead letters of the routes posted to: the others would
    // only change places.
    let routes: Vec<String> = match &now {
        Some(routes) if routes.is_empty() => bail!("no notify route to post to"),
        Some(routes) => routes.iter().map(|r| r.name.clone()).collect(),
        None => args.routes.clone(),
    };
    let moved = store.dead_letters_requeue(&routes, &args.ids)?;
    drop(store);
    let Some(now) = now else {
        writeln!(
            out,
            "{} finding(s) moved back to the spool of {}; the next run posting to their \
             route(s) posts them",
            moved.len(),
            args.state.display()
        )?;
        return Ok(());
    };
    let senders = RouteSenders::start(&args.state, &now)?;
    let sent = senders.finish(Duration::from_secs(args.wait))?;
    writeln!(
        out,
        "{} finding(s) sent again: {} posted (with what else waited in the spool), {} back in \
         the dead letters, {} wait in the spool{}",
        moved.len(),
        sent.iter().map(|(_, s)| s.posted).sum::<u64>(),
        sent.iter().map(|(_, s)| s.dead).sum::<u64>(),
        sent.iter().map(|(_, s)| s.left).sum::<i64>(),
        if sent.iter().any(|(_, s)| s.failing) {
            " (an endpoint is failing)"
        } else {
            ""
        }
    )?;
    for (route, s) in &sent {
        writeln!(
            out,
            "route {route}: {} posted, {} back in the dead letters, {} wait in the spool{}",
            s.posted,
            s.dead,
            s.left,
            if s.failing {
                " (the endpoint is failing)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}
