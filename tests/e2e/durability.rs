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
    // writer → (cycle, i) of its last acknowledged update of `crash/latest{writer}`.
    let latest: Arc<Mutex<BTreeMap<usize, (usize, i64)>>> = Arc::default();
    for cycle in 0..cycles {
        let url = server.url.clone();
        let mut writers = Vec::new();
        for writer in 0..8 {
            let http = reqwest::Client::new();
            let url = url.clone();
            let acknowledged = acknowledged.clone();
            let latest = latest.clone();
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
                    // An update too: replay must swap the index entries of the old value for
                    // those of the new one, not just add documents.
                    let result = http
                        .patch(format!("{url}/v1/docs/crash/latest{writer}"))
                        .bearer_auth(SERVICE_KEY)
                        .json(&json!({"cycle": cycle, "i": i}))
                        .send()
                        .await;
                    match result {
                        Ok(response) if response.status().is_success() => {
                            latest.lock().unwrap().insert(writer, (cycle, i));
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
        // The index answers what the documents say: every acknowledged create of this cycle is
        // found through the `cycle` index entries.
        let found = server
            .query(json!({"from": "crash", "where": ["cycle", "==", cycle], "select": ["i"], "limit": 10_000}))
            .await;
        assert_eq!(found.status, StatusCode::OK, "{}", found.body);
        assert!(
            found.body.get("nextPageToken").is_none(),
            "one page holds a cycle"
        );
        let found: Vec<&str> = found.body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap().trim_start_matches("crash/"))
            .collect();
        for id in ids
            .iter()
            .filter(|id| id.starts_with(&format!("c{cycle}w")))
        {
            assert!(
                found.contains(&id.as_str()),
                "cycle {cycle}: {id} is missing from the index"
            );
        }
        // An update is either the acknowledged one or the single one in flight at the kill.
        let updated = latest.lock().unwrap().clone();
        for (writer, (at_cycle, i)) in updated {
            let response = server.get_doc(&format!("crash/latest{writer}")).await;
            let stored = (&response.body["data"]["cycle"], &response.body["data"]["i"]);
            let acknowledged = (json!(at_cycle), json!(i));
            let in_flight = if at_cycle == cycle {
                (json!(cycle), json!(i + 1))
            } else {
                (json!(cycle), json!(0))
            };
            assert!(
                (stored.0, stored.1) == (&acknowledged.0, &acknowledged.1)
                    || (stored.0, stored.1) == (&in_flight.0, &in_flight.1),
                "cycle {cycle}: crash/latest{writer} holds {stored:?}, acknowledged {acknowledged:?}"
            );
            let by_index = server
                .query(json!({"from": "crash", "where": [["cycle", "==", stored.0], ["i", "==", stored.1]]}))
                .await;
            let paths: Vec<&str> = by_index.body["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["path"].as_str().unwrap())
                .collect();
            assert!(
                paths.contains(&format!("crash/latest{writer}").as_str()),
                "cycle {cycle}: the index lost crash/latest{writer}"
            );
        }
    }
    let log = std::fs::read_to_string(server.data_dir.with_extension("log")).unwrap_or_default();
    assert!(
        log.contains("not closed cleanly"),
        "SIGKILL should have left the store to recover"
    );
    assert!(
        log.contains("replayed the write-ahead log"),
        "SIGKILL between checkpoints should have left commits to replay"
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
    let wal = std::fs::metadata(server.data_dir.join("hearth.wal")).unwrap();
    assert_eq!(
        wal.len(),
        0,
        "a clean shutdown checkpoints and empties the log"
    );
    server.restart().await;
    let count = server
        .query(json!({"from": "keep", "aggregate": {"count": true}}))
        .await;
    assert_eq!(count.body["aggregates"]["count"], 50);
}
