//! # credwarden-broker
//!
//! The credential broker (the seeds' ConsoleMe idea): people and jobs ask one service for
//! short-lived credentials instead of holding keys. It owns authentication (OIDC/JWT bearer
//! tokens against a JWKS, or an identity header from a trusted authenticating proxy), the
//! group directory, default-deny authorisation (a role is usable by the groups named in its
//! tag or in config), issuance through STS `AssumeRole` with the user as session name and
//! source identity and a session policy that locks the credentials to the requester's
//! network, an audit entry committed before any credential leaves, `broker-anomaly`
//! findings, rate limits and metrics.

pub mod audit_store;
pub mod auth;
pub mod config;
pub mod console;
pub mod directory;
pub mod error;
pub mod http;
pub mod keyring;
pub mod service;
pub mod session_policy;
pub mod transport;
pub mod web;

pub use config::BrokerConfig;
pub use error::{AuthError, ConfigError, UrlError};
pub use service::{Broker, Issued, Refusal};
