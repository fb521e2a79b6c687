//! Typed errors. Input problems inside a file are not `Err`s: they are [`InputError`] values
//! collected in the file's report, because one bad record must never stop the rest.

use std::fmt;
use std::path::PathBuf;

/// A path given on the command line could not be listed or read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct DiscoverError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A record, line or file that could not be read as CloudTrail (the input-error contract:
/// `error: <file>[:<record index>]: <reason>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    /// 0-based index of the record in its array, or of the value in the file.
    pub record: Option<u64>,
    /// 1-based line where the record starts, when known.
    pub line: Option<u64>,
    pub reason: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(r) = self.record {
            write!(f, ":{r}")?;
        }
        write!(f, ": {}", self.reason)?;
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        Ok(())
    }
}
