//! Instance-metadata defences for credwarden (MISSION §B.2–B.3).
//!
//! This crate owns the two places where AWS SDKs pick up credentials over plain HTTP:
//!
//! * [`serve`] — a local EC2 instance metadata service (IMDSv2; IMDSv1 only on request) and
//!   ECS container credential endpoint for laptops, the idea behind Netflix's Weep.
//!   Developers' tools use the SDKs' ordinary credential chain, while the credentials
//!   themselves come from the broker (through a [`creds::CredentialSource`], normally [`creds::ProcessSource`] running
//!   `credwarden creds ROLE --process`), refreshed in the background before they expire so
//!   that long jobs never break, and never served once expired.
//! * [`proxy`] — a metadata proxy for instances, the SSRF defence: credential paths are
//!   answered only for requests whose `User-Agent` is an AWS SDK or tool (a server-side
//!   request forgery through `requests`, `curl` or Java's URL fetcher cannot choose that
//!   header), every request is logged by path, IMDSv2 rules are enforced, and a blocked
//!   credential fetch becomes a high-severity finding.
//!
//! Both speak HTTP/1.1 through hyper directly rather than a router: the proxy must see the
//! raw request target (percent-encoding, dot segments, absolute form) to refuse ambiguous
//! ones, and both need header-size and header-read-time limits that a router does not expose.
//! Both fail closed: anything they cannot classify with certainty is refused.

pub mod creds;
pub mod error;
mod http;
pub mod log;
pub mod proxy;
pub mod serve;
mod util;

pub use error::{ImdsError, SourceError};
