//! Email flows against a real SMTP server (`tests/smtp_sink.py`): verification and password
//! reset follow the tokens in the mails the server sent.

use std::time::Duration;

use hearth_tests::{auth_env, token_in_mail, tokens_of, SmtpSink, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn the_verification_mail_confirms_the_email_once() {
    let smtp = SmtpSink::start().await;
    let server = TestServer::start_with(smtp.env()).await;
    let signup = server.signup("ver@example.com", PASSWORD).await;
    let (access, refresh) = tokens_of(&signup);
    let sent = server
        .send(server.bearer(Method::POST, "/v1/auth/verify-email/send", &access))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    let token = smtp.wait_for_token("ver@example.com", 1).await;
    let mail = &smtp.messages_to("ver@example.com")[0];
    assert!(
        mail.lines()
            .any(|l| l == "Subject: Verify your email address"),
        "{mail}"
    );

    let confirm = |token: &str| {
        server
            .anonymous(Method::POST, "/v1/auth/verify-email/confirm")
            .json(&json!({ "token": token }))
    };
    let wrong = server.send(confirm("not-the-token")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let confirmed = server.send(confirm(&token)).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    assert_eq!(confirmed.body["user"]["emailVerified"], true);
    let again = server.send(confirm(&token)).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "single use");
    // The next access token says so.
    let refreshed = server.refresh(&refresh).await;
    let me = server.current_user(&tokens_of(&refreshed).0).await;
    assert_eq!(me.body["user"]["emailVerified"], true);
    // Sending needs a signed-in user.
    let anonymous = server
        .send(server.anonymous(Method::POST, "/v1/auth/verify-email/send"))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_verification_token_for_an_old_address_does_not_verify_the_new_one() {
    let smtp = SmtpSink::start().await;
    let server = TestServer::start_with(smtp.env()).await;
    let (access, _) = tokens_of(&server.signup("old@example.com", PASSWORD).await);
    server
        .send(server.bearer(Method::POST, "/v1/auth/verify-email/send", &access))
        .await;
    let token = smtp.wait_for_token("old@example.com", 1).await;
    let moved = server
        .send(
            server
                .bearer(Method::PATCH, "/v1/auth/user", &access)
                .json(&json!({"email": "new@example.com"})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK);
    let confirmed = server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/verify-email/confirm")
                .json(&json!({ "token": token })),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::UNAUTHORIZED);
    let me = server.current_user(&access).await;
    assert_eq!(me.body["user"]["emailVerified"], false);
}

#[tokio::test]
async fn password_reset_by_mail_sets_the_password_and_ends_every_session() {
    let smtp = SmtpSink::start().await;
    let server = TestServer::start_with(smtp.env()).await;
    let (access, refresh) = tokens_of(&server.signup("reset@example.com", PASSWORD).await);
    let send = |email: &str| {
        server
            .anonymous(Method::POST, "/v1/auth/password-reset/send")
            .json(&json!({ "email": email }))
    };
    let known = server.send(send("reset@example.com")).await;
    let unknown = server.send(send("ghost@example.com")).await;
    assert_eq!(known.status, StatusCode::ACCEPTED);
    assert_eq!(unknown.status, known.status);
    assert_eq!(unknown.text, known.text);
    let malformed = server.send(send("not an email")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let token = smtp.wait_for_token("reset@example.com", 1).await;

    let confirm = |token: &str, password: &str| {
        server
            .anonymous(Method::POST, "/v1/auth/password-reset/confirm")
            .json(&json!({ "token": token, "newPassword": password }))
    };
    let weak = server.send(confirm(&token, "12345678")).await;
    assert_eq!(
        weak.status,
        StatusCode::BAD_REQUEST,
        "a rejected password keeps the token"
    );
    let forged = server.send(confirm("forged", "a brand new secret")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let done = server.send(confirm(&token, "a brand new secret")).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.text);
    let reused = server.send(confirm(&token, "yet another secret")).await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        server.refresh(&refresh).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.current_user(&access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server.login("reset@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let login = server
        .login("reset@example.com", "a brand new secret")
        .await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(
        login.body["user"]["emailVerified"], true,
        "the mail proved the inbox"
    );

    // The unknown address never got mail (give a stray send time to arrive first).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smtp.messages_to("ghost@example.com").is_empty());
    assert_eq!(smtp.messages_to("reset@example.com").len(), 1);
}

#[tokio::test]
async fn reset_tokens_expire() {
    let smtp = SmtpSink::start().await;
    let mut env = smtp.env();
    env.push(("HEARTH_AUTH__PASSWORD_RESET_TTL_SECS".into(), "1".into()));
    let server = TestServer::start_with(env).await;
    server.signup("late@example.com", PASSWORD).await;
    server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/password-reset/send")
                .json(&json!({"email": "late@example.com"})),
        )
        .await;
    let token = smtp.wait_for_token("late@example.com", 1).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let expired = server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/password-reset/confirm")
                .json(&json!({"token": token, "newPassword": "a brand new secret"})),
        )
        .await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.login("late@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn without_smtp_mail_goes_to_the_outbox_file() {
    let server = TestServer::start_with(auth_env()).await;
    let (access, _) = tokens_of(&server.signup("box@example.com", PASSWORD).await);
    let sent = server
        .send(server.bearer(Method::POST, "/v1/auth/verify-email/send", &access))
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    let outbox = std::fs::read_to_string(server.data_dir.join("mail_outbox.txt")).unwrap();
    assert!(
        outbox.lines().any(|l| l == "To: box@example.com"),
        "{outbox}"
    );
    let token = token_in_mail(&outbox).unwrap();
    let confirmed = server
        .send(
            server
                .anonymous(Method::POST, "/v1/auth/verify-email/confirm")
                .json(&json!({ "token": token })),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK);
}
