//! Security rules enforced through the REST API: reads, writes, batches and queries of clients
//! (signed in with access tokens minted by the admin API, or anonymous), rules management, and
//! `--rules FILE` with reload on change.

use std::time::Duration;

use hearth_tests::{Response, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const NOTES_RULES: &str = r#"
rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    function signedIn() { return request.auth != null; }
    match /notes/{id} {
      allow get, update, delete: if signedIn() && resource.data.owner == request.auth.uid;
      allow list: if signedIn() && resource.data.owner == request.auth.uid;
      allow create: if signedIn() && request.resource.data.owner == request.auth.uid
                    && request.resource.data.at == request.time;
    }
    match /public/{id} {
      allow read: if true;
    }
    match /rooms/{room} {
      allow create: if signedIn();
      match /members/{member} {
        allow create: if signedIn() && existsAfter(/databases/$(database)/documents/rooms/$(room));
      }
    }
  }
}
"#;

async fn put_rules(server: &TestServer, source: &str) -> Response {
    server
        .send(
            server
                .admin(Method::PUT, "/v1/admin/rules")
                .body(source.to_string()),
        )
        .await
}

async fn as_user(
    server: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Json>,
) -> Response {
    let mut request = server.anonymous(method, path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    server.send(request).await
}

#[tokio::test]
async fn owner_only_rules_guard_reads_writes_and_queries() {
    let server = TestServer::start().await;
    assert_eq!(put_rules(&server, NOTES_RULES).await.status, StatusCode::OK);
    let alice = server.token_for("alice").await;
    let bob = server.token_for("bob").await;
    let note = json!({"owner": "alice", "text": "hi", "at": {"$serverTimestamp": true}});

    let created = as_user(
        &server,
        &alice,
        Method::PUT,
        "/v1/docs/notes/n1",
        Some(note.clone()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let forged = as_user(
        &server,
        &bob,
        Method::PUT,
        "/v1/docs/notes/n2",
        Some(note.clone()),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.error_code(), "permission_denied");
    // request.time is the server timestamp of the write: a client clock value fails.
    let wrong_time = json!({"owner": "alice", "at": {"$timestamp": "2020-01-01T00:00:00Z"}});
    assert_eq!(
        as_user(
            &server,
            &alice,
            Method::PUT,
            "/v1/docs/notes/n3",
            Some(wrong_time)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        as_user(&server, &alice, Method::GET, "/v1/docs/notes/n1", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        as_user(&server, &bob, Method::GET, "/v1/docs/notes/n1", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // A denied read of a missing document looks the same as of an existing one.
    let missing = as_user(&server, &bob, Method::GET, "/v1/docs/notes/nope", None).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let anonymous = server
        .send(server.anonymous(Method::GET, "/v1/docs/notes/n1"))
        .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);

    let update = as_user(
        &server,
        &bob,
        Method::PATCH,
        "/v1/docs/notes/n1",
        Some(json!({"text": "mine now"})),
    )
    .await;
    assert_eq!(update.status, StatusCode::FORBIDDEN);
    assert_eq!(server.get_doc("notes/n1").await.body["data"]["text"], "hi");

    // Rules are not filters: a query must prove the owner constraint itself.
    let own = as_user(
        &server,
        &alice,
        Method::POST,
        "/v1/query",
        Some(json!({"from": "notes", "where": ["owner", "==", "alice"]})),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.body["documents"].as_array().unwrap().len(), 1);
    let unconstrained = as_user(
        &server,
        &alice,
        Method::POST,
        "/v1/query",
        Some(json!({"from": "notes"})),
    )
    .await;
    assert_eq!(unconstrained.status, StatusCode::FORBIDDEN);
    let others = as_user(
        &server,
        &alice,
        Method::POST,
        "/v1/query",
        Some(json!({"from": "notes", "where": ["owner", "==", "bob"]})),
    )
    .await;
    assert_eq!(others.status, StatusCode::FORBIDDEN);
    let count = as_user(
        &server,
        &alice,
        Method::POST,
        "/v1/query",
        Some(json!({"from": "notes", "where": ["owner", "==", "alice"], "aggregate": {"count": true}})),
    )
    .await;
    assert_eq!(count.body["aggregates"]["count"], 1);
    let listing = as_user(&server, &alice, Method::GET, "/v1/docs/notes", None).await;
    assert_eq!(listing.status, StatusCode::FORBIDDEN);

    assert_eq!(
        as_user(&server, &bob, Method::DELETE, "/v1/docs/notes/n1", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(&server, &alice, Method::DELETE, "/v1/docs/notes/n1", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn anonymous_clients_get_what_the_rules_allow_and_the_service_key_bypasses_rules() {
    let server = TestServer::start().await;
    put_rules(&server, NOTES_RULES).await;
    server.put_doc("public/p", json!({"hello": "world"})).await;
    server.put_doc("notes/secret", json!({"owner": "x"})).await;
    let public = server
        .send(server.anonymous(Method::GET, "/v1/docs/public/p"))
        .await;
    assert_eq!(public.status, StatusCode::OK);
    let list = server
        .send(server.anonymous(Method::GET, "/v1/docs/public"))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let write = server
        .send(
            server
                .anonymous(Method::PUT, "/v1/docs/public/p")
                .json(&json!({"x": 1})),
        )
        .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert_eq!(server.get_doc("notes/secret").await.status, StatusCode::OK);
}

#[tokio::test]
async fn batch_writes_are_each_checked_and_get_after_sees_the_whole_batch() {
    let server = TestServer::start().await;
    put_rules(&server, NOTES_RULES).await;
    let alice = server.token_for("alice").await;
    let member_only =
        json!({"writes": [{"op": "create", "path": "rooms/r1/members/alice", "data": {}}]});
    assert_eq!(
        as_user(
            &server,
            &alice,
            Method::POST,
            "/v1/batch",
            Some(member_only)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let both = json!({"writes": [
        {"op": "create", "path": "rooms/r1", "data": {"name": "r"}},
        {"op": "create", "path": "rooms/r1/members/alice", "data": {}}
    ]});
    let response = as_user(&server, &alice, Method::POST, "/v1/batch", Some(both)).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let one_denied = json!({"writes": [
        {"op": "create", "path": "rooms/r2", "data": {}},
        {"op": "set", "path": "notes/x", "data": {"owner": "bob"}}
    ]});
    assert_eq!(
        as_user(&server, &alice, Method::POST, "/v1/batch", Some(one_denied))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.get_doc("rooms/r2").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_bad_ruleset_is_refused_with_every_error_and_the_old_rules_stay_live() {
    let server = TestServer::start().await;
    assert_eq!(
        server
            .send(server.admin(Method::GET, "/v1/admin/rules"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    put_rules(&server, NOTES_RULES).await;
    let bad = "service cloud.firestore {\n  match /a/{b} { allow read: if ; }\n  match /c/{d} { allow write: if foo(; }\n}\n";
    let refused = put_rules(&server, bad).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_code(), "invalid_argument");
    let errors = refused.body["error"]["details"]["errors"]
        .as_array()
        .unwrap();
    assert!(errors.len() >= 2, "{errors:?}");
    assert!(errors[0].as_str().unwrap().starts_with("2:"), "{errors:?}");
    let live = server
        .send(server.admin(Method::GET, "/v1/admin/rules"))
        .await;
    assert_eq!(live.text, NOTES_RULES);
    let not_admin = server
        .send(
            server
                .anonymous(Method::PUT, "/v1/admin/rules")
                .body(NOTES_RULES),
        )
        .await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn rules_file_is_loaded_at_start_reloaded_on_change_and_kept_over_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("firestore.rules");
    let open = "rules_version = '2';\nservice cloud.firestore { match /databases/{db}/documents { match /open/{id} { allow read: if true; } } }\n";
    std::fs::write(&file, open).unwrap();
    let env = vec![("HEARTH_RULES".to_string(), file.display().to_string())];
    let mut server = TestServer::start_with(env).await;
    server.put_doc("open/o", json!({})).await;
    server.put_doc("closed/c", json!({})).await;
    assert_eq!(
        server
            .send(server.anonymous(Method::GET, "/v1/docs/open/o"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        server
            .send(server.anonymous(Method::GET, "/v1/docs/closed/c"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // A broken edit is refused; the old rules stay live.
    std::fs::write(
        &file,
        "service cloud.firestore { match /x/{y} { allow read: if ; } }",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        server
            .send(server.anonymous(Method::GET, "/v1/docs/open/o"))
            .await
            .status,
        StatusCode::OK
    );

    let swapped = open.replace("/open/{id}", "/closed/{id}");
    std::fs::write(&file, &swapped).unwrap();
    let mut allowed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if server
            .send(server.anonymous(Method::GET, "/v1/docs/closed/c"))
            .await
            .status
            == StatusCode::OK
        {
            allowed = true;
            break;
        }
    }
    assert!(allowed, "the changed rules file was not reloaded");
    assert_eq!(
        server
            .send(server.anonymous(Method::GET, "/v1/docs/open/o"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    server.restart().await;
    assert_eq!(
        server
            .send(server.anonymous(Method::GET, "/v1/docs/closed/c"))
            .await
            .status,
        StatusCode::OK
    );
}

const ROLE_RULES: &str = r#"
rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /orgs/{org}/docs/{doc} {
      allow read: if hasRole('editor', org);
      allow write: if hasRole('admin', org);
    }
    match /global/{doc} {
      allow read: if hasRole('staff');
    }
  }
}
"#;

#[tokio::test]
async fn has_role_follows_grants_domains_and_inheritance() {
    let server = TestServer::start().await;
    assert_eq!(put_rules(&server, ROLE_RULES).await.status, StatusCode::OK);
    server.put_doc("orgs/org1/docs/d", json!({"x": 1})).await;
    server.put_doc("orgs/org2/docs/d", json!({"x": 2})).await;
    server.put_doc("global/g", json!({})).await;
    let grant = |body: Json| {
        server.send(
            server
                .admin(Method::POST, "/v1/admin/roles/grants")
                .json(&body),
        )
    };
    assert_eq!(
        grant(json!({"uid": "alice", "role": "editor", "domain": "org1"}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        grant(json!({"uid": "alice", "role": "editor", "domain": "org1"}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        grant(json!({"uid": "bob", "role": "admin", "domain": "org1"}))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        grant(json!({"uid": "carol", "role": "staff"})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        grant(json!({"uid": "", "role": "x"})).await.status,
        StatusCode::BAD_REQUEST
    );
    let inherit = server
        .send(
            server
                .admin(Method::POST, "/v1/admin/roles/inherits")
                .json(&json!({"role": "admin", "inherits": "editor", "domain": "org1"})),
        )
        .await;
    assert_eq!(inherit.status, StatusCode::CREATED);
    let cycle = server
        .send(
            server
                .admin(Method::POST, "/v1/admin/roles/inherits")
                .json(&json!({"role": "editor", "inherits": "admin", "domain": "org1"})),
        )
        .await;
    assert_eq!(cycle.status, StatusCode::BAD_REQUEST);

    let (alice, bob, carol) = (
        server.token_for("alice").await,
        server.token_for("bob").await,
        server.token_for("carol").await,
    );
    assert_eq!(
        as_user(
            &server,
            &alice,
            Method::GET,
            "/v1/docs/orgs/org1/docs/d",
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        as_user(
            &server,
            &alice,
            Method::GET,
            "/v1/docs/orgs/org2/docs/d",
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(
            &server,
            &bob,
            Method::GET,
            "/v1/docs/orgs/org1/docs/d",
            None
        )
        .await
        .status,
        StatusCode::OK,
        "admin includes editor"
    );
    assert_eq!(
        as_user(&server, &carol, Method::GET, "/v1/docs/global/g", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        as_user(&server, &alice, Method::GET, "/v1/docs/global/g", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let change = Some(json!({"x": 3}));
    assert_eq!(
        as_user(
            &server,
            &alice,
            Method::PATCH,
            "/v1/docs/orgs/org1/docs/d",
            change.clone()
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(
            &server,
            &bob,
            Method::PATCH,
            "/v1/docs/orgs/org1/docs/d",
            change
        )
        .await
        .status,
        StatusCode::OK
    );

    let listed = server
        .send(server.admin(Method::GET, "/v1/admin/roles/grants?uid=alice"))
        .await;
    assert_eq!(
        listed.body["grants"],
        json!([{"uid": "alice", "role": "editor", "domain": "org1"}])
    );
    let revoked = server
        .send(
            server
                .admin(Method::DELETE, "/v1/admin/roles/grants")
                .json(&json!({"uid": "alice", "role": "editor", "domain": "org1"})),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        as_user(
            &server,
            &alice,
            Method::GET,
            "/v1/docs/orgs/org1/docs/d",
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Grants are stored: they survive a restart.
    let mut server = server;
    server.restart().await;
    let bob = server.token_for("bob").await;
    let status = server
        .send(
            server
                .anonymous(Method::GET, "/v1/docs/orgs/org1/docs/d")
                .bearer_auth(bob),
        )
        .await
        .status;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn writes_the_rules_forbid_do_not_reveal_whether_documents_exist() {
    let server = TestServer::start().await;
    let rules = NOTES_RULES.replace(
        "match /public/{id} {",
        "match /open/{id} { allow read, write: if true; }\n    match /public/{id} {",
    );
    assert_eq!(put_rules(&server, &rules).await.status, StatusCode::OK);
    server.put_doc("notes/n1", json!({"owner": "alice"})).await;
    let bob = server.token_for("bob").await;
    let update_missing = as_user(
        &server,
        &bob,
        Method::PATCH,
        "/v1/docs/notes/ghost",
        Some(json!({"x": 1})),
    )
    .await;
    assert_eq!(update_missing.status, StatusCode::FORBIDDEN);
    let create_existing = server
        .send(
            server
                .anonymous(Method::PUT, "/v1/docs/notes/n1")
                .bearer_auth(&bob)
                .header("If-None-Match", "*")
                .json(&json!({"owner": "bob", "at": {"$serverTimestamp": true}})),
        )
        .await;
    assert_eq!(create_existing.status, StatusCode::FORBIDDEN);
    // Where the rules allow the write, the client hears the real outcome.
    let open_missing = as_user(
        &server,
        &bob,
        Method::PATCH,
        "/v1/docs/open/ghost",
        Some(json!({"x": 1})),
    )
    .await;
    assert_eq!(open_missing.status, StatusCode::NOT_FOUND);
}
