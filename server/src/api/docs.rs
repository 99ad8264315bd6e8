//! `/v1/docs/{path}`: one document (GET, PUT, PATCH, DELETE) or a collection (GET lists,
//! POST creates with an automatic ID).

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map as JsonMap, Value as Json};

use super::body::read_json;
use super::caller::Caller;
use super::AppState;
use crate::docs::execute::QueryAnswer;
use crate::docs::query::Query;
use crate::docs::write::{Precondition, Write, WriteEffect, WriteKind};
use crate::docs::{Access, CommitOutcome, RawDocument};
use crate::error::{ApiError, ErrorCode};
use crate::model::document::response_bytes;
use crate::model::{CollectionPath, DocId, DocPath, Document};

/// A path under `/v1/docs/`: a document or a collection, by its number of segments.
enum Target {
    Document(DocPath),
    Collection(CollectionPath),
}

fn target(raw: &str) -> Result<Target, ApiError> {
    let segments = raw.trim_matches('/').split('/').count();
    if segments.is_multiple_of(2) {
        Ok(Target::Document(
            DocPath::parse(raw).map_err(|e| ApiError::invalid(e.message))?,
        ))
    } else {
        Ok(Target::Collection(
            CollectionPath::parse(raw).map_err(|e| ApiError::invalid(e.message))?,
        ))
    }
}

fn document_path(raw: &str) -> Result<DocPath, ApiError> {
    match target(raw)? {
        Target::Document(path) => Ok(path),
        Target::Collection(path) => Err(ApiError::invalid(format!(
            "'{path}' is a collection path; this method takes a document path"
        ))),
    }
}

fn etag(version: u64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// `If-Match: "<version>"` or `If-Match: *`, and `If-None-Match: *`.
fn precondition(
    headers: &HeaderMap,
    allow_if_none_match: bool,
) -> Result<(Precondition, bool), ApiError> {
    let text = |name: header::HeaderName| -> Result<Option<String>, ApiError> {
        headers
            .get(&name)
            .map(|v| v.to_str().map(|s| s.trim().to_string()))
            .transpose()
            .map_err(|_| ApiError::invalid(format!("{name} is not valid text")))
    };
    let if_match = text(header::IF_MATCH)?;
    let if_none_match = text(header::IF_NONE_MATCH)?;
    if if_match.is_some() && if_none_match.is_some() {
        return Err(ApiError::invalid(
            "give If-Match or If-None-Match, not both",
        ));
    }
    if let Some(value) = if_none_match {
        if value != "*" || !allow_if_none_match {
            return Err(ApiError::invalid(
                "If-None-Match only takes '*' (create only), on PUT",
            ));
        }
        return Ok((Precondition::Exists(false), true));
    }
    match if_match {
        None => Ok((Precondition::None, false)),
        Some(value) if value == "*" => Ok((Precondition::Exists(true), false)),
        Some(value) => {
            let version = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "If-Match takes a quoted version from an ETag, like \"42\", or *",
                    )
                })?;
            Ok((Precondition::Version(version), false))
        }
    }
}

fn document_response(status: actix_web::http::StatusCode, document: &Document) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(etag(document.version))
        .content_type("application/json")
        .body(document_bytes(document))
}

/// The response body of a written document: its data encoded once, spliced into the envelope
/// (the same JSON as `Document::to_json`, without building it as a `serde_json::Value`).
fn document_bytes(document: &Document) -> Vec<u8> {
    response_bytes(&document.path, &document.encode_for_store())
}

/// The single written document of a one-write commit.
fn written(outcome: CommitOutcome) -> Result<(WriteEffect, Option<Document>), ApiError> {
    let result = outcome
        .results
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(&"commit returned no result"))?;
    Ok((result.effect, result.document))
}

fn raw_document_response(path: &DocPath, raw: &RawDocument) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(etag(raw.header.version))
        .content_type("application/json")
        .body(response_bytes(path, &raw.bytes))
}

pub async fn get(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    match target(&path)? {
        Target::Document(path) => match state.docs.get_raw(path.clone(), access).await? {
            Some(raw) => Ok(raw_document_response(&path, &raw)),
            None => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("document {path} does not exist"),
            )),
        },
        Target::Collection(collection) => list(&request, collection, &state, access).await,
    }
}

/// `GET /v1/docs/{collection}?limit=&pageToken=&orderBy=field[ desc][,field...]`.
async fn list(
    request: &HttpRequest,
    collection: CollectionPath,
    state: &AppState,
    access: Access,
) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map_err(|err| ApiError::invalid(format!("bad query string: {err}")))?;
    let mut body = JsonMap::new();
    body.insert("from".into(), json!(collection.as_str()));
    for (name, value) in params.iter() {
        match name.as_str() {
            "limit" => {
                let limit: u64 = value
                    .parse()
                    .map_err(|_| ApiError::invalid("limit must be a non-negative integer"))?;
                body.insert("limit".into(), json!(limit));
            }
            "pageToken" => {
                body.insert("pageToken".into(), json!(value));
            }
            "orderBy" => {
                let order: Vec<Json> = value
                    .split(',')
                    .map(|part| {
                        let mut words = part.split_whitespace();
                        let field = words.next().unwrap_or_default();
                        let direction = words.next().unwrap_or("asc");
                        json!([field, direction])
                    })
                    .collect();
                body.insert("orderBy".into(), Json::Array(order));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown list parameter '{other}' (use limit, pageToken, orderBy)"
                )))
            }
        }
    }
    let query = Query::from_json(&Json::Object(body), state.docs.limits().max_page_size)?;
    match state.docs.query(query, access).await? {
        QueryAnswer::Documents { body } => Ok(documents_response(body)),
        QueryAnswer::Aggregates(_) => Err(ApiError::internal(&"a list produced aggregates")),
    }
}

/// A page of documents, its JSON answer already written by the query.
pub fn documents_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

pub async fn put(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    let path = document_path(&path)?;
    let (precondition, create_only) = precondition(request.headers(), true)?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let data = Write::data_from_json(&body)?;
    let kind = if create_only {
        WriteKind::Create(data)
    } else {
        WriteKind::Set(data)
    };
    let precondition = if create_only {
        Precondition::None
    } else {
        precondition
    };
    let outcome = state
        .docs
        .commit(
            vec![Write {
                path,
                kind,
                precondition,
            }],
            access,
        )
        .await?;
    let (effect, document) = written(outcome)?;
    let document = document.ok_or_else(|| ApiError::internal(&"set left no document"))?;
    let status = if effect == WriteEffect::Created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(document_response(status, &document))
}

pub async fn patch(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    let path = document_path(&path)?;
    let (precondition, _) = precondition(request.headers(), false)?;
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let fields = Write::fields_from_json(&body)?;
    let outcome = state
        .docs
        .commit(
            vec![Write {
                path,
                kind: WriteKind::Update(fields),
                precondition,
            }],
            access,
        )
        .await?;
    let (_, document) = written(outcome)?;
    let document = document.ok_or_else(|| ApiError::internal(&"update left no document"))?;
    Ok(document_response(
        actix_web::http::StatusCode::OK,
        &document,
    ))
}

pub async fn delete(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    let path = document_path(&path)?;
    let (precondition, _) = precondition(request.headers(), false)?;
    state
        .docs
        .commit(
            vec![Write {
                path,
                kind: WriteKind::Delete,
                precondition,
            }],
            access,
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn post(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let access = Caller::document_access(&request, &state).await?;
    let collection = match target(&path)? {
        Target::Collection(collection) => collection,
        Target::Document(path) => {
            return Err(ApiError::invalid(format!(
                "'{path}' is a document path; POST takes a collection path and picks the ID"
            )))
        }
    };
    let body = read_json(payload, state.limits.max_body_bytes).await?;
    let data = Write::data_from_json(&body)?;
    let path = collection.doc(&DocId::generate());
    let outcome = state
        .docs
        .commit(
            vec![Write {
                path: path.clone(),
                kind: WriteKind::Create(data),
                precondition: Precondition::None,
            }],
            access,
        )
        .await?;
    let (_, document) = written(outcome)?;
    let document = document.ok_or_else(|| ApiError::internal(&"create left no document"))?;
    Ok(HttpResponse::Created()
        .insert_header(etag(document.version))
        .insert_header((header::LOCATION, format!("/v1/docs/{path}")))
        .content_type("application/json")
        .body(document_bytes(&document)))
}
