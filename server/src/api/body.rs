//! Request bodies: size-limited reads and JSON decoding with clear errors.

use actix_web::web;
use serde_json::Value as Json;

use crate::error::{ApiError, ErrorCode};

/// Reads the whole body, refusing more than `limit` bytes with 413 before buffering it all.
pub async fn read_json(payload: web::Payload, limit: usize) -> Result<Json, ApiError> {
    let bytes = read_bytes(payload, limit).await?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "request body is empty: a JSON object is expected",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::invalid(format!("request body is not valid JSON: {err}")))
}

/// Reads a body that must be a JSON object.
pub async fn read_object(payload: web::Payload, limit: usize) -> Result<Json, ApiError> {
    expect_object(read_json(payload, limit).await?)
}

/// Like `read_object`, but an empty body counts as `{}`.
pub async fn read_optional_object(payload: web::Payload, limit: usize) -> Result<Json, ApiError> {
    let bytes = read_bytes(payload, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Json::Object(serde_json::Map::new()));
    }
    let body = serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::invalid(format!("request body is not valid JSON: {err}")))?;
    expect_object(body)
}

fn expect_object(body: Json) -> Result<Json, ApiError> {
    if body.is_object() {
        Ok(body)
    } else {
        Err(ApiError::invalid("the request body must be a JSON object"))
    }
}

/// Reads a UTF-8 text body (rules sources).
pub async fn read_text(payload: web::Payload, limit: usize) -> Result<String, ApiError> {
    let bytes = read_bytes(payload, limit).await?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::invalid("request body is not UTF-8 text"))
}

async fn read_bytes(payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let bytes = match payload.to_bytes_limited(limit).await {
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {limit} bytes"),
            ))
        }
        Ok(Err(err)) => {
            return Err(ApiError::invalid(format!(
                "could not read the request body: {err}"
            )))
        }
        Ok(Ok(bytes)) => bytes,
    };
    Ok(bytes)
}

/// A required string field of the body.
pub fn required<'a>(body: &'a Json, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Json::String(text)) => Ok(text),
        Some(_) => Err(ApiError::invalid(format!("\"{field}\" must be a string"))),
        None => Err(ApiError::invalid(format!("\"{field}\" is required"))),
    }
}

/// An optional string field of the body.
pub fn optional<'a>(body: &'a Json, field: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::invalid(format!("\"{field}\" must be a string"))),
    }
}
