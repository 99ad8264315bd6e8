//! Operations routes: health, readiness, Prometheus metrics and the OpenAPI description.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

const OPENAPI: &str = include_str!("openapi.json");

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if let Some(failure) = state.store.failure() {
        // Reads still work, but a load balancer should send writers elsewhere and an operator
        // should restart the server (the log is replayed on start).
        return HttpResponse::ServiceUnavailable()
            .json(json!({"error": {"code": "unavailable", "message": failure.to_string()}}));
    }
    if state.ready.load(Ordering::Relaxed) {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(
            json!({"error": {"code": "unavailable", "message": "the server is shutting down"}}),
        )
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(
            state.metrics.render(state.store.size_bytes()) + state.hooks.render_metrics().as_str(),
        )
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}
