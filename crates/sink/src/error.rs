//! The sinks' errors.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing to a stream or a findings file failed (a closed pipe, a full disk).
    #[error("cannot deliver findings: {0}")]
    Deliver(#[source] std::io::Error),
    #[error("a finding could not be encoded as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Route(#[from] crate::route::RouteError),
}
