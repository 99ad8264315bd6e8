//! `/v1/admin/*` routes of the documents layer (service key only): composite indexes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};

use super::body::{optional, read_json, required};
use super::caller::Caller;
use super::AppState;
use crate::docs::{parse_covering, parse_index_fields};
use crate::error::{ApiError, ErrorCode};
use crate::roles::{Grant, Inheritance, DEFAULT_DOMAIN};

pub async fn create_index(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let collection = required(&body, "collection")?.to_string();
    let fields = parse_index_fields(body.get("fields").unwrap_or(&Json::Null))?;
    let covering = parse_covering(body.get("covering"))?;
    let index = state
        .docs
        .create_index(collection, fields, covering)
        .await?;
    Ok(HttpResponse::Created().json(index))
}

pub async fn list_indexes(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    Ok(HttpResponse::Ok().json(json!({ "indexes": state.docs.list_indexes() })))
}

pub async fn drop_index(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, format!("no index with id '{id}'")))?;
    state.docs.drop_index(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Rules sources are small; a larger body is a mistake (the rules language caps sources at 256 KB).
const MAX_RULES_BYTES: usize = 512 << 10;

/// `GET /v1/admin/rules`: the live rules source as text.
pub async fn get_rules(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    match state.docs.rules_source().await? {
        Some(source) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(source)),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            "no security rules are loaded",
        )),
    }
}

/// `PUT /v1/admin/rules` with the source as text: validated, stored and swapped in atomically;
/// a bad ruleset answers 400 with every error and the old rules stay live.
pub async fn put_rules(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let source = super::body::read_text(payload, MAX_RULES_BYTES).await?;
    state.docs.set_rules(source).await?;
    Ok(HttpResponse::Ok().json(json!({"status": "live"})))
}

/// The `domain` of a roles body, the default domain when none is named.
fn domain_of(body: &Json) -> Result<String, ApiError> {
    Ok(optional(body, "domain")?
        .unwrap_or(DEFAULT_DOMAIN)
        .to_string())
}

/// 201 with what was created, or 200 when it was already there (or replaced).
pub(super) fn created_or_ok(created: bool, policy: &impl serde::Serialize) -> HttpResponse {
    let mut response = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    response.json(policy)
}

/// `{"uid", "role", "domain"?}` as a grant.
fn grant_from(body: &Json) -> Result<Grant, ApiError> {
    Ok(Grant {
        uid: required(body, "uid")?.to_string(),
        role: required(body, "role")?.to_string(),
        domain: domain_of(body)?,
    })
}

/// `POST /v1/admin/roles/grants {"uid", "role", "domain"?}`: 201 when granted, 200 when it was.
pub async fn grant_role(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let grant = grant_from(&read_json(payload, state.limits.max_body_bytes).await?)?;
    let created = state.roles.grant(grant.clone()).await?;
    Ok(created_or_ok(created, &grant))
}

/// `DELETE /v1/admin/roles/grants` with the same body: 204 (also when there was no grant).
pub async fn revoke_role(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let grant = grant_from(&read_json(payload, state.limits.max_body_bytes).await?)?;
    state.roles.revoke(grant).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/admin/roles/grants?uid=`: direct grants, of one user or of everyone.
pub async fn list_grants(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let params =
        web::Query::<std::collections::HashMap<String, String>>::from_query(request.query_string())
            .map_err(|err| ApiError::invalid(format!("bad query string: {err}")))?;
    let grants = state.roles.grants(params.get("uid").map(String::as_str));
    Ok(HttpResponse::Ok().json(json!({ "grants": grants })))
}

/// `POST /v1/admin/roles/inherits {"role", "inherits", "domain"?}`: `role` includes `inherits`.
pub async fn inherit_role(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let edge = Inheritance {
        role: required(&body, "role")?.to_string(),
        inherits: required(&body, "inherits")?.to_string(),
        domain: domain_of(&body)?,
    };
    let created = state.roles.inherit(edge.clone()).await?;
    Ok(created_or_ok(created, &edge))
}

/// `GET /v1/admin/roles/inherits`: every inheritance edge.
pub async fn list_inherits(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    Ok(HttpResponse::Ok().json(json!({ "inherits": state.roles.inheritances() })))
}
