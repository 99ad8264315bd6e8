//! `GET /v1/realtime`: checks `Origin`, upgrades to a WebSocket on the same port and hands the
//! socket to `crate::realtime`, with a way to turn `auth` tokens into principals.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};

use super::{AppState, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::realtime::{self, Authenticator};

pub async fn connect(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let allowed = &state.realtime.settings.allowed_origins;
    if !allowed.is_empty() {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !allowed.iter().any(|a| a == origin) {
                return Ok(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!("origin '{origin}' may not open a realtime socket"),
                )
                .error_response());
            }
        }
    }
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    let app = state.clone().into_inner();
    let authenticate: Authenticator = Arc::new(move |token: String| {
        let app = app.clone();
        Box::pin(async move {
            Caller::realtime_principal(&token, &app)
                .await
                .map_err(|err| err.message)
        })
    });
    actix_web::rt::spawn(realtime::serve(
        state.realtime.clone(),
        authenticate,
        session,
        stream,
    ));
    Ok(response)
}
