//! Realtime subscriptions over WebSocket (DESIGN.md §5) against the real binary: snapshots and
//! ordered changes, limited views that stay equal to re-running the query, resume, rules,
//! token expiry, bad input and the limits.

use std::time::Duration;

use hearth_tests::realtime::{ClientView, Incoming, RealtimeClient};
use hearth_tests::{TestServer, SERVICE_KEY};
use rand::{Rng as _, SeedableRng as _};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value as Json};

const OWNER_RULES: &str = r#"
rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /notes/{id} {
      allow get, list: if request.auth != null && resource.data.owner == request.auth.uid;
    }
  }
}
"#;

async fn put_rules(server: &TestServer, source: &str) {
    let response = server
        .send(
            server
                .admin(Method::PUT, "/v1/admin/rules")
                .body(source.to_string()),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
}

async fn admin_client(server: &TestServer) -> RealtimeClient {
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    let ready = client.auth(SERVICE_KEY).await.unwrap();
    assert_eq!(ready, json!({"type": "ready", "uid": null}));
    client
}

async fn put(server: &TestServer, path: &str, data: Json) -> u64 {
    let response = server.put_doc(path, data).await;
    assert!(response.status.is_success(), "{}", response.text);
    response.body["version"].as_u64().unwrap()
}

async fn delete(server: &TestServer, path: &str) -> u64 {
    let response = server
        .batch(json!({"writes": [{"op": "delete", "path": path}]}))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.body["version"].as_u64().unwrap()
}

/// The paths the query answers now (REST), for comparison with a view.
async fn query_paths(server: &TestServer, query: &Json) -> Vec<String> {
    let response = server.query(query.clone()).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.body["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect()
}

/// Connects again and resumes `query` (as subscription "s") from `version`: the client and its
/// first message.
async fn resume(server: &TestServer, query: &Json, version: u64) -> (RealtimeClient, Json) {
    let mut client = admin_client(server).await;
    client
        .subscribe_query("s", query.clone(), Some(version))
        .await
        .unwrap();
    let first = client.next_message().await.unwrap();
    (client, first)
}

async fn expect_nothing(client: &mut RealtimeClient, within: Duration) {
    if let Some(incoming) = client.next_within(within).await.unwrap() {
        panic!("expected silence, got {incoming:?}");
    }
}

fn paths_of(changes: &Json) -> Vec<(String, String)> {
    changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["doc"]["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_document_subscription_gets_a_snapshot_then_every_change_in_commit_order() {
    let server = TestServer::start().await;
    let first = put(&server, "posts/p1", json!({"n": 1})).await;
    let mut client = admin_client(&server).await;
    client.subscribe_doc("s1", "posts/p1", None).await.unwrap();
    let snapshot = client.next_message().await.unwrap();
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["id"], "s1");
    assert!(snapshot["version"].as_u64().unwrap() >= first);
    assert_eq!(snapshot["docs"][0]["data"], json!({"n": 1}));
    assert_eq!(snapshot["docs"][0]["version"], json!(first));

    let second = put(&server, "posts/p1", json!({"n": 2})).await;
    put(&server, "posts/other", json!({"n": 9})).await;
    let third = delete(&server, "posts/p1").await;
    let fourth = put(&server, "posts/p1", json!({"n": 4})).await;
    let expected = [
        (second, "modified", 0, 0, json!({"n": 2})),
        (third, "removed", 0, -1, json!({"n": 2})),
        (fourth, "added", -1, 0, json!({"n": 4})),
    ];
    for (version, kind, old, new, data) in expected {
        let message = client.next_message().await.unwrap();
        assert_eq!(message["type"], "changes", "{message}");
        assert_eq!(message["version"], json!(version));
        let change = &message["changes"][0];
        assert_eq!(message["changes"].as_array().unwrap().len(), 1);
        assert_eq!(change["kind"], kind);
        assert_eq!(change["oldIndex"], json!(old));
        assert_eq!(change["newIndex"], json!(new));
        assert_eq!(change["doc"]["data"], data);
    }
    // The write to another document never reached this subscription.
    expect_nothing(&mut client, Duration::from_millis(300)).await;

    client
        .send(json!({"type": "unsubscribe", "id": "s1"}))
        .await
        .unwrap();
    client.send(json!({"type": "ping"})).await.unwrap();
    assert_eq!(
        client.next_message().await.unwrap(),
        json!({"type": "pong"})
    );
    put(&server, "posts/p1", json!({"n": 5})).await;
    expect_nothing(&mut client, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn limited_query_views_stay_equal_to_rerunning_the_query_after_every_random_write() {
    let server = TestServer::start().await;
    let queries = [
        json!({"from": "items", "orderBy": [["n", "asc"]], "limit": 5}),
        json!({"from": "items", "orderBy": [["n", "desc"]], "limit": 3}),
        json!({"from": "items", "where": ["color", "==", "red"], "orderBy": [["n", "asc"]], "limit": 4}),
        json!({"from": "items", "where": ["n", ">=", 10], "limit": 6}),
        json!({"from": "items", "orderBy": [["n", "asc"]], "limit": 3, "offset": 2}),
        json!({"from": "items", "where": ["color", "in", ["red", "blue"]]}),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0005);
    for i in 0..12 {
        let color = ["red", "blue", "green"][rng.random_range(0..3)];
        put(
            &server,
            &format!("items/i{i}"),
            json!({"n": rng.random_range(0..30), "color": color}),
        )
        .await;
    }
    let mut client = admin_client(&server).await;
    let mut views = vec![ClientView::default(); queries.len()];
    for (k, query) in queries.iter().enumerate() {
        client
            .subscribe_query(&format!("q{k}"), query.clone(), None)
            .await
            .unwrap();
    }
    for _ in 0..queries.len() {
        let snapshot = client.next_message().await.unwrap();
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        let k: usize = snapshot["id"].as_str().unwrap()[1..].parse().unwrap();
        views[k].apply(&snapshot).unwrap();
    }
    for step in 0..80 {
        let id = rng.random_range(0..20);
        let path = format!("items/i{id}");
        match rng.random_range(0..10) {
            0..=1 => {
                delete(&server, &path).await;
            }
            2 => {
                // A batch touching several documents is one commit, one message per view.
                let other = format!("items/i{}", rng.random_range(0..20));
                let response = server
                    .batch(json!({"writes": [
                        {"op": "set", "path": path, "data": {"n": rng.random_range(0..30), "color": "red"}},
                        {"op": "delete", "path": other},
                    ]}))
                    .await;
                assert!(
                    response.status.is_success() || response.status == StatusCode::BAD_REQUEST,
                    "{}",
                    response.text
                );
            }
            _ => {
                let color = ["red", "blue", "green"][rng.random_range(0..3)];
                put(
                    &server,
                    &path,
                    json!({"n": rng.random_range(0..30), "color": color}),
                )
                .await;
            }
        }
        for (k, query) in queries.iter().enumerate() {
            let expected = query_paths(&server, query).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while views[k].paths() != expected {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "step {step}: view q{k} {:?} != query {:?}",
                    views[k].paths(),
                    expected
                );
                // Messages of other views may come first: apply them to their own views.
                let message = client.next_message().await.unwrap();
                assert_eq!(message["type"], "changes", "{message}");
                let j: usize = message["id"].as_str().unwrap()[1..].parse().unwrap();
                assert!(
                    message["version"].as_u64().unwrap() > views[j].version,
                    "versions go up"
                );
                views[j].apply(&message).unwrap();
            }
        }
    }
    // Data of the views equals the query's too (not only the paths).
    for (k, query) in queries.iter().enumerate() {
        let response = server.query(query.clone()).await;
        let expected: Vec<Json> = response.body["documents"].as_array().unwrap().to_vec();
        let held: Vec<Json> = views[k].docs.clone();
        assert_eq!(held.len(), expected.len());
        for (a, b) in held.iter().zip(&expected) {
            assert_eq!(a["data"], b["data"]);
            assert_eq!(a["version"], b["version"]);
        }
    }
}

#[tokio::test]
async fn resume_delivers_exactly_the_missed_changes_as_one_message() {
    let server = TestServer::start().await;
    for i in 0..5 {
        put(&server, &format!("tasks/t{i}"), json!({"n": i})).await;
    }
    let query = json!({"from": "tasks", "orderBy": [["n", "asc"]], "limit": 4});
    let mut client = admin_client(&server).await;
    client
        .subscribe_query("s", query.clone(), None)
        .await
        .unwrap();
    let snapshot = client.next_message().await.unwrap();
    let mut view = ClientView::default();
    view.apply(&snapshot).unwrap();
    assert_eq!(
        view.paths(),
        ["tasks/t0", "tasks/t1", "tasks/t2", "tasks/t3"]
    );
    client.close().await;

    // Missed while away: a change, a removal that pulls t4 in, an insert at the front, and
    // writes that do not concern the view.
    put(&server, "tasks/t2", json!({"n": 2, "done": true})).await;
    delete(&server, "tasks/t1").await;
    put(&server, "tasks/t9", json!({"n": -1})).await;
    put(&server, "tasks/t3", json!({"n": 3})).await; // same data, new version
    put(&server, "other/x", json!({"n": 0})).await;
    put(&server, "tasks/t8", json!({"n": 100})).await;

    let (mut client, resumed) = resume(&server, &query, view.version).await;
    assert_eq!(resumed["type"], "changes", "{resumed}");
    view.apply(&resumed).unwrap();
    assert_eq!(view.paths(), query_paths(&server, &query).await);
    let mut kinds = paths_of(&resumed);
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("added".to_string(), "tasks/t9".to_string()),
            ("modified".to_string(), "tasks/t2".to_string()),
            ("modified".to_string(), "tasks/t3".to_string()),
            ("removed".to_string(), "tasks/t1".to_string()),
        ]
    );
    expect_nothing(&mut client, Duration::from_millis(300)).await;

    // Resuming from the current version sends an empty `changes`, then live changes follow.
    client.close().await;
    let (mut client, nothing) = resume(&server, &query, view.version).await;
    assert_eq!(nothing["type"], "changes");
    assert_eq!(nothing["changes"], json!([]));
    let version = put(&server, "tasks/t0", json!({"n": 0, "x": 1})).await;
    let live = client.next_message().await.unwrap();
    assert_eq!(live["version"], json!(version));
    assert_eq!(
        paths_of(&live),
        [("modified".to_string(), "tasks/t0".to_string())]
    );
}

#[tokio::test]
async fn resume_beyond_the_change_log_retention_gets_a_fresh_snapshot() {
    let server = TestServer::start_with(vec![
        ("HEARTH_REALTIME__CHANGE_LOG_MAX_BYTES".into(), "1".into()),
        (
            "HEARTH_REALTIME__CHANGE_LOG_TRIM_INTERVAL_SECS".into(),
            "1".into(),
        ),
    ])
    .await;
    put(&server, "tasks/a", json!({"n": 1})).await;
    let mut client = admin_client(&server).await;
    client.subscribe_doc("s", "tasks/a", None).await.unwrap();
    let snapshot = client.next_message().await.unwrap();
    let version = snapshot["version"].as_u64().unwrap();
    client.close().await;
    put(&server, "tasks/a", json!({"n": 2})).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut client = admin_client(&server).await;
    client
        .subscribe_doc("s", "tasks/a", Some(version))
        .await
        .unwrap();
    let answer = client.next_message().await.unwrap();
    assert_eq!(answer["type"], "snapshot", "{answer}");
    assert_eq!(answer["docs"][0]["data"], json!({"n": 2}));
}

#[tokio::test]
async fn losing_read_permission_ends_a_document_subscription_with_permission_denied() {
    let server = TestServer::start().await;
    put_rules(&server, OWNER_RULES).await;
    put(&server, "notes/n1", json!({"owner": "u1", "text": "a"})).await;
    let token = server.token_for("u1").await;
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    assert_eq!(client.auth(&token).await.unwrap()["uid"], "u1");
    client
        .subscribe_doc("mine", "notes/n1", None)
        .await
        .unwrap();
    assert_eq!(client.next_message().await.unwrap()["type"], "snapshot");
    // Someone else's note: refused at once.
    put(&server, "notes/n2", json!({"owner": "u2"})).await;
    client
        .subscribe_doc("theirs", "notes/n2", None)
        .await
        .unwrap();
    let refused = client.next_message().await.unwrap();
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "theirs");
    assert_eq!(refused["code"], "permission_denied");

    put(&server, "notes/n1", json!({"owner": "u1", "text": "b"})).await;
    let change = client.next_message().await.unwrap();
    assert_eq!(change["changes"][0]["doc"]["data"]["text"], "b");
    put(&server, "notes/n1", json!({"owner": "u2", "text": "c"})).await;
    let ended = client.next_message().await.unwrap();
    assert_eq!(ended["type"], "error", "{ended}");
    assert_eq!(ended["id"], "mine");
    assert_eq!(ended["code"], "permission_denied");
    // Over: later changes are not sent, and the connection still works.
    put(&server, "notes/n1", json!({"owner": "u1", "text": "d"})).await;
    client.send(json!({"type": "ping"})).await.unwrap();
    assert_eq!(
        client.next_message().await.unwrap(),
        json!({"type": "pong"})
    );
}

#[tokio::test]
async fn a_query_the_rules_cannot_prove_is_refused_and_a_provable_one_is_served() {
    let server = TestServer::start().await;
    put_rules(&server, OWNER_RULES).await;
    put(&server, "notes/a", json!({"owner": "u1"})).await;
    put(&server, "notes/b", json!({"owner": "u2"})).await;
    let token = server.token_for("u1").await;
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    client.auth(&token).await.unwrap();
    client
        .subscribe_query("all", json!({"from": "notes"}), None)
        .await
        .unwrap();
    let refused = client.next_message().await.unwrap();
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["id"], "all");
    assert_eq!(refused["code"], "permission_denied");
    client
        .subscribe_query(
            "mine",
            json!({"from": "notes", "where": ["owner", "==", "u1"]}),
            None,
        )
        .await
        .unwrap();
    let snapshot = client.next_message().await.unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["docs"].as_array().unwrap().len(), 1);
    put(&server, "notes/c", json!({"owner": "u2"})).await;
    put(&server, "notes/d", json!({"owner": "u1"})).await;
    let change = client.next_message().await.unwrap();
    assert_eq!(
        paths_of(&change),
        [("added".to_string(), "notes/d".to_string())]
    );
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_stays_healthy() {
    let server = TestServer::start_with(vec![(
        "HEARTH_REALTIME__MAX_SUBSCRIPTIONS_PER_CONNECTION".into(),
        "2".into(),
    )])
    .await;
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    // Before auth, subscriptions are refused; ping works.
    client.subscribe_doc("s0", "a/b", None).await.unwrap();
    let early = client.next_message().await.unwrap();
    assert_eq!(
        (early["id"].clone(), early["code"].clone()),
        (json!("s0"), json!("unauthenticated"))
    );
    client
        .send(json!({"type": "auth", "token": "not-a-token"}))
        .await
        .unwrap();
    assert_eq!(
        client.next_message().await.unwrap()["code"],
        "unauthenticated"
    );
    client.auth(SERVICE_KEY).await.unwrap();

    let bad_frames = [
        "{not json",
        "[]",
        r#"{"type":"dance"}"#,
        r#"{"no":"type"}"#,
        r#"{"type":"subscribe","id":"x"}"#,
        r#"{"type":"subscribe","id":"x","doc":"odd/path/count"}"#,
        r#"{"type":"subscribe","id":"x","query":{"from":"a","aggregate":{"count":true}}}"#,
        r#"{"type":"subscribe","id":"x","query":{"from":"a","where":["n","~",1]}}"#,
    ];
    for frame in bad_frames {
        client.send_text(frame).await.unwrap();
        let answer = client.next_message().await.unwrap();
        assert_eq!(answer["type"], "error", "{frame}: {answer}");
        assert_eq!(answer["code"], "invalid_argument", "{frame}: {answer}");
    }
    client.subscribe_doc("s1", "a/b", None).await.unwrap();
    assert_eq!(client.next_message().await.unwrap()["type"], "snapshot");
    client.subscribe_doc("s1", "a/c", None).await.unwrap();
    let duplicate = client.next_message().await.unwrap();
    assert_eq!(
        (duplicate["id"].clone(), duplicate["code"].clone()),
        (json!("s1"), json!("already_exists"))
    );
    client.subscribe_doc("s2", "a/c", None).await.unwrap();
    assert_eq!(client.next_message().await.unwrap()["type"], "snapshot");
    client.subscribe_doc("s3", "a/d", None).await.unwrap();
    let over = client.next_message().await.unwrap();
    assert_eq!(
        (over["id"].clone(), over["code"].clone()),
        (json!("s3"), json!("rate_limited"))
    );

    // Still healthy: the first subscription keeps receiving.
    let version = put(&server, "a/b", json!({"ok": true})).await;
    let change = client.next_message().await.unwrap();
    assert_eq!(
        (change["id"].clone(), change["version"].clone()),
        (json!("s1"), json!(version))
    );
    client.send(json!({"type": "ping"})).await.unwrap();
    assert_eq!(
        client.next_message().await.unwrap(),
        json!({"type": "pong"})
    );
}

#[tokio::test]
async fn an_oversized_frame_closes_the_socket_with_1009() {
    let server = TestServer::start().await;
    let mut client = admin_client(&server).await;
    let big = format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat((1 << 20) + 10)
    );
    client.send_text(big).await.unwrap();
    assert_eq!(
        client.closed_within(Duration::from_secs(5)).await.unwrap(),
        Some(1009)
    );
    // The server is fine.
    let mut other = admin_client(&server).await;
    other.send(json!({"type": "ping"})).await.unwrap();
    assert_eq!(other.next_message().await.unwrap(), json!({"type": "pong"}));
}

#[tokio::test]
async fn a_stalled_reader_is_closed_with_4008_and_other_clients_get_everything() {
    let server = TestServer::start_with(vec![(
        "HEARTH_REALTIME__SEND_QUEUE_CAPACITY".into(),
        "4".into(),
    )])
    .await;
    let query = json!({"from": "feed"});
    let mut stalled = admin_client(&server).await;
    stalled
        .subscribe_query("s", query.clone(), None)
        .await
        .unwrap();
    assert_eq!(stalled.next_message().await.unwrap()["type"], "snapshot");
    let mut healthy = admin_client(&server).await;
    healthy
        .subscribe_query("s", query.clone(), None)
        .await
        .unwrap();
    assert_eq!(healthy.next_message().await.unwrap()["type"], "snapshot");

    let pad = "y".repeat(200_000);
    let writes = 150;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < writes {
            let message = healthy.next_message().await.unwrap();
            assert_eq!(message["type"], "changes");
            seen += message["changes"].as_array().unwrap().len();
        }
        seen
    });
    let url = server.url.clone();
    let writer = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for i in 0..writes {
            let response = http
                .put(format!("{url}/v1/docs/feed/f{i}"))
                .bearer_auth(SERVICE_KEY)
                .json(&json!({"pad": pad, "i": i}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    });
    // Once the server gave up on the stalled client, it reads again: what was already in
    // flight, then a 4008 close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
        if metrics
            .text
            .lines()
            .any(|l| l == "hearth_realtime_slow_consumer_closes_total 1")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled reader was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stalled
            .closed_within(Duration::from_secs(20))
            .await
            .unwrap(),
        Some(4008)
    );
    writer.await.unwrap();
    assert_eq!(reader.await.unwrap(), writes);
}

#[tokio::test]
async fn an_expired_token_ends_subscriptions_unless_a_fresh_one_arrives_first() {
    let server = TestServer::start_with(vec![(
        "HEARTH_AUTH__ACCESS_TOKEN_TTL_SECS".into(),
        "3".into(),
    )])
    .await;
    put_rules(&server, OWNER_RULES).await;
    put(&server, "notes/n1", json!({"owner": "u1"})).await;
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    client.auth(&server.token_for("u1").await).await.unwrap();
    client.subscribe_doc("s", "notes/n1", None).await.unwrap();
    assert_eq!(client.next_message().await.unwrap()["type"], "snapshot");
    // Re-auth after 2 s with a fresh token: the first expiry passes unnoticed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    client.auth(&server.token_for("u1").await).await.unwrap();
    expect_nothing(&mut client, Duration::from_millis(1_800)).await;
    // No further re-auth: the subscription ends with `unauthenticated`.
    let ended = client.next_message().await.unwrap();
    assert_eq!(ended["type"], "error", "{ended}");
    assert_eq!(ended["id"], "s");
    assert_eq!(ended["code"], "unauthenticated");
    client.subscribe_doc("s", "notes/n1", None).await.unwrap();
    assert_eq!(
        client.next_message().await.unwrap()["code"],
        "unauthenticated"
    );
}

#[tokio::test]
async fn a_socket_that_never_authenticates_is_closed() {
    let server = TestServer::start_with(vec![(
        "HEARTH_REALTIME__AUTH_TIMEOUT_SECS".into(),
        "1".into(),
    )])
    .await;
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    assert_eq!(
        client.closed_within(Duration::from_secs(5)).await.unwrap(),
        Some(1008)
    );
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    assert!(
        metrics.text.contains("hearth_realtime_connections 0"),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains("hearth_realtime_fanout_duration_seconds_count"));
    let _ = Incoming::Closed(None);
}

#[tokio::test]
async fn only_allowed_origins_may_open_a_socket() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        "[realtime]\nallowed_origins = [\"https://app.example\"]\n",
    )
    .unwrap();
    let server =
        TestServer::start_with(vec![("HEARTH_CONFIG".into(), config.display().to_string())]).await;
    assert!(
        RealtimeClient::connect_with(&server.url, Some("https://evil.example"))
            .await
            .is_err()
    );
    let mut allowed = RealtimeClient::connect_with(&server.url, Some("https://app.example"))
        .await
        .unwrap();
    allowed.auth(SERVICE_KEY).await.unwrap();
    // Clients that are not browsers send no Origin.
    let mut native = RealtimeClient::connect(&server.url).await.unwrap();
    native.auth(SERVICE_KEY).await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let mut server = TestServer::start().await;
    let mut client = admin_client(&server).await;
    client.subscribe_doc("s", "a/b", None).await.unwrap();
    assert_eq!(client.next_message().await.unwrap()["type"], "snapshot");
    let status = server.terminate().await;
    assert_eq!(status, Some(0));
    assert_eq!(
        client.closed_within(Duration::from_secs(10)).await.unwrap(),
        Some(1001)
    );
}

#[tokio::test]
async fn a_client_that_answers_no_pings_is_closed_after_two_intervals() {
    let server = TestServer::start_with(vec![(
        "HEARTH_REALTIME__PING_INTERVAL_SECS".into(),
        "1".into(),
    )])
    .await;
    // A client that reads answers pings (tungstenite does it while reading) and stays.
    let mut lively = admin_client(&server).await;
    expect_nothing(&mut lively, Duration::from_millis(3_500)).await;
    lively.send(json!({"type": "ping"})).await.unwrap();
    assert_eq!(
        lively.next_message().await.unwrap(),
        json!({"type": "pong"})
    );
    // One that neither reads nor sends is closed (1001) after two silent intervals.
    let mut silent = admin_client(&server).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        silent.closed_within(Duration::from_secs(5)).await.unwrap(),
        Some(1001)
    );
}

#[tokio::test]
async fn a_signed_out_client_listens_to_what_the_rules_make_public() {
    let server = TestServer::start().await;
    put_rules(
        &server,
        "rules_version = '2';\nservice cloud.firestore { match /databases/{db}/documents {\n  match /news/{id} { allow read: if true; }\n  match /private/{id} { allow read: if request.auth != null; }\n} }\n",
    )
    .await;
    put(&server, "news/n1", json!({"title": "hello"})).await;
    let mut client = RealtimeClient::connect(&server.url).await.unwrap();
    client
        .send(json!({"type": "auth", "token": null}))
        .await
        .unwrap();
    let ready = client.next_message().await.unwrap();
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["uid"], Json::Null);
    client
        .subscribe_query("news", json!({"from": "news"}), None)
        .await
        .unwrap();
    let snapshot = client.next_message().await.unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    client
        .subscribe_doc("secret", "private/p1", None)
        .await
        .unwrap();
    let refused = client.next_message().await.unwrap();
    assert_eq!(refused["code"], "permission_denied", "{refused}");
    put(&server, "news/n2", json!({"title": "again"})).await;
    let change = client.next_message().await.unwrap();
    assert_eq!(
        paths_of(&change),
        [("added".to_string(), "news/n2".to_string())]
    );
}

async fn feeds_metric(server: &TestServer) -> i64 {
    let metrics = server.send(server.anonymous(Method::GET, "/metrics")).await;
    metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix("hearth_realtime_feeds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn subscribers_of_one_query_share_a_feed_and_each_gets_every_change_once() {
    let server = TestServer::start().await;
    for i in 0..4 {
        put(&server, &format!("board/b{i}"), json!({"n": i})).await;
    }
    let query = json!({"from": "board", "orderBy": [["n", "desc"]], "limit": 3});
    let mut first = admin_client(&server).await;
    let mut second = admin_client(&server).await;
    first
        .subscribe_query("a", query.clone(), None)
        .await
        .unwrap();
    first
        .subscribe_query("b", query.clone(), None)
        .await
        .unwrap();
    second
        .subscribe_query("c", query.clone(), None)
        .await
        .unwrap();
    let mut views: Vec<ClientView> = vec![ClientView::default(); 3];
    for _ in 0..2 {
        let message = first.next_message().await.unwrap();
        assert_eq!(message["type"], "snapshot", "{message}");
        let k = if message["id"] == "a" { 0 } else { 1 };
        views[k].apply(&message).unwrap();
    }
    views[2]
        .apply(&second.next_message().await.unwrap())
        .unwrap();
    assert_eq!(
        feeds_metric(&server).await,
        1,
        "three subscriptions, one feed"
    );

    // A subscriber joining right after a write sees it in its snapshot (its own writes first).
    let written = put(&server, "board/b9", json!({"n": 9})).await;
    let mut late = admin_client(&server).await;
    late.subscribe_query("d", query.clone(), None)
        .await
        .unwrap();
    let snapshot = late.next_message().await.unwrap();
    assert_eq!(snapshot["type"], "snapshot");
    assert!(snapshot["version"].as_u64().unwrap() >= written);
    assert_eq!(snapshot["docs"][0]["path"], "board/b9", "{snapshot}");
    let mut late_view = ClientView::default();
    late_view.apply(&snapshot).unwrap();

    // Every change reaches every subscription, and all views stay equal to the query.
    put(&server, "board/b0", json!({"n": 20})).await;
    delete(&server, "board/b9").await;
    let expected = query_paths(&server, &query).await;
    for (client, ids) in [(&mut first, vec!["a", "b"]), (&mut second, vec!["c"])] {
        for id in ids {
            let k = ["a", "b", "c"].iter().position(|x| *x == id).unwrap();
            while views[k].paths() != expected {
                let message = client.next_message().await.unwrap();
                let j = ["a", "b", "c"]
                    .iter()
                    .position(|x| message["id"] == *x)
                    .unwrap();
                views[j].apply(&message).unwrap();
            }
        }
    }
    while late_view.paths() != expected {
        late_view
            .apply(&late.next_message().await.unwrap())
            .unwrap();
    }

    // Leaving one subscription does not disturb the others; the last one out ends the feed.
    first
        .send(json!({"type": "unsubscribe", "id": "a"}))
        .await
        .unwrap();
    put(&server, "board/b1", json!({"n": 30})).await;
    let message = first.next_message().await.unwrap();
    assert_eq!(message["id"], "b", "{message}");
    assert_eq!(second.next_message().await.unwrap()["id"], "c");
    assert_eq!(late.next_message().await.unwrap()["id"], "d");
    expect_nothing(&mut first, Duration::from_millis(200)).await;
    first.close().await;
    second.close().await;
    late.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while feeds_metric(&server).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed outlived its subscribers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn resuming_into_a_live_feed_gets_only_the_missed_changes() {
    let server = TestServer::start().await;
    for i in 0..3 {
        put(&server, &format!("queue/q{i}"), json!({"n": i})).await;
    }
    let query = json!({"from": "queue", "orderBy": [["n", "asc"]]});
    // Someone keeps the feed alive the whole time.
    let mut watcher = admin_client(&server).await;
    watcher
        .subscribe_query("w", query.clone(), None)
        .await
        .unwrap();
    watcher.next_message().await.unwrap();

    let mut client = admin_client(&server).await;
    client
        .subscribe_query("s", query.clone(), None)
        .await
        .unwrap();
    let mut view = ClientView::default();
    view.apply(&client.next_message().await.unwrap()).unwrap();
    client.close().await;
    put(&server, "queue/q1", json!({"n": 1, "done": true})).await;
    put(&server, "queue/q5", json!({"n": 5})).await;

    let (_client, resumed) = resume(&server, &query, view.version).await;
    assert_eq!(resumed["type"], "changes", "{resumed}");
    let mut kinds = paths_of(&resumed);
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("added".to_string(), "queue/q5".to_string()),
            ("modified".to_string(), "queue/q1".to_string()),
        ]
    );
    view.apply(&resumed).unwrap();
    assert_eq!(view.paths(), query_paths(&server, &query).await);
    assert_eq!(feeds_metric(&server).await, 1);
}
