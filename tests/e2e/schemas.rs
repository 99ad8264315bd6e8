//! Collection schemas set by `validateSchema`: every later write is checked — REST and batch,
//! admin and client — with a 400 listing each violation, and a refused write reaches no
//! realtime listener.

use std::path::Path;
use std::time::Duration;

use hearth_tests::realtime::{Incoming, RealtimeClient};
use hearth_tests::{TestServer, SERVICE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const RULES: &str = r#"rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /{document=**} { allow read, write: if request.auth != null; }
  }
}
"#;

fn post_schema() -> Json {
    json!({
        "type": "object",
        "required": ["owner", "title"],
        "properties": {
            "owner": {"type": "string"},
            "title": {"type": "string", "maxLength": 20},
            "n": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "additionalProperties": false
    })
}

async fn start(dir: &Path) -> TestServer {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("firestore.rules"), RULES).unwrap();
    let migration = json!({"steps": [
        {"step": "setRules", "file": "firestore.rules"},
        {"step": "validateSchema", "collection": "posts", "schema": post_schema()},
        {"step": "validateSchema", "collection": "users/{uid}/notes", "schema": {"type": "object", "required": ["text"]}}
    ]});
    std::fs::write(dir.join("0001_schemas.json"), migration.to_string()).unwrap();
    TestServer::start_with(vec![(
        "HEARTH_MIGRATIONS".to_string(),
        dir.display().to_string(),
    )])
    .await
}

/// The (field, message) pairs of a schema_violation answer, after checking its shape.
fn violations(response: &hearth_tests::Response) -> Vec<(String, String)> {
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text
    );
    assert_eq!(response.error_code(), "invalid_argument");
    response.body["error"]["details"]["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("no violations in {}", response.text))
        .iter()
        .map(|v| {
            (
                v["field"].as_str().unwrap().to_string(),
                v["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fields(list: &[(String, String)]) -> Vec<&str> {
    let mut fields: Vec<&str> = list.iter().map(|(f, _)| f.as_str()).collect();
    fields.sort_unstable();
    fields
}

#[tokio::test]
async fn rest_writes_that_break_the_schema_get_400_listing_every_violation() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(&temp.path().join("m")).await;

    // Every violation of one document is listed, with its field.
    let put = server
        .put_doc(
            "posts/p1",
            json!({"owner": 7, "n": -1, "tags": ["a", 2], "extra": true}),
        )
        .await;
    let list = violations(&put);
    assert_eq!(fields(&list), vec!["", "", "/n", "/owner", "/tags/1"]);
    assert_eq!(
        put.body["error"]["details"]["violations"][0]["document"],
        "posts/p1"
    );
    assert_eq!(
        server.get_doc("posts/p1").await.status,
        StatusCode::NOT_FOUND
    );

    // A valid document is stored; PATCH and POST are judged on the document they produce.
    let ok = server
        .put_doc("posts/p1", json!({"owner": "u1", "title": "hello", "n": 1}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let patch = server
        .patch_doc(
            "posts/p1",
            json!({"title": "a title far longer than twenty"}),
        )
        .await;
    assert_eq!(fields(&violations(&patch)), vec!["/title"]);
    let removed = server
        .patch_doc("posts/p1", json!({"owner": {"$delete": true}}))
        .await;
    assert_eq!(fields(&violations(&removed)), vec![""]);
    let increment = server
        .patch_doc("posts/p1", json!({"n": {"$increment": 5}}))
        .await;
    assert_eq!(increment.status, StatusCode::OK, "{}", increment.text);
    let created = server.post_doc("posts", json!({"owner": "u1"})).await;
    assert_eq!(fields(&violations(&created)), vec![""]);
    assert_eq!(
        server.get_doc("posts/p1").await.body["data"],
        json!({"owner": "u1", "title": "hello", "n": 6})
    );

    // The admin API shows what is enforced.
    let listed = server
        .send(server.admin(Method::GET, "/v1/admin/schemas"))
        .await;
    assert_eq!(
        listed.body,
        json!({"schemas": {"posts": post_schema(), "users/{uid}/notes": {"type": "object", "required": ["text"]}}})
    );

    // Wildcard patterns reach nested collections; other collections have no schema.
    let note = server
        .put_doc("users/u1/notes/n1", json!({"body": "x"}))
        .await;
    assert_eq!(fields(&violations(&note)), vec![""]);
    let free = server.put_doc("drafts/d1", json!({"anything": 1})).await;
    assert_eq!(free.status, StatusCode::CREATED);
    // Deletes are never refused by a schema.
    assert_eq!(
        server.delete_doc("posts/p1").await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn client_writes_are_checked_after_the_rules_allow_them() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(&temp.path().join("m")).await;
    let token = server.token_for("u1").await;
    let bad = server
        .send(
            server
                .bearer(Method::PUT, "/v1/docs/posts/c1", &token)
                .json(&json!({"owner": "u1"})),
        )
        .await;
    assert_eq!(fields(&violations(&bad)), vec![""]);
    let good = server
        .send(
            server
                .bearer(Method::PUT, "/v1/docs/posts/c1", &token)
                .json(&json!({"owner": "u1", "title": "mine"})),
        )
        .await;
    assert_eq!(good.status, StatusCode::CREATED, "{}", good.text);
    // A signed-out client is denied by the rules before the schema is looked at.
    let denied = server
        .send(
            server
                .anonymous(Method::PUT, "/v1/docs/posts/c2")
                .json(&json!({"owner": 1})),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_batch_with_one_violating_write_is_refused_whole() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(&temp.path().join("m")).await;
    let batch = server
        .batch(json!({"writes": [
            {"op": "set", "path": "posts/b1", "data": {"owner": "u1", "title": "fine"}},
            {"op": "set", "path": "posts/b2", "data": {"owner": "u1", "title": "fine", "n": "NaN"}},
            {"op": "set", "path": "users/u1/notes/n1", "data": {}}
        ]}))
        .await;
    let list = violations(&batch);
    let documents: Vec<&str> = batch.body["error"]["details"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["document"].as_str().unwrap())
        .collect();
    assert_eq!(documents, vec!["posts/b2", "users/u1/notes/n1"]);
    assert_eq!(fields(&list), vec!["", "/n"]);
    assert_eq!(
        server.get_doc("posts/b1").await.status,
        StatusCode::NOT_FOUND
    );

    let fixed = server
        .batch(json!({"writes": [
            {"op": "set", "path": "posts/b1", "data": {"owner": "u1", "title": "fine"}},
            {"op": "update", "path": "posts/b1", "data": {"n": 3}}
        ]}))
        .await;
    assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.text);
}

#[tokio::test]
async fn listeners_never_see_a_refused_write() {
    let temp = tempfile::tempdir().unwrap();
    let server = start(&temp.path().join("m")).await;
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    client.auth(SERVICE_KEY).await.unwrap();
    client
        .subscribe_query("q", json!({"from": "posts"}), None)
        .await
        .unwrap();
    let snapshot = client.next_message().await.unwrap();
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["docs"], json!([]));
    client.subscribe_doc("d", "posts/r1", None).await.unwrap();
    let snapshot = client.next_message().await.unwrap();
    assert_eq!(snapshot["docs"], json!([]));

    let refused = server.put_doc("posts/r1", json!({"owner": "u1"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let refused_batch = server
        .batch(json!({"writes": [{"op": "set", "path": "posts/r1", "data": {"title": "x"}}]}))
        .await;
    assert_eq!(refused_batch.status, StatusCode::BAD_REQUEST);
    match client
        .next_within(Duration::from_millis(300))
        .await
        .unwrap()
    {
        None => {}
        Some(other) => panic!("a refused write reached a listener: {other:?}"),
    }

    // The next accepted write is the first thing both subscriptions hear.
    let accepted = server
        .put_doc("posts/r1", json!({"owner": "u1", "title": "ok"}))
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED);
    let mut heard = Vec::new();
    for _ in 0..2 {
        let message = match client.next_within(Duration::from_secs(5)).await.unwrap() {
            Some(Incoming::Message(message)) => message,
            other => panic!("expected changes, got {other:?}"),
        };
        assert_eq!(message["type"], "changes", "{message}");
        assert_eq!(message["changes"][0]["kind"], "added");
        assert_eq!(
            message["changes"][0]["doc"]["data"],
            json!({"owner": "u1", "title": "ok"})
        );
        heard.push(message["id"].as_str().unwrap().to_string());
    }
    heard.sort();
    assert_eq!(heard, vec!["d", "q"]);
}
