//! `credwarden console ROLE`: the AWS console as a role, through the broker. The broker
//! (`POST /v1/console`) issues the role session exactly as for `creds` — same groups, same
//! network-locked session policy, audited as a console sign-in — and trades it at the AWS
//! federation endpoint for a sign-in URL; the credentials themselves never reach this
//! machine. The URL is opened in the browser, or printed with `--print`: it signs in whoever
//! holds it for fifteen minutes, so it is printed only when asked.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::broker_cmd::BrokerClient;

#[derive(clap::Args, Debug)]
pub struct ConsoleArgs {
    /// Role name or ARN.
    pub role: String,
    /// Print the sign-in URL instead of opening a browser.
    #[arg(long)]
    pub print: bool,
    /// The console page to open (an https:// URL on an AWS console domain; default: the
    /// broker's, the console home).
    #[arg(long, value_name = "URL")]
    pub destination: Option<String>,
    /// Session length in seconds (900 up to the broker's maximum).
    #[arg(long)]
    pub duration: Option<i32>,
    /// The broker's base URL (default: $CREDWARDEN_BROKER, or `broker` in the client config).
    #[arg(long, env = "CREDWARDEN_BROKER")]
    pub broker: Option<String>,
    /// A file holding the bearer token (default: $CREDWARDEN_TOKEN, else the sign-in).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the broker's certificate.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// The client configuration file.
    #[arg(long, value_name = "FILE")]
    pub client_config: Option<PathBuf>,
}

pub fn console(args: &ConsoleArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let client = BrokerClient::new(
        args.broker.as_deref(),
        args.ca_file.as_deref(),
        args.token_file.as_deref(),
        args.client_config.as_deref(),
    )?;
    let mut body = serde_json::json!({"role": args.role});
    if let Some(d) = args.duration {
        body["duration_seconds"] = d.into();
    }
    if let Some(d) = &args.destination {
        body["destination"] = d.clone().into();
    }
    let text = client.post("/v1/console", &body)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the broker's answer is not JSON")?;
    let url = v["url"]
        .as_str()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .context("the broker's answer has no sign-in URL")?;
    let (arn, until) = (
        v["role_arn"].as_str().unwrap_or(&args.role),
        v["expiration"].as_str().unwrap_or("?"),
    );
    if args.print {
        writeln!(out, "{url}")?;
        writeln!(
            err,
            "Console sign-in URL for {arn} (use it within 15 minutes; the session ends {until})."
        )?;
    } else {
        crate::login_cmd::open_browser(url)
            .context("cannot open a browser; use --print to get the URL")?;
        writeln!(
            err,
            "Opened the AWS console as {arn} (the session ends {until})."
        )?;
    }
    Ok(())
}
