//! # credwarden-detect
//!
//! The detection engine and its detectors. It owns the [`Detector`] trait, the [`Engine`]
//! that feeds records to detectors in event-time terms (watermark, duplicate removal,
//! one finding per id per run), the [`Finding`] model that is credwarden's output contract,
//! the address sets detectors consult ([`NetSet`], [`AwsIpRanges`]), and the detectors
//! themselves. It knows nothing about files or formats: records come from the cloudtrail
//! crate, persistence from the store crate.

pub mod burst;
pub mod canary;
pub mod engine;
/// The keyed hash of the detectors' maps (it lives in core: the decoders hash eventIDs too).
pub use credwarden_core::fasthash;
pub mod error;
pub mod foreign_role;
pub mod netset;
pub mod novelty;
pub mod off_instance;
pub mod recon;
pub mod set;
pub mod static_key;

pub use burst::{BurstConfig, EnumerationBurstDetector};
pub use canary::{CanaryConfig, CanaryDetector};
pub use credwarden_core::{finding_id, Finding, FindingSource, Severity};
pub use engine::{Detector, Engine, EngineStats};
pub use error::ConfigError;
pub use foreign_role::{ForeignRolePassConfig, ForeignRolePassDetector, OwnershipMap};
pub use netset::{AwsIpRanges, Cidr, NetSet};
pub use novelty::{Novelty, NoveltyConfig, NoveltyDetector};
pub use off_instance::{OffInstanceConfig, OffInstanceDetector};
pub use recon::{ReconCallDetector, ReconConfig};
pub use set::{DetectorSettings, UnknownDetector};
pub use static_key::{StaticKeyConfig, StaticKeyDetector};
