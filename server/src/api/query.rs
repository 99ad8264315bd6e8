//! `POST /v1/query`, `POST /v1/query/explain` and `POST /v1/batch`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};

use super::body::read_json;
use super::caller::Caller;
use super::docs::documents_response;
use super::AppState;
use crate::docs::execute::QueryAnswer;
use crate::docs::query::Query;
use crate::docs::write::{Precondition, Write, WriteEffect, WriteKind};
use crate::error::ApiError;
use crate::model::DocPath;

pub async fn run_query(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let query = Query::from_json(&body, state.docs.limits().max_page_size)?;
    let answer = state.docs.query(query, access).await?;
    Ok(match answer {
        QueryAnswer::Documents { body } => documents_response(body),
        QueryAnswer::Aggregates(aggregates) => {
            HttpResponse::Ok().json(json!({ "aggregates": aggregates }))
        }
    })
}

pub async fn explain_query(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let query = Query::from_json(&body, state.docs.limits().max_page_size)?;
    Ok(HttpResponse::Ok().json(state.docs.explain(query, access).await?))
}

pub async fn batch(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let writes = parse_batch(&body, state.limits.max_batch_writes)?;
    let outcome = state.docs.commit(writes, access).await?;
    let results: Vec<Json> = outcome
        .results
        .iter()
        .map(|r| {
            let version = match (&r.document, r.effect) {
                (_, WriteEffect::Deleted) => json!(outcome.version),
                (Some(doc), _) => json!(doc.version),
                (None, _) => Json::Null,
            };
            json!({"path": r.path.as_str(), "version": version})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"version": outcome.version, "results": results})))
}

fn parse_batch(body: &Json, max_writes: usize) -> Result<Vec<Write>, ApiError> {
    let writes = body
        .get("writes")
        .and_then(Json::as_array)
        .ok_or_else(|| ApiError::invalid("batch body is {\"writes\": [...]}"))?;
    if writes.is_empty() {
        return Err(ApiError::invalid("a batch needs at least one write"));
    }
    if writes.len() > max_writes {
        return Err(ApiError::invalid(format!(
            "a batch holds at most {max_writes} writes (got {})",
            writes.len()
        )));
    }
    writes
        .iter()
        .enumerate()
        .map(|(i, w)| {
            parse_write(w).map_err(|e| ApiError::invalid(format!("writes[{i}]: {}", e.message)))
        })
        .collect()
}

fn parse_write(json: &Json) -> Result<Write, ApiError> {
    let object = json
        .as_object()
        .ok_or_else(|| ApiError::invalid("a write is an object"))?;
    for key in object.keys() {
        if !["op", "path", "data", "precondition"].contains(&key.as_str()) {
            return Err(ApiError::invalid(format!("unknown write field '{key}'")));
        }
    }
    let op = object
        .get("op")
        .and_then(Json::as_str)
        .ok_or_else(|| ApiError::invalid("\"op\" is required"))?;
    let path = object
        .get("path")
        .and_then(Json::as_str)
        .ok_or_else(|| ApiError::invalid("\"path\" is required"))?;
    let path = DocPath::parse(path).map_err(|e| ApiError::invalid(e.message))?;
    let data = object.get("data");
    let needs_data = matches!(op, "set" | "create" | "update");
    if needs_data != data.is_some() {
        return Err(ApiError::invalid(if needs_data {
            format!("op '{op}' needs \"data\"")
        } else {
            format!("op '{op}' takes no \"data\"")
        }));
    }
    let data = data.unwrap_or(&Json::Null);
    let kind = match op {
        "set" => WriteKind::Set(Write::data_from_json(data)?),
        "create" => WriteKind::Create(Write::data_from_json(data)?),
        "update" => WriteKind::Update(Write::fields_from_json(data)?),
        "delete" => WriteKind::Delete,
        "verify" => WriteKind::Verify,
        other => {
            return Err(ApiError::invalid(format!(
                "unknown op '{other}' (use set, create, update, delete, verify)"
            )))
        }
    };
    let precondition = match object.get("precondition") {
        None | Some(Json::Null) => Precondition::None,
        Some(Json::Object(p)) if p.len() == 1 => match (p.get("exists"), p.get("version")) {
            (Some(Json::Bool(exists)), None) => Precondition::Exists(*exists),
            (None, Some(version)) => Precondition::Version(version.as_u64().ok_or_else(|| {
                ApiError::invalid("precondition version must be a non-negative integer")
            })?),
            _ => {
                return Err(ApiError::invalid(
                    "precondition is {\"exists\": bool} or {\"version\": N}",
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::invalid(
                "precondition is {\"exists\": bool} or {\"version\": N}",
            ))
        }
    };
    if op == "verify" && precondition == Precondition::None {
        return Err(ApiError::invalid("a verify write needs a precondition"));
    }
    Ok(Write {
        path,
        kind,
        precondition,
    })
}
