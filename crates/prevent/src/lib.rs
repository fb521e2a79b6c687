//! # credwarden-prevent
//!
//! Policies that make stolen credentials useless, each generated from an account's real
//! inventory and verified by the IAM evaluator before anyone applies it:
//! - [`lock`]: the environment lock — deny every call that does not come from the
//!   company's NAT addresses, VPCs or VPC endpoints (the seeds' form), or, in the newer
//!   instance-bound form, from the instance the credentials were issued to;
//! - [`passrole`]: the delivery lockdown — a principal may pass only the roles its own
//!   application owns (owner tag = application tag).
//!
//! The verification tables are part of the product, not only of the tests: `credwarden
//! policy verify` prints each decision and fails when an outside call would be allowed or
//! an inside call denied.

pub mod diff;
pub mod lock;
pub mod passrole;
pub mod verify;

pub use lock::{Environment, LockForm};
pub use verify::{Case, Expect, Outcome};
