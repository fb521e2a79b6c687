//! The finding-delivery flags the services share (`imds proxy`, `shrink schedule`): an
//! fsynced findings file and a spooled webhook, resolved into a `sink::DeliveryConfig`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use sink::{
    DeliveryConfig, FindingDelivery, PostFormat, WebhookOptions, WebhookOutcome, WebhookTarget,
};

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

#[derive(Clone, Debug, Default, clap::Args)]
pub struct DeliveryArgs {
    /// Also append each finding as a JSON line to FILE (created 0600, fsynced per finding).
    #[arg(long = "findings", value_name = "FILE")]
    pub findings_file: Option<PathBuf>,
    /// POST each finding as JSON to URL: spooled in --state, posted in order with retries;
    /// permanent refusals become dead letters (`credwarden webhook dead-letters`).
    #[arg(long, value_name = "URL", requires = "state")]
    pub webhook: Option<String>,
    /// What the webhook receives.
    #[arg(long, value_enum, default_value_t = WebhookFormat::Json)]
    pub webhook_format: WebhookFormat,
    /// SQLite state file holding the webhook spool and dead letters (created 0600).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Seconds to wait at the end for the webhook spool to empty (the rest stays spooled).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub webhook_wait: u64,
}

impl DeliveryArgs {
    pub fn config(&self, stdout: bool) -> Result<DeliveryConfig> {
        let webhook = match (&self.webhook, &self.state) {
            (Some(url), Some(state)) => Some(WebhookTarget {
                url: url.clone(),
                state: state.clone(),
                options: WebhookOptions {
                    format: self.webhook_format.into(),
                    ..WebhookOptions::default()
                },
            }),
            (Some(_), None) => bail!(
                "--webhook needs --state: the state file's spool keeps what the endpoint has \
                 not accepted yet"
            ),
            (None, _) => None,
        };
        Ok(DeliveryConfig {
            stdout,
            file: self.findings_file.clone(),
            webhook,
        })
    }

    /// Let the webhook sender empty the spool, and say on stderr what is left.
    pub fn finish(&self, delivery: &FindingDelivery) -> Result<()> {
        if let (Some(sent), Some(state)) = (
            delivery.finish(Duration::from_secs(self.webhook_wait))?,
            &self.state,
        ) {
            for line in webhook_notes(&sent, state) {
                eprintln!("{line}");
            }
        }
        Ok(())
    }
}

/// What a run tells its operator about the webhook once the sender has stopped: posted,
/// dead-lettered, still spooled. One wording for `detect` and the services.
pub fn webhook_notes(sent: &WebhookOutcome, state: &Path) -> Vec<String> {
    let mut notes = vec![format!("note: webhook: {} finding(s) posted", sent.posted)];
    if sent.dead_total > 0 {
        notes.push(format!(
            "note: webhook: {} finding(s) in the dead letters from this run, refused for good \
             or past the retry limit; {} in the dead letters of {} in all (list: credwarden \
             webhook dead-letters --state FILE; send again: credwarden webhook resend --state \
             FILE --url URL)",
            sent.dead,
            sent.dead_total,
            state.display()
        ));
    }
    if sent.left > 0 {
        notes.push(format!(
            "note: webhook: {} finding(s) wait in the spool of {} and will be posted by the \
             next run{}",
            sent.left,
            state.display(),
            if sent.failing {
                " (the endpoint is failing)"
            } else {
                ""
            }
        ));
    }
    notes
}
