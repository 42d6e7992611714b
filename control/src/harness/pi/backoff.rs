//! When to try a failed call again: a manifest [`RetryPolicy`] (for `llm.retry_policy` and a
//! tool's `retry_policy`) or a plain retry count, turned into a schedule of waits.
//!
//! Attempts are numbered from 1, the first call included, as in the manifest's
//! `maximum_attempts`. The wait before attempt `n ≥ 2` is
//! `initial_interval × coefficient^(n − 2)`, capped at `maximum_interval`: pi's default for model
//! calls (three retries from 2 s, doubling, at most 60 s) waits 2 s, 4 s and 8 s.

use std::time::Duration;

use dari_protocol::manifest::RetryPolicy;

/// A wait a server asks for (`retry-after`) is honoured up to this long, or up to the policy's
/// `maximum_interval` when that is longer. A server that asks for hours ("quota resets in 5h")
/// gets the cap, and the call most likely fails again and gives up.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(5 * 60);

/// A retry schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Attempts in all, the first included: 1 never retries.
    pub maximum_attempts: u32,
    /// The wait before the second attempt.
    pub initial_interval: Duration,
    /// How much each wait grows over the one before; 1 keeps them fixed.
    pub coefficient: f64,
    /// No computed wait is longer.
    pub maximum_interval: Duration,
}

impl Backoff {
    /// Model calls when `llm.retry_policy` is absent, and its fields left out: pi's retry settings
    /// (`maxRetries: 3`, `baseDelayMs: 2000`, doubling, `maxDelayMs: 60000`).
    pub const LLM_DEFAULT: Backoff = Backoff {
        maximum_attempts: 4,
        initial_interval: Duration::from_secs(2),
        coefficient: 2.0,
        maximum_interval: Duration::from_secs(60),
    };

    /// A single attempt.
    pub const NO_RETRY: Backoff = Backoff {
        maximum_attempts: 1,
        initial_interval: Duration::ZERO,
        coefficient: 1.0,
        maximum_interval: Duration::ZERO,
    };

    /// The schedule of a manifest policy; each field left out takes its value from `defaults`.
    pub fn from_policy(policy: &RetryPolicy, defaults: Backoff) -> Backoff {
        let seconds = |value: Option<u32>, default: Duration| value.map_or(default, |s| Duration::from_secs(s.into()));
        Backoff {
            maximum_attempts: policy.maximum_attempts.unwrap_or(defaults.maximum_attempts),
            initial_interval: seconds(policy.initial_interval_seconds, defaults.initial_interval),
            coefficient: policy.backoff_coefficient.unwrap_or(defaults.coefficient),
            maximum_interval: seconds(policy.maximum_interval_seconds, defaults.maximum_interval),
        }
    }

    /// The schedule of model calls: `llm.retry_policy` over [`Backoff::LLM_DEFAULT`].
    pub fn for_llm(policy: Option<&RetryPolicy>) -> Backoff {
        policy.map_or(Backoff::LLM_DEFAULT, |policy| Backoff::from_policy(policy, Backoff::LLM_DEFAULT))
    }

    /// `retries` extra attempts, each after the same fixed wait.
    pub fn fixed(retries: u32, interval: Duration) -> Backoff {
        Backoff {
            maximum_attempts: retries.saturating_add(1),
            initial_interval: interval,
            coefficient: 1.0,
            maximum_interval: interval,
        }
    }

    /// How long to wait before making attempt number `attempt` (counted from 1): zero for the
    /// first, `None` once the attempts are used up. `retry_after`, the wait the server asked for,
    /// wins over a shorter computed wait, up to `maximum_interval` or [`RETRY_AFTER_CAP`],
    /// whichever is longer.
    pub fn delay_before(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt > self.maximum_attempts {
            return None;
        }
        if attempt <= 1 {
            return Some(Duration::ZERO);
        }
        let computed = self.computed_delay(attempt - 2);
        let delay = match retry_after {
            Some(asked) if asked > computed => asked.min(self.maximum_interval.max(RETRY_AFTER_CAP)),
            _ => computed,
        };
        Some(delay)
    }

    /// `initial_interval × coefficient^retry`, capped at `maximum_interval`. A coefficient below 1
    /// (the manifest refuses one) counts as 1, so that waits never shrink.
    fn computed_delay(&self, retry: u32) -> Duration {
        let coefficient = if self.coefficient.is_finite() && self.coefficient >= 1.0 { self.coefficient } else { 1.0 };
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let seconds = self.initial_interval.as_secs_f64() * coefficient.powi(exponent);
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX).min(self.maximum_interval)
    }
}

#[cfg(test)]
mod tests;
