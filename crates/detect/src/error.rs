//! Typed errors of the detection engine's configuration.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not a CIDR block or IP address: {0:?}")]
    Cidr(String),
    #[error("not an AWS ip-ranges.json file: {0}")]
    IpRangesJson(#[source] serde_json::Error),
    #[error("not an AWS ip-ranges.json file: the file lists no prefixes")]
    IpRangesEmpty,
}
