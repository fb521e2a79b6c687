//! # credwarden-fuzz
//!
//! Fuzzing for credwarden's untrusted-input surfaces, on stable Rust and offline:
//! CloudTrail files, IAM policies, JWTs and JWKS documents, raw HTTP to the metadata proxy and
//! to `imds serve`, and the TOML configurations.
//!
//! cargo-fuzz needs a nightly compiler for libFuzzer's coverage instrumentation, so this crate
//! brings its own small engine instead ([`engine`]): seeds from files, stacked mutations
//! (bit and byte flips, truncation, per-target dictionary tokens, long runs, edge numbers,
//! deep nesting, splicing two inputs), a seeded xorshift generator so a run can be repeated
//! exactly, `catch_unwind` around every call, and a time budget that turns a slow input into
//! a reported hang. Without coverage, the feedback is each target's *outcome* hash (error
//! kind, decision, status codes): an input with a new outcome joins the corpus.
//!
//! [`targets`] holds one function per area. Each drives the real library entry points and
//! panics only where the library did, or where a promise it makes was broken (the splitter
//! agreeing with itself across read boundaries, a normalised policy parsing again, an
//! IMDSv2-only server never handing out credentials to a request without a token).
//!
//! `credwarden-fuzz TARGET SECONDS [--seed N]` (or `scripts/fuzz`) runs a campaign; a crash
//! is written to `target/fuzz-crashes/TARGET/<hash>` and ends the run with a non-zero status.

pub mod engine;
pub mod targets;

/// `credwarden.toml`'s schema, compiled from the CLI's own source file: the real `Config`
/// type without linking the whole CLI (its detectors, stores and the AWS SDK) into the fuzzer.
#[path = "../../credwarden/src/config.rs"]
pub mod credwarden_config;

use std::path::PathBuf;

/// The crate's folder (seeds live under `seeds/TARGET/`).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where a target's seed files are: its own folder, and for `cloudtrail` the third-party
/// corpora beside the checkout (`../shared/corpora`) when they are there.
pub fn seed_dirs(target: &str) -> Vec<PathBuf> {
    let mut dirs = vec![crate_dir().join("seeds").join(target)];
    if target == "cloudtrail" {
        let corpora = crate_dir().join("../../../shared/corpora");
        for sub in [
            "samples",
            "aws-cloudtrail-processing-library",
            "stratus-red-team/detonation-logs",
        ] {
            dirs.push(corpora.join(sub));
        }
    }
    dirs
}
