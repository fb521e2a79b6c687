//! # credwarden-run
//!
//! A detect run, as a library: **sources** of CloudTrail ([`Source`]: files, folders,
//! stdin, S3 locations, an SQS queue of delivery notifications), the engine **driven** over them in canonical order ([`run_with_hooks`]), a
//! **ledger** that remembers what was read and delivers what was found — in memory
//! ([`MemoryLedger`]) or exactly once through a state file's checkpoints and outbox
//! ([`DurableLedger`]) — the one loop that runs a batch or follows a source
//! ([`run_passes`]). The **sinks** findings go to (a stream and an fsynced file, a
//! spooled webhook) are `credwarden-sink`'s, re-exported here.
//!
//! The binary parses arguments and wires these together; `detect`, `baseline build`, the
//! demo and the benchmarks all run through here, so a guarantee made here (exactly once,
//! canonical order, nothing lost) holds for each of them.

pub mod accounts;
pub mod drive;
pub mod durable;
pub mod error;
pub mod ledger;
pub mod source;
pub mod summary;

pub use accounts::AccountNames;
pub use drive::{run_detect, run_with_hooks, ClosureHooks, RunHooks};
pub use durable::{drain_outbox, lock_state, restore, DurableLedger, STATE_FORMAT};
pub use error::RunError;
pub use ledger::{run_passes, Ledger, MemoryLedger, Passes};
pub use sink::{open_output, write_finding, write_finding_json, write_table_header};
pub use sink::{FindingSink, Format};
pub use sink::{PostFailure, WebhookOptions, WebhookOutcome, WebhookSender, WEBHOOK_MAX_ATTEMPTS};
pub use source::{FileIdentity, Listing, PathSource, S3Source, Seen, Source, SqsSource};
pub use source::{SQS_MESSAGES_PER_PASS, SQS_VISIBILITY_SECONDS};
pub use summary::{cpu_time, peak_rss_bytes, RunSummary};
