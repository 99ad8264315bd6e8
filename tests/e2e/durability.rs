//! Durability: every acknowledged write survives SIGKILL; SIGTERM drains and exits cleanly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_tests::{TestServer, SERVICE_KEY};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::json;

/// Writers hammer the server; it is killed with SIGKILL at random moments, restarted, and every
/// write that got a 2xx must be there, intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let cycles: usize = std::env::var("HEARTH_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut server = TestServer::start().await;
    // doc id → the last acknowledged value of its counter field.
    let acknowledged: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    for cycle in 0..cycles {
        let url = server.url.clone();
        let mut writers = Vec::new();
        for writer in 0..8 {
            let http = reqwest::Client::new();
            let url = url.clone();
            let acknowledged = acknowledged.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("c{cycle}w{writer}i{i}");
                    let payload =
                        json!({"cycle": cycle, "writer": writer, "i": i, "blob": "x".repeat(200)});
                    let result = http
                        .put(format!("{url}/v1/docs/crash/{id}"))
                        .bearer_auth(SERVICE_KEY)
                        .json(&payload)
                        .send()
                        .await;
                    match result {
                        Ok(response) if response.status().is_success() => {
                            acknowledged.lock().unwrap().insert(id, i);
                        }
                        _ => return,
                    }
                }
            }));
        }
        let pause = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.kill9().await;
        for writer in writers {
            let _ = writer.await;
        }
        server.restart().await;
        let expected = acknowledged.lock().unwrap().clone();
        let ids: Vec<String> = expected.keys().cloned().collect();
        for chunk in ids.chunks(200) {
            for id in chunk {
                let response = server.get_doc(&format!("crash/{id}")).await;
                assert_eq!(
                    response.status,
                    StatusCode::OK,
                    "cycle {cycle}: acknowledged write crash/{id} is lost"
                );
                assert_eq!(
                    response.body["data"]["i"], expected[id],
                    "cycle {cycle}: crash/{id} is not intact"
                );
                assert_eq!(response.body["data"]["blob"].as_str().unwrap().len(), 200);
            }
        }
    }
    let log = std::fs::read_to_string(server.data_dir.with_extension("log")).unwrap_or_default();
    assert!(
        log.contains("not closed cleanly"),
        "SIGKILL should have left the store to recover"
    );
    let total = acknowledged.lock().unwrap().len();
    eprintln!("{cycles} SIGKILL cycles, {total} acknowledged writes verified");
    assert!(
        total > 0,
        "no write was acknowledged: the test proved nothing"
    );
}

#[tokio::test]
async fn sigterm_drains_and_the_data_is_there_after_restart() {
    let mut server = TestServer::start().await;
    for i in 0..50 {
        server.put_doc(&format!("keep/k{i}"), json!({"i": i})).await;
    }
    assert_eq!(
        server.terminate().await,
        Some(0),
        "graceful shutdown must exit 0"
    );
    server.restart().await;
    let count = server
        .query(json!({"from": "keep", "aggregate": {"count": true}}))
        .await;
    assert_eq!(count.body["aggregates"]["count"], 50);
}
