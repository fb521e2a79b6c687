//! The finding-delivery flags the services share (`imds proxy`, `shrink schedule`): an
//! fsynced findings file, a spooled webhook and the notify routes of a `credwarden.toml`,
//! resolved into a `sink::DeliveryPlan`. Also what `detect` and the services share about
//! routes: `--webhook` as one more route, and the notes a run ends with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use credwarden_core::Severity;
use sink::{DeliveryPlan, FindingDelivery, Notify, PostFormat, Route, RouteFilter, WebhookOptions};
use sink::{WebhookOutcome, WEBHOOK_MAX_ATTEMPTS};
use store::{Store, DEFAULT_DESTINATION};

use crate::config::{Config, RouteFormat};

/// `--webhook-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookFormat {
    /// The finding's JSON line (the contract).
    #[default]
    Json,
    /// A Slack incoming-webhook message: summary, severity, account name and owner,
    /// principal, remediation without links; every text escaped.
    Slack,
}

impl From<WebhookFormat> for PostFormat {
    fn from(f: WebhookFormat) -> PostFormat {
        match f {
            WebhookFormat::Json => PostFormat::Json,
            WebhookFormat::Slack => PostFormat::Slack,
        }
    }
}

impl From<RouteFormat> for PostFormat {
    fn from(f: RouteFormat) -> PostFormat {
        match f {
            RouteFormat::Json => PostFormat::Json,
            RouteFormat::Slack => PostFormat::Slack,
        }
    }
}

#[derive(Clone, Debug, Default, clap::Args)]
pub struct DeliveryArgs {
    /// Also append each finding as a JSON line to FILE (created 0600, fsynced per finding).
    #[arg(long = "findings", value_name = "FILE")]
    pub findings_file: Option<PathBuf>,
    /// POST each finding to URL, in --webhook-format: spooled in --state, posted in order with retries;
    /// permanent refusals become dead letters (`credwarden webhook dead-letters`). The route
    /// named "webhook", besides those of --config.
    #[arg(long, value_name = "URL", requires = "state")]
    pub webhook: Option<String>,
    /// What the webhook receives.
    #[arg(long, value_enum, default_value_t = WebhookFormat::Json)]
    pub webhook_format: WebhookFormat,
    /// credwarden.toml whose notify routes ([[notify.route]]) the findings are posted to, each
    /// finding to every route that matches it (needs --state).
    #[arg(long = "config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// SQLite state file holding the webhook spool and dead letters (created 0600).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Seconds to wait at the end for the webhook spool to empty (the rest stays spooled).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub webhook_wait: u64,
}

/// Every detector name a finding can carry: the detect engine's and the services' (the
/// metadata proxy's, the broker's anomalies, shrink's notices). A route naming anything else
/// would silently never match, so it is refused.
pub fn known_detectors() -> Vec<&'static str> {
    let mut all = detect::set::ALL.to_vec();
    // The broker and shrink name theirs inline: keep these in step with
    // crates/broker/src/service.rs and crates/shrink/src/plan.rs.
    all.extend([imds::proxy::DETECTOR, "broker-anomaly", "shrink-scheduled"]);
    all
}

/// The `[[notify.route]]`s of a configuration as routes, checked: names (unique), URLs,
/// matchers. `options` hold for every route, but the format, which is the route's.
pub fn config_routes(cfg: &Config, options: &WebhookOptions) -> Result<Vec<Route>> {
    let known = known_detectors();
    let is_id = credwarden_core::account::is_account_id;
    let mut routes = Vec::with_capacity(cfg.notify.routes.len());
    for r in &cfg.notify.routes {
        let name = &r.name;
        if let Some(d) = r.detectors.iter().find(|d| !known.contains(&d.as_str())) {
            bail!(
                "notify route {name}: unknown detector {d:?}; findings come from: {}",
                known.join(", ")
            );
        }
        if let Some(a) = r.accounts.iter().find(|a| !is_id(a)) {
            bail!("notify route {name}: accounts: {a:?} is not a 12-digit account id");
        }
        if r.owners.iter().any(|o| o.trim().is_empty()) {
            bail!("notify route {name}: owners: an owner is blank");
        }
        routes.push(Route {
            name: name.clone(),
            url: r.url.clone(),
            options: WebhookOptions {
                format: r.format.into(),
                ..options.clone()
            },
            filter: RouteFilter {
                owners: r.owners.clone(),
                accounts: r.accounts.clone(),
                detectors: r.detectors.clone(),
                min_severity: r.min_severity.map(Severity::from),
            },
        });
    }
    sink::check_routes(&routes)?;
    Ok(routes)
}

/// A run's routes: the configuration's, then `--webhook URL` as one more route named
/// [`DEFAULT_DESTINATION`] that takes every finding (so what it spooled before routes existed
/// is its own). `max_attempts` holds for every route. Checked: names unique, URLs safe.
pub fn notify_routes(
    cfg: &Config,
    webhook: Option<&str>,
    format: WebhookFormat,
    max_attempts: u32,
) -> Result<Vec<Route>> {
    let options = WebhookOptions {
        max_attempts,
        ..WebhookOptions::default()
    };
    let mut routes = config_routes(cfg, &options)?;
    if let Some(url) = webhook {
        if routes.iter().any(|r| r.name == DEFAULT_DESTINATION) {
            bail!(
                "--webhook is the route named {DEFAULT_DESTINATION:?}, and the configuration has \
                 a [[notify.route]] of that name too: rename it, or leave --webhook out"
            );
        }
        let route = Route {
            name: DEFAULT_DESTINATION.to_owned(),
            url: url.to_owned(),
            options: WebhookOptions {
                format: format.into(),
                ..options
            },
            filter: RouteFilter::default(),
        };
        route.check().context("--webhook")?;
        routes.push(route);
    }
    Ok(routes)
}

impl DeliveryArgs {
    pub fn config(&self, stdout: bool) -> Result<DeliveryPlan> {
        let cfg = match &self.config_file {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let routes = notify_routes(
            &cfg,
            self.webhook.as_deref(),
            self.webhook_format,
            WEBHOOK_MAX_ATTEMPTS,
        )?;
        let notify = match (&self.state, routes.is_empty()) {
            (_, true) => None,
            (Some(state), false) => Some(Notify {
                state: state.clone(),
                routes,
            }),
            (None, false) if self.webhook.is_some() => bail!(
                "--webhook needs --state: the state file's spool keeps what the endpoint has \
                 not accepted yet"
            ),
            (None, false) => bail!(
                "the notify routes of --config need --state: the state file's spool keeps what \
                 an endpoint has not accepted yet"
            ),
        };
        Ok(DeliveryPlan {
            stdout,
            file: self.findings_file.clone(),
            notify,
        })
    }

    /// Let the webhook senders empty their queues, and say on stderr what is left.
    pub fn finish(&self, delivery: &FindingDelivery) -> Result<()> {
        let sent = delivery.finish(Duration::from_secs(self.webhook_wait))?;
        if let Some(state) = &self.state {
            for line in webhook_notes(&sent, state)? {
                eprintln!("{line}");
            }
        }
        Ok(())
    }
}

/// What a run tells its operator about its routes once the senders have stopped: per route,
/// posted, dead-lettered, still spooled; and findings waiting for routes this run did not
/// post to. One wording for `detect` and the services. Routes are named, never their URLs.
pub fn webhook_notes(sent: &[(String, WebhookOutcome)], state: &Path) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for (route, sent) in sent {
        notes.push(format!(
            "note: webhook: {} finding(s) posted (route {route})",
            sent.posted
        ));
        if sent.dead_total > 0 {
            notes.push(format!(
                "note: webhook: {} finding(s) in the dead letters from this run (route {route}), \
                 refused for good or past the retry limit; {} in the dead letters of route \
                 {route} in {} in all (list: credwarden webhook dead-letters --state FILE; send \
                 again: credwarden webhook resend --state FILE --route {route} [--url URL])",
                sent.dead,
                sent.dead_total,
                state.display()
            ));
        }
        if sent.left > 0 {
            notes.push(format!(
                "note: webhook: {} finding(s) wait in the spool of {} (route {route}) and will \
                 be posted by the next run{}",
                sent.left,
                state.display(),
                if sent.failing {
                    " (the endpoint is failing)"
                } else {
                    ""
                }
            ));
        }
    }
    if state.is_file() {
        let orphans: Vec<(String, i64)> = Store::open(state)?
            .spool_destinations()?
            .into_iter()
            .filter(|(d, _)| !sent.iter().any(|(r, _)| r == d))
            .collect();
        if !orphans.is_empty() {
            let waiting: i64 = orphans.iter().map(|(_, n)| n).sum();
            let names: Vec<String> = orphans.iter().map(|(d, n)| format!("{d} ({n})")).collect();
            notes.push(format!(
                "note: webhook: {waiting} finding(s) wait in the spool of {} for route(s) this \
                 run does not post to: {}; they are posted by a run that has the route again \
                 (\"webhook\" is --webhook), or now by credwarden webhook resend --state FILE \
                 --route NAME --url URL",
                state.display(),
                names.join(", ")
            ));
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_routes_are_valid() {
        let cfg = Config::parse(crate::config::EXAMPLE).unwrap();
        let routes = config_routes(&cfg, &WebhookOptions::default()).unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].options.format, PostFormat::Slack);
        assert_eq!(routes[1].filter.min_severity, Some(Severity::High));
        assert!(routes[2].filter.is_catch_all());
        // --webhook comes last, as the catch-all route "webhook".
        let with =
            notify_routes(&cfg, Some("https://a.example/x"), WebhookFormat::Json, 3).unwrap();
        assert_eq!(with[3].name, DEFAULT_DESTINATION);
        assert!(with.iter().all(|r| r.options.max_attempts == 3));
    }

    /// Mistakes in routes are refused naming the route, never showing a URL.
    #[test]
    fn bad_routes_are_refused() {
        let route = |extra: &str| {
            format!(
                "[[notify.route]]\nname = \"ops\"\nurl = \"https://hooks.example.com/s3cr3t\"\n\
                 {extra}"
            )
        };
        for (text, expect) in [
            (
                route("detectors = [\"static-keys\"]\n"),
                "notify route ops: unknown detector \"static-keys\"",
            ),
            (
                route("accounts = [\"prod\"]\n"),
                "not a 12-digit account id",
            ),
            (route("owners = [\" \"]\n"), "an owner is blank"),
            (
                format!("{}{}", route(""), route("")),
                "two notify routes are named \"ops\"",
            ),
            (
                route("").replace("https://hooks", "http://hooks"),
                "notify route ops: plain http:// is only allowed to a loopback address",
            ),
            (
                route("").replace("\"ops\"", "\"o p s\""),
                "notify route name \"o p s\"",
            ),
        ] {
            let cfg = Config::parse(&text).unwrap();
            let e = format!(
                "{:#}",
                config_routes(&cfg, &WebhookOptions::default()).unwrap_err()
            );
            assert!(e.contains(expect), "{expect}: {e}");
            assert!(!e.contains("s3cr3t"), "a URL is shown: {e}");
        }
        let e = notify_routes(
            &Config::default(),
            Some("http://10.0.0.1/s3cr3t"),
            WebhookFormat::Slack,
            3,
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.starts_with("--webhook: notify route webhook: plain http://"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
