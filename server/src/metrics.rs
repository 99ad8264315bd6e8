//! Process metrics in Prometheus text format: HTTP requests, latencies, commits, store size.
//!
//! A leaf module: any layer may record into it; it depends on nothing of the server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of latency buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of commit group sizes (write sets per commit).
const GROUP_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0];

/// A fixed-bucket histogram updated with atomics.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records `value` (seconds for latencies, a count for sizes); sums keep 6 decimals.
    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// A histogram of latencies in seconds.
    pub fn latency() -> Histogram {
        Histogram::new(&LATENCY_BUCKETS)
    }

    /// Appends the histogram's lines (without `# HELP`/`# TYPE`) to `out`.
    pub fn render_into(&self, out: &mut String, name: &str, labels: &str) {
        self.render(out, name, labels);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    latency: Option<Histogram>,
}

/// Everything `/metrics` reports.
pub struct Metrics {
    /// Route pattern → method → counts; nested so a request finds its entry without allocating.
    routes: Mutex<BTreeMap<String, BTreeMap<String, RouteStats>>>,
    commit_group_size: Histogram,
    commit_latency: Histogram,
    commit_conflicts: AtomicU64,
    checkpoint_latency: Histogram,
    /// Realtime connections, subscriptions and fan-out (`realtime`).
    pub realtime: RealtimeMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: Mutex::new(BTreeMap::new()),
            commit_group_size: Histogram::new(&GROUP_BUCKETS),
            commit_latency: Histogram::new(&LATENCY_BUCKETS),
            commit_conflicts: AtomicU64::new(0),
            checkpoint_latency: Histogram::new(&LATENCY_BUCKETS),
            realtime: RealtimeMetrics::default(),
        }
    }
}

impl Metrics {
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        if !routes
            .get(route)
            .is_some_and(|by_method| by_method.contains_key(method))
        {
            routes
                .entry(route.to_string())
                .or_default()
                .insert(method.to_string(), RouteStats::default());
        }
        let Some(stats) = routes
            .get_mut(route)
            .and_then(|by_method| by_method.get_mut(method))
        else {
            return;
        };
        *stats.by_status.entry(status).or_default() += 1;
        stats
            .latency
            .get_or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_commit(&self, write_sets: usize, elapsed: Duration) {
        self.commit_group_size.observe(write_sets as f64);
        self.commit_latency.observe(elapsed.as_secs_f64());
    }

    pub fn record_checkpoint(&self, elapsed: Duration) {
        self.checkpoint_latency.observe(elapsed.as_secs_f64());
    }

    pub fn record_commit_conflict(&self) {
        self.commit_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition, with the store size sampled by the caller.
    pub fn render(&self, store_bytes: u64) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP hearth_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE hearth_http_requests_total counter\n");
        let routes = self.routes.lock().map(|r| {
            r.iter()
                .flat_map(|(route, by_method)| {
                    by_method.iter().map(move |(method, stats)| {
                        (route.clone(), method.clone(), stats.by_status.clone())
                    })
                })
                .collect::<Vec<_>>()
        });
        for (route, method, by_status) in routes.unwrap_or_default() {
            for (status, count) in by_status {
                let _ = writeln!(
                    out,
                    "hearth_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str(
            "# HELP hearth_http_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE hearth_http_request_duration_seconds histogram\n");
        if let Ok(routes) = self.routes.lock() {
            let all = routes.iter().flat_map(|(route, by_method)| {
                by_method
                    .iter()
                    .map(move |(method, stats)| (route, method, stats))
            });
            for (route, method, stats) in all {
                if let Some(latency) = &stats.latency {
                    let labels = format!("route=\"{route}\",method=\"{method}\"");
                    latency.render(&mut out, "hearth_http_request_duration_seconds", &labels);
                }
            }
        }
        out.push_str(
            "# HELP hearth_commit_group_size Write sets per durable commit (group commit).\n",
        );
        out.push_str("# TYPE hearth_commit_group_size histogram\n");
        self.commit_group_size
            .render(&mut out, "hearth_commit_group_size", "");
        out.push_str(
            "# HELP hearth_commit_duration_seconds Time to apply one group commit and sync its log record.\n",
        );
        out.push_str("# TYPE hearth_commit_duration_seconds histogram\n");
        self.commit_latency
            .render(&mut out, "hearth_commit_duration_seconds", "");
        out.push_str("# HELP hearth_commit_conflicts_total Commits retried because a concurrent commit changed their input.\n");
        out.push_str("# TYPE hearth_commit_conflicts_total counter\n");
        let _ = writeln!(
            out,
            "hearth_commit_conflicts_total {}",
            self.commit_conflicts.load(Ordering::Relaxed)
        );
        out.push_str("# HELP hearth_checkpoint_duration_seconds Time to sync the store file and empty the write-ahead log.\n");
        out.push_str("# TYPE hearth_checkpoint_duration_seconds histogram\n");
        self.checkpoint_latency
            .render(&mut out, "hearth_checkpoint_duration_seconds", "");
        out.push_str(
            "# HELP hearth_store_size_bytes Size of the store file and write-ahead log on disk.\n",
        );
        out.push_str("# TYPE hearth_store_size_bytes gauge\n");
        let _ = writeln!(out, "hearth_store_size_bytes {store_bytes}");
        self.realtime.render(&mut out);
        out
    }
}

/// Realtime over WebSocket: gauges of open connections and subscriptions, messages sent, the
/// time from a commit becoming durable to its changes being queued for every subscriber, and
/// connections closed for falling behind (4008).
pub struct RealtimeMetrics {
    pub connections: AtomicI64,
    pub subscriptions: AtomicI64,
    /// Distinct queries followed for query subscriptions (shared by equal queries).
    pub feeds: AtomicI64,
    pub messages_out: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub fanout_latency: Histogram,
}

impl Default for RealtimeMetrics {
    fn default() -> Self {
        RealtimeMetrics {
            connections: AtomicI64::new(0),
            subscriptions: AtomicI64::new(0),
            feeds: AtomicI64::new(0),
            messages_out: AtomicU64::new(0),
            slow_consumer_closes: AtomicU64::new(0),
            fanout_latency: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

impl RealtimeMetrics {
    fn render(&self, out: &mut String) {
        let gauges = [
            (
                "hearth_realtime_connections",
                "Open realtime WebSocket connections.",
                "gauge",
                self.connections.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hearth_realtime_subscriptions",
                "Active realtime subscriptions.",
                "gauge",
                self.subscriptions.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hearth_realtime_feeds",
                "Distinct queries followed for query subscriptions (equal queries share one).",
                "gauge",
                self.feeds.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hearth_realtime_messages_out_total",
                "Realtime messages sent to clients.",
                "counter",
                self.messages_out.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hearth_realtime_slow_consumer_closes_total",
                "Connections closed with 4008 because their send queue was full.",
                "counter",
                self.slow_consumer_closes
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
        ];
        for (name, help, kind, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out.push_str("# HELP hearth_realtime_fanout_duration_seconds From a durable commit to its changes queued for every matching subscriber.\n");
        out.push_str("# TYPE hearth_realtime_fanout_duration_seconds histogram\n");
        self.fanout_latency
            .render(out, "hearth_realtime_fanout_duration_seconds", "");
    }
}
