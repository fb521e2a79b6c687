//! Typed errors of the aws crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("{0}: cannot read: {1}")]
    Read(String, String),
    #[error("{0}: not JSON: {1}")]
    Json(String, String),
    #[error("{0}: not an inventory file (expected the AWS CLI output of describe-nat-gateways, describe-vpcs, describe-vpc-endpoints or get-account-authorization-details)")]
    NotInventory(String),
}

/// A call to AWS that failed. The message carries the service's error code and text, never
/// credentials.
#[derive(Debug, Error)]
pub enum AwsError {
    #[error("no AWS region: set AWS_REGION or pass --region")]
    NoRegion,
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
    #[error("{operation}: {message}")]
    Call {
        operation: &'static str,
        message: String,
    },
}
