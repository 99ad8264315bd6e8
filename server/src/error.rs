//! The public error table and the one place where errors become HTTP responses.
//!
//! Every layer has its own error enum; each converts into `ApiError` here, and only
//! `ApiError` knows statuses. Codes are API: clients match on them.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value as Json};

use crate::auth::AuthError;
use crate::docs::DocsError;
use crate::hooks::HooksError;
use crate::roles::RolesError;
use crate::store::StoreError;

/// The error codes of DESIGN.md §3, with their HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Aborted,
    FailedPrecondition,
    PayloadTooLarge,
    HookRejected,
    RateLimited,
    Internal,
    Unavailable,
    /// Login failed: unknown email or wrong password (the body never says which).
    InvalidCredentials,
    /// A rotated refresh token was reused after the grace: its session family is revoked.
    TokenReused,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Aborted,
        ErrorCode::FailedPrecondition,
        ErrorCode::PayloadTooLarge,
        ErrorCode::HookRejected,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::InvalidCredentials,
        ErrorCode::TokenReused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Aborted => "aborted",
            ErrorCode::FailedPrecondition => "failed_precondition",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HookRejected => "hook_rejected",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::TokenReused => "token_reused",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists => StatusCode::CONFLICT,
            ErrorCode::Aborted => StatusCode::CONFLICT,
            ErrorCode::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HookRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ErrorCode::TokenReused => StatusCode::UNAUTHORIZED,
        }
    }
}

/// An error as the client sees it: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Json>,
    /// Sent as `Retry-After` (with 429 `rate_limited`).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: None,
            retry_after_secs: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    /// A 500: the client learns nothing of the cause; the log gets all of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error")
    }

    pub fn body(&self) -> Json {
        let mut error = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(details) = &self.details {
            error["details"] = details.clone();
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        if self.code == ErrorCode::Unauthenticated {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(self.body())
    }
}

impl From<DocsError> for ApiError {
    fn from(err: DocsError) -> Self {
        match err {
            DocsError::InvalidArgument(m) => ApiError::new(ErrorCode::InvalidArgument, m),
            DocsError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            DocsError::AlreadyExists(m) => ApiError::new(ErrorCode::AlreadyExists, m),
            DocsError::FailedPrecondition(m) => ApiError::new(ErrorCode::FailedPrecondition, m),
            DocsError::PayloadTooLarge(m) => ApiError::new(ErrorCode::PayloadTooLarge, m),
            DocsError::PermissionDenied(m) => ApiError::new(ErrorCode::PermissionDenied, m),
            DocsError::InvalidRules(errors) => {
                let mut error = ApiError::invalid(format!(
                    "the ruleset is invalid; the old rules stay live:\n{}",
                    errors.join("\n")
                ));
                error.details = Some(serde_json::json!({ "errors": errors }));
                error
            }
            DocsError::SchemaViolation(violations) => {
                let lines: Vec<String> = violations
                    .iter()
                    .map(|v| {
                        format!(
                            "{} {}: {}",
                            v.document,
                            if v.field.is_empty() { "/" } else { &v.field },
                            v.message
                        )
                    })
                    .collect();
                let mut error = ApiError::invalid(format!(
                    "the document does not match its collection's schema:\n{}",
                    lines.join("\n")
                ));
                let list: Vec<Json> = violations.iter().map(|v| v.to_json()).collect();
                error.details = Some(json!({ "violations": list }));
                error
            }
            DocsError::Aborted(m) => ApiError::new(ErrorCode::Aborted, m),
            DocsError::Hook(err) => err.into(),
            DocsError::Store(err) => err.into(),
            DocsError::Corrupt(err) => ApiError::internal(&err),
            DocsError::Task(err) => ApiError::internal(&err),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let message = err.to_string();
        match err {
            AuthError::InvalidArgument(m) => ApiError::new(ErrorCode::InvalidArgument, m),
            AuthError::InvalidCredentials => ApiError::new(ErrorCode::InvalidCredentials, message),
            AuthError::Unauthenticated(m) => ApiError::new(ErrorCode::Unauthenticated, m),
            AuthError::TokenReused => ApiError::new(ErrorCode::TokenReused, message),
            AuthError::PermissionDenied(m) => ApiError::new(ErrorCode::PermissionDenied, m),
            AuthError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            AuthError::AlreadyExists(m) => ApiError::new(ErrorCode::AlreadyExists, m),
            AuthError::FailedPrecondition(m) => ApiError::new(ErrorCode::FailedPrecondition, m),
            AuthError::Aborted(m) => ApiError::new(ErrorCode::Aborted, m),
            AuthError::RateLimited { retry_after_secs } => ApiError {
                retry_after_secs: Some(retry_after_secs),
                ..ApiError::new(ErrorCode::RateLimited, message)
            },
            AuthError::Mail(_) => {
                tracing::error!(error = %message, "mail delivery failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the mail could not be sent; try again later",
                )
            }
            AuthError::Hook(err) => err.into(),
            AuthError::Store(err) => err.into(),
            AuthError::Internal(_) => ApiError::internal(&message),
        }
    }
}

impl From<HooksError> for ApiError {
    fn from(err: HooksError) -> Self {
        let message = err.to_string();
        match err {
            HooksError::Rejected { hook, message } => ApiError {
                details: Some(json!({"hook": hook})),
                ..ApiError::new(ErrorCode::HookRejected, message)
            },
            HooksError::Unavailable { hook, .. } => {
                tracing::warn!(%hook, error = %message, "before hook unavailable");
                ApiError {
                    details: Some(json!({"hook": hook})),
                    ..ApiError::new(ErrorCode::Unavailable, message)
                }
            }
            HooksError::Invalid(problems) => ApiError {
                details: Some(json!({"errors": problems})),
                ..ApiError::invalid(message)
            },
            HooksError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            HooksError::InvalidArgument(m) => ApiError::invalid(m),
            HooksError::Store(err) => err.into(),
            HooksError::Corrupt(_) => ApiError::internal(&message),
        }
    }
}

impl From<RolesError> for ApiError {
    fn from(err: RolesError) -> Self {
        match err {
            RolesError::Invalid(m) => ApiError::invalid(m),
            RolesError::Contention => ApiError::new(ErrorCode::Aborted, err.to_string()),
            RolesError::Store(err) => err.into(),
            RolesError::Corrupt(_) => ApiError::internal(&err),
        }
    }
}

impl From<crate::migrate::MigrationError> for ApiError {
    fn from(err: crate::migrate::MigrationError) -> Self {
        use crate::migrate::MigrationError;
        match err {
            MigrationError::Refused(problems) => {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                let mut error = ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!("the migrations are refused:\n{}", list.join("\n")),
                );
                error.details = Some(json!({ "problems": list }));
                error
            }
            MigrationError::StepFailed { .. } => {
                ApiError::new(ErrorCode::FailedPrecondition, err.to_string())
            }
            MigrationError::Docs(err) => err.into(),
            MigrationError::Roles(err) => err.into(),
            MigrationError::Store(err) => err.into(),
            MigrationError::Io(_) | MigrationError::Corrupt(_) => ApiError::internal(&err),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Closed => {
                ApiError::new(ErrorCode::Unavailable, "the server is shutting down")
            }
            StoreError::Engine(_) => ApiError::internal(&err),
            StoreError::Stopped(_) => {
                tracing::error!(error = %err, "a write was refused");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the store stopped taking writes after an error; the server needs a restart",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes and statuses are API: this table must only ever grow.
    #[test]
    fn error_code_table_is_stable() {
        let table: Vec<(&str, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.status().as_u16()))
            .collect();
        assert_eq!(
            table,
            vec![
                ("invalid_argument", 400),
                ("unauthenticated", 401),
                ("permission_denied", 403),
                ("not_found", 404),
                ("already_exists", 409),
                ("aborted", 409),
                ("failed_precondition", 412),
                ("payload_too_large", 413),
                ("hook_rejected", 422),
                ("rate_limited", 429),
                ("internal", 500),
                ("unavailable", 503),
                ("invalid_credentials", 401),
                ("token_reused", 401),
            ]
        );
    }

    #[test]
    fn a_stopped_store_answers_unavailable_and_a_broken_one_internal() {
        let stopped: ApiError = StoreError::Stopped("EIO".into()).into();
        assert_eq!(stopped.code, ErrorCode::Unavailable);
        let broken: ApiError = StoreError::Engine("EIO".into()).into();
        assert_eq!(broken.code, ErrorCode::Internal);
    }
}
