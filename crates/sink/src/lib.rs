//! # credwarden-sink
//!
//! Where findings go, for every credwarden service — `detect`, the metadata proxy, the
//! broker, shrink's notices — so that each gets the same guarantees: nothing is lost, one
//! refused finding never blocks the others, and files that name stolen credentials are
//! owner-only.
//!
//! * [`stream`]: a stream (stdout) in a [`Format`] and an fsynced `--output` file, with the
//!   repair `detect --state` needs after a crash;
//! * [`delivery`]: a service's [`FindingDelivery`] (stdout, an fsynced file, spooled
//!   webhooks);
//! * [`route`]: notify routes — which webhooks a finding goes to (by account owner, account,
//!   detector, severity), never showing a URL;
//! * [`webhook`]: the [`WebhookSender`] that posts one route's queue of a state file's spool
//!   in order, with backoff and dead letters;
//! * [`private`]: owner-only files and folders (0600 / 0700).

pub mod delivery;
pub mod error;
pub mod private;
pub mod route;
pub mod slack;
pub mod stream;
pub mod webhook;

pub use delivery::{DeliveryConfig, DeliveryPlan, FindingDelivery, Notify, WebhookTarget};
pub use error::SinkError;
pub use route::{check_routes, check_url, FindingFacts, Route, RouteError, RouteFilter, Router};
pub use stream::{open_output, write_finding, write_finding_json, write_table_header};
pub use stream::{FindingSink, Format};
pub use webhook::RouteSenders;
pub use webhook::DEFAULT_MAX_ATTEMPTS as WEBHOOK_MAX_ATTEMPTS;
pub use webhook::{PostFailure, PostFormat, WebhookOptions, WebhookOutcome, WebhookSender};
