//! The admin side of auth (service key only): minted tokens, user management, custom claims,
//! disabling and revoking; and the rate limits.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hearth_tests::{auth_env, tokens_of, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const PASSWORD: &str = "correct horse battery staple";

fn claims_of(token: &str) -> Json {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn admin_tokens_carry_extra_claims_for_any_uid() {
    let server = TestServer::start_with(auth_env()).await;
    let mint = |body: Json| server.admin(Method::POST, "/v1/admin/tokens").json(&body);
    let minted = server
        .send(mint(
            json!({"uid": "service-bot", "claims": {"role": "admin", "org": 7}}),
        ))
        .await;
    assert_eq!(minted.status, StatusCode::OK, "{}", minted.text);
    assert_eq!(minted.body["expiresIn"], 900);
    let token = minted.body["accessToken"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims["sub"], "service-bot");
    assert_eq!(claims["role"], "admin");
    assert_eq!(claims["org"], 7);
    // The token authenticates (the uid is not a registered user, so there is no profile).
    let me = server.current_user(token).await;
    assert_eq!(me.status, StatusCode::NOT_FOUND, "{}", me.text);
    let doc = server
        .send(server.bearer(Method::GET, "/v1/docs/a/b", token))
        .await;
    assert_eq!(doc.status, StatusCode::FORBIDDEN);

    for bad in [
        json!({}),
        json!({"uid": ""}),
        json!({"uid": "a/b"}),
        json!({"uid": "x", "claims": {"sub": "other"}}),
        json!({"uid": "x", "claims": {"exp": 1}}),
        json!({"uid": "x", "claims": [1]}),
        json!({"uid": "x", "claims": {"big": "x".repeat(1_100)}}),
    ] {
        let response = server.send(mint(bad.clone())).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let as_user = server
        .send(
            server
                .bearer(Method::POST, "/v1/admin/tokens", token)
                .json(&json!({"uid": "x"})),
        )
        .await;
    assert_eq!(as_user.status, StatusCode::FORBIDDEN);
    let anonymous = server
        .send(
            server
                .anonymous(Method::POST, "/v1/admin/tokens")
                .json(&json!({"uid": "x"})),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admins_create_list_get_and_delete_users() {
    let server = TestServer::start_with(auth_env()).await;
    let created = server
        .send(server.admin(Method::POST, "/v1/admin/users").json(&json!({
            "email": "made@example.com", "password": PASSWORD, "displayName": "Made",
            "emailVerified": true, "claims": {"plan": "pro"}
        })))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let uid = created.body["user"]["uid"].as_str().unwrap().to_string();
    assert_eq!(created.body["user"]["disabled"], false);
    let duplicate = server
        .send(
            server
                .admin(Method::POST, "/v1/admin/users")
                .json(&json!({"email": "made@example.com"})),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);

    let login = server.login("made@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    let claims = claims_of(&tokens_of(&login).0);
    assert_eq!(claims["plan"], "pro");
    assert_eq!(claims["email_verified"], true);

    for i in 0..4 {
        server.signup(&format!("u{i}@example.com"), PASSWORD).await;
    }
    let mut seen = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let path = match &page_token {
            Some(t) => format!("/v1/admin/users?limit=2&pageToken={t}"),
            None => "/v1/admin/users?limit=2".to_string(),
        };
        let page = server.send(server.admin(Method::GET, &path)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for user in page.body["users"].as_array().unwrap() {
            seen.push(user["uid"].as_str().unwrap().to_string());
        }
        match page.body["nextPageToken"].as_str() {
            Some(t) => page_token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "uid order, no duplicates");

    let got = server
        .send(server.admin(Method::GET, &format!("/v1/admin/users/{uid}")))
        .await;
    assert_eq!(got.body["user"]["displayName"], "Made");
    let deleted = server
        .send(server.admin(Method::DELETE, &format!("/v1/admin/users/{uid}")))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = server
        .send(server.admin(Method::GET, &format!("/v1/admin/users/{uid}")))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_code(), "not_found");
    assert_eq!(
        server.current_user(&tokens_of(&login).0).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn custom_claims_appear_in_the_next_access_token() {
    let server = TestServer::start_with(auth_env()).await;
    let signup = server.signup("cl@example.com", PASSWORD).await;
    let uid = signup.body["user"]["uid"].as_str().unwrap().to_string();
    let (_, refresh) = tokens_of(&signup);
    let set = server
        .send(
            server
                .admin(Method::PUT, &format!("/v1/admin/users/{uid}/claims"))
                .json(&json!({"claims": {"role": "editor", "teams": ["a", "b"]}})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["user"]["claims"]["role"], "editor");
    let reserved = server
        .send(
            server
                .admin(Method::PUT, &format!("/v1/admin/users/{uid}/claims"))
                .json(&json!({"claims": {"iss": "me"}})),
        )
        .await;
    assert_eq!(reserved.status, StatusCode::BAD_REQUEST);
    let refreshed = server.refresh(&refresh).await;
    let claims = claims_of(&tokens_of(&refreshed).0);
    assert_eq!(claims["role"], "editor");
    assert_eq!(claims["teams"], json!(["a", "b"]));
    assert_eq!(claims["sub"], uid.as_str());
    let me = server.current_user(&tokens_of(&refreshed).0).await;
    assert_eq!(me.body["user"]["claims"]["role"], "editor");
}

#[tokio::test]
async fn disabling_a_user_stops_its_tokens_at_once_and_enabling_lets_it_back() {
    let server = TestServer::start_with(auth_env()).await;
    let signup = server.signup("dis@example.com", PASSWORD).await;
    let uid = signup.body["user"]["uid"].as_str().unwrap().to_string();
    let (access, refresh) = tokens_of(&signup);
    let patch = |body: Json| {
        server
            .admin(Method::PATCH, &format!("/v1/admin/users/{uid}"))
            .json(&body)
    };
    let disabled = server.send(patch(json!({"disabled": true}))).await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text);
    assert_eq!(disabled.body["user"]["disabled"], true);
    assert_eq!(
        server.current_user(&access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.refresh(&refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    let login = server.login("dis@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    let wrong = server.login("dis@example.com", "not the password").await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "a wrong guess learns nothing"
    );

    let enabled = server.send(patch(json!({"disabled": false}))).await;
    assert_eq!(enabled.body["user"]["disabled"], false);
    let back = server.login("dis@example.com", PASSWORD).await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(
        server.current_user(&tokens_of(&back).0).await.status,
        StatusCode::OK
    );
    let bad = server.send(patch(json!({"email": "x@example.com"}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let missing = server
        .send(
            server
                .admin(Method::PATCH, "/v1/admin/users/nobody")
                .json(&json!({"disabled": true})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revoking_sessions_ends_refresh_and_access_tokens_issued_before() {
    let server = TestServer::start_with(auth_env()).await;
    let signup = server.signup("rv@example.com", PASSWORD).await;
    let uid = signup.body["user"]["uid"].as_str().unwrap().to_string();
    let (access, refresh) = tokens_of(&signup);
    let revoked = server
        .send(server.admin(Method::POST, &format!("/v1/admin/users/{uid}/revoke")))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    assert_eq!(
        server.current_user(&access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.refresh(&refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = server.login("rv@example.com", PASSWORD).await;
    assert_eq!(
        server.current_user(&tokens_of(&again).0).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_per_ip_and_per_account() {
    let server = TestServer::start_with(vec![
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_IP_PER_MINUTE".into(),
            "6".into(),
        ),
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_ACCOUNT_PER_MINUTE".into(),
            "2".into(),
        ),
    ])
    .await;
    // Per account: the third guess at one account is refused; another account still answers.
    for _ in 0..2 {
        let guess = server.login("target@example.com", "guess guess").await;
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED);
    }
    let limited = server.login("target@example.com", "guess guess").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_code(), "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let other = server.login("other@example.com", "guess guess").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    // Per IP: six login attempts a minute from one address in all.
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            server
                .login(&format!("n{i}@example.com"), "guess guess")
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Other actions have their own budget.
    let anonymous = server
        .send(server.anonymous(Method::POST, "/v1/auth/anonymous"))
        .await;
    assert_eq!(anonymous.status, StatusCode::CREATED);
}

/// `hearth keys rotate` on a running server: within seconds the new key signs, and tokens of
/// the old key still verify until they expire.
#[tokio::test]
async fn rotated_keys_sign_new_tokens_while_old_tokens_still_verify() {
    let server = TestServer::start_with(auth_env()).await;
    let (old_access, _) = tokens_of(&server.signup("rot@example.com", PASSWORD).await);
    let old_kid = jwt_kid(&old_access);
    let output = std::process::Command::new(hearth_tests::hearth_binary())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut kids: Vec<String> = Vec::new();
    for _ in 0..100 {
        let jwks = server
            .send(server.anonymous(Method::GET, "/.well-known/jwks.json"))
            .await;
        kids = jwks.body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect();
        if kids.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(kids.len(), 2, "the server did not pick up the rotated key");
    assert_eq!(kids[1], old_kid);
    let login = server.login("rot@example.com", PASSWORD).await;
    let new_access = tokens_of(&login).0;
    assert_eq!(jwt_kid(&new_access), kids[0]);
    assert_ne!(kids[0], old_kid);
    assert_eq!(
        server.current_user(&old_access).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.current_user(&new_access).await.status,
        StatusCode::OK
    );
}

fn jwt_kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Json = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

/// Behind a trusted proxy each forwarded client has its own bucket; from anyone else the
/// `X-Forwarded-For` header is ignored, so it cannot be used to dodge the limit.
#[tokio::test]
async fn forwarded_client_addresses_count_only_from_trusted_proxies() {
    let limits = vec![
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_IP_PER_MINUTE".to_string(),
            "2".to_string(),
        ),
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_ACCOUNT_PER_MINUTE".to_string(),
            "100".to_string(),
        ),
    ];
    let login = |server: &TestServer, forwarded: &str| {
        server
            .anonymous(Method::POST, "/v1/auth/login")
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": "x@example.com", "password": "guess guess"}))
    };

    let mut env = limits.clone();
    env.push(("HEARTH_AUTH__TRUSTED_PROXIES".into(), "127.0.0.1".into()));
    let proxied = TestServer::start_with(env).await;
    for _ in 0..2 {
        let response = proxied.send(login(&proxied, "198.51.100.1")).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let limited = proxied.send(login(&proxied, "198.51.100.1")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let spoofed_left = proxied
        .send(login(&proxied, "198.51.100.9, 198.51.100.1"))
        .await;
    assert_eq!(
        spoofed_left.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the proxy's hop counts, not what the client prepended"
    );
    let other = proxied.send(login(&proxied, "198.51.100.2")).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);

    let direct = TestServer::start_with(limits).await;
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        let response = direct.send(login(&direct, forwarded)).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let limited = direct.send(login(&direct, "198.51.100.3")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn refresh_is_rate_limited_per_account_too() {
    let server = TestServer::start_with(vec![
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_IP_PER_MINUTE".into(),
            "100".into(),
        ),
        (
            "HEARTH_AUTH__RATE_LIMIT_PER_ACCOUNT_PER_MINUTE".into(),
            "2".into(),
        ),
    ])
    .await;
    let signed_in = server
        .send(server.anonymous(Method::POST, "/v1/auth/anonymous"))
        .await;
    let mut token = signed_in.body["refreshToken"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let rotated = refresh(&server, token.clone()).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text);
        token = rotated.body["refreshToken"].as_str().unwrap().to_string();
    }
    let limited = refresh(&server, token).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_code(), "rate_limited");
    assert!(limited.header("retry-after").is_some());
    // Another account from the same address still refreshes.
    let other = server
        .send(server.anonymous(Method::POST, "/v1/auth/anonymous"))
        .await;
    let other_token = other.body["refreshToken"].as_str().unwrap().to_string();
    assert_eq!(refresh(&server, other_token).await.status, StatusCode::OK);
}

async fn refresh(server: &TestServer, token: String) -> hearth_tests::Response {
    server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/refresh")
                .json(&serde_json::json!({ "refreshToken": token })),
        )
        .await
}
