//! Typed errors of the aws crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}: not an inventory file (expected the AWS CLI output of describe-nat-gateways, describe-vpcs, describe-vpc-endpoints or get-account-authorization-details)")]
    NotInventory(String),
    #[error("{0}: not an accounts file (expected the AWS CLI output of `aws organizations list-accounts`: an Accounts list with Id and Name)")]
    NotAccounts(String),
}

/// A call to AWS that failed. The message carries the service's error code and text, never
/// credentials.
#[derive(Debug, Error)]
pub enum AwsError {
    #[error("no AWS region: set AWS_REGION or pass --region")]
    NoRegion,
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// An `s3://` scope that cannot be read as asked (checked before any call).
    #[error("s3 scope: {0}")]
    Scope(String),
    /// A member account or role name that cannot be right (checked before any call).
    #[error("member account: {0}")]
    BadMember(String),
    #[error("{operation}: {message}")]
    Call {
        operation: &'static str,
        message: String,
    },
    /// The API itself is not available to these credentials or at this endpoint (access
    /// denied, not implemented, a server error, an answer that is not the service's): the
    /// caller may go on without what it would have given.
    #[error("{operation} refused: {message}")]
    Refused {
        operation: &'static str,
        message: String,
    },
}
