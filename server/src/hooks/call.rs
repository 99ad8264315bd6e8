//! Outgoing calls to hook functions: one signed POST with hard timeouts, a capped response, a
//! per-hook concurrency cap and circuit breaker, and the metrics of every call. A slow or dead
//! function costs at most its timeout and never more than its share of connections.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};

use super::definition::{url_host, HookDefinition, Mode};
use super::event::{sign, Event, CONTENT_TYPE};
use crate::config::HookSettings;
use crate::metrics::Histogram;

/// Why a call did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The breaker is open after repeated failures: the call was not made.
    BreakerOpen,
    /// Every connection this hook may use was busy for the whole timeout.
    Busy,
    /// The URL's host is not in `hooks.allowed_hosts` (any more).
    HostNotAllowed(String),
    Timeout,
    Network(String),
    /// A non-2xx answer (redirects are not followed, so 3xx lands here too).
    Status(u16),
    /// The answer was longer than `hooks.max_response_bytes`.
    TooLarge,
    /// A 2xx answer the caller could not use.
    InvalidAnswer(String),
}

impl CallError {
    /// The `outcome` label in `/metrics`.
    fn label(&self) -> &'static str {
        match self {
            CallError::BreakerOpen => "breaker_open",
            CallError::Busy => "busy",
            CallError::HostNotAllowed(_) => "host_not_allowed",
            CallError::Timeout => "timeout",
            CallError::Network(_) => "network",
            CallError::Status(_) => "status",
            CallError::TooLarge => "too_large",
            CallError::InvalidAnswer(_) => "invalid_answer",
        }
    }

    /// True when the call never reached the function, so it says nothing about its health.
    fn not_attempted(&self) -> bool {
        matches!(
            self,
            CallError::BreakerOpen | CallError::Busy | CallError::HostNotAllowed(_)
        )
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::BreakerOpen => {
                f.write_str("the circuit breaker is open after repeated failures")
            }
            CallError::Busy => f.write_str("every connection of this hook stayed busy"),
            CallError::HostNotAllowed(host) => {
                write!(f, "host '{host}' is not in hooks.allowed_hosts")
            }
            CallError::Timeout => f.write_str("the function did not answer in time"),
            CallError::Network(e) => write!(f, "network error: {e}"),
            CallError::Status(status) => write!(f, "the function answered HTTP {status}"),
            CallError::TooLarge => f.write_str("the function's answer is too large"),
            CallError::InvalidAnswer(e) => write!(f, "invalid answer: {e}"),
        }
    }
}

/// Closed → (K consecutive failures) → open for the cool-down → half-open: one trial call;
/// its success closes the breaker, its failure opens it again.
#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// When the half-open trial started; a trial whose caller went away expires after the
    /// cool-down so the breaker cannot stay stuck.
    trial_started: Option<Instant>,
}

impl Breaker {
    fn admit(&mut self, now: Instant, cooldown: Duration) -> bool {
        match self.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) => match self.trial_started {
                Some(started) if now.duration_since(started) < cooldown => false,
                _ => {
                    self.trial_started = Some(now);
                    true
                }
            },
        }
    }

    fn record(&mut self, ok: bool, now: Instant, threshold: u32, cooldown: Duration) {
        self.trial_started = None;
        if ok {
            self.consecutive_failures = 0;
            self.open_until = None;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            if self.consecutive_failures >= threshold {
                self.open_until = Some(now + cooldown);
            }
        }
    }

    /// 0 closed, 1 open, 2 half-open (the `/metrics` gauge).
    fn state(&self, now: Instant) -> u8 {
        match self.open_until {
            None => 0,
            Some(until) if now < until => 1,
            Some(_) => 2,
        }
    }

    fn open_until(&self, now: Instant) -> Option<Instant> {
        self.open_until.filter(|until| now < *until)
    }
}

/// What the server keeps per hook name across edits of its definition: the connection cap,
/// the breaker, the metrics and the delivery worker's wake-up.
pub struct HookRuntime {
    semaphore: Semaphore,
    breaker: Mutex<Breaker>,
    outcomes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    latency: Histogram,
    /// Outbox entries of this hook not yet delivered or given up.
    pub outbox_depth: AtomicI64,
    /// Unix ms of the oldest pending outbox entry (0: none), refreshed by the delivery worker.
    pub oldest_pending_ms: AtomicI64,
    pub deliveries: AtomicU64,
    /// Wakes the delivery worker when a commit adds outbox entries.
    pub wake: Notify,
}

impl HookRuntime {
    pub fn new(max_concurrency: usize) -> HookRuntime {
        HookRuntime {
            semaphore: Semaphore::new(max_concurrency),
            breaker: Mutex::new(Breaker::default()),
            outcomes: Mutex::new(BTreeMap::new()),
            latency: Histogram::latency(),
            outbox_depth: AtomicI64::new(0),
            oldest_pending_ms: AtomicI64::new(0),
            deliveries: AtomicU64::new(0),
            wake: Notify::new(),
        }
    }

    fn count(&self, mode: Mode, outcome: &'static str) {
        let mode = match mode {
            Mode::Before => "before",
            Mode::After => "after",
        };
        if let Ok(mut outcomes) = self.outcomes.lock() {
            *outcomes.entry((mode, outcome)).or_insert(0) += 1;
        }
    }

    /// When an open breaker lets the next call through, if it is open now.
    pub fn breaker_open_until(&self) -> Option<Instant> {
        self.breaker
            .lock()
            .ok()
            .and_then(|b| b.open_until(Instant::now()))
    }

    /// Appends this hook's lines to the `/metrics` sections (one `out` per metric family).
    pub fn render(&self, name: &str, out: &mut MetricsOut) {
        use std::fmt::Write as _;
        if let Ok(outcomes) = self.outcomes.lock() {
            for ((mode, outcome), count) in outcomes.iter() {
                let _ = writeln!(
                    out.calls,
                    "hearth_hook_calls_total{{hook=\"{name}\",mode=\"{mode}\",outcome=\"{outcome}\"}} {count}"
                );
            }
        }
        self.latency.render_into(
            &mut out.latency,
            "hearth_hook_call_duration_seconds",
            &format!("hook=\"{name}\""),
        );
        let state = self
            .breaker
            .lock()
            .map(|b| b.state(Instant::now()))
            .unwrap_or(0);
        let _ = writeln!(
            out.breaker,
            "hearth_hook_breaker_state{{hook=\"{name}\"}} {state}"
        );
    }
}

/// The text of each hook metric family, gathered across hooks.
#[derive(Default)]
pub struct MetricsOut {
    pub calls: String,
    pub latency: String,
    pub breaker: String,
    pub depth: String,
    pub oldest: String,
}

/// Sends hook calls.
pub struct HookClient {
    client: reqwest::Client,
    settings: HookSettings,
}

impl HookClient {
    pub fn new(settings: HookSettings) -> Result<HookClient, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the hook HTTP client: {e}"))?;
        Ok(HookClient { client, settings })
    }

    pub fn settings(&self) -> &HookSettings {
        &self.settings
    }

    /// POSTs `event` to the hook and hands a 2xx body to `interpret`. Records the outcome in
    /// the breaker and the metrics. `interpret` deciding "rejected" is a healthy answer.
    pub async fn post<T>(
        &self,
        hook: &HookDefinition,
        runtime: &HookRuntime,
        event: &Event,
        interpret: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = self.attempt(hook, runtime, event, started, interpret).await;
        let now = Instant::now();
        match &result {
            Ok(_) => runtime.count(hook.mode, "ok"),
            Err(err) => runtime.count(hook.mode, err.label()),
        }
        if !matches!(&result, Err(err) if err.not_attempted()) {
            runtime
                .latency
                .observe(now.duration_since(started).as_secs_f64());
            if let Ok(mut breaker) = runtime.breaker.lock() {
                breaker.record(
                    result.is_ok(),
                    now,
                    self.settings.breaker_failures,
                    Duration::from_millis(self.settings.breaker_cooldown_ms),
                );
            }
        }
        result
    }

    async fn attempt<T>(
        &self,
        hook: &HookDefinition,
        runtime: &HookRuntime,
        event: &Event,
        started: Instant,
        interpret: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, CallError> {
        let host = url_host(&hook.url).map_err(CallError::Network)?;
        if !self.settings.allowed_hosts.is_empty()
            && !self
                .settings
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&host))
        {
            return Err(CallError::HostNotAllowed(host));
        }
        let timeout = Duration::from_millis(hook.timeout_ms);
        let admitted = runtime
            .breaker
            .lock()
            .map(|mut b| {
                b.admit(
                    started,
                    Duration::from_millis(self.settings.breaker_cooldown_ms),
                )
            })
            .unwrap_or(true);
        if !admitted {
            return Err(CallError::BreakerOpen);
        }
        // The permit wait counts against the same timeout as the call itself.
        let permit = tokio::time::timeout(timeout, runtime.semaphore.acquire())
            .await
            .map_err(|_| CallError::Busy)?
            .map_err(|_| CallError::Busy)?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let body = event.body(hook.mode);
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = sign(&hook.secret, &event.id, timestamp, &body);
        let request = self
            .client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        let max_bytes = self.settings.max_response_bytes;
        let exchange = async move {
            let mut response = request.send().await.map_err(network_error)?;
            let status = response.status();
            if !status.is_success() {
                return Err(CallError::Status(status.as_u16()));
            }
            let mut answer = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(network_error)? {
                if answer.len() + chunk.len() > max_bytes {
                    return Err(CallError::TooLarge);
                }
                answer.extend_from_slice(&chunk);
            }
            Ok(answer)
        };
        let answer = tokio::time::timeout(remaining, exchange)
            .await
            .map_err(|_| CallError::Timeout)??;
        drop(permit);
        interpret(&answer).map_err(CallError::InvalidAnswer)
    }
}

fn network_error(err: reqwest::Error) -> CallError {
    if err.is_timeout() {
        return CallError::Timeout;
    }
    // The innermost cause says what actually happened (refused, reset, DNS).
    let mut cause: &dyn std::error::Error = &err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    CallError::Network(cause.to_string())
}

/// Delay before retry number `attempt` (1-based): `base` doubling up to `max`, plus up to a
/// quarter more of jitter so retries of many entries spread out.
pub fn backoff(attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    use rand::Rng as _;
    let exponent = attempt.saturating_sub(1).min(40);
    let delay = base_ms.saturating_mul(1u64 << exponent).min(max_ms);
    let jitter = rand::rng().random_range(0..=delay / 4);
    delay + jitter
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_k_failures_and_lets_one_trial_through() {
        let cooldown = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut breaker = Breaker::default();
        for _ in 0..3 {
            assert!(breaker.admit(t0, cooldown));
            breaker.record(false, t0, 3, cooldown);
        }
        assert!(!breaker.admit(t0 + Duration::from_secs(1), cooldown));
        let later = t0 + Duration::from_secs(11);
        assert!(breaker.admit(later, cooldown), "the half-open trial");
        assert!(!breaker.admit(later, cooldown), "only one trial at a time");
        breaker.record(true, later, 3, cooldown);
        assert!(breaker.admit(later, cooldown));
        assert_eq!(breaker.state(later), 0);
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        assert!((1_000..=1_250).contains(&backoff(1, 1_000, 3_600_000)));
        assert!((2_000..=2_500).contains(&backoff(2, 1_000, 3_600_000)));
        assert!((3_600_000..=4_500_000).contains(&backoff(30, 1_000, 3_600_000)));
    }
}
