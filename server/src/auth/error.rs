//! `AuthError`: everything the auth layer can refuse or fail with. `crate::error` maps it to HTTP.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Malformed input: bad email, short or over-long password, missing fields.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown email or wrong password; the message never says which.
    #[error("the email or password is wrong")]
    InvalidCredentials,
    /// No valid access token, or an unknown, expired or revoked refresh or one-time token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A rotated refresh token was used again after the grace period: its family is revoked.
    #[error("this refresh token was already used; every session of its family is revoked")]
    TokenReused,
    /// The caller may not do this (e.g. a non-anonymous user calling link).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    /// The email belongs to another account.
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won; the client may retry.
    #[error("{0}")]
    Aborted(String),
    /// Too many attempts; retry after this many seconds.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The mail could not be handed to the SMTP server.
    #[error("cannot send mail: {0}")]
    Mail(String),
    /// A `before` hook rejected the sign-up or sign-in, or could not answer.
    #[error(transparent)]
    Hook(crate::hooks::HooksError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data that does not decode, key material that does not load, a failed task.
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    pub fn invalid(message: impl Into<String>) -> AuthError {
        AuthError::InvalidArgument(message.into())
    }

    pub fn unauthenticated(message: impl Into<String>) -> AuthError {
        AuthError::Unauthenticated(message.into())
    }

    pub fn internal(message: impl std::fmt::Display) -> AuthError {
        AuthError::Internal(message.to_string())
    }
}
