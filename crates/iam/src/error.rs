//! Typed errors of the IAM crate.

use thiserror::Error;

/// A policy document AWS would refuse, or that credwarden cannot evaluate exactly.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("a policy document must be a JSON object")]
    NotAnObject,
    #[error("unknown top-level field {0:?} (a policy has Version, Id and Statement)")]
    UnknownTopLevel(String),
    #[error("Version: {0} is not \"2012-10-17\" or \"2008-10-17\"")]
    Version(String),
    #[error("Id: {0} must be a string")]
    Id(String),
    #[error("Statement: missing, or not an object or a list of objects")]
    NoStatement,
    #[error("the document is neither JSON nor URL-encoded JSON")]
    Encoding,
    #[error("statement {index}{}: {field}: {message}", sid.as_ref().map(|s| format!(" (Sid {s:?})")).unwrap_or_default())]
    Statement {
        index: usize,
        sid: Option<String>,
        field: String,
        message: String,
    },
}

impl PolicyError {
    pub(crate) fn at(index: usize, sid: Option<&str>, field: &str, message: &str) -> PolicyError {
        PolicyError::Statement {
            index,
            sid: sid.map(str::to_owned),
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// A request context the evaluator cannot use.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ContextError {
    #[error("context entry {0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("action {0:?} is not service:action")]
    Action(String),
}
