//! Typed errors. Messages never contain secret material: a credential source's failure text is
//! its exit status and the first line of its stderr, trimmed.

use std::net::SocketAddr;

/// Why a server or proxy could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("refusing to listen on {0}: not a loopback address (set allow_non_loopback to bind it on purpose)")]
    NonLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a credential source could not produce credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("cannot run credential command `{program}`: {message}")]
    Spawn { program: String, message: String },
    #[error("credential command `{program}` did not finish within {seconds}s")]
    Timeout { program: String, seconds: u64 },
    #[error("credential command `{program}` failed ({status}): {stderr}")]
    Exit {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("credential command output is not credential_process JSON: {0}")]
    Parse(String),
    #[error("credential source returned credentials that expire at {0}, too soon to serve")]
    AlreadyExpired(String),
    #[error("{0}")]
    Other(String),
}
