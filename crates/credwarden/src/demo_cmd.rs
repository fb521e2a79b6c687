//! `credwarden demo`: the `demo` crate's company and attacks written to a folder, detected
//! and scored against the ground truth, with the results printed. `--generate-only DIR
//! --records N` writes the data alone (for benchmarks), streaming, so ten million records
//! need no more memory than ten thousand. Generation, the detector set and scoring live in
//! the `demo` crate; this is wiring and printing.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use cloudtrail::discover;
use demo::{matches, score, Generated, Shape, TruthKind};
use detect::Finding;
use run::{peak_rss_bytes, run_detect, write_finding, write_table_header, Format};

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
    /// The data's shape: `compact` (the company's 3 accounts, up to 2,500 records per
    /// 5 minutes, files of up to 500 records) or `org` (an organisation trail as a real
    /// bucket holds it: `AWSLogs/<org id>/<account>/…`, 8 accounts over 1–4 regions each,
    /// up to 6,000 records per 5 minutes in files of ~230 records of ~1.3 kB on average).
    #[arg(long, default_value = "compact", value_parser = parse_shape)]
    pub shape: Shape,
}

fn parse_shape(s: &str) -> Result<Shape, String> {
    s.parse()
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let records = args.records.unwrap_or(60_000);
    if let Some(dir) = &args.generate_only {
        let g = demo::write_dataset_shaped(dir, args.seed, records, args.shape)?;
        println!(
            "wrote {} records in {} delivery files ({} digest files, {:.1} MB gzip) to {}; \
             truth in {}, AWS ranges in {}",
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
    println!(
        "credwarden demo: generating about {records} records for a 3-account, 5-region \
         company (seed {}) into {} …",
        args.seed,
        dir.display()
    );
    let g = demo::write_dataset_shaped(dir, args.seed, records, args.shape)?;
    println!(
        "  {} records in {} delivery files (+{} digest files), {} attacks injected \
         (truth.jsonl)",
        g.records,
        g.files,
        g.digest_files,
        g.truth.len()
    );
    let ranges = crate::ipranges::load(&dir.join("aws-ip-ranges.json"))?;
    let mut engine = demo::engine(ranges);
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
        "\ndetect {} --aws-ip-ranges {}:\n  {} records in {:.2} s ({:.0} records/s), {} input \
         errors, {} non-record files skipped, {} duplicate deliveries removed, peak RSS {:.0} \
         MB\n",
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
    print_truth_and_score(&mut out, &g, &findings)?;
    writeln!(out, "findings: {}", dir.join("findings.jsonl").display())?;
    Ok(())
}

/// Each truth entry, found or missed (and by which finding), then the score.
fn print_truth_and_score(out: &mut impl Write, g: &Generated, findings: &[Finding]) -> Result<()> {
    let truth = &g.truth;
    let s = score(findings, truth);
    let attacks = truth.iter().filter(|t| t.kind == TruthKind::Attack).count();
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
        "\nprecision {:.3} ({} of {} findings expected), recall {:.3} ({} of {} expected \
         findings made); findings on benign traffic: {}",
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
    Ok(())
}
