//! `/v1/admin/tokens` and `/v1/admin/users/*` (service key only): mint access tokens, list, get,
//! create, change (disable, claims), delete users and revoke their sessions.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::body::{optional, read_object, required};
use super::caller::Caller;
use super::AppState;
use crate::auth::{admin_user, AdminUserUpdate, NewUser};
use crate::error::ApiError;

/// Users per page when the request gives no `limit`, and the most it may ask for.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

fn bool_field(body: &Json, field: &str) -> Result<Option<bool>, ApiError> {
    match body.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(format!("\"{field}\" must be a boolean"))),
    }
}

pub async fn mint_token(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let uid = required(&body, "uid")?;
    let claims = body.get("claims").filter(|c| !c.is_null());
    let (token, expires_in) = state.auth.mint(uid, claims)?;
    Ok(HttpResponse::Ok().json(json!({"accessToken": token, "expiresIn": expires_in})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    limit: Option<usize>,
    page_token: Option<String>,
}

pub async fn list_users(
    request: HttpRequest,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!("limit must be 1–{MAX_PAGE}")));
    }
    let (users, next) = state
        .auth
        .list_users(limit, params.page_token.as_deref())
        .await?;
    let mut body = json!({"users": users.iter().map(admin_user).collect::<Vec<_>>()});
    if let Some(next) = next {
        body["nextPageToken"] = json!(next);
    }
    Ok(HttpResponse::Ok().json(body))
}

pub async fn get_user(
    request: HttpRequest,
    uid: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let user = state.auth.get_user(&uid).await?;
    Ok(HttpResponse::Ok().json(json!({"user": admin_user(&user)})))
}

pub async fn create_user(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let new = NewUser {
        email: optional(&body, "email")?.map(String::from),
        password: optional(&body, "password")?.map(String::from),
        display_name: body.get("displayName").cloned(),
        email_verified: bool_field(&body, "emailVerified")?.unwrap_or(false),
        claims: body.get("claims").filter(|c| !c.is_null()).cloned(),
    };
    let user = state.auth.create_user(new).await?;
    Ok(HttpResponse::Created().json(json!({"user": admin_user(&user)})))
}

pub async fn update_user(
    request: HttpRequest,
    uid: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    const FIELDS: [&str; 4] = ["disabled", "displayName", "emailVerified", "claims"];
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !FIELDS.contains(&k.as_str())))
    {
        return Err(ApiError::invalid(format!(
            "\"{unknown}\" cannot be changed (fields: disabled, displayName, emailVerified, claims)"
        )));
    }
    let update = AdminUserUpdate {
        disabled: bool_field(&body, "disabled")?,
        display_name: body.get("displayName").cloned(),
        email_verified: bool_field(&body, "emailVerified")?,
        claims: body.get("claims").cloned(),
    };
    let user = state.auth.admin_update_user(&uid, update).await?;
    Ok(HttpResponse::Ok().json(json!({"user": admin_user(&user)})))
}

/// Replaces the custom claims; they appear in the user's next access token.
pub async fn set_claims(
    request: HttpRequest,
    uid: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let claims = body
        .get("claims")
        .cloned()
        .ok_or_else(|| ApiError::invalid("\"claims\" (an object) is required"))?;
    let update = AdminUserUpdate {
        claims: Some(claims),
        ..AdminUserUpdate::default()
    };
    let user = state.auth.admin_update_user(&uid, update).await?;
    Ok(HttpResponse::Ok().json(json!({"user": admin_user(&user)})))
}

pub async fn delete_user(
    request: HttpRequest,
    uid: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    state.auth.delete_user(&uid).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends every session of the user; its access tokens issued until now stop working.
pub async fn revoke_sessions(
    request: HttpRequest,
    uid: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    state.auth.get_user(&uid).await?;
    state.auth.revoke_all(&uid).await?;
    Ok(HttpResponse::NoContent().finish())
}
