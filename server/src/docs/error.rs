//! Errors of the documents layer: what a document operation can refuse or fail with.

use crate::model::document::CorruptDocument;
use crate::model::ModelError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The security rules (or their absence) deny the request.
    #[error("{0}")]
    PermissionDenied(String),
    /// A ruleset that does not parse: every error as `line:column: message`.
    #[error("the ruleset has {} error(s)", .0.len())]
    InvalidRules(Vec<String>),
    /// Documents the write would store break their collection's JSON Schema.
    #[error("{} schema violation(s)", .0.len())]
    SchemaViolation(Vec<super::schema::Violation>),
    /// Too many concurrent commits changed the same documents; the client may retry.
    #[error("{0}")]
    Aborted(String),
    /// A `before` hook rejected the write or could not answer.
    #[error(transparent)]
    Hook(crate::hooks::HooksError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Corrupt(#[from] CorruptDocument),
    /// A blocking task died (a bug); reported as an internal error.
    #[error("background task failed: {0}")]
    Task(String),
}

impl From<ModelError> for DocsError {
    fn from(err: ModelError) -> Self {
        DocsError::InvalidArgument(err.message)
    }
}

pub fn invalid(message: impl Into<String>) -> DocsError {
    DocsError::InvalidArgument(message.into())
}
