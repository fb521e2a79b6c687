//! # credwarden-iam
//!
//! credwarden's own understanding of IAM, because locking credentials to an environment and
//! right-sizing permissions are only as good as the policy logic behind them: one wrong
//! condition operator and a lock either denies production or protects nothing.
//!
//! It owns:
//! - [`Policy`]: policy documents parsed as AWS accepts them, with errors that name the
//!   statement and field, and printed in one normalised form;
//! - [`Catalogue`]: every service prefix and action with access level and resource types,
//!   generated from a maintained registry package and compiled in;
//! - [`mapping`]: which IAM action(s) a CloudTrail event exercised;
//! - [`PolicySet::evaluate`]: AWS's evaluation logic — explicit deny, resource policies,
//!   identity policies, permissions boundaries, session policies — with every condition
//!   operator, set qualifier, `IfExists`, policy variables and IAM's wildcard rules.
//!
//! It performs no I/O and knows nothing of AWS accounts; the `aws` crate reads them.

pub mod catalogue;
pub mod condition;
pub mod context;
pub mod error;
pub mod eval;
pub mod mapping;
pub mod policy;
pub mod variables;
pub mod wildcard;

pub use catalogue::{AccessLevel, Catalogue, CatalogueSource, Granted};
pub use condition::{Condition, Operator};
pub use context::RequestContext;
pub use error::{ContextError, PolicyError};
pub use eval::{Decision, Evaluation, NamedPolicy, PolicySet, StatementRef};
pub use mapping::{EventActions, EventMap};
pub use policy::{Effect, Patterns, Policy, Principals, Statement};
