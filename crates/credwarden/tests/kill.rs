//! Exactly once across crashes: a `detect --state` run killed with SIGKILL at arbitrary
//! moments, then rerun until it completes, delivers every finding to `--output` exactly once
//! — the same findings as a run that was never interrupted.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn detect_args<'a>(data: &'a Path, state: &'a Path, output: &'a Path) -> Vec<String> {
    let canary = format!("{}*", demo::DEMO_CANARY_BUCKET);
    [
        "detect",
        data.join("AWSLogs").to_str().unwrap(),
        "--aws-ip-ranges",
        data.join("aws-ip-ranges.json").to_str().unwrap(),
        "--learning",
        "1",
        "--canary",
        &canary,
        "--state",
        state.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--format",
        "jsonl",
        "--quiet",
        "--checkpoint-every",
        "1",
        "--threads",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn ids(output: &Path) -> Vec<String> {
    std::fs::read_to_string(output)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("broken line {l:?}: {e}"))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn killed_runs_deliver_every_finding_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    demo::write_dataset(&data, 5, 30_000).unwrap();
    let bin = env!("CARGO_BIN_EXE_credwarden");

    let (clean_state, clean_out) = (
        dir.path().join("clean.sqlite"),
        dir.path().join("clean.jsonl"),
    );
    let status = Command::new(bin)
        .args(detect_args(&data, &clean_state, &clean_out))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut want = ids(&clean_out);
    assert!(want.len() >= 15, "the demo's findings: {}", want.len());

    let (state, out) = (
        dir.path().join("killed.sqlite"),
        dir.path().join("killed.jsonl"),
    );
    let mut kills = 0;
    let mut delay_ms: u64 = 40;
    loop {
        let mut child = Command::new(bin)
            .args(detect_args(&data, &state, &out))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            assert!(child.wait().unwrap().success());
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        // Vary where the kill lands; give later runs more time so the test always ends.
        delay_ms = 40 + (delay_ms * 7 + 13) % 160 + kills * 10;
        assert!(kills < 200, "never finished");
    }
    assert!(
        kills >= 3,
        "the test must really interrupt runs (killed {kills} times)"
    );

    let mut got = ids(&out);
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for id in &got {
        *counts.entry(id).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dupes.is_empty(),
        "delivered more than once after {kills} kills: {dupes:?}"
    );
    got.sort();
    want.sort();
    assert_eq!(got, want, "after {kills} kills");
}
