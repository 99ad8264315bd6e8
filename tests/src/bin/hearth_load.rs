//! The load tool: drives a running Hearth server (or the bare baseline server) over HTTP with a
//! fixed number of concurrent clients and reports throughput and latency percentiles.
//!
//! `scripts/bench` runs it the way `docs/benchmarks.md` reports: server on core 0, this tool on
//! core 1. Every scenario is bounded in time and talks only to the given (loopback) URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scenario {
    /// POST new documents (durable creates).
    Create,
    /// GET documents by ID (seeds `--docs` documents first unless `--no-seed`).
    Get,
    /// `owner == X and n > Y order by n desc limit 20` over `--docs` documents with a composite index.
    Query,
    /// PATCH the `title` of random documents among `--docs`, seeded as for `query` (with its
    /// composite index) unless `--no-seed`: what keeping a covering index's copies costs.
    Update,
    /// GET `/` of the bare baseline server (any URL that answers GET).
    Raw,
    /// POST `/v1/auth/login` as one of `--users` accounts (signed up first unless `--no-seed`);
    /// run the server with `HEARTH_AUTH__RATE_LIMITS=false`.
    Login,
    /// `--subscribers` WebSocket clients watch `--collection` while its 20 documents are
    /// updated at `--rate` per second for `--seconds`: write-acknowledged →
    /// frame-received latency, deliveries vs expected, server RSS per idle connection
    /// (`--server-pid`). Raise the fd limit first (`ulimit -n 25000` for 10,000 subscribers).
    Realtime,
    /// Creates at full speed for `--seconds` with an `after` hook on `--collection` that calls a
    /// receiver inside this tool: trigger delivery throughput, commit → delivery lag, backlog.
    Trigger,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "hearth-load", about = "Load generator for Hearth")]
struct Args {
    #[arg(value_enum)]
    scenario: Scenario,
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Service key (Bearer token).
    #[arg(long, env = "HEARTH_SERVICE_KEY", default_value = "")]
    key: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Documents to seed for get and query.
    #[arg(long, default_value_t = 1_000)]
    docs: usize,
    /// Skip seeding (the data is already there).
    #[arg(long)]
    no_seed: bool,
    /// Collection to use.
    #[arg(long, default_value = "bench")]
    collection: String,
    /// Accounts to sign up and log in as (login).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Load these security rules (PUT /v1/admin/rules) before measuring.
    #[arg(long)]
    rules: Option<std::path::PathBuf>,
    /// Measure as this user (an access token minted by the admin API) instead of with the
    /// service key, so the rules apply; queries then ask for this user's documents.
    #[arg(long)]
    as_user: Option<String>,
    /// Realtime subscribers (one connection each).
    #[arg(long, default_value_t = 1_000)]
    subscribers: usize,
    /// Realtime: writes per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Realtime: subscriber i watches `room == i % groups`; each write goes to one room, so it
    /// reaches subscribers/groups of them.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Realtime: the server's pid, to read its RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Create: register a `before` hook on `--collection` calling a function inside this tool
    /// that allows every write (the hook's added latency).
    #[arg(long)]
    before_hook: bool,
    /// Write one document's GET response body here after seeding (the baseline serves it).
    #[arg(long)]
    sample_body: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !is_loopback(&args.url) {
        anyhow::bail!(
            "refusing to load {}: only loopback addresses are allowed",
            args.url
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

fn is_loopback(url: &str) -> bool {
    let host = url
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Scenario::Realtime = args.scenario {
        let report = hearth_tests::realtime_load::run(hearth_tests::realtime_load::RealtimeLoad {
            url: args.url.clone(),
            key: args.key.clone(),
            collection: args.collection.clone(),
            subscribers: args.subscribers,
            rate: args.rate,
            seconds: args.seconds,
            server_pid: args.server_pid,
            groups: args.groups,
        })
        .await?;
        println!("{report}");
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency * 2)
        .build()?;
    if let Scenario::Trigger = args.scenario {
        return trigger(&client, Arc::new(args)).await;
    }
    // Kept alive for the whole measurement.
    let _function = if args.before_hook {
        Some(register_allow_hook(&client, &args).await?)
    } else {
        None
    };
    let args = Arc::new(args);
    match args.scenario {
        Scenario::Get if !args.no_seed => seed(&client, &args, false).await?,
        Scenario::Query | Scenario::Update if !args.no_seed => seed(&client, &args, true).await?,
        Scenario::Login if !args.no_seed => seed_users(&client, &args).await?,
        _ => {}
    }
    if let Some(path) = &args.sample_body {
        let body = client
            .get(format!("{}/v1/docs/{}/d0", args.url, args.collection))
            .bearer_auth(&args.key)
            .send()
            .await?
            .bytes()
            .await?;
        std::fs::write(path, &body)?;
    }
    let args = Arc::new(switch_to_client(&client, Arc::unwrap_or_clone(args)).await?);
    // Warm up connections and caches for one second before measuring.
    measure(&client, &args, Duration::from_secs(1)).await?;
    let (histogram, errors, elapsed) =
        measure(&client, &args, Duration::from_secs(args.seconds)).await?;
    let count = histogram.len();
    let report = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "concurrency": args.concurrency,
        "seconds": elapsed.as_secs_f64(),
        "requests": count,
        "errors": errors,
        "throughput_per_s": (count as f64 / elapsed.as_secs_f64()).round(),
        "p50_ms": histogram.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": histogram.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": histogram.max() as f64 / 1000.0,
    });
    println!("{report}");
    if errors > 0 {
        anyhow::bail!("{errors} requests failed");
    }
    Ok(())
}

const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn put_hook(
    client: &reqwest::Client,
    args: &Args,
    name: &str,
    hook: Json,
) -> anyhow::Result<()> {
    let response = client
        .put(format!("{}/v1/admin/hooks/{name}", args.url))
        .bearer_auth(&args.key)
        .json(&hook)
        .send()
        .await?;
    if !response.status().is_success() {
        anyhow::bail!("registering hook {name} failed: {}", response.text().await?);
    }
    Ok(())
}

/// A function in this process that allows every write, registered as a `before` hook.
async fn register_allow_hook(
    client: &reqwest::Client,
    args: &Args,
) -> anyhow::Result<hearth_tests::function::FunctionServer> {
    use hearth_tests::function::{FunctionServer, Reply};
    let function = FunctionServer::start(|_| Reply::Json(200, json!({"allow": true}))).await?;
    put_hook(client, args, &format!("bench-before-{}", args.collection), json!({
        "events": ["document.create"], "match": format!("{}/{{id}}", args.collection),
        "mode": "before", "url": function.url("/allow"), "secret": HOOK_SECRET, "timeoutMs": 5000,
    }))
    .await?;
    Ok(function)
}

/// Trigger delivery under sustained writes: throughput while writing and until the backlog
/// drains, and the lag from the commit (the event's `time`) to its arrival.
async fn trigger(client: &reqwest::Client, args: Arc<Args>) -> anyhow::Result<()> {
    use hearth_tests::function::{FunctionServer, Reply};
    let receiver = FunctionServer::start(|_| Reply::Json(204, json!(null))).await?;
    put_hook(client, &args, &format!("bench-after-{}", args.collection), json!({
        "events": ["document.create"], "match": format!("{}/{{id}}", args.collection),
        "mode": "after", "url": receiver.url("/events"), "secret": HOOK_SECRET, "timeoutMs": 5000,
    }))
    .await?;
    let args = Arc::new(Args {
        scenario: Scenario::Create,
        ..(*args).clone()
    });
    let (histogram, errors, elapsed) =
        measure(client, &args, Duration::from_secs(args.seconds)).await?;
    let written = histogram.len() as usize;
    let delivered_while_writing = receiver.call_count();
    let drain_started = Instant::now();
    while receiver.call_count() < written && drain_started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained_after = drain_started.elapsed();
    let calls = receiver.calls();
    let mut lag = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut ids = std::collections::HashSet::new();
    for call in &calls {
        let event = call.json();
        ids.insert(event["id"].as_str().unwrap_or_default().to_string());
        let committed = event["time"].as_str().and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        if let Some(committed) = committed {
            let received = time::OffsetDateTime::from(call.received_at);
            let micros = (received - committed).whole_microseconds().max(0) as u64;
            lag.record(micros).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let total = elapsed + drained_after;
    let report = json!({
        "scenario": "trigger",
        "concurrency": args.concurrency,
        "write_seconds": elapsed.as_secs_f64(),
        "writes": written,
        "write_errors": errors,
        "writes_per_s": (written as f64 / elapsed.as_secs_f64()).round(),
        "delivered_while_writing": delivered_while_writing,
        "backlog_when_writes_stopped": written.saturating_sub(delivered_while_writing),
        "drain_seconds": drained_after.as_secs_f64(),
        "events_delivered": ids.len(),
        "calls": calls.len(),
        "delivery_per_s": (ids.len() as f64 / total.as_secs_f64()).round(),
        "lag_p50_ms": lag.value_at_quantile(0.50) as f64 / 1000.0,
        "lag_p99_ms": lag.value_at_quantile(0.99) as f64 / 1000.0,
        "lag_max_ms": lag.max() as f64 / 1000.0,
    });
    println!("{report}");
    if ids.len() < written {
        anyhow::bail!(
            "{} of {written} events were not delivered",
            written - ids.len()
        );
    }
    Ok(())
}

/// Seeds `--docs` documents in batches of 500; for queries also the composite index.
async fn seed(client: &reqwest::Client, args: &Args, for_query: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rng = rand::rng();
    for chunk_start in (0..args.docs).step_by(500) {
        let writes: Vec<Json> = (chunk_start..(chunk_start + 500).min(args.docs))
            .map(|i| {
                json!({"op": "set", "path": format!("{}/d{i}", args.collection), "data": {
                    "owner": format!("u{}", i % 100),
                    "n": rng.random_range(0..10_000),
                    "title": format!("document number {i}"),
                    "body": "x".repeat(700),
                    "tags": ["a", "b"],
                }})
            })
            .collect();
        let response = client
            .post(format!("{}/v1/batch", args.url))
            .bearer_auth(&args.key)
            .json(&json!({ "writes": writes }))
            .send()
            .await?;
        if !response.status().is_success() {
            anyhow::bail!("seeding failed: {}", response.text().await?);
        }
    }
    if for_query {
        let response = client
            .post(format!("{}/v1/admin/indexes", args.url))
            .bearer_auth(&args.key)
            .json(&json!({"collection": args.collection, "fields": [["owner", "asc"], ["n", "desc"]]}))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            anyhow::bail!("creating the index failed: {}", response.text().await?);
        }
        loop {
            let list: Json = client
                .get(format!("{}/v1/admin/indexes", args.url))
                .bearer_auth(&args.key)
                .send()
                .await?
                .json()
                .await?;
            let ready = list["indexes"]
                .as_array()
                .is_some_and(|ixs| ixs.iter().all(|ix| ix["state"] == "ready"));
            if ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "seeded {} documents in {:.1}s",
        args.docs,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn user_email(i: usize) -> String {
    format!("load{i}@bench.hearth.test")
}

fn user_password(i: usize) -> String {
    format!("load password number {i}")
}

/// Signs up `--users` accounts (an existing one answers 409, which is fine).
async fn seed_users(client: &reqwest::Client, args: &Args) -> anyhow::Result<()> {
    for i in 0..args.users {
        let response = client
            .post(format!("{}/v1/auth/signup", args.url))
            .json(&json!({"email": user_email(i), "password": user_password(i)}))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            anyhow::bail!("signup failed: {status} {}", response.text().await?);
        }
    }
    Ok(())
}

/// Loads `--rules` and, with `--as-user`, replaces the service key by that user's access token.
async fn switch_to_client(client: &reqwest::Client, mut args: Args) -> anyhow::Result<Args> {
    if let Some(path) = &args.rules {
        let response = client
            .put(format!("{}/v1/admin/rules", args.url))
            .bearer_auth(&args.key)
            .body(std::fs::read_to_string(path)?)
            .send()
            .await?;
        if !response.status().is_success() {
            anyhow::bail!("loading the rules failed: {}", response.text().await?);
        }
    }
    if let Some(uid) = &args.as_user {
        let minted: Json = client
            .post(format!("{}/v1/admin/tokens", args.url))
            .bearer_auth(&args.key)
            .json(&json!({ "uid": uid }))
            .send()
            .await?
            .json()
            .await?;
        args.key = minted["accessToken"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("minting a token failed: {minted}"))?
            .to_string();
    }
    Ok(args)
}

/// Runs the scenario with `--concurrency` clients for `duration`.
async fn measure(
    client: &reqwest::Client,
    args: &Arc<Args>,
    duration: Duration,
) -> anyhow::Result<(Histogram<u64>, u64, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let client = client.clone();
        let args = args.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut errors = 0u64;
            // A Send generator: the task may move between runtime threads.
            let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
            while Instant::now() < deadline {
                let request = match args.scenario {
                    Scenario::Create => client
                        .post(format!("{}/v1/docs/{}", args.url, args.collection))
                        .json(&json!({"owner": "load", "n": rng.random_range(0..10_000), "title": "created by hearth-load"})),
                    Scenario::Get => client.get(format!("{}/v1/docs/{}/d{}", args.url, args.collection, rng.random_range(0..args.docs))),
                    Scenario::Update => client
                        .patch(format!("{}/v1/docs/{}/d{}", args.url, args.collection, rng.random_range(0..args.docs)))
                        .json(&json!({"title": format!("updated {}", rng.random_range(0..1_000_000))})),
                    Scenario::Query => client.post(format!("{}/v1/query", args.url)).json(&json!({
                        "from": args.collection,
                        "where": {"and": [["owner", "==", args.as_user.clone().unwrap_or_else(|| format!("u{}", rng.random_range(0..100)))], ["n", ">", rng.random_range(0..9_000)]]},
                        "orderBy": [["n", "desc"]],
                        "limit": 20
                    })),
                    Scenario::Raw => client.get(format!("{}/", args.url)),
                    Scenario::Realtime | Scenario::Trigger => {
                        anyhow::bail!("this scenario has its own runner")
                    }
                    Scenario::Login => {
                        let i = rng.random_range(0..args.users.max(1));
                        client
                            .post(format!("{}/v1/auth/login", args.url))
                            .json(&json!({"email": user_email(i), "password": user_password(i)}))
                    }
                };
                let sent = Instant::now();
                let ok = match request.bearer_auth(&args.key).send().await {
                    Ok(response) => {
                        let success = response.status().is_success();
                        success && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    histogram.record(sent.elapsed().as_micros() as u64).map_err(|e| anyhow::anyhow!("{e}"))?;
                } else {
                    errors += 1;
                }
            }
            Ok::<_, anyhow::Error>((histogram, errors))
        }));
    }
    let mut total = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut errors = 0;
    for task in tasks {
        let (histogram, task_errors) = task.await??;
        total.add(&histogram).map_err(|e| anyhow::anyhow!("{e}"))?;
        errors += task_errors;
    }
    Ok((total, errors, started.elapsed()))
}
