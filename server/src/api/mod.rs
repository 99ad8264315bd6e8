//! The HTTP API: routes, request decoding and response encoding. Every handler turns a request
//! into a call on a lower layer and maps its typed error through `crate::error::ApiError`.

mod admin;
mod admin_data;
mod admin_users;
mod auth;
mod body;
mod caller;
mod docs;
mod hooks;
mod ops;
mod query;
mod realtime;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use actix_web::web;
use futures_util::FutureExt as _;

pub use caller::{Caller, ServiceKey};

use crate::auth::Auth;
use crate::docs::Docs;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::roles::Roles;
use crate::store::SharedStore;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Writes in one batch at most.
    pub max_batch_writes: usize,
}

/// What every handler may use.
pub struct AppState {
    pub docs: Arc<Docs>,
    pub auth: Arc<Auth>,
    pub roles: Arc<Roles>,
    pub hooks: Arc<crate::hooks::Hooks>,
    pub store: SharedStore,
    pub metrics: Arc<Metrics>,
    pub service_key: ServiceKey,
    pub limits: HttpLimits,
    /// Realtime subscriptions (`GET /v1/realtime`).
    pub realtime: Arc<crate::realtime::Hub>,
    /// False once shutdown begins, so load balancers stop sending traffic.
    pub ready: AtomicBool,
    /// The app's migrations folder (`--migrations`), for the status route.
    pub migrations_dir: Option<std::path::PathBuf>,
}

/// Registers every route on an actix `App`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/v1/openapi.json", web::get().to(ops::openapi))
        .route("/v1/query", web::post().to(query::run_query))
        .route("/v1/query/explain", web::post().to(query::explain_query))
        .route("/v1/batch", web::post().to(query::batch))
        .route("/v1/realtime", web::get().to(realtime::connect))
        .route("/.well-known/jwks.json", web::get().to(auth::jwks))
        .route(
            "/.well-known/openid-configuration",
            web::get().to(auth::openid_configuration),
        )
        .route("/v1/auth/signup", web::post().to(auth::signup))
        .route("/v1/auth/login", web::post().to(auth::login))
        .route("/v1/auth/anonymous", web::post().to(auth::anonymous))
        .route("/v1/auth/refresh", web::post().to(auth::refresh))
        .route("/v1/auth/logout", web::post().to(auth::logout))
        .service(
            web::resource("/v1/auth/user")
                .route(web::get().to(auth::get_user))
                .route(web::patch().to(auth::update_user))
                .route(web::delete().to(auth::delete_user)),
        )
        .route("/v1/auth/link", web::post().to(auth::link))
        .route(
            "/v1/auth/verify-email/send",
            web::post().to(auth::send_verification),
        )
        .route(
            "/v1/auth/verify-email/confirm",
            web::post().to(auth::confirm_verification),
        )
        .route(
            "/v1/auth/password-reset/send",
            web::post().to(auth::send_password_reset),
        )
        .route(
            "/v1/auth/password-reset/confirm",
            web::post().to(auth::confirm_password_reset),
        )
        .route("/v1/admin/tokens", web::post().to(admin_users::mint_token))
        .service(
            web::resource("/v1/admin/users")
                .route(web::get().to(admin_users::list_users))
                .route(web::post().to(admin_users::create_user)),
        )
        .service(
            web::resource("/v1/admin/users/{uid}")
                .route(web::get().to(admin_users::get_user))
                .route(web::patch().to(admin_users::update_user))
                .route(web::delete().to(admin_users::delete_user)),
        )
        .route(
            "/v1/admin/users/{uid}/claims",
            web::put().to(admin_users::set_claims),
        )
        .route(
            "/v1/admin/users/{uid}/revoke",
            web::post().to(admin_users::revoke_sessions),
        )
        .route("/v1/admin/roles/grants", web::get().to(admin::list_grants))
        .route("/v1/admin/roles/grants", web::post().to(admin::grant_role))
        .route(
            "/v1/admin/roles/grants",
            web::delete().to(admin::revoke_role),
        )
        .route(
            "/v1/admin/roles/inherits",
            web::get().to(admin::list_inherits),
        )
        .route(
            "/v1/admin/roles/inherits",
            web::post().to(admin::inherit_role),
        )
        .route("/v1/admin/hooks", web::get().to(hooks::list_hooks))
        .service(
            web::resource("/v1/admin/hooks/{name}")
                .route(web::get().to(hooks::get_hook))
                .route(web::put().to(hooks::put_hook))
                .route(web::delete().to(hooks::delete_hook)),
        )
        .route(
            "/v1/admin/hooks/{name}/deliveries",
            web::get().to(hooks::list_deliveries),
        )
        .route(
            "/v1/admin/hooks/{name}/deliveries/{id}/redeliver",
            web::post().to(hooks::redeliver),
        )
        .route("/v1/admin/rules", web::get().to(admin::get_rules))
        .route("/v1/admin/rules", web::put().to(admin::put_rules))
        .route("/v1/admin/indexes", web::get().to(admin::list_indexes))
        .route("/v1/admin/indexes", web::post().to(admin::create_index))
        .route(
            "/v1/admin/indexes/{id}",
            web::delete().to(admin::drop_index),
        )
        .route(
            "/v1/admin/migrations",
            web::get().to(admin_data::migrations_status),
        )
        .route(
            "/v1/admin/migrations/up",
            web::post().to(admin_data::migrations_up),
        )
        .route("/v1/admin/schemas", web::get().to(admin_data::schemas))
        .route("/v1/admin/export", web::get().to(admin_data::export))
        .service(
            web::resource(DOCS_ROUTE)
                .route(web::get().to(docs::get))
                .route(web::put().to(docs::put))
                .route(web::patch().to(docs::patch))
                .route(web::delete().to(docs::delete))
                .route(web::post().to(docs::post)),
        );
}

/// Answers every request no route matched.
pub async fn no_route(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", request.method(), request.path()),
    ))
}

/// The one resource serving every document path.
const DOCS_ROUTE: &str = "/v1/docs/{path:.*}";

/// The route pattern a request matched, for metrics. actix's `match_pattern` walks the routing
/// table again (a tenth of a get by id under load); every path under `/v1/docs/` matches
/// `DOCS_ROUTE`, the only route registered there, so the busiest requests skip the walk.
fn route_label(request: &actix_web::HttpRequest) -> std::borrow::Cow<'static, str> {
    if request.path().starts_with("/v1/docs/") {
        return std::borrow::Cow::Borrowed(DOCS_ROUTE);
    }
    request.match_pattern().map_or(
        std::borrow::Cow::Borrowed("unmatched"),
        std::borrow::Cow::Owned,
    )
}

/// Records every request's route, status and latency into the metrics.
pub fn record_metrics<S, B>(
    metrics: Arc<Metrics>,
) -> impl Fn(
    actix_web::dev::ServiceRequest,
    &S,
) -> futures_util::future::LocalBoxFuture<
    'static,
    Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
> + Clone
where
    S: actix_web::dev::Service<
        actix_web::dev::ServiceRequest,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    S::Future: 'static,
    B: 'static,
{
    move |request, service| {
        let started = Instant::now();
        let metrics = metrics.clone();
        let method = request.method().clone();
        service
            .call(request)
            .map(move |result| {
                if let Ok(response) = &result {
                    let route = route_label(response.request());
                    metrics.record_request(
                        method.as_str(),
                        &route,
                        response.status().as_u16(),
                        started.elapsed(),
                    );
                }
                result
            })
            .boxed_local()
    }
}
