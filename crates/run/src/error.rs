//! The run's errors. Input problems inside a file are not errors here: they are counted in
//! the file's report (see `cloudtrail::FileReport`), because one bad record must never stop
//! the rest.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Discover(#[from] cloudtrail::DiscoverError),
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error("a finding could not be encoded or read back as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("another credwarden run is using the state file {} (lock {} is held)", state.display(), lock.display())]
    Locked { state: PathBuf, lock: PathBuf },
    #[error("the state of {detector} in the --state file has format {found}, this credwarden reads format {expected}; use a new --state file (findings already reported stay in the old one)")]
    StateFormat {
        detector: String,
        found: i64,
        expected: i64,
    },
    #[error("cannot read the detector state in the --state file: {0}; use a new --state file")]
    DetectorState(String),
}
