//! The data model of DESIGN.md §2: values, paths, timestamps, stored documents and key encodings.

pub mod document;
pub mod keys;
pub mod path;
pub mod timestamp;
pub mod value;

pub use document::Document;
pub use path::{CollectionPath, DocId, DocPath, FieldPath};
pub use timestamp::Timestamp;
pub use value::{InputValue, SentinelPlace, Transform, Value};

/// A client-supplied name or value that breaks the data model's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    pub message: String,
}

impl ModelError {
    pub fn invalid(message: impl Into<String>) -> ModelError {
        ModelError {
            message: message.into(),
        }
    }
}
