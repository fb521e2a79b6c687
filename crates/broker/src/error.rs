//! Typed errors of the broker.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("no credentials presented (Authorization: Bearer <token>, or the identity header)")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("JWKS: {0}")]
    Jwks(String),
    #[error("identity header from {0}, which is not a trusted proxy")]
    UntrustedProxy(String),
    #[error("invalid token: no key in the JWKS matches the token's kid and algorithm")]
    UnknownKey,
    #[error("the request did not come through the authenticating proxy (no or wrong secret)")]
    ProxySecret,
    #[error("the proxy secret must be at least 16 characters")]
    WeakSecret,
}

/// A URL that would carry a secret (a bearer token, a JWKS we trust) in the clear.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UrlError {
    #[error("{0:?} is not a URL: {1}")]
    Parse(String, String),
    #[error("{0}: a user name or password in the URL is refused")]
    Userinfo(String),
    #[error("{0}: use https:// (plain http:// only to a loopback address or localhost)")]
    Insecure(String),
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("broker config: {0}")]
    Invalid(String),
    #[error(
        "broker config: network {network:?}: the session policy fails its verification: {failures}"
    )]
    Unverified { network: String, failures: String },
    #[error("broker config: network {network:?}: the session policy is {size} characters packed; STS accepts at most 2048 (use fewer, wider CIDRs)")]
    TooLarge { network: String, size: usize },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Postgres(#[from] store_pg::PgError),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error("broker config: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Pem {
        path: std::path::PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: no certificate in the file", .0.display())]
    NoCertificate(std::path::PathBuf),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}
