//! # credwarden-aws
//!
//! The thin layer between credwarden and AWS accounts. It owns the account [`Inventory`]
//! (NAT gateways and their public addresses, VPCs, VPC endpoints, IAM roles, users, groups
//! and managed policies with their documents and tags) read either from the JSON the AWS CLI
//! prints or live through the official AWS SDK for Rust ([`live::Session`]), and the few IAM
//! writes credwarden makes; the trails' configuration ([`trails`]), CloudTrail in S3 and SQS,
//! and the organisation's accounts. Every client honours an endpoint override so that tests talk to
//! the moto server on loopback and nothing else.

pub mod error;
pub mod inventory;
pub mod live;
pub mod members;
pub mod organizations;
pub mod s3;
pub mod sqs;
pub mod trails;

pub use error::{AwsError, InventoryError};
pub use inventory::{Inventory, LastUsed, ManagedPolicy, NatGateway, Principal, Vpc, VpcEndpoint};
pub use live::{InlinePolicy, LiveOptions, LivePolicy, Session};
pub use organizations::{accounts_from_file, OrgAccount};
pub use s3::{ObjectInfo, S3Counters, S3Location, S3Object, S3Reader, TrailScope};
pub use sqs::{Notification, NotifiedObject, SqsQueue};
pub use trails::LiveTrails;
