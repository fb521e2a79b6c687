//! `credwarden imds serve` (a local metadata server for laptops, fed by the broker through
//! `credwarden creds ROLE --process`) and `credwarden imds proxy` (the SSRF-proof metadata
//! proxy for instances).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Result};
use imds::creds::ProcessSource;
use imds::log::{StderrLog, StdoutFindings};
use imds::proxy::ProxyConfig;
use imds::serve::{EcsEndpoint, ServeConfig};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The role name served under iam/security-credentials/.
    #[arg(long)]
    pub role: String,
    /// The credential_process command that supplies credentials, e.g. "credwarden creds payments-api --process".
    #[arg(long, value_name = "COMMAND")]
    pub credential_process: String,
    #[arg(long, default_value = "127.0.0.1:9911")]
    pub listen: SocketAddr,
    /// Refuse IMDSv1 requests (no session token).
    #[arg(long)]
    pub require_v2: bool,
    /// Also serve the ECS container credential endpoint at /v2/credentials/credwarden, with the
    /// authorization token read from this file (at least 16 characters; clients get it as
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN). A file, not an argument: `ps` shows arguments.
    #[arg(long, value_name = "FILE")]
    pub ecs_token_file: Option<std::path::PathBuf>,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// The role's ARN (reported by the ECS endpoint; its account goes in the identity document).
    #[arg(long)]
    pub role_arn: Option<String>,
}

/// Split a command line the way a shell would for simple cases (quotes, no expansion).
fn split_command(line: &str) -> Result<Vec<String>> {
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None::<char>, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        bail!("unbalanced quote in {line:?}");
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    if out.is_empty() {
        bail!("--credential-process is empty");
    }
    Ok(out)
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let argv = split_command(&args.credential_process)?;
    let mut cfg = ServeConfig::new(&args.role);
    cfg.listen = args.listen;
    cfg.require_v2 = args.require_v2;
    cfg.region = args.region.clone();
    cfg.role_arn = args.role_arn.clone();
    if let Some(f) = &args.ecs_token_file {
        let token = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
            .trim()
            .to_owned();
        cfg.ecs = Some(EcsEndpoint {
            path: "/v2/credentials/credwarden".into(),
            authorization_token: token,
        });
    }
    let source = Arc::new(ProcessSource::new(&argv[0], argv[1..].iter().cloned()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = imds::serve::MetadataServer::bind(cfg, source, Arc::new(StderrLog)).await?;
        eprintln!(
            "credwarden imds serve on http://{} (AWS_EC2_METADATA_SERVICE_ENDPOINT=http://{}/)",
            server.local_addr(),
            server.local_addr()
        );
        server
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    #[arg(long, default_value = "127.0.0.1:9912")]
    pub listen: SocketAddr,
    /// The real metadata service.
    #[arg(long, default_value = "http://169.254.169.254")]
    pub upstream: String,
    /// Refuse metadata GETs without an IMDSv2 session token.
    #[arg(long)]
    pub require_v2: bool,
    /// Gate user-data like credentials (it often holds secrets).
    #[arg(long)]
    pub gate_user_data: bool,
    /// Extra allowed User-Agent prefixes, beside the AWS SDKs' (anchored, case-sensitive).
    #[arg(long, value_name = "PREFIX")]
    pub allow_user_agent: Vec<String>,
    /// Account, region and role named in findings.
    #[arg(long)]
    pub account: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub principal: Option<String>,
}

pub fn proxy(args: &ProxyArgs) -> Result<()> {
    let mut cfg = ProxyConfig {
        listen: args.listen,
        upstream: args.upstream.clone(),
        require_v2: args.require_v2,
        gate_user_data: args.gate_user_data,
        ..Default::default()
    };
    cfg.allowed_user_agents
        .extend(args.allow_user_agent.iter().cloned());
    cfg.account = args.account.clone();
    cfg.region = args.region.clone();
    cfg.principal = args.principal.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let proxy =
            imds::proxy::MetadataProxy::bind(cfg, Arc::new(StderrLog), Arc::new(StdoutFindings))
                .await?;
        eprintln!(
            "credwarden imds proxy on http://{} → {}",
            proxy.local_addr(),
            args.upstream
        );
        proxy
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_lines() {
        assert_eq!(
            super::split_command("credwarden creds 'my role' --process").unwrap(),
            ["credwarden", "creds", "my role", "--process"]
        );
        assert_eq!(super::split_command(r#"a "" b"#).unwrap(), ["a", "", "b"]);
        assert!(super::split_command("a 'b").is_err());
        assert!(super::split_command("   ").is_err());
    }
}
