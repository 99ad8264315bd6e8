//! `/v1/admin/hooks*` (service key only): hook definitions, their delivery log and redelivery.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::read_json;
use super::caller::Caller;
use super::AppState;
use crate::error::ApiError;
use crate::hooks::outbox::Status;

/// A hook definition is small; a larger body is a mistake.
const MAX_HOOK_BYTES: usize = 64 << 10;
/// Deliveries listed at most per request.
const MAX_DELIVERIES_LISTED: usize = 1_000;

pub async fn list_hooks(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    Ok(HttpResponse::Ok().json(json!({ "hooks": state.hooks.list() })))
}

pub async fn get_hook(
    request: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    Ok(HttpResponse::Ok().json(state.hooks.get(&name)?))
}

/// `PUT /v1/admin/hooks/{name}`: 201 when created, 200 when replaced; the answer shows the
/// secret masked. Leaving `secret` out of a replacement keeps the stored one.
pub async fn put_hook(
    request: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let body = read_json(payload, MAX_HOOK_BYTES).await?;
    let (hook, created) = state.hooks.put(&name, &body).await?;
    Ok(super::admin::created_or_ok(created, &hook))
}

pub async fn delete_hook(
    request: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    state.hooks.delete(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(serde::Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

/// `GET /v1/admin/hooks/{name}/deliveries?status=pending|failed|delivered&limit=N&after=ID`,
/// oldest first (default: pending, 100); `next` is the `after` of the following page.
pub async fn list_deliveries(
    request: HttpRequest,
    name: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let status = match query.status.as_deref() {
        None | Some("pending") => Status::Pending,
        Some("failed") => Status::Failed,
        Some("delivered") => Status::Delivered,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status '{other}' is not one of pending, failed, delivered"
            )))
        }
    };
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_DELIVERIES_LISTED).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "limit must be an integer from 1 to {MAX_DELIVERIES_LISTED}"
                ))
            })?,
    };
    let (deliveries, more) = state
        .hooks
        .deliveries(&name, status, query.after.as_deref(), limit)
        .await?;
    let next = more
        .then(|| deliveries.last().map(|d| d["id"].clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries, "next": next })))
}

/// `POST /v1/admin/hooks/{name}/deliveries/{id}/redeliver`: a failed delivery, queued again (202).
pub async fn redeliver(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let (name, id) = path.into_inner();
    let delivery = state.hooks.redeliver(&name, &id).await?;
    Ok(HttpResponse::Accepted().json(delivery))
}
