//! Every target on every seed, then a short reproducible campaign per target: the fuzz
//! harness itself stays working, and the seeds never regress into crashes.

use std::time::Duration;

use credwarden_fuzz::engine::{self, Options};
use credwarden_fuzz::targets::TARGETS;

#[test]
fn every_target_passes_its_seeds_and_a_short_fixed_campaign() {
    engine::install_panic_hook();
    let crashes = tempfile::tempdir().unwrap();
    for t in TARGETS {
        let seeds = engine::load_seeds(&credwarden_fuzz::seed_dirs(t.name), t.max_len);
        assert!(!seeds.is_empty(), "{}: no seeds", t.name);
        for s in &seeds {
            if let Err(msg) = engine::run_one(t, s) {
                panic!("{}: a seed crashes: {msg}", t.name);
            }
        }
        let opts = Options {
            seconds: 60.0,
            runs: Some(300),
            seed: 7,
            budget: Duration::from_secs(5),
            crash_dir: crashes.path().to_path_buf(),
            seed_paths: Vec::new(),
        };
        let report = engine::campaign(t, seeds, &opts);
        assert_eq!(report.inputs, 300, "{}", t.name);
        if let Some(f) = report.failure {
            panic!("{}: {} {}: {:?}", t.name, f.kind, f.message, f.saved);
        }
    }
}
