//! `/v1/admin/*` routes of the project's data as a whole (service key only): migrations status,
//! collection schemas and the export stream.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::caller::Caller;
use super::AppState;
use crate::error::ApiError;
use crate::export::{write_snapshot, ExportError, LineKind};

/// Bytes gathered before a chunk of the export stream is sent.
const EXPORT_CHUNK_BYTES: usize = 256 << 10;
/// Chunks buffered between the reader and a slow client; the reader waits beyond that.
const EXPORT_QUEUE_CHUNKS: usize = 8;

/// `GET /v1/admin/migrations`: every track with each migration's state.
pub async fn migrations_status(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let (validator, _) = crate::migrate::hooks_bridge(&state.hooks);
    let plans = crate::migrate::plan_all(
        &state.store,
        state.migrations_dir.as_deref(),
        Some(validator),
    )
    .await?;
    let tracks: Vec<serde_json::Value> = plans.iter().map(|plan| plan.status()).collect();
    Ok(HttpResponse::Ok().json(json!({ "tracks": tracks })))
}

/// `POST /v1/admin/migrations/up`: applies what is pending in the server's `--migrations`
/// folder (and its own migrations) while it serves: a deploy adds files, then calls this. One
/// run at a time; client writes go on meanwhile (data steps commit with version checks).
pub async fn migrations_up(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let _one_run = MIGRATION_RUN.lock().await;
    let (validator, put) = crate::migrate::hooks_bridge(&state.hooks);
    let services = crate::migrate::Services {
        store: state.store.clone(),
        docs: state.docs.clone(),
        roles: state.roles.clone(),
        hooks: Some(put),
    };
    let applied =
        crate::migrate::migrate_all(&services, state.migrations_dir.as_deref(), Some(validator))
            .await?;
    Ok(HttpResponse::Ok().json(json!({ "applied": applied })))
}

/// Serialises migration runs through the admin API.
static MIGRATION_RUN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `GET /v1/admin/schemas`: the JSON Schema of every collection pattern that has one.
pub async fn schemas(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    Ok(HttpResponse::Ok().json(json!({ "schemas": state.docs.schemas().sources() })))
}

/// `GET /v1/admin/export`: a consistent snapshot as JSON Lines (`application/x-ndjson`),
/// streamed while the server keeps serving. The last line is `{"type":"end", ...}`; a stream
/// without it broke off.
pub async fn export(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Caller::require_service(&request, &state).await?;
    let store = state.store.clone();
    // Take the snapshot before answering, so a store error is still a clean error response.
    let view = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.read())
            .await
            .map_err(|err| ApiError::internal(&err))??
    };
    let store_version = *store.committed().borrow();
    let (sender, receiver) = tokio::sync::mpsc::channel::<web::Bytes>(EXPORT_QUEUE_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut chunk: Vec<u8> = Vec::with_capacity(EXPORT_CHUNK_BYTES);
        let result = write_snapshot(
            view.as_ref(),
            store_version,
            &mut |_kind: LineKind, line| {
                chunk.extend_from_slice(line);
                if chunk.len() >= EXPORT_CHUNK_BYTES {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(EXPORT_CHUNK_BYTES));
                    sender
                        .blocking_send(web::Bytes::from(full))
                        .map_err(|_| ExportError::Cancelled)?;
                }
                Ok(())
            },
        );
        match result {
            Ok(_) => {
                let _ = sender.blocking_send(web::Bytes::from(chunk));
            }
            // The stream simply ends without its end line; the client sees it as incomplete.
            Err(err) => tracing::warn!(error = %err, "export stream stopped"),
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, actix_web::Error>(bytes), receiver))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(body))
}
