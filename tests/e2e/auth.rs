//! Auth end to end: signup, login, anonymous users and linking, the signed-in user, logout,
//! the well-known documents, and how access tokens act on other routes.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hearth_tests::{auth_env, tokens_of, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const PASSWORD: &str = "correct horse battery staple";

async fn server() -> TestServer {
    TestServer::start_with(auth_env()).await
}

/// The decoded header and claims of a JWT (no verification: the server did that).
fn decode_parts(token: &str) -> (Json, Json) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let part = |i: usize| -> Json {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[i]).unwrap()).unwrap()
    };
    (part(0), part(1))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn signup_answers_the_user_and_tokens_with_every_documented_claim() {
    let server = server().await;
    let response = server
        .send(server.anonymous(Method::POST, "/v1/auth/signup").json(
            &json!({"email": " Ann@Example.COM ", "password": PASSWORD, "displayName": "Ann"}),
        ))
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    let user = &response.body["user"];
    let uid = user["uid"].as_str().unwrap();
    assert_eq!(uid.len(), 28);
    let mut keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "anonymous",
            "claims",
            "createdAt",
            "displayName",
            "email",
            "emailVerified",
            "uid"
        ]
    );
    assert_eq!(user["email"], "Ann@example.com");
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["displayName"], "Ann");
    assert_eq!(user["anonymous"], false);
    assert_eq!(user["claims"], json!({}));
    assert_eq!(response.body["expiresIn"], 900);

    let (access, refresh) = tokens_of(&response);
    assert!(refresh.len() >= 40);
    let (header, claims) = decode_parts(&access);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert!(header["kid"].is_string());
    assert_eq!(claims["iss"], server.url.as_str());
    assert_eq!(claims["aud"], "hearth");
    assert_eq!(claims["sub"], uid);
    assert_eq!(claims["email"], "Ann@example.com");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["sign_in_provider"], "password");
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - now()).abs() <= 5);
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 900);
    assert!(claims["auth_time"].as_i64().unwrap() <= iat);

    let me = server.current_user(&access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(&me.body["user"], user);
}

#[tokio::test]
async fn signup_rejects_bad_input_and_creates_nothing() {
    let server = server().await;
    let signup = |body: Json| {
        server
            .anonymous(Method::POST, "/v1/auth/signup")
            .json(&body)
    };
    let cases = vec![
        json!({"password": PASSWORD}),
        json!({"email": "a@example.com"}),
        json!({"email": 5, "password": PASSWORD}),
        json!({"email": "not an email", "password": PASSWORD}),
        json!({"email": "a@", "password": PASSWORD}),
        json!({"email": "a@example.com", "password": "short"}),
        json!({"email": "a@example.com", "password": "password1"}),
        json!({"email": "a@example.com", "password": "Password1"}),
        json!({"email": "a@example.com", "password": "x".repeat(1_025)}),
        json!({"email": "a@example.com", "password": PASSWORD, "displayName": 7}),
        json!(["not", "an", "object"]),
    ];
    for body in cases {
        let response = server.send(signup(body.clone())).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            response.text
        );
        assert_eq!(response.error_code(), "invalid_argument");
    }
    let malformed = server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/signup")
                .header("content-type", "application/json")
                .body("{\"email\": "),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let users = server
        .send(server.admin(Method::GET, "/v1/admin/users"))
        .await;
    assert_eq!(users.body["users"], json!([]));
    // A password of exactly 1,024 characters is fine.
    let longest = server.signup("long@example.com", &"é".repeat(1_024)).await;
    assert_eq!(longest.status, StatusCode::CREATED, "{}", longest.text);
}

#[tokio::test]
async fn emails_are_unique_across_spellings_that_normalise_alike() {
    let server = server().await;
    assert_eq!(
        server
            .signup("jose\u{301}@Example.com", PASSWORD)
            .await
            .status,
        StatusCode::CREATED
    );
    for same in ["jos\u{e9}@example.com", "  jos\u{e9}@EXAMPLE.COM"] {
        let again = server.signup(same, PASSWORD).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{same}");
        assert_eq!(again.error_code(), "already_exists");
    }
    // The local part keeps its case: a different mailbox.
    assert_eq!(
        server
            .signup("JOS\u{c9}@example.com", PASSWORD)
            .await
            .status,
        StatusCode::CREATED
    );
    let login = server.login("jos\u{e9}@EXAMPLE.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
}

#[tokio::test]
async fn login_opens_a_new_session_for_the_same_user() {
    let server = server().await;
    let signup = server.signup("bo@example.com", PASSWORD).await;
    let uid = signup.body["user"]["uid"].clone();
    let login = server.login("bo@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    assert_eq!(login.body["user"]["uid"], uid);
    let (access, refresh) = tokens_of(&login);
    assert_ne!(refresh, tokens_of(&signup).1);
    assert_eq!(server.current_user(&access).await.status, StatusCode::OK);
    // Both sessions live side by side.
    assert_eq!(
        server.refresh(&tokens_of(&signup).1).await.status,
        StatusCode::OK
    );
    assert_eq!(server.refresh(&refresh).await.status, StatusCode::OK);
}

/// Unknown email and wrong password must be indistinguishable: same status, same body, and
/// (since unknown emails verify a dummy hash) about the same time.
#[tokio::test]
async fn login_failures_do_not_reveal_whether_the_email_exists() {
    let server = server().await;
    server.signup("real@example.com", PASSWORD).await;
    let wrong = server.login("real@example.com", "wrong password!").await;
    let unknown = server.login("nobody@example.com", "wrong password!").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error_code(), "invalid_credentials");
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.text, unknown.text);
    assert_eq!(
        wrong.header("www-authenticate"),
        unknown.header("www-authenticate")
    );

    // Timing on a shared machine is noisy: measure interleaved pairs, and allow up to three
    // rounds. A real leak (skipping the hash for unknown emails saves a whole argon2 run, ~15 ms
    // or more, i.e. most of a login) fails every round. Under CPU contention (other tests
    // hashing in parallel) both medians stretch together, so a round also passes when they are
    // within a quarter of each other: a skipped hash leaves the unknown-email logins at a small
    // fraction of the others.
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let mut wrong_times = Vec::new();
        let mut unknown_times = Vec::new();
        for _ in 0..20 {
            for (email, times) in [
                ("real@example.com", &mut wrong_times),
                ("nobody@example.com", &mut unknown_times),
            ] {
                let started = Instant::now();
                let response = server.login(email, "wrong password!").await;
                times.push(started.elapsed());
                assert_eq!(response.status, StatusCode::UNAUTHORIZED);
            }
        }
        let (a, b) = (median(&mut wrong_times), median(&mut unknown_times));
        eprintln!("login median: wrong password {a:?}, unknown email {b:?}");
        let (shorter, longer) = (a.min(b), a.max(b));
        if longer - shorter < Duration::from_millis(5) || shorter * 4 > longer * 3 {
            return;
        }
        rounds.push((a, b));
    }
    panic!("login medians differ by 5 ms and a quarter or more in every round (wrong password, unknown email): {rounds:?}");
}

#[tokio::test]
async fn over_long_passwords_are_refused_before_hashing() {
    let server = server().await;
    let login = server.login("a@example.com", &"x".repeat(1_025)).await;
    assert_eq!(login.status, StatusCode::BAD_REQUEST);
    assert_eq!(login.error_code(), "invalid_argument");
    let huge = server.login("a@example.com", &"x".repeat(200_000)).await;
    assert_eq!(huge.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn anonymous_users_can_be_linked_to_a_password_keeping_their_uid() {
    let server = server().await;
    let anonymous = server
        .send(server.anonymous(Method::POST, "/v1/auth/anonymous"))
        .await;
    assert_eq!(anonymous.status, StatusCode::CREATED, "{}", anonymous.text);
    let user = &anonymous.body["user"];
    assert_eq!(user["anonymous"], true);
    assert_eq!(user["email"], Json::Null);
    let uid = user["uid"].clone();
    let (access, _) = tokens_of(&anonymous);
    let (_, claims) = decode_parts(&access);
    assert_eq!(claims["sign_in_provider"], "anonymous");
    assert!(claims.get("email").is_none());

    let bad = server
        .send(
            server
                .bearer(Method::POST, "/v1/auth/link", &access)
                .json(&json!({"email": "anon@example.com", "password": "123456"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let linked = server
        .send(
            server
                .bearer(Method::POST, "/v1/auth/link", &access)
                .json(&json!({"email": "anon@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.text);
    assert_eq!(linked.body["user"]["uid"], uid);
    assert_eq!(linked.body["user"]["anonymous"], false);
    assert_eq!(linked.body["user"]["email"], "anon@example.com");
    let (_, claims) = decode_parts(&tokens_of(&linked).0);
    assert_eq!(claims["sign_in_provider"], "password");

    let login = server.login("anon@example.com", PASSWORD).await;
    assert_eq!(login.body["user"]["uid"], uid);
    // Linking twice, or to a taken email, fails.
    let again = server
        .send(
            server
                .bearer(Method::POST, "/v1/auth/link", &tokens_of(&login).0)
                .json(&json!({"email": "other@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
    let second = server
        .send(server.anonymous(Method::POST, "/v1/auth/anonymous"))
        .await;
    let taken = server
        .send(
            server
                .bearer(Method::POST, "/v1/auth/link", &tokens_of(&second).0)
                .json(&json!({"email": "anon@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    // Without a token, link is 401.
    let unauthenticated = server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/link")
                .json(&json!({"email": "x@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_one_session_and_everywhere_ends_all_with_their_access_tokens() {
    let server = server().await;
    server.signup("lo@example.com", PASSWORD).await;
    let (access_a, refresh_a) = tokens_of(&server.login("lo@example.com", PASSWORD).await);
    let (access_b, refresh_b) = tokens_of(&server.login("lo@example.com", PASSWORD).await);

    let logout = server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/logout")
                .json(&json!({"refreshToken": refresh_a})),
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let dead = server.refresh(&refresh_a).await;
    assert_eq!(dead.status, StatusCode::UNAUTHORIZED);
    assert_eq!(dead.error_code(), "unauthenticated");
    // A single logout leaves access tokens to expire on their own, and other sessions alone.
    assert_eq!(server.current_user(&access_a).await.status, StatusCode::OK);
    let rotated = server.refresh(&refresh_b).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let (_, refresh_b2) = tokens_of(&rotated);

    let everywhere = server
        .send(
            server
                .bearer(Method::POST, "/v1/auth/logout", &access_b)
                .json(&json!({"everywhere": true})),
        )
        .await;
    assert_eq!(
        everywhere.status,
        StatusCode::NO_CONTENT,
        "{}",
        everywhere.text
    );
    assert_eq!(
        server.refresh(&refresh_b2).await.status,
        StatusCode::UNAUTHORIZED
    );
    for access in [&access_a, &access_b] {
        let me = server.current_user(access).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
        assert_eq!(me.error_code(), "unauthenticated");
    }
    // Signing in again works at once, in the same second as the revocation.
    let fresh = server.login("lo@example.com", PASSWORD).await;
    assert_eq!(
        server.current_user(&tokens_of(&fresh).0).await.status,
        StatusCode::OK
    );
    // Logout with nothing to identify the session is 401.
    let nothing = server
        .send(server.anonymous(Method::POST, "/v1/auth/logout"))
        .await;
    assert_eq!(nothing.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_ends_other_sessions() {
    let server = server().await;
    let first = server.signup("pw@example.com", PASSWORD).await;
    let (old_access, old_refresh) = tokens_of(&first);
    let (access, _) = tokens_of(&server.login("pw@example.com", PASSWORD).await);
    let patch = |body: Json| {
        server
            .bearer(Method::PATCH, "/v1/auth/user", &access)
            .json(&body)
    };
    let missing = server
        .send(patch(json!({"password": "a brand new secret"})))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let wrong = server
        .send(patch(
            json!({"password": "a brand new secret", "currentPassword": "nope nope"}),
        ))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error_code(), "invalid_credentials");
    let common = server
        .send(patch(
            json!({"password": "qwertyuiop", "currentPassword": PASSWORD}),
        ))
        .await;
    assert_eq!(common.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        server.login("pw@example.com", PASSWORD).await.status,
        StatusCode::OK
    );

    let changed = server
        .send(patch(
            json!({"password": "a brand new secret", "currentPassword": PASSWORD}),
        ))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let (new_access, new_refresh) = tokens_of(&changed);
    assert_eq!(
        server.current_user(&new_access).await.status,
        StatusCode::OK
    );
    assert_eq!(server.refresh(&new_refresh).await.status, StatusCode::OK);
    assert_eq!(
        server.refresh(&old_refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.current_user(&old_access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.current_user(&access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.login("pw@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server
            .login("pw@example.com", "a brand new secret")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn profile_and_email_changes_apply_and_an_email_change_needs_verification_again() {
    let server = server().await;
    server.signup("taken@example.com", PASSWORD).await;
    let (access, _) = tokens_of(&server.signup("me@example.com", PASSWORD).await);
    let patch = |body: Json| {
        server
            .bearer(Method::PATCH, "/v1/auth/user", &access)
            .json(&body)
    };
    let named = server.send(patch(json!({"displayName": "Me"}))).await;
    assert_eq!(named.status, StatusCode::OK, "{}", named.text);
    assert_eq!(named.body["user"]["displayName"], "Me");
    let cleared = server.send(patch(json!({"displayName": null}))).await;
    assert_eq!(cleared.body["user"]["displayName"], Json::Null);
    let unknown = server.send(patch(json!({"uid": "x"}))).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let taken = server
        .send(patch(json!({"email": "taken@EXAMPLE.com"})))
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.error_code(), "already_exists");

    let moved = server
        .send(patch(json!({"email": "new@example.com"})))
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(moved.body["user"]["email"], "new@example.com");
    assert_eq!(moved.body["user"]["emailVerified"], false);
    assert_eq!(
        server.login("new@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.login("me@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The old address is free again.
    assert_eq!(
        server.signup("me@example.com", PASSWORD).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn deleting_the_user_ends_its_tokens_and_frees_its_email() {
    let server = server().await;
    let (access, refresh) = tokens_of(&server.signup("del@example.com", PASSWORD).await);
    let deleted = server
        .send(server.bearer(Method::DELETE, "/v1/auth/user", &access))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(
        server.current_user(&access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.refresh(&refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.login("del@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.signup("del@example.com", PASSWORD).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn user_routes_need_a_user_token_and_documents_stay_closed_to_users() {
    let server = server().await;
    let none = server
        .send(server.anonymous(Method::GET, "/v1/auth/user"))
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let service = server
        .send(server.admin(Method::GET, "/v1/auth/user"))
        .await;
    assert_eq!(service.status, StatusCode::FORBIDDEN);
    let basic = server
        .send(
            server
                .anonymous(Method::GET, "/v1/auth/user")
                .header("authorization", "Basic abc"),
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);

    let (access, _) = tokens_of(&server.signup("doc@example.com", PASSWORD).await);
    server.put_doc("posts/p1", json!({"a": 1})).await;
    let read = server
        .send(server.bearer(Method::GET, "/v1/docs/posts/p1", &access))
        .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    assert_eq!(read.error_code(), "permission_denied");
    let forged = server
        .send(server.bearer(Method::GET, "/v1/docs/posts/p1", &format!("{access}x")))
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let admin_route = server
        .send(server.bearer(Method::GET, "/v1/admin/users", &access))
        .await;
    assert_eq!(admin_route.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn jwks_and_openid_configuration_publish_the_key_that_verifies_tokens() {
    let server = server().await;
    let (access, _) = tokens_of(&server.signup("jw@example.com", PASSWORD).await);
    let jwks = server
        .send(server.anonymous(Method::GET, "/.well-known/jwks.json"))
        .await;
    assert_eq!(jwks.status, StatusCode::OK);
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(
        key.get("d").is_none(),
        "the private part is never published"
    );
    let (header, _) = decode_parts(&access);
    assert_eq!(header["kid"], key["kid"]);

    // An independent verifier, given only the JWKS, accepts the token.
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["hearth"]);
    validation.set_issuer(&[server.url.as_str()]);
    let verified = jsonwebtoken::decode::<Json>(&access, &decoding, &validation).unwrap();
    assert_eq!(verified.claims["email"], "jw@example.com");

    let openid = server
        .send(server.anonymous(Method::GET, "/.well-known/openid-configuration"))
        .await;
    assert_eq!(openid.status, StatusCode::OK);
    assert_eq!(openid.body["issuer"], server.url.as_str());
    assert_eq!(
        openid.body["jwks_uri"],
        format!("{}/.well-known/jwks.json", server.url).as_str()
    );
    assert_eq!(
        openid.body["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
}

#[tokio::test]
async fn signing_keys_survive_a_restart() {
    let mut server = server().await;
    let (_, refresh) = tokens_of(&server.signup("rs@example.com", PASSWORD).await);
    let jwks = server
        .send(server.anonymous(Method::GET, "/.well-known/jwks.json"))
        .await
        .body;
    server.restart().await;
    // The issuer is the URL, which changes with the port; the key and the sessions stay.
    let again = server
        .send(server.anonymous(Method::GET, "/.well-known/jwks.json"))
        .await
        .body;
    assert_eq!(jwks, again);
    let refreshed = server.refresh(&refresh).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    assert_eq!(
        server.current_user(&tokens_of(&refreshed).0).await.status,
        StatusCode::OK
    );
}
