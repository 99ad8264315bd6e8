//! `POST /v1/batch`: all-or-nothing writes with preconditions, including `verify`.

use hearth_tests::TestServer;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn batch_applies_every_write_under_one_version() {
    let server = TestServer::start().await;
    server.put_doc("accounts/a", json!({"balance": 10})).await;
    server.put_doc("accounts/gone", json!({})).await;
    let response = server
        .batch(json!({"writes": [
            {"op": "update", "path": "accounts/a", "data": {"balance": {"$increment": -3}}},
            {"op": "create", "path": "accounts/b", "data": {"balance": 3}},
            {"op": "set", "path": "accounts/c", "data": {"balance": 0}},
            {"op": "delete", "path": "accounts/gone"}
        ]}))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let version = response.body["version"].as_u64().unwrap();
    let results = response.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r["version"] == version));
    assert_eq!(
        server.get_doc("accounts/a").await.body["data"]["balance"],
        7
    );
    assert_eq!(server.get_doc("accounts/b").await.body["version"], version);
    assert_eq!(
        server.get_doc("accounts/gone").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_failing_precondition_leaves_every_document_unchanged() {
    let server = TestServer::start().await;
    let a = server.put_doc("accounts/a", json!({"balance": 10})).await;
    server.put_doc("accounts/b", json!({"balance": 0})).await;
    let stale = a.body["version"].as_u64().unwrap() + 100;
    for failing in [
        json!({"op": "verify", "path": "accounts/a", "precondition": {"version": stale}}),
        json!({"op": "create", "path": "accounts/b", "data": {}}),
        json!({"op": "update", "path": "accounts/missing", "data": {"x": 1}}),
        json!({"op": "set", "path": "accounts/b", "data": {}, "precondition": {"exists": false}}),
    ] {
        let response = server
            .batch(json!({"writes": [
                {"op": "update", "path": "accounts/a", "data": {"balance": {"$increment": -5}}},
                {"op": "set", "path": "accounts/new", "data": {"x": 1}},
                failing
            ]}))
            .await;
        assert!(response.status.is_client_error(), "{}", response.text);
        assert_eq!(
            server.get_doc("accounts/a").await.body["data"]["balance"],
            10
        );
        assert_eq!(
            server.get_doc("accounts/new").await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn verify_writes_build_optimistic_transactions() {
    let server = TestServer::start().await;
    let read = server.put_doc("stock/item", json!({"left": 1})).await;
    let version = read.body["version"].as_u64().unwrap();
    let transaction = json!({"writes": [
        {"op": "verify", "path": "stock/item", "precondition": {"version": version}},
        {"op": "create", "path": "orders/o1", "data": {"item": "item"}}
    ]});
    assert_eq!(
        server.batch(transaction.clone()).await.status,
        StatusCode::OK
    );
    server.patch_doc("stock/item", json!({"left": 0})).await;
    let mut second = transaction;
    second["writes"][1]["path"] = json!("orders/o2");
    let conflict = server.batch(second).await;
    assert_eq!(conflict.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        server.get_doc("orders/o2").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn batches_are_limited_to_500_writes() {
    let server = TestServer::start().await;
    let writes: Vec<_> = (0..501)
        .map(|i| json!({"op": "set", "path": format!("many/d{i}"), "data": {}}))
        .collect();
    let response = server.batch(json!({ "writes": writes })).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.error_code(), "invalid_argument");
    let writes: Vec<_> = (0..500)
        .map(|i| json!({"op": "set", "path": format!("many/d{i}"), "data": {"i": i}}))
        .collect();
    assert_eq!(
        server.batch(json!({ "writes": writes })).await.status,
        StatusCode::OK
    );
}
