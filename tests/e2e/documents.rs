//! The document routes: set, get, update, delete, create with an automatic ID, list, typed
//! values, transforms, preconditions and every kind of bad input.

use hearth_tests::{TestServer, SERVICE_KEY};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn set_creates_then_replaces_and_get_returns_data_with_metadata() {
    let server = TestServer::start().await;
    let created = server
        .put_doc("posts/p1", json!({"title": "hello", "n": 1}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["path"], "posts/p1");
    assert_eq!(created.body["id"], "p1");
    assert_eq!(created.body["data"], json!({"title": "hello", "n": 1}));
    let version = created.body["version"].as_u64().unwrap();
    assert_eq!(
        created.header("etag"),
        Some(format!("\"{version}\"").as_str())
    );

    let replaced = server.put_doc("posts/p1", json!({"title": "again"})).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(replaced.body["data"], json!({"title": "again"}));
    assert!(replaced.body["version"].as_u64().unwrap() > version);
    assert_eq!(replaced.body["createTime"], created.body["createTime"]);

    let read = server.get_doc("posts/p1").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, replaced.body);
}

#[tokio::test]
async fn missing_document_is_not_found() {
    let server = TestServer::start().await;
    let response = server.get_doc("posts/nope").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.error_code(), "not_found");
}

#[tokio::test]
async fn typed_values_round_trip() {
    let server = TestServer::start().await;
    let data = json!({
        "at": {"$timestamp": "2026-11-25T10:00:00.123456Z"},
        "blob": {"$bytes": "aGVsbG8="},
        "author": {"$ref": "users/u1"},
        "where": {"$geo": {"lat": 52.1, "lng": 4.3}},
        "nested": {"list": [1, 2.5, "x", null, true, {"deep": [ {"$timestamp": "2020-01-01T00:00:00.000000Z"} ]}]}
    });
    server.put_doc("things/t1", data.clone()).await;
    assert_eq!(server.get_doc("things/t1").await.body["data"], data);
}

#[tokio::test]
async fn update_applies_field_paths_and_transforms() {
    let server = TestServer::start().await;
    server
        .put_doc(
            "counters/c",
            json!({"n": 1, "tags": ["a"], "m": {"keep": 1, "drop": 2}}),
        )
        .await;
    let updated = server
        .patch_doc(
            "counters/c",
            json!({
                "n": {"$increment": 4},
                "tags": {"$arrayUnion": ["b", "a"]},
                "m.drop": {"$delete": true},
                "m.added.deep": true,
                "at": {"$serverTimestamp": true}
            }),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    let data = &updated.body["data"];
    assert_eq!(data["n"], 5);
    assert_eq!(data["tags"], json!(["a", "b"]));
    assert_eq!(data["m"], json!({"keep": 1, "added": {"deep": true}}));
    // The server timestamp is the write's update time.
    assert_eq!(data["at"]["$timestamp"], updated.body["updateTime"]);

    let removed = server
        .patch_doc("counters/c", json!({"tags": {"$arrayRemove": ["a"]}}))
        .await;
    assert_eq!(removed.body["data"]["tags"], json!(["b"]));
}

#[tokio::test]
async fn update_of_missing_document_is_not_found_and_creates_nothing() {
    let server = TestServer::start().await;
    let response = server.patch_doc("posts/ghost", json!({"a": 1})).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(
        server.get_doc("posts/ghost").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn concurrent_increments_are_all_counted() {
    let server = TestServer::start().await;
    server.put_doc("counters/hot", json!({"n": 0})).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let http = server.http.clone();
        let url = format!("{}/v1/docs/counters/hot", server.url);
        tasks.push(tokio::spawn(async move {
            http.patch(url)
                .bearer_auth(SERVICE_KEY)
                .json(&json!({"n": {"$increment": 1}}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(server.get_doc("counters/hot").await.body["data"]["n"], 100);
}

#[tokio::test]
async fn preconditions_guard_writes() {
    let server = TestServer::start().await;
    let created = server
        .send(
            server
                .admin(Method::PUT, "/v1/docs/posts/p")
                .header("If-None-Match", "*")
                .json(&json!({"v": 1})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let again = server
        .send(
            server
                .admin(Method::PUT, "/v1/docs/posts/p")
                .header("If-None-Match", "*")
                .json(&json!({"v": 2})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "already_exists");

    let etag = created.header("etag").unwrap().to_string();
    let stale = server
        .send(
            server
                .admin(Method::PATCH, "/v1/docs/posts/p")
                .header("If-Match", "\"999\"")
                .json(&json!({"v": 3})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.error_code(), "failed_precondition");
    let fresh = server
        .send(
            server
                .admin(Method::PATCH, "/v1/docs/posts/p")
                .header("If-Match", etag.as_str())
                .json(&json!({"v": 3})),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    // The old ETag no longer matches: the write changed the version.
    let delete_stale = server
        .send(
            server
                .admin(Method::DELETE, "/v1/docs/posts/p")
                .header("If-Match", etag.as_str()),
        )
        .await;
    assert_eq!(delete_stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(server.get_doc("posts/p").await.body["data"]["v"], 3);

    let bad = server
        .send(
            server
                .admin(Method::PUT, "/v1/docs/posts/p")
                .header("If-Match", "yesterday")
                .json(&json!({})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn delete_answers_no_content_even_when_absent_and_keeps_subcollections() {
    let server = TestServer::start().await;
    server.put_doc("users/u1", json!({"name": "a"})).await;
    server.put_doc("users/u1/posts/p1", json!({"t": 1})).await;
    assert_eq!(
        server.delete_doc("users/u1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.delete_doc("users/u1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.get_doc("users/u1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get_doc("users/u1/posts/p1").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn post_creates_with_an_automatic_id_and_location() {
    let server = TestServer::start().await;
    let response = server
        .post_doc("users/u1/notes", json!({"text": "hi"}))
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    let id = response.body["id"].as_str().unwrap();
    assert_eq!(id.len(), 20);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        response.header("location"),
        Some(format!("/v1/docs/users/u1/notes/{id}").as_str())
    );
    assert_eq!(
        server.get_doc(&format!("users/u1/notes/{id}")).await.body["data"]["text"],
        "hi"
    );
}

#[tokio::test]
async fn listing_a_collection_pages_without_skipping_or_repeating() {
    let server = TestServer::start().await;
    for i in 0..25 {
        server
            .put_doc(&format!("items/i{i:02}"), json!({"n": i % 7}))
            .await;
    }
    server.put_doc("items/i00/sub/x", json!({"n": 100})).await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut url = "/v1/docs/items?limit=4&orderBy=n%20desc".to_string();
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={t}"));
        }
        let page = server.send(server.admin(Method::GET, &url)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for doc in page.body["documents"].as_array().unwrap() {
            seen.push((
                doc["data"]["n"].as_i64().unwrap(),
                doc["id"].as_str().unwrap().to_string(),
            ));
        }
        match page.body["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut expected = seen.clone();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected, "pages must follow n desc, then id desc");
}

#[tokio::test]
async fn clients_without_the_service_key_are_denied_until_rules_exist() {
    let server = TestServer::start().await;
    server.put_doc("posts/p1", json!({"a": 1})).await;
    let anonymous = server
        .send(server.anonymous(Method::GET, "/v1/docs/posts/p1"))
        .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
    assert_eq!(anonymous.error_code(), "permission_denied");
    let forged = server
        .send(
            server
                .anonymous(Method::GET, "/v1/docs/posts/p1")
                .bearer_auth("not-the-key"),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.error_code(), "unauthenticated");
    assert_eq!(forged.header("www-authenticate"), Some("Bearer"));
}

/// Every malformed input gets a 4xx with a code and message, and changes nothing.
#[tokio::test]
async fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let server = TestServer::start().await;
    server.put_doc("posts/p1", json!({"keep": true})).await;
    let deep = (0..21).fold(json!(1), |acc, _| json!({ "a": acc }));
    let cases: Vec<(Method, &str, Option<serde_json::Value>, &str)> = vec![
        (
            Method::PUT,
            "/v1/docs/posts",
            Some(json!({})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts//p1",
            Some(json!({})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/__x__",
            Some(json!({})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!([1, 2])),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": {"$nope": 1}})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": {"$bytes": "***"}})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": {"$timestamp": "yesterday"}})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": {"$geo": {"lat": 91, "lng": 0}}})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": {"$ref": "posts"}})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": [{"$increment": 1}]})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": {"$delete": true}})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"x": 18446744073709551615u64})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(deep),
            "invalid_argument",
        ),
        (
            Method::PATCH,
            "/v1/docs/posts/p1",
            Some(json!({"a..b": 1})),
            "invalid_argument",
        ),
        (
            Method::PUT,
            "/v1/docs/posts/p1",
            Some(json!({"$x": 1})),
            "invalid_argument",
        ),
        (
            Method::PATCH,
            "/v1/docs/posts/p1",
            Some(json!({"`$x`": 1})),
            "invalid_argument",
        ),
        (
            Method::PATCH,
            "/v1/docs/posts/p1",
            Some(json!({"m.`$x`": 1})),
            "invalid_argument",
        ),
        (
            Method::PATCH,
            "/v1/docs/posts/p1",
            Some(json!({"a": 1, "a.b": 2})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/docs/posts/p1",
            Some(json!({})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/query",
            Some(json!({"from": "posts", "where": ["a", "~", 1]})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/query",
            Some(json!({"from": "posts", "where": ["a", "in", []]})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/query",
            Some(json!({"from": "posts", "pageToken": "garbage!"})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/query",
            Some(json!({"from": "posts", "orderBy": [["a", "sideways"]]})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/query",
            Some(json!({"from": "posts", "startAfter": [1, 2]})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/query",
            Some(json!({"from": "posts", "limit": -1})),
            "invalid_argument",
        ),
        (
            Method::POST,
            "/v1/batch",
            Some(json!({"writes": [{"op": "explode", "path": "posts/p1"}]})),
            "invalid_argument",
        ),
    ];
    for (method, path, body, code) in cases {
        let mut request = server.admin(method.clone(), path);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = server.send(request).await;
        assert!(
            response.status.is_client_error(),
            "{method} {path} {body:?} → {}",
            response.status
        );
        assert_eq!(
            response.error_code(),
            code,
            "{method} {path} {body:?}: {}",
            response.text
        );
        assert!(!response.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .is_empty());
    }
    let not_json = server
        .send(
            server
                .admin(Method::PUT, "/v1/docs/posts/p1")
                .body("{not json"),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        server.get_doc("posts/p1").await.body["data"],
        json!({"keep": true})
    );
}

#[tokio::test]
async fn size_limits_answer_payload_too_large() {
    let server = TestServer::start().await;
    // Over 1 MiB of document data, within the 10 MiB body limit.
    let big = "x".repeat((1 << 20) + 10);
    let response = server.put_doc("posts/big", json!({"s": big})).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.error_code(), "payload_too_large");
    // Over the 10 MiB body limit.
    let huge = "y".repeat(11 << 20);
    let response = server.put_doc("posts/huge", json!({"s": huge})).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        server.get_doc("posts/big").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get_doc("posts/huge").await.status,
        StatusCode::NOT_FOUND
    );
}
