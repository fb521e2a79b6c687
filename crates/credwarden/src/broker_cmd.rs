//! `credwarden broker serve` and `credwarden creds ROLE`: the credential broker and its
//! client. `creds --process` prints the AWS CLI `credential_process` JSON, so a profile in
//! `~/.aws/config` can get its credentials from the broker:
//!
//! ```ini
//! [profile payments]
//! credential_process = credwarden creds payments-api --process
//! ```

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
    pub role: String,
    /// The broker's base URL (default: $CREDWARDEN_BROKER).
    #[arg(long, env = "CREDWARDEN_BROKER")]
    pub broker: String,
    /// A file holding the bearer token (default: $CREDWARDEN_TOKEN).
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
    /// PEM file of the CA that signed the broker's certificate (default: the web PKI roots).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

/// Ask the broker for credentials and print them.
pub fn creds(args: &CredsArgs, out: &mut dyn Write) -> Result<()> {
    // The bearer token and the credentials travel over this connection: TLS, except to a
    // broker on this machine (a loopback IP literal or exactly `localhost`, parsed, so
    // `http://localhost@10.255.255.1` is refused).
    let base = broker::transport::secure_url(&args.broker).context("--broker")?;
    let token = match &args.token_file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        None => std::env::var("CREDWARDEN_TOKEN")
            .context("no token: --token-file FILE or $CREDWARDEN_TOKEN")?,
    };
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30));
    if let Some(ca) = &args.ca_file {
        agent = agent.tls_config(Arc::new(client_tls(ca)?));
    }
    let format = if args.process {
        "process"
    } else if args.json {
        "json"
    } else {
        "exports"
    };
    let mut body = serde_json::json!({"role": args.role, "format": format});
    if let Some(d) = args.duration {
        body["duration_seconds"] = d.into();
    }
    let url = format!("{}/v1/credentials", base.as_str().trim_end_matches('/'));
    let response = agent
        .build()
        .post(&url)
        .set("authorization", &format!("Bearer {}", token.trim()))
        .set("content-type", "application/json")
        .send_string(&body.to_string());
    match response {
        Ok(r) => {
            out.write_all(r.into_string()?.as_bytes())?;
            if format != "exports" {
                writeln!(out)?;
            }
            Ok(())
        }
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            bail!(
                "broker refused ({code} {}): {}",
                v["code"].as_str().unwrap_or("error"),
                v["error"].as_str().unwrap_or(&text)
            )
        }
        Err(e) => bail!("cannot reach the broker at {url}: {e}"),
    }
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
