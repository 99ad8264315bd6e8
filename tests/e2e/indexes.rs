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

/// Declares a composite index and returns its listing (asserting it was created).
pub async fn create_index(server: &TestServer, definition: Json) -> Json {
    let created = server
        .send(
            server
                .admin(Method::POST, "/v1/admin/indexes")
                .json(&definition),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body
}

/// The IDs of a query answer's documents, in order.
pub fn document_ids(documents: &Json) -> Vec<String> {
    documents
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

pub async fn explain(server: &TestServer, query: &Json) -> Json {
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

    let created = create_index(
        &server,
        json!({"collection": "posts", "fields": [["owner", "asc"], ["n", "desc"]]}),
    )
    .await;
    let id = created["id"].as_u64().unwrap();
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
        json!({"collection": "posts", "fields": [["owner", "asc"], ["n", "asc"]], "covering": 1}),
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

/// A composite index holds copies of its documents so that queries need no lookups: what a
/// query answers must still be exactly what a read of each document answers, through
/// backfill, field changes that keep or move an entry, deletes, and documents too large to
/// copy.
#[tokio::test]
async fn a_covering_index_answers_with_the_current_documents() {
    let server = TestServer::start().await;
    // Written before the index: these get their entries from the backfill.
    for i in 0..20 {
        let put = server
            .put_doc(
                &format!("posts/p{i:02}"),
                json!({"owner": format!("u{}", i % 2), "n": i, "body": "first"}),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    }
    let created = create_index(
        &server,
        json!({"collection": "posts", "fields": [["owner", "asc"], ["n", "desc"]]}),
    )
    .await;
    assert_eq!(created["covering"], true, "{created}");
    wait_until_ready(&server).await;

    // Written after: a field outside the index changes (the entry keeps its key), an indexed
    // field changes (the entry moves), one document leaves the index, one is deleted, one is
    // too large to copy, and new ones arrive.
    let mut writes = Vec::new();
    for i in (0..20).step_by(3) {
        writes.push(
            server
                .patch_doc(&format!("posts/p{i:02}"), json!({"body": "second"}))
                .await,
        );
    }
    writes.push(server.patch_doc("posts/p05", json!({"n": 105})).await);
    writes.push(server.patch_doc("posts/p07", json!({"owner": "u0"})).await);
    writes.push(
        server
            .put_doc("posts/p09", json!({"owner": "u1", "body": "no n"}))
            .await,
    );
    writes.push(server.delete_doc("posts/p11").await);
    let large = "x".repeat(20 << 10);
    writes.push(
        server
            .put_doc("posts/big", json!({"owner": "u1", "n": 50, "body": large}))
            .await,
    );
    for i in 20..25 {
        writes.push(
            server
                .put_doc(
                    &format!("posts/p{i:02}"),
                    json!({"owner": "u1", "n": i, "body": "new"}),
                )
                .await,
        );
    }
    for write in &writes {
        assert!(write.status.is_success(), "{}", write.text);
    }

    let query = json!({"from": "posts", "where": {"and": [["owner", "==", "u1"], ["n", ">", 2]]}, "orderBy": [["n", "desc"]]});
    let plan = explain(&server, &query).await;
    assert_eq!(plan["plan"]["scan"], "compositeIndex", "{plan}");
    assert_eq!(plan["plan"]["covering"], true, "{plan}");
    let answer = server.query(query).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let documents = answer.body["documents"].as_array().unwrap().clone();
    assert_eq!(
        document_ids(&answer.body["documents"]),
        ["p05", "big", "p24", "p23", "p22", "p21", "p20", "p19", "p17", "p15", "p13", "p03"]
    );
    for document in &documents {
        let read = server
            .get_doc(&format!("posts/{}", document["id"].as_str().unwrap()))
            .await;
        assert_eq!(
            *document, read.body,
            "the query's copy differs from the document"
        );
    }

    // Limits and page tokens read the same copies.
    let first = server
        .query(json!({"from": "posts", "where": ["owner", "==", "u1"], "orderBy": [["n", "desc"]], "limit": 2}))
        .await;
    assert_eq!(first.body["documents"][1], documents[1]);
    let next = server
        .query(json!({"from": "posts", "where": ["owner", "==", "u1"], "orderBy": [["n", "desc"]], "limit": 2, "pageToken": first.body["nextPageToken"]}))
        .await;
    assert_eq!(next.body["documents"][0], documents[2], "{}", next.text);
}

/// `"covering": false` keeps an index's entries key-only (cheaper writes for write-heavy
/// collections): the same answers, by lookups.
#[tokio::test]
async fn an_index_can_be_declared_key_only() {
    let server = TestServer::start().await;
    let created = create_index(
        &server,
        json!({"collection": "logs", "fields": [["level", "asc"], ["at", "desc"]], "covering": false}),
    )
    .await;
    assert_eq!(created["covering"], false, "{created}");
    wait_until_ready(&server).await;
    for i in 0..12 {
        let level = if i % 3 == 0 { "error" } else { "info" };
        let put = server
            .put_doc(&format!("logs/l{i:02}"), json!({"level": level, "at": i}))
            .await;
        assert!(put.status.is_success(), "{}", put.text);
    }
    server
        .patch_doc("logs/l03", json!({"message": "changed outside the index"}))
        .await;
    let query =
        json!({"from": "logs", "where": ["level", "==", "error"], "orderBy": [["at", "desc"]]});
    let plan = explain(&server, &query).await;
    assert_eq!(plan["plan"]["scan"], "compositeIndex", "{plan}");
    assert_eq!(plan["plan"]["covering"], false, "{plan}");
    let documents = server.query(query).await.body["documents"].clone();
    assert_eq!(document_ids(&documents), ["l09", "l06", "l03", "l00"]);
    assert_eq!(documents[2], server.get_doc("logs/l03").await.body);
}
