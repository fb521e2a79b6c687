//! `credwarden broker serve` and `credwarden creds ROLE`: the credential broker and its
//! client. `creds --process` prints the AWS CLI `credential_process` JSON, so a profile in
//! `~/.aws/config` can get its credentials from the broker:
//!
//! ```ini
//! [profile payments]
//! credential_process = credwarden creds payments-api --process
//! ```
//!
//! The bearer token is `--token-file`, `$CREDWARDEN_TOKEN`, or the sign-in of `credwarden
//! login` (refreshed when it expires); credentials are cached until five minutes before
//! they expire (`creds_cache`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use broker::{Broker, BrokerConfig};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The broker configuration (TOML; `credwarden broker config-example` prints one).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

pub fn load_config(path: &std::path::Path) -> Result<BrokerConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    broker::config::parse(&text).with_context(|| format!("{}", path.display()))
}

/// Run the broker until interrupted.
pub fn serve(args: &ServeArgs, err: &mut dyn Write) -> Result<()> {
    let cfg = load_config(&args.config)?;
    let addr: std::net::SocketAddr = cfg
        .listen
        .parse()
        .with_context(|| format!("listen = {:?} is not an address:port", cfg.listen))?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) if addr.ip().is_loopback() => None,
        (None, None) => bail!(
            "listen = {addr}: plain HTTP is only allowed on loopback; set tls_cert and tls_key"
        ),
        _ => bail!("tls_cert and tls_key go together"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let broker = Arc::new(Broker::new(cfg).await?);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        writeln!(
            err,
            "credwarden broker listening on {}://{local}",
            if tls.is_some() { "https" } else { "http" }
        )?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match tls {
            Some((cert, key)) => {
                broker::http::serve_tls(broker, listener, &cert, &key, shutdown).await?
            }
            None => broker::http::serve(broker, listener, shutdown).await?,
        }
        Ok(())
    })
}

#[derive(clap::Args, Debug)]
pub struct CredsArgs {
    /// Role name or ARN.
    #[arg(required_unless_present = "clear")]
    pub role: Option<String>,
    /// The broker's base URL (default: $CREDWARDEN_BROKER, or `broker` in the client config).
    #[arg(long, env = "CREDWARDEN_BROKER")]
    pub broker: Option<String>,
    /// A file holding the bearer token (default: $CREDWARDEN_TOKEN, else the sign-in of
    /// `credwarden login`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the AWS CLI credential_process JSON.
    #[arg(long, conflicts_with = "json")]
    pub process: bool,
    /// Print the broker's JSON (default: shell exports).
    #[arg(long)]
    pub json: bool,
    /// Credential lifetime in seconds (900 up to the broker's maximum).
    #[arg(long)]
    pub duration: Option<i32>,
    /// PEM file of the CA that signed the broker's certificate (default: `ca_file` in the
    /// client config, else the web PKI roots).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Ask the broker even if cached credentials are still good, and do not cache the answer.
    #[arg(long)]
    pub no_cache: bool,
    /// Remove every cached credential and stop.
    #[arg(long, conflicts_with_all = ["process", "json", "no_cache"])]
    pub clear: bool,
    /// The client configuration file (default: $CREDWARDEN_CLIENT_CONFIG, or
    /// ~/.config/credwarden/client.toml).
    #[arg(long, value_name = "FILE")]
    pub client_config: Option<PathBuf>,
}

/// A client of the broker's API: its URL (TLS, except to this machine), the agent, and the
/// caller's bearer token.
pub struct BrokerClient {
    base: String,
    agent: ureq::Agent,
    token: String,
}

impl BrokerClient {
    /// The broker from the flag/environment or the client config, the CA likewise, the token
    /// from `--token-file`, `$CREDWARDEN_TOKEN` or the sign-in.
    pub fn new(
        broker: Option<&str>,
        ca_file: Option<&std::path::Path>,
        token_file: Option<&std::path::Path>,
        client_config: Option<&std::path::Path>,
    ) -> Result<BrokerClient> {
        let cfg = crate::login_cmd::client_config(client_config)?;
        let broker = broker.map(str::to_owned).or(cfg.broker).context(
            "no broker: --broker URL, $CREDWARDEN_BROKER, or broker = in the client config",
        )?;
        // The bearer token and the credentials travel over this connection: TLS, except to a
        // broker on this machine (a loopback IP literal or exactly `localhost`, parsed, so
        // `http://localhost@10.255.255.1` is refused).
        let base = broker::transport::secure_url(&broker).context("--broker")?;
        let token = crate::login_cmd::bearer_token(token_file)?;
        let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30));
        if let Some(ca) = ca_file.map(|c| c.to_path_buf()).or(cfg.ca_file) {
            agent = agent.tls_config(Arc::new(client_tls(&ca)?));
        }
        Ok(BrokerClient {
            base: base.as_str().trim_end_matches('/').to_owned(),
            agent: agent.build(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// POST `body` to `path`; the answer's text, or the broker's refusal as an error.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let response = self
            .agent
            .post(&url)
            .set("authorization", &format!("Bearer {}", self.token))
            .set("content-type", "application/json")
            .send_string(&body.to_string());
        match response {
            Ok(r) => Ok(r.into_string()?),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let hint = if code == 401 {
                    " (sign in again: `credwarden login`)"
                } else {
                    ""
                };
                bail!(
                    "broker refused ({code} {}): {}{hint}",
                    v["code"].as_str().unwrap_or("error"),
                    v["error"].as_str().unwrap_or("no reason given")
                )
            }
            Err(e) => bail!("cannot reach the broker at {url}: {e}"),
        }
    }
}

/// Ask the broker for credentials (or take them from the cache) and print them.
pub fn creds(args: &CredsArgs, out: &mut dyn Write) -> Result<()> {
    if args.clear {
        let n = crate::creds_cache::clear()?;
        eprintln!("credwarden: {n} cached credential(s) removed");
        return Ok(());
    }
    let role = args.role.as_deref().context("a role is needed")?;
    let client = BrokerClient::new(
        args.broker.as_deref(),
        args.ca_file.as_deref(),
        args.token_file.as_deref(),
        args.client_config.as_deref(),
    )?;
    let entry = crate::creds_cache::entry(client.base(), client.token(), role, args.duration)?;
    let cached = if args.no_cache {
        None
    } else {
        crate::creds_cache::get(&entry)
    };
    let c = match cached {
        Some(c) => c,
        None => {
            // Always the broker's JSON: every output format is made from it here, so one
            // cache entry serves them all.
            let mut body = serde_json::json!({"role": role, "format": "json"});
            if let Some(d) = args.duration {
                body["duration_seconds"] = d.into();
            }
            let text = client.post("/v1/credentials", &body)?;
            let c: crate::creds_cache::Credentials = serde_json::from_str(&text)
                .context("the broker's answer is not credentials JSON")?;
            if !args.no_cache {
                if let Err(e) = crate::creds_cache::put(&entry, &c) {
                    // The credentials are good; only the next call will ask again.
                    eprintln!("credwarden: cannot cache the credentials: {e:#}");
                }
            }
            c
        }
    };
    if args.process {
        let v = serde_json::json!({"Version": 1, "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key, "SessionToken": c.session_token,
            "Expiration": c.expiration});
        writeln!(out, "{v}")?;
    } else if args.json {
        writeln!(out, "{}", serde_json::to_string(&c)?)?;
    } else {
        write!(
            out,
            "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_SESSION_TOKEN={}\n# expires {} ({})\n",
            c.access_key_id, c.secret_access_key, c.session_token, c.expiration, c.role_arn
        )?;
    }
    Ok(())
}

fn client_tls(ca: &std::path::Path) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("{}: not a PEM certificate", ca.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
