//! `/v1/admin/*` routes of the documents layer (service key only): composite indexes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};

use super::body::read_json;
use super::caller::Caller;
use super::AppState;
use crate::docs::parse_index_fields;
use crate::error::{ApiError, ErrorCode};

pub async fn create_index(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let collection = body
        .get("collection")
        .and_then(Json::as_str)
        .ok_or_else(|| ApiError::invalid("\"collection\" (a collection ID) is required"))?
        .to_string();
    let fields = parse_index_fields(body.get("fields").unwrap_or(&Json::Null))?;
    let index = state.docs.create_index(collection, fields).await?;
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
