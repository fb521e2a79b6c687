//! # credwarden
//!
//! The `credwarden` binary's wiring: command-line options, configuration, the detect
//! pipeline that joins the cloudtrail, detect and store crates, output sinks, the demo
//! command (generation and scoring are the demo crate's), `ip-ranges fetch`, and the thin
//! command layers over the iam, aws, prevent, broker, imds and shrink crates (`policy`,
//! `iam`, `broker`, `creds`, `imds`, `shrink`, `keys`, `access`). Logic that is not wiring
//! lives in the library crates; `main.rs` only parses arguments and maps results to
//! exit codes.

pub mod access_cmd;
pub mod accounts_cmd;
pub mod baseline_cmd;
pub mod broker_cmd;
pub mod config;
pub mod console_cmd;
pub mod creds_cache;
pub mod delivery_args;
pub mod demo_cmd;
pub mod detect_cmd;
pub mod imds_cmd;
pub mod inventory;
pub mod ipranges;
pub mod login_cmd;
pub mod per_user_cmd;
pub mod policy_cmd;
pub mod shrink_cmd;
pub mod user_files;
pub mod webhook_cmd;
