//! `credwarden detect`: options, wiring, output, summary.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cloudtrail::FileReport;
use cloudtrail::{discover, EventTime};
use detect::{
    BurstConfig, CanaryConfig, CanaryDetector, Detector, Engine, EnumerationBurstDetector,
    ForeignRolePassConfig, ForeignRolePassDetector, NetSet, Novelty, NoveltyConfig,
    NoveltyDetector, OffInstanceConfig, OffInstanceDetector, OwnershipMap, StaticKeyConfig,
    StaticKeyDetector,
};
use store::Store;

use crate::config::Config;
use crate::durable::{self, DurableRun, Sink};
use crate::output::{write_table_header, Format};
use crate::pipeline::{peak_rss_bytes, run_with_hooks, ClosureHooks, RunSummary};

/// Detector names this build implements.
pub const DETECTORS: &[&str] = &[
    detect::off_instance::NAME,
    detect::burst::NAME,
    detect::static_key::NAME,
    detect::recon::NAME,
    detect::canary::NAME,
    detect::novelty::NEW_ROLE_BEHAVIOUR,
    detect::novelty::UNUSED_SERVICE,
    detect::novelty::UNUSED_REGION,
    detect::foreign_role::NAME,
];

#[derive(Clone, Debug, Default, clap::Args)]
pub struct DetectArgs {
    /// Files, folders (walked recursively) or `-` for stdin: S3 delivery files (.json.gz,
    /// .json), JSON arrays, JSON lines, EventBridge events, lookup-events output.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format [default: table on a terminal, jsonl otherwise].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Also append each finding as a JSON line to FILE (created if missing), written and
    /// fsynced before the finding is recorded as emitted in --state.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// SQLite state file: what the detectors learned, which files were processed, and which
    /// findings were emitted carry over to the next run; nothing is reported twice.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// POST each finding as JSON to URL (needs --state, whose spool keeps what the endpoint
    /// has not accepted yet; retried with backoff, carried over to the next run).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
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
    /// Decoding threads (0: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Detectors to run, comma-separated, `all`, or `none` (decode only, for benchmarks).
    #[arg(long, value_name = "LIST", default_value = "all")]
    pub detectors: String,
    /// Write the run's figures (records/s, MB/s, peak RSS, counts) as JSON to FILE.
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
}

/// The lateness allowance: flag, else config, else the default.
fn lateness_ms(args: &DetectArgs, cfg: &Config) -> i64 {
    args.lateness
        .or(cfg.detect.lateness_minutes)
        .map_or(detect::engine::DEFAULT_LATENESS_MS, |m| {
            i64::from(m) * EventTime::MINUTE
        })
}

fn build_detectors(args: &DetectArgs, cfg: &Config) -> Result<Vec<Box<dyn Detector>>> {
    let wanted: Vec<&str> = match args.detectors.trim() {
        "all" => DETECTORS.to_vec(),
        "none" | "" => Vec::new(),
        list => list.split(',').map(str::trim).collect(),
    };
    let lateness_ms = lateness_ms(args, cfg);
    let mut out: Vec<Box<dyn Detector>> = Vec::new();
    for name in wanted {
        if let Some(kind) = Novelty::by_name(name) {
            let mut nc = NoveltyConfig {
                lateness_ms,
                ..Default::default()
            };
            if let Some(h) = args.learning_hours.or(cfg.detect.learning_hours) {
                nc.learning_ms = i64::from(h) * EventTime::HOUR;
            }
            out.push(Box::new(NoveltyDetector::new(kind, nc)));
            continue;
        }
        match name {
            detect::off_instance::NAME => {
                let mut egress = cfg.detect.egress_cidrs.clone();
                egress.extend(args.egress.iter().cloned());
                let mut oc = OffInstanceConfig {
                    egress: NetSet::parse_list(&egress).context("egress CIDRs")?,
                    lateness_ms,
                    ..Default::default()
                };
                oc.known_accounts = cfg
                    .detect
                    .known_accounts
                    .iter()
                    .chain(&args.known_accounts)
                    .cloned()
                    .collect::<HashSet<_>>();
                if let Some(path) = args
                    .aws_ip_ranges
                    .as_ref()
                    .or(cfg.detect.aws_ip_ranges.as_ref())
                {
                    oc.aws_ranges = Some(crate::ipranges::load(path)?);
                }
                if let Some(m) = args.expiry_margin.or(cfg.detect.expiry_margin_minutes) {
                    oc.expiry_margin_ms = i64::from(m) * EventTime::MINUTE;
                }
                out.push(Box::new(OffInstanceDetector::new(oc)));
            }
            detect::burst::NAME => {
                let mut bc = BurstConfig {
                    lateness_ms,
                    ..Default::default()
                };
                if let Some(n) = cfg.detect.burst_rate_threshold {
                    bc.rate_threshold = n.max(1);
                }
                if let Some(n) = cfg.detect.burst_spread_actions {
                    bc.spread_actions = n.max(1);
                }
                out.push(Box::new(EnumerationBurstDetector::new(bc)));
            }
            detect::static_key::NAME => {
                out.push(Box::new(StaticKeyDetector::new(StaticKeyConfig {
                    lateness_ms,
                    ..Default::default()
                })));
            }
            detect::foreign_role::NAME => {
                let mut ownership = OwnershipMap {
                    roles: cfg
                        .detect
                        .ownership
                        .roles
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    principals: cfg
                        .detect
                        .ownership
                        .principals
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                };
                if !args.inventory.is_empty() {
                    let tag = args
                        .owner_tag
                        .clone()
                        .or(cfg.detect.ownership.tag.clone())
                        .unwrap_or_else(|| "application".to_owned());
                    let (roles, principals) =
                        crate::inventory::ownership_from_tags(&args.inventory, &tag)?;
                    ownership.roles.extend(roles);
                    ownership.principals.extend(principals);
                }
                out.push(Box::new(ForeignRolePassDetector::new(
                    ForeignRolePassConfig {
                        ownership,
                        lateness_ms,
                    },
                )));
            }
            detect::canary::NAME => {
                let canaries: Vec<String> = cfg
                    .detect
                    .canaries
                    .iter()
                    .chain(&args.canaries)
                    .cloned()
                    .collect();
                out.push(Box::new(CanaryDetector::new(CanaryConfig {
                    canaries,
                    lateness_ms,
                })));
            }
            other => bail!(
                "unknown detector {other:?}; this build has: {}",
                DETECTORS.join(", ")
            ),
        }
    }
    Ok(out)
}

/// Run `detect`: findings to `out`, input errors, notes and the summary to `err`.
pub fn detect(
    args: &DetectArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    out_is_tty: bool,
) -> Result<RunSummary> {
    if args.webhook.is_some() && args.state.is_none() {
        bail!("--webhook needs --state: the state file's spool is what keeps a finding the endpoint has not accepted yet");
    }
    let stdin = args.paths.iter().any(|p| p.as_os_str() == "-");
    if stdin && args.state.is_some() && args.follow {
        bail!("--follow with stdin and --state is not supported: a stream cannot be read again after a crash, so its progress cannot be checkpointed; follow folders with --state, or a stream without it");
    }
    let cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let detectors = build_detectors(args, &cfg)?;
    let (sources, ignored) = discover(&args.paths)?;
    if !args.quiet && !ignored.is_empty() {
        writeln!(
            err,
            "note: {} file(s) in the given folders are not named like CloudTrail (.json, .json.gz, .jsonl) and were not read, e.g. {}",
            ignored.len(),
            ignored[0].display()
        )?;
    }
    let format = args.format.unwrap_or(if out_is_tty {
        Format::Table
    } else {
        Format::Jsonl
    });
    if format == Format::Table {
        write_table_header(out)?;
    }
    let mut engine = Engine::new(detectors).with_lateness(lateness_ms(args, &cfg));
    let threads = args.threads.or(cfg.detect.threads).unwrap_or(0);
    let quiet = args.quiet;
    let mut notes = NoteDigest::default();
    let mut progress = Progress::new(sources.len(), !quiet && std::io::stderr().is_terminal());
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
        let poll = std::time::Duration::from_secs(args.poll.max(1));
        match &args.state {
            Some(state_path) => {
                let _lock = durable::lock_state(state_path)?;
                let mut store = Store::open(state_path)?;
                let run_id = store.begin_run()?;
                durable::restore(&store, &mut engine)?;
                // An interrupted run may have left findings committed but not delivered, and
                // half a line in --output: repair, then deliver what is missing.
                let interrupted = !store.outbox()?.is_empty();
                let (file, written) = match &args.output {
                    Some(p) => {
                        let (f, ids) = durable::open_output(p, interrupted)?;
                        (Some(f), ids)
                    }
                    None => (None, Default::default()),
                };
                let mut sink = Sink {
                    out,
                    format,
                    file,
                    delivered: 0,
                    spool_webhook: args.webhook.is_some(),
                };
                let sender = match &args.webhook {
                    Some(url) => Some(crate::webhook::WebhookSender::start(
                        state_path.clone(),
                        url.clone(),
                        std::time::Duration::from_secs(10),
                    )?),
                    None => None,
                };
                durable::drain_outbox(&mut store, &mut sink, &written)?;
                let mut run = DurableRun {
                    store: &mut store,
                    sink: &mut sink,
                    identities: Vec::new(),
                    pending_files: Vec::new(),
                    pending_findings: Vec::new(),
                    already_emitted: 0,
                    last_checkpoint: std::time::Instant::now(),
                    every_files: args.checkpoint_every.max(1),
                    every: std::time::Duration::from_secs(30),
                    on_report: &mut report_file,
                };
                let mut total = RunSummary::default();
                let mut listing = sources;
                loop {
                    let store = &*run.store;
                    let picked =
                        durable::select_sources(listing, args.follow, |path, size, mtime| {
                            Ok(match store.processed(path)? {
                                Some((s, m)) if s == size && m == mtime => durable::Seen::Unchanged,
                                Some(_) => durable::Seen::Changed,
                                None => durable::Seen::New,
                            })
                        })?;
                    stderr_lines.extend(picked.notes);
                    run.identities = picked.identities;
                    let summary =
                        run_with_hooks(&picked.todo, &mut engine, threads, &mut run, false)?;
                    run.checkpoint(&engine)?;
                    total.absorb(summary);
                    if !args.follow {
                        // Everything still open is decided now, for this run's output; the
                        // state saved is the one from before, so the next run continues it.
                        let mut last = Vec::new();
                        engine.finish(&mut last);
                        run.commit_final_findings(last)?;
                        break;
                    }
                    std::thread::sleep(poll);
                    listing = discover(&args.paths)?.0;
                }
                let already = run.already_emitted;
                store.finish_run(run_id, total.records, sink.delivered, total.input_errors)?;
                if let Some(sender) = sender {
                    let (posted, left, failing) =
                        sender.finish(std::time::Duration::from_secs(args.webhook_wait))?;
                    stderr_lines.push(format!("note: webhook: {posted} finding(s) posted"));
                    if left > 0 {
                        stderr_lines.push(format!(
                            "note: webhook: {left} finding(s) wait in the spool of {} and will be posted by the next run{}",
                            state_path.display(),
                            if failing { " (the endpoint is failing)" } else { "" }
                        ));
                    }
                }
                (total, sink.delivered, already)
            }
            None => {
                let file = args
                    .output
                    .as_deref()
                    .map(|p| durable::open_output(p, false))
                    .transpose()?
                    .map(|(f, _)| f);
                let mut sink = Sink {
                    out,
                    format,
                    file,
                    delivered: 0,
                    spool_webhook: false,
                };
                let mut hooks = ClosureHooks(
                    |f: &detect::Finding| -> Result<()> {
                        sink.deliver(&serde_json::to_string(f)?)?;
                        sink.sync()
                    },
                    &mut report_file,
                );
                // Without --state, --follow remembers what it read in memory (a few hundred
                // bytes a file); with --state the state file does.
                let mut seen: std::collections::HashSet<(String, i64, i64)> = Default::default();
                let mut total = RunSummary::default();
                let mut listing = sources;
                loop {
                    let picked =
                        durable::select_sources(listing, args.follow, |path, size, mtime| {
                            Ok(if seen.contains(&(path.to_owned(), size, mtime)) {
                                durable::Seen::Unchanged
                            } else {
                                durable::Seen::New
                            })
                        })?;
                    let summary = run_with_hooks(
                        &picked.todo,
                        &mut engine,
                        threads,
                        &mut hooks,
                        !args.follow,
                    )?;
                    seen.extend(picked.identities.into_iter().flatten());
                    total.absorb(summary);
                    if !args.follow {
                        break;
                    }
                    std::thread::sleep(poll);
                    listing = discover(&args.paths)?.0;
                }
                (total, sink.delivered, 0)
            }
        }
    };
    progress.clear(err);
    for line in &stderr_lines {
        if !quiet {
            writeln!(err, "{line}")?;
        }
    }
    if !quiet {
        notes.finish(err);
    }
    summary.findings_emitted = delivered;
    summary.findings_already_emitted = already;
    let rss = peak_rss_bytes();
    if !args.quiet {
        writeln!(err, "{}", summary_line(&summary, rss))?;
    }
    if let Some(path) = &args.stats_json {
        let stats = serde_json::json!({
            "files": summary.files, "records": summary.records, "bytes": summary.bytes,
            "seconds": summary.elapsed.as_secs_f64(), "records_per_second": summary.records_per_second(),
            "megabytes_per_second": summary.megabytes_per_second(), "peak_rss_bytes": rss,
            "input_errors": summary.input_errors, "skipped_values": summary.skipped_values,
            "duplicates": summary.engine.duplicates, "late_records": summary.engine.late, "future_records": summary.engine.future,
            "findings": delivered, "findings_already_emitted": already, "detectors": engine.detector_names(),
            "peak_live_state": summary.engine.peak_live_state,
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
