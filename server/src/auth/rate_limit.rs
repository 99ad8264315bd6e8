//! In-memory token-bucket rate limits per action, per client IP and per account.
//!
//! The per-account bucket is keyed by account *and* client IP: someone else's failed guesses
//! from other addresses can never lock the owner out, while one address cannot hammer one
//! account faster than the per-account rate. Distributed guessing is bounded by the per-IP rate
//! times the number of addresses, and each guess costs an argon2 hash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::AuthError;

/// The rate-limited actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Signup,
    Login,
    Anonymous,
    Refresh,
    PasswordReset,
    VerifyEmail,
}

/// Requests per minute; bursts up to the same number.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub enabled: bool,
    pub per_ip_per_minute: u32,
    pub per_account_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Ip(IpAddr),
    Account(String, IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The client's address for rate limiting. A request from a trusted proxy is attributed to the
/// rightmost `X-Forwarded-For` address that is not itself a trusted proxy (the left part of the
/// header is whatever the client chose to send); from anyone else, the peer address counts.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut last = peer;
    for entry in header.rsplit(',') {
        let Ok(address) = entry.trim().parse::<IpAddr>() else {
            // Garbage from here on left is client-controlled: stop at the last good hop.
            return last;
        };
        if !trusted.contains(&address) {
            return address;
        }
        last = address;
    }
    last
}

/// Parses `auth.trusted_proxies` (comma-separated; validated with the settings).
pub fn parse_trusted(list: &str) -> Vec<IpAddr> {
    list.split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// Buckets are pruned once the map grows past this many entries (full buckets go first).
const PRUNE_AT: usize = 100_000;

pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Action, Subject), Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from the IP's bucket for `action`.
    pub fn check_ip(&self, action: Action, ip: IpAddr) -> Result<(), AuthError> {
        self.take(action, Subject::Ip(ip), self.limits.per_ip_per_minute)
    }

    /// Takes one token from the bucket of `account` (e.g. a normalised email) as used from `ip`.
    pub fn check_account(
        &self,
        action: Action,
        account: &str,
        ip: IpAddr,
    ) -> Result<(), AuthError> {
        self.take(
            action,
            Subject::Account(account.to_string(), ip),
            self.limits.per_account_per_minute,
        )
    }

    fn take(&self, action: Action, subject: Subject, per_minute: u32) -> Result<(), AuthError> {
        if !self.limits.enabled || per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| AuthError::internal("rate limiter lock poisoned"))?;
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|_, bucket| {
                bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second
                    < capacity
            });
        }
        let bucket = buckets.entry((action, subject)).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / per_second);
            Err(AuthError::RateLimited {
                retry_after_secs: wait.as_secs() + 1,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn limiter(per_ip: u32, per_account: u32) -> RateLimiter {
        RateLimiter::new(RateLimits {
            enabled: true,
            per_ip_per_minute: per_ip,
            per_account_per_minute: per_account,
        })
    }

    #[test]
    fn a_burst_up_to_the_limit_passes_then_the_next_request_must_wait() {
        let limiter = limiter(3, 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            limiter.check_ip(Action::Login, ip).unwrap();
        }
        match limiter.check_ip(Action::Login, ip) {
            Err(AuthError::RateLimited { retry_after_secs }) => {
                assert!((1..=21).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Other actions and other addresses have their own buckets.
        limiter.check_ip(Action::Signup, ip).unwrap();
        limiter
            .check_ip(Action::Login, "10.0.0.2".parse().unwrap())
            .unwrap();
    }

    #[test]
    fn guesses_from_one_address_do_not_lock_the_account_for_another() {
        let limiter = limiter(100, 2);
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let owner: IpAddr = "10.0.0.9".parse().unwrap();
        limiter
            .check_account(Action::Login, "a@x.com", attacker)
            .unwrap();
        limiter
            .check_account(Action::Login, "a@x.com", attacker)
            .unwrap();
        assert!(limiter
            .check_account(Action::Login, "a@x.com", attacker)
            .is_err());
        limiter
            .check_account(Action::Login, "a@x.com", owner)
            .unwrap();
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let inner: IpAddr = "10.0.0.2".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let trusted = [proxy, inner];
        // Not trusted: the header is ignored.
        assert_eq!(client_ip(client, Some("1.2.3.4"), &trusted), client);
        // Trusted: the rightmost untrusted hop, whatever the client prepended.
        assert_eq!(
            client_ip(proxy, Some("1.2.3.4, 203.0.113.7, 10.0.0.2"), &trusted),
            client
        );
        assert_eq!(client_ip(proxy, Some("203.0.113.7"), &trusted), client);
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
        assert_eq!(client_ip(proxy, Some("junk, 10.0.0.2"), &trusted), inner);
        assert_eq!(parse_trusted(" 10.0.0.1, ,10.0.0.2"), trusted.to_vec());
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let limiter = RateLimiter::new(RateLimits {
            enabled: false,
            per_ip_per_minute: 1,
            per_account_per_minute: 1,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            limiter.check_ip(Action::Login, ip).unwrap();
        }
    }
}
