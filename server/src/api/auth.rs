//! `/v1/auth/*` (DESIGN.md §3 Auth) and the `/.well-known/*` documents of the token issuer.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value as Json};

use super::body::{optional, read_object, read_optional_object, required};
use super::caller::Caller;
use super::AppState;
use crate::auth::{public_user, UserUpdate};
use crate::error::ApiError;

/// The client's address for rate limits: the socket's peer, or behind a configured trusted
/// proxy the address it forwarded (`auth.trusted_proxies`).
fn client_ip(request: &HttpRequest) -> IpAddr {
    let peer = request
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
    let forwarded = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    match request.app_data::<web::Data<AppState>>() {
        Some(state) => state.auth.client_ip(peer, forwarded),
        None => peer,
    }
}
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.auth.tokens().jwks())
}

pub async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.auth.tokens().openid_configuration())
}

pub async fn signup(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let signed_in = state
        .auth
        .signup(
            required(&body, "email")?,
            required(&body, "password")?,
            body.get("displayName"),
            client_ip(&request),
        )
        .await?;
    Ok(HttpResponse::Created().json(signed_in.to_json()))
}

pub async fn login(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let signed_in = state
        .auth
        .login(
            required(&body, "email")?,
            required(&body, "password")?,
            client_ip(&request),
        )
        .await?;
    Ok(HttpResponse::Ok().json(signed_in.to_json()))
}

pub async fn anonymous(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let signed_in = state.auth.anonymous(client_ip(&request)).await?;
    Ok(HttpResponse::Created().json(signed_in.to_json()))
}

pub async fn refresh(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let signed_in = state
        .auth
        .refresh(required(&body, "refreshToken")?, client_ip(&request))
        .await?;
    Ok(HttpResponse::Ok().json(signed_in.to_json()))
}

pub async fn logout(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_optional_object(payload, state.limits.max_body_bytes).await?;
    let refresh_token = optional(&body, "refreshToken")?;
    let everywhere = match body.get("everywhere") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("\"everywhere\" must be a boolean")),
    };
    // With a refresh token, an expired access token must not stop the sign-out.
    let identity = match Caller::optional_user(&request, &state).await {
        Ok(identity) => identity,
        Err(_) if refresh_token.is_some() => None,
        Err(err) => return Err(err),
    };
    state
        .auth
        .logout(identity.as_ref(), refresh_token, everywhere)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn get_user(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = Caller::require_user(&request, &state).await?;
    let user = state.auth.get_user(&identity.uid).await?;
    Ok(HttpResponse::Ok().json(json!({ "user": public_user(&user) })))
}

pub async fn update_user(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = Caller::require_user(&request, &state).await?;
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    const FIELDS: [&str; 4] = ["displayName", "email", "password", "currentPassword"];
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !FIELDS.contains(&k.as_str())))
    {
        return Err(ApiError::invalid(format!(
            "\"{unknown}\" cannot be changed here (fields: displayName, email, password with currentPassword)"
        )));
    }
    let update = UserUpdate {
        display_name: body.get("displayName").cloned(),
        email: optional(&body, "email")?.map(str::to_string),
        password: optional(&body, "password")?.map(str::to_string),
        current_password: optional(&body, "currentPassword")?.map(str::to_string),
    };
    let (user, session) = state.auth.update_user(&identity, update).await?;
    Ok(match session {
        Some(session) => HttpResponse::Ok().json(session.to_json()),
        None => HttpResponse::Ok().json(json!({ "user": public_user(&user) })),
    })
}

pub async fn delete_user(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = Caller::require_user(&request, &state).await?;
    state.auth.delete_user(&identity.uid).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn link(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = Caller::require_user(&request, &state).await?;
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let signed_in = state
        .auth
        .link(
            &identity,
            required(&body, "email")?,
            required(&body, "password")?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(signed_in.to_json()))
}

pub async fn send_verification(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let identity = Caller::require_user(&request, &state).await?;
    state
        .auth
        .send_verification(&identity, client_ip(&request))
        .await?;
    Ok(HttpResponse::Accepted().json(json!({})))
}

pub async fn confirm_verification(
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let user = state
        .auth
        .confirm_verification(required(&body, "token")?)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "user": public_user(&user) })))
}

pub async fn send_password_reset(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    let email = required(&body, "email")?.to_string();
    let auth = state.auth.clone();
    let ip = client_ip(&request);
    // The rate limit and the email's syntax answer at once; whether the account exists must not
    // show in the answer or its timing, so the lookup and the mail run after the response.
    auth.check_password_reset(&email, ip)?;
    tokio::spawn(async move {
        if let Err(err) = auth.send_password_reset(&email).await {
            tracing::error!(error = %err, "password reset mail failed");
        }
    });
    Ok(HttpResponse::Accepted().json(json!({})))
}

pub async fn confirm_password_reset(
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_object(payload, state.limits.max_body_bytes).await?;
    state
        .auth
        .confirm_password_reset(required(&body, "token")?, required(&body, "newPassword")?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
