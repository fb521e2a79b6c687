//! # credwarden-core
//!
//! The vocabulary every credwarden family shares, and nothing else: the [`Finding`] every
//! detector, service and shrink notice emits (and its stable id), [`EventTime`], [`Cidr`],
//! the [`clock`], the [`encoding`]s (base64, hex), and [`account`] ids and the account of
//! an ARN.
//!
//! It exists so that a service that raises one kind of finding (the metadata proxy, the
//! broker, a shrink notice) depends on this small crate instead of on all of detect's
//! detectors, and so that time, addresses and encodings are parsed one way everywhere.

pub mod account;
pub mod clock;
pub mod encoding;
pub mod fasthash;
pub mod finding;
pub mod net;
pub mod time;

pub use clock::Clock;
pub use finding::{finding_id, Finding, FindingSource, Severity};
pub use net::Cidr;
pub use time::EventTime;
