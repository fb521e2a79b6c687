//! `credwarden detect`: options, wiring, output, summary.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cloudtrail::{EventTime, FileReport};
use detect::{DetectorSettings, Engine, NetSet, OwnershipMap};
use run::{
    run_passes, DurableLedger, FindingSink, Format, MemoryLedger, Passes, PathSource, RunSummary,
    S3Source, Source, SqsSource,
};
use sink::{RouteSenders, Router};
use store::Store;

use crate::config::Config;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Table,
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

#[derive(Clone, Debug, Default, clap::Args)]
pub struct DetectArgs {
    /// Files, folders (walked recursively) or `-` for stdin: S3 delivery files (.json.gz,
    /// .json), JSON arrays, JSON lines, EventBridge events, lookup-events output. Or
    /// `s3://BUCKET/PREFIX`: a trail's delivery in S3 (narrowed by --accounts, --regions,
    /// --since, --until).
    #[arg(required_unless_present = "sqs", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format [default: table on a terminal, jsonl otherwise].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Also append each finding as a JSON line to FILE (created if missing), written and
    /// fsynced before the finding is recorded as emitted in --state.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// SQLite state file: what the detectors learned, which files were processed, and which
    /// findings were emitted carry over to the next run; nothing is reported twice.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// POST each finding to URL, in --webhook-format (needs --state, whose spool keeps what the endpoint
    /// has not accepted yet; retried with backoff, carried over to the next run). A finding
    /// refused for good (4xx other than 408/429) or past --webhook-max-attempts goes to the
    /// state file's dead letters (`credwarden webhook dead-letters`). The route named
    /// "webhook", besides the [[notify.route]]s of --config.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Failed webhook attempts (counted across runs) after which a finding is moved to the
    /// dead letters, for every route [default: 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub webhook_max_attempts: Option<u32>,
    /// What the webhook receives: the finding's JSON, or a Slack incoming-webhook message.
    #[arg(long, value_enum, default_value_t = crate::delivery_args::WebhookFormat::Json)]
    pub webhook_format: crate::delivery_args::WebhookFormat,
    /// Seconds to wait at the end of a run for the webhook spool to empty.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub webhook_wait: u64,
    /// With --state: commit a checkpoint after this many files (and at least every 30 s).
    /// Each checkpoint rewrites the detectors' whole state; fewer means less work, more
    /// files read again after a crash.
    #[arg(long, value_name = "FILES", default_value_t = 1024)]
    pub checkpoint_every: usize,
    /// Exit with status 2 when any input error was counted.
    #[arg(long)]
    pub strict: bool,
    /// Configuration file (see `credwarden config example`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Egress CIDR of ours (repeatable): never a foreign source.
    #[arg(long = "egress", value_name = "CIDR")]
    pub egress: Vec<String>,
    /// Account whose VPC endpoints count as ours (repeatable).
    #[arg(long = "known-account", value_name = "ACCOUNT")]
    pub known_accounts: Vec<String>,
    /// AWS's ip-ranges.json: enables the outside-AWS signal.
    #[arg(long, value_name = "FILE")]
    pub aws_ip_ranges: Option<PathBuf>,
    /// Minutes of event time a record may arrive late and still count [default: 15].
    #[arg(long, value_name = "MINUTES")]
    pub lateness: Option<u32>,
    /// Minutes a credential's state is kept after it expires [default: 60].
    #[arg(long, value_name = "MINUTES")]
    pub expiry_margin: Option<u32>,
    /// Inventory files (aws iam get-account-authorization-details JSON): role ownership for
    /// foreign-role-pass from the owner tag.
    #[arg(long, value_name = "FILE")]
    pub inventory: Vec<PathBuf>,
    /// The tag naming a role's application [default: application].
    #[arg(long, value_name = "KEY")]
    pub owner_tag: Option<String>,
    /// Canary (repeatable): an access key id or an ARN pattern (`*`, `?`) that nobody should
    /// ever use; any use is a critical finding.
    #[arg(long = "canary", value_name = "KEY|ARN")]
    pub canaries: Vec<String>,
    /// Hours an account or principal is watched before what it does counts as new (recon-call,
    /// new-role-behaviour, unused-service, unused-region) [default: 336, i.e. 14 days].
    #[arg(long = "learning", value_name = "HOURS")]
    pub learning_hours: Option<u32>,
    /// Decoding threads (0: one per core) [default: one per core for files; 16 for s3:// and
    /// --sqs, whose workers mostly wait on GETs].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Detectors to run, comma-separated, `all`, or `none` (decode only, for benchmarks).
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub detectors: String,
    /// Write the run's figures (records/s, MB/s, peak RSS, counts, and where the time went:
    /// `cpu_seconds` of all threads, `engine_seconds` in the detectors; for S3, `hedged_gets`:
    /// GETs asked again because the first was slow) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Keep watching the folders: process new delivery files as they arrive (files still
    /// being written, modified in the last two seconds, wait for the next look). Stdin (`-`)
    /// is always read as a live stream, record by record, until it ends.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: seconds between looks at the folders.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub poll: u64,
    /// No end-of-run summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Read the delivery files announced on this SQS queue (S3 event notifications, direct,
    /// through SNS or EventBridge, or CloudTrail's SNS notifications). Messages are deleted
    /// only after the checkpoint that covers their objects. Without --follow the queue is read
    /// until it is empty.
    #[arg(
        long,
        value_name = "QUEUE_URL",
        conflicts_with = "paths",
        requires = "sqs_bucket"
    )]
    pub sqs: Option<String>,
    /// With --sqs: a bucket the trail delivers to (repeatable). Notifications naming any
    /// other bucket are not read (whoever can send to the queue must not choose what is read).
    #[arg(long = "sqs-bucket", value_name = "BUCKET")]
    pub sqs_bucket: Vec<String>,
    /// With --sqs: seconds a receive waits for messages (long polling, 0..=20).
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub sqs_wait: i32,
    /// With --sqs: seconds a received message stays invisible; after a crash its objects are
    /// read again once it reappears. Keep it well above a pass's time.
    #[arg(long, value_name = "SECONDS", default_value_t = run::SQS_VISIBILITY_SECONDS)]
    pub sqs_visibility: i32,
    /// With s3://: only these accounts (comma-separated or repeated).
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub accounts: Vec<String>,
    /// With s3://: only these regions (comma-separated or repeated).
    #[arg(long, value_name = "REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// With s3://: only delivery days from this date (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// With s3:// and --since: only delivery days up to this date (default: today; at most
    /// ten years after --since).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// How to reach AWS for s3:// (endpoint and region).
    #[command(flatten)]
    pub aws: crate::inventory::AwsArgs,
}

/// A day given as `YYYY-MM-DD` or an RFC 3339 time.
fn parse_day(flag: &str, text: &str) -> Result<EventTime> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    EventTime::parse(&full).with_context(|| format!("{flag} {text:?} is not a date"))
}

/// `--accounts` as ids: registry names (from the state file) are resolved.
fn resolve_accounts(args: &DetectArgs) -> Result<Vec<String>> {
    crate::accounts_cmd::resolve_ids(
        &args.accounts,
        args.state.as_deref(),
        "--accounts",
        "--state",
    )
}

/// Where this run reads: the paths given, or S3 locations (not both); for S3, the reader's
/// counters for the end-of-run report.
fn source_of(args: &DetectArgs) -> Result<(Box<dyn Source>, Option<aws::S3Counters>)> {
    let live = aws::LiveOptions {
        endpoint_url: args.aws.endpoint_url.clone(),
        region: args.aws.region.clone(),
        regions: Vec::new(),
    };
    if let Some(url) = &args.sqs {
        let queue = aws::SqsQueue::connect(&live, url)?;
        let reader = aws::S3Reader::connect(&live)?;
        let counters = reader.counters();
        let source = SqsSource::new(
            queue,
            reader,
            args.sqs_wait,
            args.sqs_visibility,
            args.sqs_bucket.clone(),
        );
        return Ok((Box::new(source), Some(counters)));
    }
    let is_s3 = |p: &PathBuf| p.to_str().is_some_and(|s| s.starts_with("s3://"));
    let s3 = args.paths.iter().filter(|p| is_s3(p)).count();
    let scoped = !args.accounts.is_empty()
        || !args.regions.is_empty()
        || args.since.is_some()
        || args.until.is_some();
    if s3 == 0 {
        if scoped {
            bail!("--accounts, --regions, --since and --until narrow an s3:// location");
        }
        return Ok((Box::new(PathSource::new(args.paths.clone())), None));
    }
    if s3 != args.paths.len() {
        bail!("give either s3:// locations or local paths, not both");
    }
    let locations = args
        .paths
        .iter()
        .map(|p| {
            let text = p.to_str().unwrap_or_default();
            aws::S3Location::parse(text)
                .with_context(|| format!("{text:?} is not s3://BUCKET[/PREFIX]"))
        })
        .collect::<Result<Vec<_>>>()?;
    let scope = aws::TrailScope {
        accounts: resolve_accounts(args)?,
        regions: args.regions.clone(),
        since: args
            .since
            .as_deref()
            .map(|t| parse_day("--since", t))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| parse_day("--until", t))
            .transpose()?,
    };
    let reader = aws::S3Reader::connect(&live)?;
    let counters = reader.counters();
    Ok((
        Box::new(S3Source::new(reader, locations, scope)),
        Some(counters),
    ))
}

/// The lateness allowance: flag, else config, else the default.
fn lateness_ms(args: &DetectArgs, cfg: &Config) -> i64 {
    args.lateness
        .or(cfg.detect.lateness_minutes)
        .map_or(detect::engine::DEFAULT_LATENESS_MS, |m| {
            i64::from(m) * EventTime::MINUTE
        })
}

/// What the detectors named in `names` are told: flags over the configuration file over
/// each detector's defaults. Files are only read for a detector that will run.
fn detector_settings(args: &DetectArgs, cfg: &Config, names: &[&str]) -> Result<DetectorSettings> {
    let wants = |name: &str| names.contains(&name);
    let mut egress = cfg.detect.egress_cidrs.clone();
    egress.extend(args.egress.iter().cloned());
    let mut settings = DetectorSettings {
        lateness_ms: lateness_ms(args, cfg),
        learning_ms: args
            .learning_hours
            .or(cfg.detect.learning_hours)
            .map(|h| i64::from(h) * EventTime::HOUR),
        egress: NetSet::parse_list(&egress).context("egress CIDRs")?,
        known_accounts: cfg
            .detect
            .known_accounts
            .iter()
            .chain(&args.known_accounts)
            .cloned()
            .collect::<HashSet<_>>(),
        aws_ranges: None,
        expiry_margin_ms: args
            .expiry_margin
            .or(cfg.detect.expiry_margin_minutes)
            .map(|m| i64::from(m) * EventTime::MINUTE),
        burst_rate_threshold: cfg.detect.burst_rate_threshold,
        burst_spread_actions: cfg.detect.burst_spread_actions,
        ownership: OwnershipMap {
            roles: cfg.detect.ownership.roles.clone().into_iter().collect(),
            principals: cfg
                .detect
                .ownership
                .principals
                .clone()
                .into_iter()
                .collect(),
        },
        canaries: cfg
            .detect
            .canaries
            .iter()
            .chain(&args.canaries)
            .cloned()
            .collect(),
    };
    if wants(detect::off_instance::NAME) {
        if let Some(path) = args
            .aws_ip_ranges
            .as_ref()
            .or(cfg.detect.aws_ip_ranges.as_ref())
        {
            settings.aws_ranges = Some(crate::ipranges::load(path)?);
        }
    }
    if wants(detect::foreign_role::NAME) && !args.inventory.is_empty() {
        let tag = args
            .owner_tag
            .clone()
            .or(cfg.detect.ownership.tag.clone())
            .unwrap_or_else(|| "application".to_owned());
        let (roles, principals) = crate::inventory::ownership_from_tags(&args.inventory, &tag)?;
        settings.ownership.roles.extend(roles);
        settings.ownership.principals.extend(principals);
    }
    Ok(settings)
}

/// Run `detect`: findings to `out`, input errors, notes and the summary to `err`.
pub fn detect(
    args: &DetectArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    out_is_tty: bool,
) -> Result<RunSummary> {
    if args.webhook.is_some() && args.state.is_none() {
        bail!(
            "--webhook needs --state: the state file's spool is what keeps a finding the \
             endpoint has not accepted yet"
        );
    }
    let (mut source, s3_counters) = source_of(args)?;
    if source.has_stream() && args.state.is_some() && args.follow {
        bail!(
            "--follow with stdin and --state is not supported: a stream cannot be read again \
             after a crash, so its progress cannot be checkpointed; follow folders with \
             --state, or a stream without it"
        );
    }
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    // Checked before anything is read: a bad URL or a duplicate name is refused up front.
    let routes = crate::delivery_args::notify_routes(
        &cfg,
        args.webhook.as_deref(),
        args.webhook_format,
        args.webhook_max_attempts
            .unwrap_or(run::WEBHOOK_MAX_ATTEMPTS),
    )?;
    if !routes.is_empty() && args.state.is_none() {
        // Not an error: the same credwarden.toml serves quick runs over a few files, which
        // have no state file. But the operator must know nothing is posted.
        writeln!(
            err,
            "warning: the {} notify route(s) of --config are not posted to without --state (the \
             state file's spool keeps what an endpoint has not accepted yet)",
            routes.len()
        )?;
    }
    let names = detect::set::names(&args.detectors)?;
    let detectors = detector_settings(args, &cfg, &names)?.build(&names)?;
    // The state lock before any input is touched: a second run on the same state must fail
    // before it receives SQS messages (hidden from everyone for the visibility timeout) or
    // lists a bucket for nothing. Held to the end of the run.
    let _lock = args.state.as_deref().map(run::lock_state).transpose()?;
    let listing = source.list()?;
    if !args.quiet {
        for n in &listing.notes {
            writeln!(err, "{n}")?;
        }
    }
    if let Some(n) = listing.ignored_note().filter(|_| !args.quiet) {
        writeln!(err, "{n}")?;
    }
    let format = args.format.map_or(
        if out_is_tty {
            Format::Table
        } else {
            Format::Jsonl
        },
        Format::from,
    );
    if format == Format::Table {
        run::write_table_header(out)?;
    }
    let mut engine = Engine::new(detectors).with_lateness(lateness_ms(args, &cfg));
    let passes = Passes {
        threads: args
            .threads
            .or(cfg.detect.threads)
            .or(source.preferred_threads())
            .unwrap_or(0),
        // A queue's receive already waits (long polling): no sleep between its passes.
        follow: args.follow.then(|| {
            Duration::from_secs(if args.sqs.is_some() {
                0
            } else {
                args.poll.max(1)
            })
        }),
    };
    let quiet = args.quiet;
    let mut notes = NoteDigest::default();
    let mut progress = Progress::new(
        listing.total.unwrap_or(listing.inputs.len()),
        !quiet && std::io::stderr().is_terminal(),
    );
    let mut stderr_lines: Vec<String> = Vec::new();
    let (mut summary, delivered, already) = {
        let mut report_file = |report: &FileReport| {
            progress.clear(err);
            for e in &report.errors {
                let _ = writeln!(err, "error: {e}");
            }
            if report.errors_dropped > 0 {
                let _ = writeln!(
                    err,
                    "error: {}: {} more errors not shown",
                    report.source, report.errors_dropped
                );
            }
            if !quiet {
                for n in &report.notes {
                    notes.note(err, &report.source, n);
                }
            }
            progress.file_done(err, report.records);
        };
        let mut note = |line: String| stderr_lines.push(line);
        match &args.state {
            Some(state_path) => {
                let mut store = Store::open(state_path)?;
                let run_id = store.begin_run()?;
                run::restore(&store, &mut engine)?;
                // An interrupted run may have left findings committed but not delivered, and
                // half a line in --output: repair, then deliver what is missing.
                let interrupted = !store.outbox()?.is_empty();
                let (file, written) = match &args.output {
                    Some(p) => {
                        let (f, ids) = run::open_output(p, interrupted)?;
                        (Some(f), ids)
                    }
                    None => (None, Default::default()),
                };
                let mut sink = FindingSink::new(out, format, file);
                // Each delivered finding is spooled once per matching route, in the same
                // transaction that marks it delivered; one sender per route posts it.
                sink.spool = Router::new(&routes);
                let senders = RouteSenders::start(state_path, &routes)?;
                run::drain_outbox(&mut store, &mut sink, &written)?;
                let accounts = run::AccountNames::load(&store)?;
                let mut ledger = DurableLedger::new(
                    &mut store,
                    &mut sink,
                    args.checkpoint_every,
                    Duration::from_secs(30),
                    &mut report_file,
                )
                .with_accounts(accounts);
                let total = run_passes(
                    source.as_mut(),
                    listing.inputs,
                    &mut engine,
                    &mut ledger,
                    passes,
                    &mut note,
                )?;
                let already = ledger.already_emitted;
                store.finish_run(run_id, total.records, sink.delivered, total.input_errors)?;
                let sent = senders.finish(Duration::from_secs(args.webhook_wait))?;
                for line in crate::delivery_args::webhook_notes(&sent, state_path)? {
                    note(line);
                }
                (total, sink.delivered, already)
            }
            None => {
                let file = args
                    .output
                    .as_deref()
                    .map(|p| run::open_output(p, false))
                    .transpose()?
                    .map(|(f, _)| f);
                let mut sink = FindingSink::new(out, format, file);
                let mut ledger = MemoryLedger::new(&mut sink, &mut report_file);
                let total = run_passes(
                    source.as_mut(),
                    listing.inputs,
                    &mut engine,
                    &mut ledger,
                    passes,
                    &mut note,
                )?;
                (total, sink.delivered, 0)
            }
        }
    };
    progress.clear(err);
    if !quiet {
        for line in &stderr_lines {
            writeln!(err, "{line}")?;
        }
        notes.finish(err);
    }
    summary.findings_emitted = delivered;
    summary.findings_already_emitted = already;
    let rss = run::peak_rss_bytes();
    let hedged = s3_counters.as_ref().map(aws::S3Counters::hedged_gets);
    if !args.quiet {
        writeln!(err, "{}", summary_line(&summary, rss))?;
        if let Some(n) = hedged.filter(|n| *n > 0) {
            writeln!(
                err,
                "credwarden: {n} S3 GET(s) had no answer after four times the usual time \
                 and were asked again (a slow bucket, endpoint or link)"
            )?;
        }
    }
    if let Some(path) = &args.stats_json {
        let stats = serde_json::json!({
            "files": summary.files, "records": summary.records, "bytes": summary.bytes,
            "seconds": summary.elapsed.as_secs_f64(),
            "records_per_second": summary.records_per_second(),
            "megabytes_per_second": summary.megabytes_per_second(), "peak_rss_bytes": rss,
            "input_errors": summary.input_errors, "skipped_values": summary.skipped_values,
            "duplicates": summary.engine.duplicates, "late_records": summary.engine.late,
            "future_records": summary.engine.future,
            "findings": delivered, "findings_already_emitted": already,
            "detectors": engine.detector_names(),
            "peak_live_state": summary.engine.peak_live_state,
            // Where the time went: CPU of all threads (decoding is most of it) and the serial
            // consumer's time in the detectors.
            "cpu_seconds": run::cpu_time().map(|d| d.as_secs_f64()),
            "engine_seconds": summary.engine_busy.as_secs_f64(),
            // S3 only: GETs asked again because the first had not answered (null for files).
            "hedged_gets": hedged,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&stats)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(summary)
}

pub fn summary_line(s: &RunSummary, rss: Option<u64>) -> String {
    let mut line = format!(
        "credwarden: {} file(s), {} records ({:.1} MB) in {:.2} s ({:.0} records/s, {:.0} MB/s); {} finding(s)",
        s.files,
        s.records,
        s.bytes as f64 / 1e6,
        s.elapsed.as_secs_f64(),
        s.records_per_second(),
        s.megabytes_per_second(),
        s.findings_emitted
    );
    if s.findings_already_emitted > 0 {
        line += &format!(" ({} already reported earlier)", s.findings_already_emitted);
    }
    line += &format!(
        "; {} input error(s); {} non-record value(s) skipped; {} duplicate(s)",
        s.input_errors, s.skipped_values, s.engine.duplicates
    );
    if s.engine.late > 0 {
        line += &format!(
            "; {} record(s) later than the lateness allowance",
            s.engine.late
        );
    }
    if s.engine.future > 0 {
        line += &format!(
            "; {} record(s) stamped in the future (not used to advance event time)",
            s.engine.future
        );
    }
    if let Some(r) = rss {
        line += &format!("; peak RSS {:.0} MB", r as f64 / 1e6);
    }
    line
}

pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Notes about skipped values, without a line per file: the first few of each kind are shown,
/// the rest counted (a trail has a digest file per region per hour).
#[derive(Default)]
struct NoteDigest {
    seen: Vec<(String, u64)>,
}

impl NoteDigest {
    const SHOWN: u64 = 3;

    fn note(&mut self, err: &mut dyn Write, source: &str, note: &str) {
        let i = match self.seen.iter().position(|(n, _)| n == note) {
            Some(i) => i,
            None => {
                self.seen.push((note.to_owned(), 0));
                self.seen.len() - 1
            }
        };
        self.seen[i].1 += 1;
        if self.seen[i].1 <= Self::SHOWN {
            let _ = writeln!(err, "note: {source}: skipped: {note}");
        }
    }

    fn finish(&self, err: &mut dyn Write) {
        for (note, n) in &self.seen {
            if *n > Self::SHOWN {
                let _ = writeln!(
                    err,
                    "note: {} more skipped for the same reason: {note}",
                    n - Self::SHOWN
                );
            }
        }
    }
}

/// A one-line progress display on a terminal's stderr, redrawn at most a few times a second.
struct Progress {
    total: usize,
    done: usize,
    records: u64,
    enabled: bool,
    start: std::time::Instant,
    last: std::time::Instant,
    shown: bool,
}

impl Progress {
    fn new(total: usize, enabled: bool) -> Progress {
        let now = std::time::Instant::now();
        Progress {
            total,
            done: 0,
            records: 0,
            enabled,
            start: now,
            last: now,
            shown: false,
        }
    }

    fn file_done(&mut self, err: &mut dyn Write, records: u64) {
        self.done += 1;
        self.records += records;
        if !self.enabled || self.last.elapsed() < std::time::Duration::from_millis(250) {
            return;
        }
        self.last = std::time::Instant::now();
        let rate = self.records as f64 / self.start.elapsed().as_secs_f64().max(1e-3);
        let _ = write!(
            err,
            "\r\x1b[2K{}/{} files, {} records, {:.0} records/s",
            self.done, self.total, self.records, rate
        );
        let _ = err.flush();
        self.shown = true;
    }

    fn clear(&mut self, err: &mut dyn Write) {
        if self.shown {
            let _ = write!(err, "\r\x1b[2K");
            self.shown = false;
        }
    }
}
