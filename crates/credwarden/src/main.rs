//! credwarden: layered AWS credential defence. See README.md.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use credwarden::{
    accounts_cmd, baseline_cmd, broker_cmd, config, demo_cmd, detect_cmd, imds_cmd, ipranges,
    policy_cmd, shrink_cmd, webhook_cmd,
};

#[derive(Parser)]
#[command(
    name = "credwarden",
    version,
    about = "Find stolen AWS credentials in CloudTrail, and keep them from being useful."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find credential compromise in CloudTrail files, folders or stdin.
    Detect(Box<detect_cmd::DetectArgs>),
    /// Generate a realistic company's CloudTrail with injected attacks, detect, and score.
    Demo(demo_cmd::DemoArgs),
    /// Baselines for the learning detectors.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// AWS's published IP address ranges.
    #[command(name = "ip-ranges", subcommand)]
    IpRanges(IpRangesCommand),
    /// Configuration file help.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Evaluate, normalise, generate and verify IAM policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The IAM action catalogue and CloudTrail-to-action mapping.
    #[command(subcommand)]
    Iam(IamCommand),
    /// The credential broker: short-lived, network-locked, audited STS credentials for groups.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Get credentials from the broker (shell exports, or --process for credential_process).
    Creds(broker_cmd::CredsArgs),
    /// Instance metadata: a local metadata server for laptops, an SSRF-proof proxy for instances.
    #[command(subcommand)]
    Imds(ImdsCommand),
    /// Right-size roles from what CloudTrail shows they used: plan, apply, roll back.
    #[command(subcommand)]
    Shrink(ShrinkCommand),
    /// Long-lived access keys: audit (old, unused, root, beside a console password) and retire.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Broker directory memberships.
    #[command(subcommand)]
    Access(AccessCommand),
    /// The dead letters of the webhooks (`--webhook`, `[[notify.route]]`): findings refused for
    /// good or past the retry limit, per route.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The account registry: names, owners and environments of the organisation's accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Read the accounts from AWS Organizations (--live) or a file into the state file.
    Sync(accounts_cmd::SyncArgs),
    /// Show the registry.
    List(accounts_cmd::ListArgs),
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// List the dead letters in a state file, oldest first.
    DeadLetters(webhook_cmd::DeadLettersArgs),
    /// Move dead letters back to their routes' spools (all, or --route NAME…, --id ID…); with
    /// --url or --config, post them now.
    Resend(webhook_cmd::ResendArgs),
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Find (and with --apply remove) memberships that no role use backs within the window.
    Prune(Box<shrink_cmd::AccessPruneArgs>),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Audit keys from the credential report and CloudTrail; --apply deactivates unused ones.
    Audit(Box<shrink_cmd::KeysAuditArgs>),
    /// Undo a deactivation.
    Reactivate(shrink_cmd::KeysReactivateArgs),
}

#[derive(Subcommand)]
enum ShrinkCommand {
    /// Plan: per role, the granted permissions minus the unused ones (a diff, and JSON with --output).
    Plan(Box<shrink_cmd::PlanArgs>),
    /// Announce a plan to the roles' owners (findings) and set the date from which it may be applied.
    Schedule(shrink_cmd::ScheduleArgs),
    /// Apply a plan through the IAM API, recording every role's previous policies first.
    Apply(shrink_cmd::ApplyArgs),
    /// Restore a role's recorded policies (the newest record, or --to VERSION).
    Rollback(shrink_cmd::RollbackArgs),
    /// List a role's recorded policy versions.
    History(shrink_cmd::HistoryArgs),
    /// Propose one role per person for a shared role, fitted to what each person did with it.
    PerUser(Box<shrink_cmd::PerUserArgs>),
}

#[derive(Subcommand)]
enum ImdsCommand {
    /// Serve EC2 metadata (IMDSv1/v2) and ECS container credentials on loopback, refreshed from a credential_process.
    Serve(imds_cmd::ServeArgs),
    /// Forward to the real metadata service; credential paths only for AWS SDK user agents.
    Proxy(imds_cmd::ProxyArgs),
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Run the broker.
    Serve(broker_cmd::ServeArgs),
    /// Print a commented example broker configuration.
    ConfigExample,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Decide one request against identity, session, boundary and resource policies (prints one JSON object).
    Evaluate(policy_cmd::EvaluateArgs),
    /// Print a policy file in credwarden's normalised form (stable key order, sorted values).
    Fmt { file: PathBuf },
    /// Generate the environment-lock policy for an account from its inventory (verified before it is printed).
    Lock(Box<policy_cmd::LockArgs>),
    /// Decide a table of inside and outside calls against the lock; exit 3 if any is decided wrongly.
    Verify(Box<policy_cmd::VerifyArgs>),
    /// Delivery lockdown: pass only roles your application owns; report untagged roles and pass-anything principals.
    Passrole(Box<policy_cmd::PassRoleArgs>),
}

#[derive(Subcommand)]
enum IamCommand {
    /// List the actions that patterns cover, or that a policy grants (--used-by).
    Actions(policy_cmd::ActionsArgs),
    /// The IAM action(s) a CloudTrail event (eventSource, eventName) exercised.
    Event {
        event_source: String,
        event_name: String,
    },
}

#[derive(Subcommand)]
enum IpRangesCommand {
    /// Download ip-ranges.json and check it before replacing the local copy.
    Fetch {
        #[arg(long, default_value = ipranges::OFFICIAL_URL)]
        url: String,
        #[arg(long, short, default_value = "ip-ranges.json")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum BaselineCommand {
    /// Learn from logs you already have: what they show becomes the baseline in --state.
    Build(baseline_cmd::BaselineArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example credwarden.toml.
    Example,
}

fn main() -> ExitCode {
    let version: &'static str = Box::leak(policy_cmd::version_text().into_boxed_str());
    let parsed = Cli::command()
        .version(version)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        // `credwarden detect … | head`: the reader has all it wanted; not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("credwarden: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line. A library error that already quotes its cause in its
/// own message is not followed by that cause again.
fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Detect(args) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut err = std::io::stderr();
            let summary =
                detect_cmd::detect(&args, &mut out, &mut err, detect_cmd::stdout_is_tty())?;
            out.flush()?;
            Ok(if args.strict && summary.input_errors > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Demo(args) => {
            demo_cmd::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::IpRanges(IpRangesCommand::Fetch { url, output }) => {
            let r = ipranges::fetch(&url, &output)?;
            println!(
                "saved {} prefixes (syncToken {}, created {}) to {}",
                r.prefixes,
                r.sync_token,
                r.create_date,
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Baseline(BaselineCommand::Build(args)) => {
            baseline_cmd::build(&args, &mut std::io::stderr())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(cmd) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut err = std::io::stderr();
            let code = match cmd {
                PolicyCommand::Evaluate(args) => {
                    policy_cmd::evaluate(&args, &mut out).map(|_| 0)?
                }
                PolicyCommand::Fmt { file } => policy_cmd::fmt(&file, &mut out).map(|_| 0)?,
                PolicyCommand::Lock(args) => policy_cmd::lock(&args, &mut out, &mut err)?,
                PolicyCommand::Verify(args) => policy_cmd::verify(&args, &mut out, &mut err)?,
                PolicyCommand::Passrole(args) => policy_cmd::passrole(&args, &mut out, &mut err)?,
            };
            out.flush()?;
            Ok(ExitCode::from(code))
        }
        Command::Broker(BrokerCommand::Serve(args)) => {
            broker_cmd::serve(&args, &mut std::io::stderr())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Broker(BrokerCommand::ConfigExample) => {
            print!("{}", broker::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Command::Imds(ImdsCommand::Serve(args)) => {
            imds_cmd::serve(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Imds(ImdsCommand::Proxy(args)) => {
            imds_cmd::proxy(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Shrink(cmd) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match cmd {
                ShrinkCommand::Plan(args) => {
                    shrink_cmd::plan(&args, &mut out, &mut std::io::stderr()).map(drop)?
                }
                ShrinkCommand::Schedule(args) => shrink_cmd::schedule(&args, &mut out)?,
                ShrinkCommand::Apply(args) => shrink_cmd::apply(&args, &mut out)?,
                ShrinkCommand::Rollback(args) => shrink_cmd::rollback(&args, &mut out)?,
                ShrinkCommand::History(args) => shrink_cmd::history(&args, &mut out)?,
                ShrinkCommand::PerUser(args) => {
                    shrink_cmd::per_user(&args, &mut out, &mut std::io::stderr())?
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Access(AccessCommand::Prune(args)) => {
            shrink_cmd::access_prune(&args, &mut std::io::stdout().lock(), &mut std::io::stderr())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(cmd) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match cmd {
                KeysCommand::Audit(args) => {
                    shrink_cmd::keys_audit(&args, &mut out, &mut std::io::stderr())?
                }
                KeysCommand::Reactivate(args) => shrink_cmd::keys_reactivate(&args, &mut out)?,
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Webhook(WebhookCommand::DeadLetters(args)) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            webhook_cmd::dead_letters(&args, &mut out, &mut std::io::stderr())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Accounts(AccountsCommand::Sync(args)) => {
            accounts_cmd::sync(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Accounts(AccountsCommand::List(args)) => {
            accounts_cmd::list(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Webhook(WebhookCommand::Resend(args)) => {
            webhook_cmd::resend(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Creds(args) => {
            broker_cmd::creds(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Iam(cmd) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match cmd {
                IamCommand::Actions(args) => {
                    policy_cmd::actions(&args, &mut out, &mut std::io::stderr())?
                }
                IamCommand::Event {
                    event_source,
                    event_name,
                } => policy_cmd::event(&event_source, &event_name, &mut out)?,
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
