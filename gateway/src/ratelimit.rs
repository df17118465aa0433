//! The optional per-org rate limit: a token bucket per routed org. Only orgs that passed every gate reach it,
//! so the number of buckets is bounded by the route table.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use http::StatusCode;

use crate::denial::{Gate, GateError};

/// The org is over its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("org rate limited")]
pub struct RateLimited;

impl GateError for RateLimited {
    const GATE: Gate = Gate::RateLimit;

    fn reason(&self) -> &'static str {
        "org_rate_limited"
    }

    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by org.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once, per org.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `org`'s bucket at `now`.
    pub fn check(&self, org: &str, now: Instant) -> Result<(), RateLimited> {
        let mut buckets = self.buckets.lock().map_err(|_| RateLimited)?;
        let bucket = buckets.entry(org.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_are_per_org_and_refill() {
        let rl = RateLimiter::new(2.0, 2);
        let t0 = Instant::now();
        assert!(rl.check("org_a", t0).is_ok());
        assert!(rl.check("org_a", t0).is_ok());
        assert_eq!(rl.check("org_a", t0), Err(RateLimited));
        assert!(rl.check("org_b", t0).is_ok(), "another org has its own bucket");
        assert!(rl.check("org_a", t0 + Duration::from_millis(500)).is_ok());
        assert_eq!(
            rl.check("org_a", t0 + Duration::from_millis(500)),
            Err(RateLimited)
        );
    }
}
