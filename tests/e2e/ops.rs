//! Operations endpoints: health, readiness, metrics, OpenAPI, unknown routes.

use hearth_tests::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let server = TestServer::start().await;
    assert_eq!(
        server
            .send(server.anonymous(Method::GET, "/healthz"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server
            .send(server.anonymous(Method::GET, "/readyz"))
            .await
            .status,
        StatusCode::OK
    );
    server.put_doc("posts/p", json!({"a": 1})).await;
    server.get_doc("posts/p").await;
    server
        .send(server.anonymous(Method::GET, "/no/such/route"))
        .await;
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let lines: Vec<&str> = metrics.text.lines().collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(has("hearth_http_requests_total{route=\"/v1/docs/{path:.*}\",method=\"PUT\",status=\"201\"} 1"), "{}", metrics.text);
    assert!(has(
        "hearth_http_request_duration_seconds_bucket{route=\"/v1/docs/{path:.*}\",method=\"GET\""
    ));
    assert!(has(
        "hearth_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"
    ));
    assert!(has(
        "hearth_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1"
    ));
    assert!(has("hearth_commit_group_size_count"));
    assert!(has("hearth_checkpoint_duration_seconds_count"));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("hearth_store_size_bytes ") && !l.ends_with(" 0")));
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let server = TestServer::start().await;
    let spec = server
        .send(server.anonymous(Method::GET, "/v1/openapi.json"))
        .await;
    assert_eq!(spec.status, StatusCode::OK);
    assert_eq!(spec.body["openapi"], "3.1.0");
    let paths = spec.body["paths"].as_object().unwrap();
    for route in [
        "/v1/docs/{docPath}",
        "/v1/query",
        "/v1/query/explain",
        "/v1/batch",
        "/v1/admin/indexes",
        "/v1/admin/indexes/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/auth/anonymous",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/user",
        "/v1/auth/link",
        "/v1/auth/verify-email/send",
        "/v1/auth/verify-email/confirm",
        "/v1/auth/password-reset/send",
        "/v1/auth/password-reset/confirm",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/v1/admin/tokens",
        "/v1/admin/users",
        "/v1/admin/users/{uid}",
        "/v1/admin/users/{uid}/claims",
        "/v1/admin/users/{uid}/revoke",
        "/v1/admin/rules",
        "/v1/admin/roles/grants",
        "/v1/admin/roles/inherits",
        "/v1/admin/hooks",
        "/v1/admin/hooks/{name}",
        "/v1/admin/hooks/{name}/deliveries",
        "/v1/admin/hooks/{name}/deliveries/{id}/redeliver",
        "/v1/admin/migrations",
        "/v1/admin/migrations/up",
        "/v1/admin/schemas",
        "/v1/admin/export",
    ] {
        assert!(paths.contains_key(route), "missing {route}");
    }
}

#[tokio::test]
async fn unknown_routes_answer_not_found_in_the_error_format() {
    let server = TestServer::start().await;
    let response = server
        .send(server.anonymous(Method::GET, "/v2/whatever"))
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.error_code(), "not_found");
}

#[tokio::test]
async fn browsers_may_call_the_api_from_allowed_origins() {
    let server = TestServer::start().await;
    server.put_doc("posts/p", json!({"a": 1})).await;
    let preflight = server
        .send(
            server
                .anonymous(Method::OPTIONS, "/v1/docs/posts/p")
                .header("Origin", "https://app.example")
                .header("Access-Control-Request-Method", "PUT")
                .header(
                    "Access-Control-Request-Headers",
                    "authorization, content-type, if-match",
                ),
        )
        .await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let read = server
        .send(
            server
                .admin(Method::GET, "/v1/docs/posts/p")
                .header("Origin", "https://app.example"),
        )
        .await;
    assert_eq!(
        read.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let exposed = read
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");

    let env = vec![(
        "HEARTH_CORS_ORIGINS".to_string(),
        "https://only.example".to_string(),
    )];
    let strict = TestServer::start_with(env).await;
    let other = strict
        .send(
            strict
                .anonymous(Method::GET, "/healthz")
                .header("Origin", "https://evil.example"),
        )
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    let allowed = strict
        .send(
            strict
                .anonymous(Method::GET, "/healthz")
                .header("Origin", "https://only.example"),
        )
        .await;
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://only.example")
    );
}
