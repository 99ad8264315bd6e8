//! The realtime load scenario of `hearth-load realtime`: N subscribers on one connection each
//! watch one collection of 20 documents while a writer updates them at a fixed rate. Reports
//! write-acknowledged → frame-received latency, deliveries against the expected count (every
//! subscriber must see every write once), and the server's RSS per idle connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{json, Value as Json};

use crate::realtime::RealtimeClient;

pub struct RealtimeLoad {
    pub url: String,
    pub key: String,
    pub collection: String,
    pub subscribers: usize,
    /// Writes per second.
    pub rate: u64,
    pub seconds: u64,
    /// The server's pid, to read its RSS from /proc.
    pub server_pid: Option<u32>,
    /// Subscriber `i` watches `room == i % groups` and write `seq` goes to room `seq % groups`,
    /// so each write reaches `subscribers / groups` of them (1: everyone watches everything).
    pub groups: usize,
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The `seq` of each document a `changes` frame adds or modifies, read without parsing the
/// whole frame: one forward pass (10,000 readers share the tool's core).
fn added_seqs(text: &str, out: &mut Vec<u64>) {
    const KIND: &str = r#""kind":""#;
    const SEQ: &str = r#""seq":"#;
    let mut rest = text;
    while let Some(at) = rest.find(KIND) {
        rest = &rest[at + KIND.len()..];
        let counted = rest.starts_with("added") || rest.starts_with("modified");
        // This change's document ends where the next change starts.
        let end = rest.find(KIND).unwrap_or(rest.len());
        if counted {
            if let Some(seq_at) = rest[..end].find(SEQ) {
                let digits = &rest[seq_at + SEQ.len()..end];
                let len = digits.bytes().take_while(u8::is_ascii_digit).count();
                if let Ok(seq) = digits[..len].parse() {
                    out.push(seq);
                }
            }
        }
        rest = &rest[end..];
    }
}

pub async fn run(load: RealtimeLoad) -> anyhow::Result<Json> {
    // Writes cycle over 20 documents, so every write changes the view of every subscriber
    // whatever order concurrent writes commit in (a "newest 20" view would rightly skip a
    // create that commits after 20 newer ones).
    let groups = load.groups.max(1);
    let query_of = |i: usize| {
        if groups == 1 {
            json!({"from": load.collection})
        } else {
            json!({"from": load.collection, "where": {"and": [["room", "==", i % groups]]}})
        }
    };
    let rss_before = load.server_pid.and_then(rss_kib);

    // Connect everyone (bounded parallelism), each with one subscription and its snapshot.
    let connect_started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(128));
    let mut connecting = Vec::with_capacity(load.subscribers);
    for i in 0..load.subscribers {
        let permit = semaphore.clone().acquire_owned().await?;
        let url = load.url.clone();
        let key = load.key.clone();
        let query = query_of(i);
        connecting.push(tokio::spawn(async move {
            let _permit = permit;
            let mut client = RealtimeClient::connect(&url).await?;
            client.auth(&key).await?;
            client.subscribe_query("s", query, None).await?;
            let snapshot = client.next_message().await?;
            anyhow::ensure!(snapshot["type"] == "snapshot", "got {snapshot}");
            Ok::<_, anyhow::Error>(client)
        }));
    }
    let mut clients = Vec::with_capacity(load.subscribers);
    for task in connecting {
        clients.push(task.await.context("connect task")??);
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = load.server_pid.and_then(rss_kib);

    let writes = (load.rate * load.seconds) as usize;
    // Writes to each room: the first `writes % groups` rooms get one more.
    let writes_to = |room: usize| writes / groups + usize::from(room < writes % groups);
    let expected: u64 = (0..load.subscribers)
        .map(|i| writes_to(i % groups) as u64)
        .sum();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut readers = Vec::with_capacity(clients.len());
    for (i, mut client) in clients.into_iter().enumerate() {
        let delivered = delivered.clone();
        let mut stopped = stopped.clone();
        let mine = writes_to(i % groups);
        readers.push(tokio::spawn(async move {
            let mut receipts: Vec<(u64, Instant)> = Vec::new();
            let mut seqs = Vec::new();
            loop {
                let text = tokio::select! {
                    text = client.next_text() => text,
                    _ = stopped.changed() => None,
                };
                let Some(text) = text else { break };
                let now = Instant::now();
                seqs.clear();
                added_seqs(&text, &mut seqs);
                delivered.fetch_add(seqs.len() as u64, Ordering::Relaxed);
                receipts.extend(seqs.iter().map(|s| (*s, now)));
                if receipts.len() >= mine {
                    break;
                }
            }
            receipts
        }));
    }

    // Write at a fixed rate from a thread of its own, so the writes' send and acknowledgement
    // times do not wait behind the 10,000 readers on the tool's core; each write's times are
    // kept by its seq.
    let sends: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..writes).map(|_| OnceLock::new()).collect());
    let acks: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..writes).map(|_| OnceLock::new()).collect());
    let errors = Arc::new(AtomicU64::new(0));
    let write_started = Instant::now();
    let writer = {
        let (sends, acks, errors) = (sends.clone(), acks.clone(), errors.clone());
        let (url, collection, key, rate) = (
            load.url.clone(),
            load.collection.clone(),
            load.key.clone(),
            load.rate,
        );
        std::thread::spawn(move || -> anyhow::Result<f64> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(write_at_rate(WritePlan {
                url,
                collection,
                key,
                rate,
                writes,
                groups,
                sends,
                acks,
                errors,
            }))
        })
    };
    let write_seconds = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
    // Let deliveries drain (at most 30 s), then stop the readers.
    let drain_started = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected
        && drain_started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let mut histogram = Histogram::<u64>::new(3)?;
    // From the write request being sent: a frame often arrives before the write's HTTP answer.
    let mut from_send = Histogram::<u64>::new(3)?;
    let mut unique = 0u64;
    let mut duplicates = 0u64;
    let mut last_receipt: Option<Instant> = None;
    stop.send_replace(true);
    for reader in readers {
        let receipts = reader.await?;
        let mut seen = vec![false; writes];
        for (seq, at) in receipts {
            let Some(slot) = seen.get_mut(seq as usize) else {
                continue;
            };
            if *slot {
                duplicates += 1;
                continue;
            }
            *slot = true;
            unique += 1;
            last_receipt = Some(last_receipt.map_or(at, |last| last.max(at)));
            if let Some(sent) = sends[seq as usize].get() {
                from_send.record(at.saturating_duration_since(*sent).as_micros() as u64)?;
            }
            if let Some(ack) = acks[seq as usize].get() {
                histogram.record(at.saturating_duration_since(*ack).as_micros() as u64)?;
            }
        }
    }
    let per_connection = match (rss_before, rss_idle) {
        (Some(before), Some(idle)) if load.subscribers > 0 => {
            json!(
                ((idle.saturating_sub(before)) as f64 / load.subscribers as f64 * 10.0).round()
                    / 10.0
            )
        }
        _ => Json::Null,
    };
    Ok(json!({
        "scenario": "realtime",
        "subscribers": load.subscribers,
        "groups": groups,
        "deliveries_per_write": load.subscribers as f64 / groups as f64,
        "first_send_to_last_delivery_s": last_receipt.map(|last| last.saturating_duration_since(write_started).as_secs_f64()),
        "writes": writes,
        "write_rate_per_s": load.rate,
        "write_seconds": write_seconds,
        "write_errors": errors.load(Ordering::Relaxed),
        "connect_seconds": connect_seconds,
        "expected_deliveries": expected,
        "delivered": unique,
        "duplicates": duplicates,
        "delivered_pct": if expected > 0 { (unique as f64 / expected as f64 * 10_000.0).round() / 100.0 } else { 100.0 },
        "drain_seconds_after_last_ack": drain_seconds,
        "p50_ms": histogram.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": histogram.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": histogram.max() as f64 / 1000.0,
        "from_send_p50_ms": from_send.value_at_quantile(0.50) as f64 / 1000.0,
        "from_send_p99_ms": from_send.value_at_quantile(0.99) as f64 / 1000.0,
        "server_rss_kib_before": rss_before,
        "server_rss_kib_idle": rss_idle,
        "server_rss_kib_per_idle_connection": per_connection,
    }))
}

/// What the writer thread writes, and where it keeps each write's times.
struct WritePlan {
    url: String,
    collection: String,
    key: String,
    rate: u64,
    writes: usize,
    groups: usize,
    sends: Arc<Vec<OnceLock<Instant>>>,
    acks: Arc<Vec<OnceLock<Instant>>>,
    errors: Arc<AtomicU64>,
}

/// Updates the documents at `rate` writes per second; returns how long the writes took.
async fn write_at_rate(plan: WritePlan) -> anyhow::Result<f64> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut writers = Vec::with_capacity(plan.writes);
    for seq in 0..plan.writes {
        ticker.tick().await;
        let http = http.clone();
        let acks = plan.acks.clone();
        let sends = plan.sends.clone();
        let errors = plan.errors.clone();
        // Each room has its own 20 documents, so a document never changes rooms.
        let room = seq % plan.groups;
        let url = format!(
            "{}/v1/docs/{}/r{room}w{}",
            plan.url,
            plan.collection,
            (seq / plan.groups) % 20
        );
        let key = plan.key.clone();
        writers.push(tokio::spawn(async move {
            let _ = sends[seq].set(Instant::now());
            let sent = http
                .put(url)
                .bearer_auth(key)
                .json(&json!({ "seq": seq, "room": room }))
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    let _ = acks[seq].set(Instant::now());
                }
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for writer in writers {
        writer.await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seqs_of_added_and_modified_documents_are_read_and_removed_ones_skipped() {
        let frame = r#"{"type":"changes","id":"s","version":9,"changes":[{"kind":"modified","doc":{"path":"feed/r0w1","data":{"room":0,"seq":17}},"oldIndex":1,"newIndex":1},{"kind":"removed","doc":{"data":{"seq":3}},"oldIndex":0,"newIndex":-1},{"kind":"added","doc":{"data":{"seq":1234,"room":0}},"oldIndex":-1,"newIndex":0}]}"#;
        let mut seqs = Vec::new();
        added_seqs(frame, &mut seqs);
        assert_eq!(seqs, vec![17, 1234]);
    }
}
