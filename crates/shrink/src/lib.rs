//! # credwarden-shrink
//!
//! Least privilege from observed use (the seeds' Repokid idea, per action rather than per
//! service): [`usage`] turns CloudTrail into the IAM actions each principal exercised,
//! [`plan`] removes from each role what it did not use — never what the evidence cannot show
//! unused — and [`apply`] writes the plan through the IAM API after recording every role's
//! previous policies in the store, so [`apply::rollback`] restores them exactly. [`keys`]
//! audits long-lived access keys from the credential report and CloudTrail; [`access`] finds
//! directory memberships no role use backs. [`trail`] reads the trail's configuration: the
//! proof that what a role did not call would have been recorded had it called it.
//! [`split`] puts right-sized permissions too large for inline policies into managed ones.

pub mod access;
pub mod advisor;
pub mod apply;
pub mod keys;
pub mod people;
pub mod plan;
pub mod split;
pub mod trail;
pub mod usage;

pub use plan::{
    per_person, plan, schedule, AccessAdvisor, PersonRole, Plan, PlanError, PlanOptions, RolePlan,
    Verdict,
};
pub use usage::Usage;
