//! `credwarden imds serve` (a local metadata server for laptops, fed by the broker through
//! `credwarden creds ROLE --process`) and `credwarden imds proxy` (the SSRF-proof metadata
//! proxy for instances).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Result};
use imds::creds::ProcessSource;
use imds::log::StderrLog;
use imds::proxy::{Cidr, ProxyConfig, CLOUD_INIT_USER_AGENT};
use imds::serve::{Ec2Access, EcsEndpoint, ServeConfig};

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
    /// IMDSv2 only. The default now; accepted so that existing scripts keep working.
    #[arg(long, hide = true, conflicts_with = "allow_imdsv1")]
    pub require_v2: bool,
    /// Also answer IMDSv1 (GETs without a session token). Any local process, and any request
    /// forgery in any local application, then reads the credentials with one GET.
    #[arg(long)]
    pub allow_imdsv1: bool,
    /// Serve the ECS container credential endpoint at /v2/credentials/credwarden, with the
    /// authorization token read from this file (at least 16 characters; clients get it as
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN). A file, not an argument: `ps` shows arguments.
    /// The EC2 metadata paths are then off unless --also-ec2 is given.
    #[arg(long, value_name = "FILE")]
    pub ecs_token_file: Option<std::path::PathBuf>,
    /// With --ecs-token-file: serve the EC2 metadata paths too (to every local process that
    /// can send a token PUT, not only to holders of the ECS token).
    #[arg(long, requires = "ecs_token_file")]
    pub also_ec2: bool,
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

/// Which EC2 paths `imds serve` answers: none in ECS mode unless asked, IMDSv2 unless IMDSv1
/// was asked for.
fn ec2_access(args: &ServeArgs) -> Result<Ec2Access> {
    let ec2 = args.ecs_token_file.is_none() || args.also_ec2;
    Ok(match (ec2, args.allow_imdsv1) {
        (false, true) => bail!("--allow-imdsv1 needs the EC2 paths: add --also-ec2"),
        (false, false) => Ec2Access::Off,
        (true, false) => Ec2Access::V2,
        (true, true) => Ec2Access::V1AndV2,
    })
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let argv = split_command(&args.credential_process)?;
    let mut cfg = ServeConfig::new(&args.role);
    cfg.listen = args.listen;
    cfg.ec2 = ec2_access(args)?;
    if cfg.ec2 == Ec2Access::V1AndV2 {
        eprintln!(
            "warning: --allow-imdsv1: any local process, and any request forgery in a local \
             application, can read {}'s credentials with one GET",
            args.role
        );
    }
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
        let ec2 = cfg.ec2;
        let server = imds::serve::MetadataServer::bind(cfg, source, Arc::new(StderrLog)).await?;
        let addr = server.local_addr();
        match ec2 {
            Ec2Access::Off => eprintln!(
                "credwarden imds serve on http://{addr} (ECS only: \
                 AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{addr}/v2/credentials/credwarden)"
            ),
            _ => eprintln!(
                "credwarden imds serve on http://{addr} \
                 (AWS_EC2_METADATA_SERVICE_ENDPOINT=http://{addr}/)"
            ),
        }
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
    /// Refuse metadata GETs without an IMDSv2 session token, on every path (credential paths
    /// need one anyway unless --allow-v1-credentials).
    #[arg(long)]
    pub require_v2: bool,
    /// Serve credential paths (and user-data) without an IMDSv2 token, to old SDKs that only
    /// speak IMDSv1. An SDK aimed at the proxy as an API endpoint without signing then passes.
    #[arg(long)]
    pub allow_v1_credentials: bool,
    /// user-data is gated like credentials by default; accepted so that old scripts still run.
    #[arg(long, hide = true)]
    pub gate_user_data: bool,
    /// Let cloud-init (User-Agent Cloud-Init/…) read user-data through the proxy.
    #[arg(long)]
    pub allow_cloud_init: bool,
    /// A network whose peers may use the proxy besides loopback, e.g. a container bridge
    /// DNATed to it (172.17.0.0/16). Repeatable.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub allow_peer: Vec<Cidr>,
    /// IMDSv2 hop limit for the token PUT: 1 (default) gives tokens, and so credentials, to
    /// loopback peers only; 2 also to --allow-peer networks (containers).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub token_hop_limit: u8,
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
    /// Findings (imds-proxy-blocked) go to stdout, and to these.
    #[command(flatten)]
    pub delivery: crate::delivery_args::DeliveryArgs,
}

fn parse_cidr(s: &str) -> std::result::Result<Cidr, String> {
    Cidr::parse(s).ok_or_else(|| format!("{s:?} is not an IPv4 or IPv6 CIDR block"))
}

fn proxy_config(args: &ProxyArgs) -> ProxyConfig {
    let mut cfg = ProxyConfig {
        listen: args.listen,
        upstream: args.upstream.clone(),
        require_v2: args.require_v2,
        v1_credentials: args.allow_v1_credentials,
        allowed_peers: args.allow_peer.clone(),
        token_hop_limit: args.token_hop_limit,
        ..Default::default()
    };
    if args.allow_cloud_init {
        cfg.user_data_user_agents.push(CLOUD_INIT_USER_AGENT.into());
    }
    cfg.allowed_user_agents
        .extend(args.allow_user_agent.iter().cloned());
    cfg.account = args.account.clone();
    cfg.region = args.region.clone();
    cfg.principal = args.principal.clone();
    cfg
}

pub fn proxy(args: &ProxyArgs) -> Result<()> {
    let cfg = proxy_config(args);
    if cfg.v1_credentials {
        eprintln!(
            "warning: --allow-v1-credentials: credential paths are answered without an IMDSv2 \
             token; an unsigned AWS SDK client aimed at the proxy is then told apart only by \
             its headers"
        );
    }
    let delivery = Arc::new(sink::FindingDelivery::open(&args.delivery.config(true)?)?);
    let findings = {
        let delivery = delivery.clone();
        move |f: imds::log::Finding| {
            if let Err(e) = delivery.deliver(&f) {
                eprintln!(
                    "credwarden imds proxy: cannot deliver finding {}: {e}",
                    f.id
                );
            }
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served: Result<()> = rt.block_on(async {
        let proxy =
            imds::proxy::MetadataProxy::bind(cfg, Arc::new(StderrLog), Arc::new(findings)).await?;
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
    });
    args.delivery.finish(&delivery)?;
    served
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use imds::serve::Ec2Access;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: super::ServeArgs,
    }

    #[derive(Parser)]
    struct Proxy {
        #[command(flatten)]
        args: super::ProxyArgs,
    }

    fn ec2(extra: &[&str]) -> anyhow::Result<Ec2Access> {
        let base = ["t", "--role", "r", "--credential-process", "true"];
        let argv = base.iter().chain(extra);
        super::ec2_access(&Serve::try_parse_from(argv)?.args)
    }

    /// Issue 12, item 2: IMDSv2 by default; IMDSv1 only when asked; the ECS mode serves no EC2
    /// paths unless asked.
    #[test]
    fn serve_modes() {
        assert_eq!(ec2(&[]).unwrap(), Ec2Access::V2);
        assert_eq!(ec2(&["--require-v2"]).unwrap(), Ec2Access::V2);
        assert_eq!(ec2(&["--allow-imdsv1"]).unwrap(), Ec2Access::V1AndV2);
        assert!(ec2(&["--require-v2", "--allow-imdsv1"]).is_err());
        assert_eq!(ec2(&["--ecs-token-file", "f"]).unwrap(), Ec2Access::Off);
        let both = ["--ecs-token-file", "f", "--also-ec2"];
        assert_eq!(ec2(&both).unwrap(), Ec2Access::V2);
        assert!(ec2(&["--ecs-token-file", "f", "--allow-imdsv1"]).is_err());
        assert!(
            ec2(&["--also-ec2"]).is_err(),
            "--also-ec2 means nothing without ECS"
        );
    }

    /// Issue 12, items 4 and 5: the proxy's defaults and flags.
    #[test]
    fn proxy_flags() {
        let cfg = |extra: &[&str]| {
            let argv = ["t"].iter().chain(extra).copied().collect::<Vec<_>>();
            Proxy::try_parse_from(argv).map(|p| super::proxy_config(&p.args))
        };
        let d = cfg(&[]).unwrap();
        assert!(d.gate_user_data && !d.v1_credentials);
        assert!(d.allowed_peers.is_empty() && d.user_data_user_agents.is_empty());
        assert_eq!(d.token_hop_limit, 1);
        let c = cfg(&[
            "--allow-cloud-init",
            "--allow-peer",
            "172.17.0.0/16",
            "--allow-peer",
            "fd00:d0c::/64",
            "--token-hop-limit",
            "2",
            "--allow-v1-credentials",
            "--gate-user-data",
        ])
        .unwrap();
        assert_eq!(
            c.user_data_user_agents,
            [imds::proxy::CLOUD_INIT_USER_AGENT]
        );
        assert!(c.peer_allowed("172.17.3.4".parse().unwrap()));
        assert!(c.token_allowed("fd00:d0c::9".parse().unwrap()));
        assert!(c.v1_credentials && c.gate_user_data);
        assert!(cfg(&["--allow-peer", "docker0"]).is_err());
        assert!(cfg(&["--token-hop-limit", "0"]).is_err());
    }

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
