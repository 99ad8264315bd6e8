//! Composite indexes: created through the admin API, built in the background for existing
//! data, used by the planner (as `explain` shows) and dropped.

use std::time::Duration;

use hearth_tests::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

pub async fn wait_until_ready(server: &TestServer) {
    for _ in 0..200 {
        let list = server
            .send(server.admin(Method::GET, "/v1/admin/indexes"))
            .await;
        let indexes = list.body["indexes"].as_array().cloned().unwrap_or_default();
        if indexes.iter().all(|ix| ix["state"] == "ready") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("indexes did not become ready");
}

async fn explain(server: &TestServer, query: &Json) -> Json {
    server
        .send(server.admin(Method::POST, "/v1/query/explain").json(query))
        .await
        .body
}

#[tokio::test]
async fn composite_index_is_backfilled_used_and_dropped() {
    let server = TestServer::start().await;
    let writes: Vec<Json> = (0..300)
        .map(|i| json!({"op": "set", "path": format!("posts/p{i:03}"), "data": {"owner": format!("u{}", i % 3), "n": i}}))
        .collect();
    server.batch(json!({ "writes": writes })).await;
    let query = json!({"from": "posts", "where": {"and": [["owner", "==", "u1"], ["n", ">", 100]]}, "orderBy": [["n", "desc"]], "limit": 5});
    let before = server.query(query.clone()).await.body["documents"].clone();
    assert_ne!(
        explain(&server, &query).await["plan"]["scan"],
        "compositeIndex"
    );

    let created = server
        .send(
            server
                .admin(Method::POST, "/v1/admin/indexes")
                .json(&json!({"collection": "posts", "fields": [["owner", "asc"], ["n", "desc"]]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_u64().unwrap();
    wait_until_ready(&server).await;

    // Documents written after the index exists get entries too.
    server
        .put_doc("posts/late", json!({"owner": "u1", "n": 1000}))
        .await;
    let plan = explain(&server, &query).await;
    assert_eq!(plan["plan"]["scan"], "compositeIndex", "{plan}");
    assert_eq!(plan["ordered"], true);
    let after = server.query(query.clone()).await.body["documents"].clone();
    assert_eq!(after[0]["id"], "late");
    assert_eq!(
        after.as_array().unwrap()[1..],
        before.as_array().unwrap()[..4]
    );

    let duplicate = server
        .send(
            server
                .admin(Method::POST, "/v1/admin/indexes")
                .json(&json!({"collection": "posts", "fields": [["owner", "asc"], ["n", "desc"]]})),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);

    let dropped = server
        .send(server.admin(Method::DELETE, &format!("/v1/admin/indexes/{id}")))
        .await;
    assert_eq!(dropped.status, StatusCode::NO_CONTENT);
    assert_ne!(
        explain(&server, &query).await["plan"]["scan"],
        "compositeIndex"
    );
    assert_eq!(server.query(query).await.body["documents"][0]["id"], "late");
}

#[tokio::test]
async fn invalid_index_definitions_are_refused() {
    let server = TestServer::start().await;
    for body in [
        json!({"collection": "posts", "fields": [["owner", "asc"]]}),
        json!({"collection": "posts", "fields": [["owner", "up"], ["n", "asc"]]}),
        json!({"collection": "a/b", "fields": [["owner", "asc"], ["n", "asc"]]}),
        json!({"fields": [["owner", "asc"], ["n", "asc"]]}),
    ] {
        let response = server
            .send(server.admin(Method::POST, "/v1/admin/indexes").json(&body))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let anonymous = server
        .send(server.anonymous(Method::GET, "/v1/admin/indexes"))
        .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
}
