//! credwarden: layered AWS credential defence. See README.md.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use credwarden::{baseline_cmd, config, demo, detect_cmd, ipranges};

#[derive(Parser)]
#[command(name = "credwarden", version, about = "Find stolen AWS credentials in CloudTrail, and keep them from being useful.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find credential compromise in CloudTrail files, folders or stdin.
    Detect(Box<detect_cmd::DetectArgs>),
    /// Generate a realistic company's CloudTrail with injected attacks, detect, and score.
    Demo(demo::DemoArgs),
    /// Baselines for the learning detectors.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// AWS's published IP address ranges.
    #[command(name = "ip-ranges", subcommand)]
    IpRanges(IpRangesCommand),
    /// Configuration file help.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    let cli = match Cli::try_parse() {
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
        Err(e) if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credwarden: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Detect(args) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut err = std::io::stderr();
            let summary = detect_cmd::detect(&args, &mut out, &mut err, detect_cmd::stdout_is_tty())?;
            out.flush()?;
            Ok(if args.strict && summary.input_errors > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
        }
        Command::Demo(args) => {
            demo::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::IpRanges(IpRangesCommand::Fetch { url, output }) => {
            let r = ipranges::fetch(&url, &output)?;
            println!("saved {} prefixes (syncToken {}, created {}) to {}", r.prefixes, r.sync_token, r.create_date, output.display());
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
    }
}
