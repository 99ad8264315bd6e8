//! Who is calling: the service key (admin, bypasses rules), a signed-in user (access token) or
//! an anonymous client.

use actix_web::http::header;
use actix_web::HttpRequest;

use super::AppState;
use crate::auth::Identity;
use crate::docs::Access;
use crate::error::{ApiError, ErrorCode};

/// The service key, compared in constant time and never logged.
#[derive(Clone)]
pub struct ServiceKey(String);

impl ServiceKey {
    pub fn new(key: String) -> ServiceKey {
        ServiceKey(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceKey(****)")
    }
}

/// The identity behind a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// Holds the service key: bypasses security rules (the admin SDK's identity).
    Service,
    /// A signed-in user: the uid and every claim of a valid access token (what rules read as
    /// `request.auth`).
    User(Identity),
    /// No credentials.
    Anonymous,
}

impl Caller {
    /// `Authorization: Bearer <service key | access token>`; no header is `Anonymous`. An access
    /// token must verify and belong to a user that is not disabled, deleted or revoked since.
    pub async fn from_request(request: &HttpRequest, state: &AppState) -> Result<Caller, ApiError> {
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "Authorization must be 'Bearer <token>'",
                )
            })?;
        if state.service_key.matches(token) {
            return Ok(Caller::Service);
        }
        Ok(Caller::User(state.auth.authenticate(token).await?))
    }

    /// How this caller reaches documents: the service key bypasses rules; everyone else is
    /// judged by the rules live when the request arrived (denied when none are loaded).
    pub async fn document_access(
        request: &HttpRequest,
        state: &AppState,
    ) -> Result<Access, ApiError> {
        let rules = state.docs.rules();
        match Caller::from_request(request, state).await? {
            Caller::Service => Ok(Access::as_admin()),
            Caller::Anonymous => Ok(Access::Client {
                rules,
                auth: None,
                roles: state.roles.clone(),
            }),
            Caller::User(identity) => {
                let token = hearth_rules::Value::from_wire_json(&serde_json::Value::Object(
                    identity.claims.clone(),
                ))
                .map_err(|err| ApiError::internal(&err))?;
                Ok(Access::Client {
                    rules,
                    auth: Some(hearth_rules::Auth {
                        uid: identity.uid,
                        token,
                    }),
                    roles: state.roles.clone(),
                })
            }
        }
    }

    /// The identity behind the token of a realtime `auth` message, judged like a bearer token:
    /// the service key (rules bypassed) or a valid access token.
    pub async fn realtime_principal(
        token: &str,
        state: &AppState,
    ) -> Result<crate::realtime::Principal, ApiError> {
        if state.service_key.matches(token) {
            return Ok(crate::realtime::Principal::Admin);
        }
        let identity = state.auth.authenticate(token).await?;
        let expires_at = identity
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_i64);
        let claims = hearth_rules::Value::from_wire_json(&serde_json::Value::Object(
            identity.claims.clone(),
        ))
        .map_err(|err| ApiError::internal(&err))?;
        Ok(crate::realtime::Principal::User {
            auth: hearth_rules::Auth {
                uid: identity.uid,
                token: claims,
            },
            expires_at,
        })
    }

    pub async fn require_service(request: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
        match Caller::from_request(request, state).await? {
            Caller::Service => Ok(()),
            Caller::User(_) | Caller::Anonymous => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "this route needs the service key",
            )),
        }
    }

    /// The signed-in user; 401 without an access token.
    pub async fn require_user(
        request: &HttpRequest,
        state: &AppState,
    ) -> Result<Identity, ApiError> {
        match Caller::from_request(request, state).await? {
            Caller::User(identity) => Ok(identity),
            Caller::Anonymous => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "this route needs an access token",
            )),
            Caller::Service => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "this route is for a signed-in user; admins use /v1/admin/users",
            )),
        }
    }

    /// The signed-in user if the request carries an access token.
    pub async fn optional_user(
        request: &HttpRequest,
        state: &AppState,
    ) -> Result<Option<Identity>, ApiError> {
        match Caller::from_request(request, state).await? {
            Caller::User(identity) => Ok(Some(identity)),
            Caller::Anonymous | Caller::Service => Ok(None),
        }
    }
}
