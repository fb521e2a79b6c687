//! # credwarden-cloudtrail
//!
//! Bytes to CloudTrail records, and nothing about detection.
//!
//! This crate owns every input form credwarden accepts — S3 delivery files (`.json.gz` or
//! `.json`, one object with a `Records` array), plain JSON arrays, JSON lines (CloudTrail
//! Lake, Athena), EventBridge envelopes, `aws cloudtrail lookup-events` output, and stdin —
//! the folder walk, and parallel decoding. It recognises what is not a record (digest files,
//! S3/SNS delivery notifications, Insights events) and skips it with a note, and it turns
//! what is broken into located, counted [`InputError`]s without losing the good records
//! around it.
//!
//! Why a crate of its own: ingest is the hot path (hundreds of thousands of records per
//! second per core) and the place where real CloudTrail is messy; keeping it apart keeps the
//! detectors simple and lets each be tested alone.
//!
//! ```
//! use cloudtrail::decode_bytes;
//! let mut records = Vec::new();
//! let report = decode_bytes("example", br#"{"Records":[{"eventTime":"2024-01-01T00:00:00Z",
//!     "eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity"}]}"#, &mut |r| records.push(r));
//! assert_eq!(records.len(), 1);
//! assert_eq!(report.error_count(), 0);
//! ```

pub mod address;
pub mod decode;
pub mod delivery;
pub mod error;
pub mod input;
pub mod parallel;
pub mod record;
pub mod split;
pub mod text;

pub use address::SourceAddress;
pub use credwarden_core::time::{self, EventTime};
pub use decode::{decode_bytes, decode_source, decode_source_with, DecodeBuffers, FileReport};
pub use error::{DiscoverError, InputError};
pub use input::{
    discover, looks_like_trail, sort_remote, DeliveryDays, InputSource, RemoteInput, RemoteSource,
};
pub use parallel::{decode_in_order, Chunk, Decoded};
pub use record::{event_id_hasher, Grant, Identity, Issuance, Record, Text};

/// What the unit tests of several modules share.
#[cfg(test)]
mod test_support {
    use std::path::{Path, PathBuf};

    /// A named pipe `name` in `dir`.
    pub fn fifo(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        path
    }

    /// One minimal record as a JSON line, with event id `id`.
    pub fn line(id: &str) -> String {
        format!(
            "{{\"eventTime\":\"2024-01-01T00:00:00Z\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"E\",\"eventID\":\"{id}\"}}\n"
        )
    }
}
