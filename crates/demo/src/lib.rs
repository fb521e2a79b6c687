//! # credwarden-demo
//!
//! The demo's world and its scoring: a realistic company's CloudTrail written as AWS delivers
//! it, attacks injected into it, the ground truth of every finding the detectors must make,
//! the detector set the demo runs, and the score of findings against that truth.
//!
//! It owns:
//! - the [company](company) — accounts, networks, instance [`Fleet`](company::Fleet)s,
//!   canary and role ownership;
//! - its benign traffic ([workload]) and the injected [attack]s, each a named type;
//! - the CloudTrail [record] format and CloudTrail-style [delivery] (S3 layout, gzip, late
//!   and duplicate delivery, digests);
//! - the [truth] (`truth.jsonl`) and the [score].
//!
//! It is a library of its own so that the binary only parses `credwarden demo`'s arguments
//! and prints, and so that tests and benchmarks make the same data set the demo does. The
//! same seed writes the same bytes on every machine: randomness comes from the crate's own
//! [`rng`], never from a general-purpose generator whose sequence may change between
//! versions.

pub mod attack;
pub mod company;
pub mod delivery;
pub mod error;
pub mod generate;
pub mod members;
pub mod record;
pub mod rng;
pub mod score;
pub mod truth;
pub mod workload;

use std::fs;
use std::path::Path;

use detect::novelty::Novelty;
use detect::{AwsIpRanges, DetectorSettings, Engine};

pub use company::{aws_ip_ranges_json, demo_ownership, DEMO_CANARY_BUCKET};
pub use error::{Error, Result};
pub use generate::{generate, generate_shaped, Generated, Shape};
pub use score::{matches, score, Score};
pub use truth::{TruthEntry, TruthKind, DEMO_RECON_LEARNING_MS};

/// The file that marks a folder as the demo's own (so a rerun may clear it).
const MARKER: &str = ".credwarden-demo";

/// Prepare an output folder: create it, or reuse one an earlier demo made; never clobber
/// a folder of someone else's.
fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        let non_empty = fs::read_dir(dir)
            .map_err(Error::read(dir))?
            .next()
            .is_some();
        if non_empty && !dir.join(MARKER).exists() {
            return Err(Error::ForeignFolder(dir.to_path_buf()));
        }
        let logs = dir.join("AWSLogs");
        if logs.exists() {
            fs::remove_dir_all(&logs).map_err(Error::clear(&logs))?;
        }
    }
    fs::create_dir_all(dir).map_err(Error::create(dir))?;
    let marker = dir.join(MARKER);
    fs::write(&marker, "made by credwarden demo; safe to delete\n").map_err(Error::write(marker))
}

/// Generate the data set into `dir`: logs (`AWSLogs/…`), `truth.jsonl` and
/// `aws-ip-ranges.json`. `dir` must be new, empty or an earlier demo's folder.
pub fn write_dataset(dir: &Path, seed: u64, records: u64) -> Result<Generated> {
    write_dataset_shaped(dir, seed, records, Shape::Compact)
}

/// [`write_dataset`] in `shape`.
pub fn write_dataset_shaped(
    dir: &Path,
    seed: u64,
    records: u64,
    shape: Shape,
) -> Result<Generated> {
    prepare(dir)?;
    let generated = generate_shaped(dir, seed, records, shape)?;
    let path = dir.join("truth.jsonl");
    let mut truth = Vec::new();
    for t in &generated.truth {
        serde_json::to_writer(&mut truth, t)
            .map_err(|e| Error::write(&path)(std::io::Error::from(e)))?;
        truth.push(b'\n');
    }
    fs::write(&path, truth).map_err(Error::write(&path))?;
    let path = dir.join("aws-ip-ranges.json");
    fs::write(&path, aws_ip_ranges_json()).map_err(Error::write(path))?;
    Ok(generated)
}

/// The detectors the demo runs, in the order it runs them: every detector this build has
/// (`detect::set::ALL`), the novelty family last.
pub fn detector_names() -> Vec<&'static str> {
    let mut names = vec![
        detect::off_instance::NAME,
        detect::burst::NAME,
        detect::static_key::NAME,
        detect::foreign_role::NAME,
        detect::canary::NAME,
    ];
    names.extend(Novelty::ALL.map(Novelty::name));
    names
}

/// What the demo tells its detectors: AWS's ranges (the demo's own `aws-ip-ranges.json`),
/// the company's canary and role ownership, and a one-hour learning window (its data spans
/// six hours).
pub fn detector_settings(ranges: AwsIpRanges) -> DetectorSettings {
    DetectorSettings {
        aws_ranges: Some(ranges),
        learning_ms: Some(DEMO_RECON_LEARNING_MS),
        ownership: demo_ownership(),
        canaries: vec![format!("{DEMO_CANARY_BUCKET}*")],
        ..DetectorSettings::default()
    }
}

/// The engine the demo runs: [`detector_names`] built from [`detector_settings`] by the
/// detect crate's one detector-set builder.
pub fn engine(ranges: AwsIpRanges) -> Engine {
    let detectors = detector_settings(ranges)
        .build(&detector_names())
        .expect("the demo's detectors are all in this build");
    Engine::new(detectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_runs_every_detector_once() {
        let mut names = detector_names();
        let mut all = detect::set::ALL.to_vec();
        names.sort_unstable();
        all.sort_unstable();
        assert_eq!(names, all);
    }

    #[test]
    fn a_foreign_folder_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "keep").unwrap();
        let e = write_dataset(dir.path(), 1, 100).unwrap_err();
        assert!(matches!(e, Error::ForeignFolder(_)), "{e}");
        assert!(dir.path().join("precious.txt").exists());
    }

    #[test]
    fn the_org_shape_writes_an_organisation_trail_of_many_streams() {
        let dir = tempfile::tempdir().unwrap();
        let g = write_dataset_shaped(&dir.path().join("d"), 7, 40_000, Shape::Org).unwrap();
        let org = dir.path().join("d/AWSLogs").join(generate::ORG_ID);
        let accounts: Vec<_> = std::fs::read_dir(&org).unwrap().collect();
        assert_eq!(accounts.len(), 8, "the company's 3 accounts and 5 members");
        // Busy streams are cut into files of at most 700 records.
        let mut dirs = vec![org];
        let mut sizes = Vec::new();
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if !p.to_string_lossy().contains("Digest") {
                    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap());
                    let v: serde_json::Value = serde_json::from_reader(gz).unwrap();
                    sizes.push(v["Records"].as_array().unwrap().len() as u64);
                }
            }
        }
        assert_eq!(sizes.len() as u64, g.files);
        assert_eq!(sizes.iter().sum::<u64>(), g.records);
        assert!(sizes.iter().all(|&n| (1..=700).contains(&n)), "{sizes:?}");
        // The same company and attacks as the compact shape.
        let compact = write_dataset(&dir.path().join("c"), 7, 40_000).unwrap();
        let attacks = |g: &Generated| {
            g.truth
                .iter()
                .filter(|t| t.kind == TruthKind::Attack)
                .count()
        };
        assert_eq!(attacks(&g), attacks(&compact));
    }

    #[test]
    fn the_truth_lists_every_attack_and_the_hygiene_findings() {
        let dir = tempfile::tempdir().unwrap();
        let g = write_dataset(&dir.path().join("d"), 7, 5_000).unwrap();
        let attacks = g
            .truth
            .iter()
            .filter(|t| t.kind == TruthKind::Attack)
            .count();
        assert_eq!((attacks, g.truth.len() - attacks), (31, 3));
        let line = std::fs::read_to_string(dir.path().join("d/truth.jsonl")).unwrap();
        assert!(line.starts_with(r#"{"kind":"attack","attack":"#), "{line}");
    }
}
