//! The demo end to end, and the property that file order never changes findings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cloudtrail::{discover, input::delivery_stamp, InputSource};
use detect::Finding;
use proptest::prelude::*;
use run::run_detect;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_credwarden"))
}

#[test]
fn demo_finds_every_attack_and_nothing_on_benign_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = bin()
        .args(["demo", "--out", out.to_str().unwrap(), "--records", "30000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains(concat!(
            "precision 1.000 (34 of 34 findings expected), ",
            "recall 1.000 (34 of 34 expected findings made); findings on benign traffic: 0"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("MISSED"));
    // The data carries what real CloudTrail carries: digests to skip, duplicates to drop.
    assert!(stdout.contains("0 input errors"), "{stdout}");
    assert!(!stdout.contains(" 0 non-record files skipped"), "{stdout}");
    assert!(
        !stdout.contains(" 0 duplicate deliveries removed"),
        "{stdout}"
    );
    // Running again over an existing demo folder is fine; a foreign folder is refused.
    assert_eq!(
        bin()
            .args(["demo", "--out", out.to_str().unwrap(), "--records", "30000"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep").unwrap();
    let refused = bin()
        .args(["demo", "--out", foreign.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(foreign.join("precious.txt").exists());
}

fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generation_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |name: &str, seed: &str| {
        let d = dir.path().join(name);
        let o = bin()
            .args([
                "demo",
                "--generate-only",
                d.to_str().unwrap(),
                "--records",
                "5000",
                "--seed",
                seed,
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0));
        all_files(&d)
    };
    let (a, b, c) = (gen("a", "11"), gen("b", "11"), gen("c", "12"));
    assert!(a.len() > 50);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

struct Dataset {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn dataset() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("d");
        demo::write_dataset(&root, 3, 25_000).unwrap();
        Dataset { _dir: dir, root }
    })
}

fn detect(sources: &[InputSource]) -> Vec<Finding> {
    let ranges = credwarden::ipranges::load(&dataset().root.join("aws-ip-ranges.json")).unwrap();
    let mut engine = demo::engine(ranges);
    let mut out = Vec::new();
    run_detect(
        sources,
        &mut engine,
        2,
        |f| -> Result<(), ()> {
            out.push(f.clone());
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    out
}

fn baseline() -> &'static (Vec<PathBuf>, Vec<Finding>) {
    static B: OnceLock<(Vec<PathBuf>, Vec<Finding>)> = OnceLock::new();
    B.get_or_init(|| {
        let (sources, _) = discover(&[dataset().root.join("AWSLogs")]).unwrap();
        let files: Vec<PathBuf> = sources
            .iter()
            .map(|s| match s {
                InputSource::File(p) => p.clone(),
                InputSource::Stdin | InputSource::Remote(_) => unreachable!(),
            })
            .collect();
        let findings = detect(&sources);
        assert_eq!(findings.len(), 34, "the demo's expected findings");
        (files, findings)
    })
}

fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// However the files are listed, the findings are the same, in the same order.
    #[test]
    fn the_order_files_are_given_in_never_changes_findings(seed in any::<u64>()) {
        let (files, want) = baseline();
        let mut given = files.clone();
        shuffle(&mut given, seed);
        let (sources, _) = discover(&given).unwrap();
        prop_assert_eq!(&detect(&sources), want);
    }

    /// Even read out of canonical order — files of neighbouring delivery slots interleaved, as
    /// a listing of several accounts and regions might — the findings are the same set.
    #[test]
    fn reading_neighbouring_delivery_slots_out_of_order_changes_nothing(seed in any::<u64>()) {
        let (files, want) = baseline();
        let mut order: Vec<PathBuf> = files.clone();
        // Shuffle within windows of two consecutive delivery stamps (at most 10 minutes of
        // event time apart): within the detector's lateness allowance.
        let stamps: Vec<u64> = order.iter().map(|p| delivery_stamp(p)).collect();
        let mut groups: Vec<usize> = vec![0];
        for i in 1..stamps.len() {
            if stamps[i] != stamps[i - 1] {
                groups.push(i);
            }
        }
        groups.push(order.len());
        for (w, pair) in groups.windows(3).step_by(2).enumerate() {
            shuffle(&mut order[pair[0]..pair[2]], seed ^ w as u64);
        }
        let sources: Vec<InputSource> = order.into_iter().map(InputSource::File).collect();
        let mut got = detect(&sources);
        let mut want = want.clone();
        got.sort_by(|a, b| a.id.cmp(&b.id));
        want.sort_by(|a, b| a.id.cmp(&b.id));
        prop_assert_eq!(got, want);
    }
}
