//! Refresh-token sessions: rotation, the grace for racing tabs, reuse detection that revokes
//! the whole family, expiry, and bad input.

use std::time::Duration;

use hearth_tests::{auth_env, tokens_of, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn anonymous_session(server: &TestServer) -> (String, String) {
    let response = server
        .send(server.anonymous(Method::POST, "/v1/auth/anonymous"))
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    tokens_of(&response)
}

#[tokio::test]
async fn refresh_rotates_the_pair_and_the_new_tokens_work() {
    let server = TestServer::start_with(auth_env()).await;
    let (access, refresh) = anonymous_session(&server).await;
    let rotated = server.refresh(&refresh).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
    let (new_access, new_refresh) = tokens_of(&rotated);
    assert_ne!(new_refresh, refresh);
    assert_eq!(rotated.body["expiresIn"], 900);
    assert_eq!(rotated.body["user"]["anonymous"], true);
    let me = server.current_user(&new_access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        me.body["user"],
        server.current_user(&access).await.body["user"]
    );
    assert_eq!(server.refresh(&new_refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_refresh_requests_are_refused_without_side_effects() {
    let server = TestServer::start_with(auth_env()).await;
    let (_, refresh) = anonymous_session(&server).await;
    let unknown = server.refresh("not-a-token").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.error_code(), "unauthenticated");
    for body in [json!({}), json!({"refreshToken": 5}), json!("x")] {
        let response = server
            .send(
                server
                    .anonymous(Method::POST, "/v1/auth/refresh")
                    .json(&body),
            )
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let empty = server
        .send(server.anonymous(Method::POST, "/v1/auth/refresh"))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    // The real session is untouched.
    assert_eq!(server.refresh(&refresh).await.status, StatusCode::OK);
}

/// 1,000 trials of two concurrent refreshes of the same token (racing tabs): both succeed and
/// the family is never revoked. Ten families run their trials side by side.
#[tokio::test]
async fn concurrent_double_refreshes_never_revoke_the_family() {
    let server = TestServer::start_with(auth_env()).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (_, first) = anonymous_session(&server).await;
        let http = server.http.clone();
        let url = format!("{}/v1/auth/refresh", server.url);
        tasks.push(tokio::spawn(async move {
            let mut token = first;
            for trial in 0..100 {
                let body = json!({ "refreshToken": token });
                let (a, b) = tokio::join!(
                    http.post(&url).json(&body).send(),
                    http.post(&url).json(&body).send()
                );
                let (a, b) = (a.unwrap(), b.unwrap());
                assert_eq!(a.status(), StatusCode::OK, "trial {trial}");
                assert_eq!(b.status(), StatusCode::OK, "trial {trial}");
                let a: serde_json::Value = a.json().await.unwrap();
                let b: serde_json::Value = b.json().await.unwrap();
                assert_ne!(a["refreshToken"], b["refreshToken"]);
                // Alternate which racer's token continues the chain.
                let next = if trial % 2 == 0 { &a } else { &b };
                token = next["refreshToken"].as_str().unwrap().to_string();
            }
            token
        }));
    }
    for task in tasks {
        let last = task.await.unwrap();
        assert_eq!(server.refresh(&last).await.status, StatusCode::OK);
    }
}

/// A rotated token presented after the grace is treated as stolen: 401 `token_reused`, and every
/// token of its family (including the legitimate newest one) stops working.
#[tokio::test]
async fn reuse_after_the_grace_always_revokes_the_family() {
    let mut env = auth_env();
    env.push(("HEARTH_AUTH__REFRESH_REUSE_GRACE_MS".into(), "300".into()));
    let server = TestServer::start_with(env).await;
    let mut trials = Vec::new();
    for _ in 0..20 {
        let (_, old) = anonymous_session(&server).await;
        let rotated = server.refresh(&old).await;
        assert_eq!(rotated.status, StatusCode::OK);
        let (access, newest) = tokens_of(&rotated);
        trials.push((old, newest, access));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, bystander) = anonymous_session(&server).await;
    for (old, newest, access) in trials {
        let reused = server.refresh(&old).await;
        assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reused.error_code(), "token_reused");
        let after = server.refresh(&newest).await;
        assert_eq!(after.status, StatusCode::UNAUTHORIZED);
        assert_eq!(after.error_code(), "unauthenticated");
        // The access token already issued stays valid until it expires (single-family revoke).
        assert_eq!(server.current_user(&access).await.status, StatusCode::OK);
    }
    // Other users' sessions are untouched.
    assert_eq!(server.refresh(&bystander).await.status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_tokens_expire() {
    let mut env = auth_env();
    env.push(("HEARTH_AUTH__REFRESH_TOKEN_TTL_SECS".into(), "1".into()));
    let server = TestServer::start_with(env).await;
    let (_, refresh) = anonymous_session(&server).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let expired = server.refresh(&refresh).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.error_code(), "unauthenticated");
}
