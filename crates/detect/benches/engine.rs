//! The serial consumer alone: records are decoded into memory first, then fed to the engine
//! with every detector, with each detector on its own, and with every detector but one, so the
//! figures say what each one costs per record (alone, and what leaving it out of the full run
//! saves), with no decoding, I/O or thread hand-off mixed in (`detect
//! --stats-json`'s `engine_seconds` is wall time on a thread that shares the cores with the
//! decoders, and moves with them).
//!
//! ```text
//! cargo bench -p credwarden-detect --bench engine -- DATA [MAX_RECORDS [all]]
//! ```
//!
//! A third argument `all` runs only the row with every detector (for a profiler).
//!
//! DATA is a folder of CloudTrail (a set from `scripts/bench-detect` or `credwarden demo
//! --generate-only`); `aws-ip-ranges.json` beside its `AWSLogs` is loaded when present, as the
//! benchmark's `detect` runs do. At most MAX_RECORDS records (default 300,000) are loaded, in
//! the canonical order `detect` reads them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloudtrail::{decode_source, DeliveryDays, Record};
use detect::{set, AwsIpRanges, DetectorSettings, Engine};

const RUNS: usize = 5;

fn load(data: &Path, max: usize) -> Vec<Record> {
    let mut days = DeliveryDays::walk(&[data]).unwrap_or_else(|e| panic!("{e}"));
    let mut records = Vec::new();
    while let Some(day) = days.next_day().unwrap_or_else(|e| panic!("{e}")) {
        for source in &day {
            decode_source(source, &mut |r| records.push(r));
            if records.len() >= max {
                records.truncate(max);
                return records;
            }
        }
    }
    records
}

/// Best of [`RUNS`] runs of `names` over `records`: time and findings.
fn time(settings: &DetectorSettings, names: &[&str], records: &[Record]) -> (Duration, u64) {
    let mut best = (Duration::MAX, 0);
    for _ in 0..RUNS {
        let mut engine = Engine::new(settings.build(names).expect("known detectors"));
        let mut out = Vec::new();
        let start = Instant::now();
        for r in records {
            engine.process(r, &mut out);
            out.clear();
        }
        engine.finish(&mut out);
        let took = start.elapsed();
        if took < best.0 {
            best = (took, engine.stats.findings);
        }
    }
    best
}

fn main() {
    // `cargo bench` passes `--bench`; everything else is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(data) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: cargo bench -p credwarden-detect --bench engine -- DATA [MAX_RECORDS]\n\
             DATA: a folder of CloudTrail, e.g. a set scripts/bench-detect generated"
        );
        std::process::exit(2);
    };
    let max = args
        .get(1)
        .map(|n| n.parse().expect("MAX_RECORDS is a number"))
        .unwrap_or(300_000);
    let root = if data.ends_with("AWSLogs") {
        data.parent().unwrap_or(&data).to_path_buf()
    } else {
        data.clone()
    };
    let mut settings = DetectorSettings::default();
    if let Ok(json) = std::fs::read(root.join("aws-ip-ranges.json")) {
        settings.aws_ranges = Some(AwsIpRanges::parse(&json).expect("aws-ip-ranges.json"));
    }
    let started = Instant::now();
    let records = load(&data, max);
    println!(
        "{} records from {} in {:.1} s; best of {RUNS} runs each",
        records.len(),
        data.display(),
        started.elapsed().as_secs_f64()
    );
    if records.is_empty() {
        return;
    }
    let per_record = |d: Duration| d.as_nanos() as f64 / records.len() as f64;
    let (all, all_findings) = time(&settings, set::ALL, &records);
    println!(
        "all detectors: {:.0} ns/record, {:.0} records/s, {all_findings} findings",
        per_record(all),
        records.len() as f64 / all.as_secs_f64()
    );
    if args.get(2).map(String::as_str) == Some("all") {
        return;
    }
    // Alone, a detector pays for reading records nobody else has read (cold memory); in the
    // run it shares that with the others. "In the run" is what leaving it out saves.
    println!(
        "{:<28} {:>14} {:>14} {:>9}",
        "detector", "alone ns/rec", "in run ns/rec", "findings"
    );
    for name in set::ALL {
        let (alone, findings) = time(&settings, &[name], &records);
        let others: Vec<&str> = set::ALL.iter().copied().filter(|n| n != name).collect();
        let (without, _) = time(&settings, &others, &records);
        println!(
            "{name:<28} {:>14.0} {:>14.0} {findings:>9}",
            per_record(alone),
            per_record(all) - per_record(without)
        );
    }
    let (none, _) = time(&settings, &[], &records);
    println!("{:<28} {:>14.0}", "none (engine only)", per_record(none));
}
