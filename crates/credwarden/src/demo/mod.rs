//! `credwarden demo`: a realistic company's CloudTrail with injected attacks, detected and
//! scored against the ground truth. `--generate-only DIR --records N` writes the data alone
//! (for benchmarks), streaming, so ten million records need no more memory than ten thousand.

mod event;
pub mod generate;
mod rng;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cloudtrail::discover;
use detect::{
    BurstConfig, CanaryConfig, CanaryDetector, Engine, EnumerationBurstDetector, Finding,
    ForeignRolePassConfig, ForeignRolePassDetector, Novelty, NoveltyConfig, NoveltyDetector,
    OffInstanceConfig, OffInstanceDetector, StaticKeyConfig, StaticKeyDetector,
};

pub use generate::TruthEntry;

use run::{peak_rss_bytes, run_detect, write_finding, write_table_header, Format};

const MARKER: &str = ".credwarden-demo";

#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Random seed: the same seed writes the same data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Folder for the generated data, truth and findings.
    #[arg(long, default_value = "credwarden-demo")]
    pub out: PathBuf,
    /// Only write the data (S3 layout, truth.jsonl, aws-ip-ranges.json) into DIR.
    #[arg(long, value_name = "DIR")]
    pub generate_only: Option<PathBuf>,
    /// About how many records to write [default: 60000].
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
}

/// Outcome of scoring findings against the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub findings: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub attacks: usize,
    pub attacks_found: usize,
}

impl Score {
    pub fn precision(&self) -> f64 {
        if self.findings == 0 {
            1.0
        } else {
            self.true_positives as f64 / self.findings as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.attacks == 0 {
            1.0
        } else {
            self.attacks_found as f64 / self.attacks as f64
        }
    }
}

/// A finding matches an attack when it names the attack's credential and source.
pub fn matches(f: &Finding, t: &TruthEntry) -> bool {
    f.detector == t.detector
        && f.access_key_id.as_deref() == Some(t.access_key_id.as_str())
        && f.source.ip.as_deref() == Some(t.source_ip.as_str())
}

pub fn score(findings: &[Finding], truth: &[TruthEntry]) -> Score {
    let tp = findings
        .iter()
        .filter(|f| truth.iter().any(|t| matches(f, t)))
        .count();
    let found = truth
        .iter()
        .filter(|t| findings.iter().any(|f| matches(f, t)))
        .count();
    Score {
        findings: findings.len(),
        true_positives: tp,
        false_positives: findings.len() - tp,
        attacks: truth.len(),
        attacks_found: found,
    }
}

/// Prepare an output folder: create it, or reuse one an earlier demo made; never clobber
/// a folder of someone else's.
fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        let non_empty = std::fs::read_dir(dir)?.next().is_some();
        if non_empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by credwarden demo; choose another folder",
                dir.display()
            );
        }
        let logs = dir.join("AWSLogs");
        if logs.exists() {
            std::fs::remove_dir_all(&logs)
                .with_context(|| format!("cannot clear {}", logs.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by credwarden demo; safe to delete\n",
    )?;
    Ok(())
}

/// Generate the data set: logs, truth.jsonl and aws-ip-ranges.json.
pub fn write_dataset(dir: &Path, seed: u64, records: u64) -> Result<generate::Generated> {
    prepare(dir)?;
    let generated = generate::generate(dir, seed, records)?;
    let mut truth = std::fs::File::create(dir.join("truth.jsonl"))?;
    for t in &generated.truth {
        serde_json::to_writer(&mut truth, t)?;
        truth.write_all(b"\n")?;
    }
    std::fs::write(
        dir.join("aws-ip-ranges.json"),
        generate::aws_ip_ranges_json(),
    )?;
    Ok(generated)
}

/// The engine the demo runs: every detector, with the demo company's canary, ownership
/// map and a one-hour learning window (its data spans six hours).
pub fn demo_engine(ranges: detect::AwsIpRanges) -> Engine {
    let cfg = OffInstanceConfig {
        aws_ranges: Some(ranges),
        ..Default::default()
    };
    let learning = || NoveltyConfig {
        learning_ms: generate::DEMO_RECON_LEARNING_MS,
        ..Default::default()
    };
    let mut detectors: Vec<Box<dyn detect::Detector>> = vec![
        Box::new(OffInstanceDetector::new(cfg)),
        Box::new(EnumerationBurstDetector::new(BurstConfig::default())),
        Box::new(StaticKeyDetector::new(StaticKeyConfig::default())),
        Box::new(ForeignRolePassDetector::new(ForeignRolePassConfig {
            ownership: generate::demo_ownership(),
            lateness_ms: detect::engine::DEFAULT_LATENESS_MS,
        })),
        Box::new(CanaryDetector::new(CanaryConfig {
            canaries: vec![format!("{}*", generate::DEMO_CANARY_BUCKET)],
            lateness_ms: detect::engine::DEFAULT_LATENESS_MS,
        })),
    ];
    detectors.extend(
        Novelty::ALL
            .into_iter()
            .map(|k| Box::new(NoveltyDetector::new(k, learning())) as Box<dyn detect::Detector>),
    );
    Engine::new(detectors)
}

pub fn run(args: &DemoArgs) -> Result<()> {
    if let Some(dir) = &args.generate_only {
        let records = args.records.unwrap_or(60_000);
        let g = write_dataset(dir, args.seed, records)?;
        println!(
            "wrote {} records in {} delivery files ({} digest files, {:.1} MB gzip) to {}; truth in {}, AWS ranges in {}",
            g.records,
            g.files,
            g.digest_files,
            g.gz_bytes as f64 / 1e6,
            g.logs.display(),
            dir.join("truth.jsonl").display(),
            dir.join("aws-ip-ranges.json").display()
        );
        return Ok(());
    }
    let dir = &args.out;
    let records = args.records.unwrap_or(60_000);
    println!("credwarden demo: generating about {records} records for a 3-account, 5-region company (seed {}) into {} …", args.seed, dir.display());
    let g = write_dataset(dir, args.seed, records)?;
    println!(
        "  {} records in {} delivery files (+{} digest files), {} attacks injected (truth.jsonl)",
        g.records,
        g.files,
        g.digest_files,
        g.truth.len()
    );
    let ranges = crate::ipranges::load(&dir.join("aws-ip-ranges.json"))?;
    let mut engine = demo_engine(ranges);
    let (sources, _) = discover(&[&g.logs])?;
    let mut findings: Vec<Finding> = Vec::new();
    let mut input_errors = Vec::new();
    let summary = run_detect(
        &sources,
        &mut engine,
        0,
        |f| -> Result<()> {
            findings.push(f.clone());
            Ok(())
        },
        |r| input_errors.extend(r.errors.iter().map(|e| e.to_string())),
    )?;
    let mut file = std::fs::File::create(dir.join("findings.jsonl"))?;
    for f in &findings {
        write_finding(&mut file, f, Format::Jsonl)?;
    }
    println!(
        "\ndetect {} --aws-ip-ranges {}:\n  {} records in {:.2} s ({:.0} records/s), {} input errors, {} non-record files skipped, {} duplicate deliveries removed, peak RSS {:.0} MB\n",
        g.logs.display(),
        dir.join("aws-ip-ranges.json").display(),
        summary.records,
        summary.elapsed.as_secs_f64(),
        summary.records_per_second(),
        summary.input_errors,
        summary.skipped_values,
        summary.engine.duplicates,
        peak_rss_bytes().unwrap_or(0) as f64 / 1e6
    );
    for e in &input_errors {
        println!("  error: {e}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_table_header(&mut out)?;
    for f in &findings {
        write_finding(&mut out, f, Format::Table)?;
    }
    let truth = &g.truth;
    let s = score(&findings, truth);
    let attacks = truth.iter().filter(|t| t.kind == "attack").count();
    writeln!(
        out,
        "\nground truth: {attacks} attacks and {} expected hygiene findings (truth.jsonl):",
        truth.len() - attacks
    )?;
    for t in truth {
        let hit = findings.iter().find(|f| matches(f, t));
        let how = hit.map_or(String::new(), |f| {
            let why = f.details["reason"]
                .as_str()
                .or(f.details["shape"].as_str())
                .unwrap_or(f.severity.as_str());
            format!("{} ({why})", f.detector)
        });
        writeln!(
            out,
            "  [{}] {:<26} {} {} from {}{} — {how}",
            if hit.is_some() { "found" } else { "MISSED" },
            t.attack,
            t.instance_id,
            t.access_key_id,
            t.source_ip,
            t.vpc_endpoint
                .as_ref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default(),
        )?;
    }
    let benign_keys: HashSet<&str> = findings
        .iter()
        .filter(|f| !truth.iter().any(|t| matches(f, t)))
        .filter_map(|f| f.access_key_id.as_deref())
        .collect();
    writeln!(
        out,
        "\nprecision {:.3} ({} of {} findings expected), recall {:.3} ({} of {} expected findings made); findings on benign traffic: {}",
        s.precision(),
        s.true_positives,
        s.findings,
        s.recall(),
        s.attacks_found,
        s.attacks,
        s.false_positives
    )?;
    if !benign_keys.is_empty() {
        writeln!(
            out,
            "false positives on keys: {}",
            benign_keys.into_iter().collect::<Vec<_>>().join(", ")
        )?;
    }
    writeln!(out, "findings: {}", dir.join("findings.jsonl").display())?;
    Ok(())
}
