//! Retry policies for activities: attempts, exponential backoff with a cap, and jitter.

use std::time::Duration;

/// How an activity is retried after a retryable failure.
///
/// The wait before attempt `n + 1` is `initial_backoff × multiplier^(n-1)`, capped at `max_backoff`, then
/// spread by ± `jitter` (a fraction: 0.2 means ±20%). Waits are durable: the moment of the next attempt
/// is journaled, so after a crash only the remaining wait is served.
///
/// ```
/// use std::time::Duration;
/// use orchestrator::RetryPolicy;
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(5)
///     .initial_backoff(Duration::from_millis(200))
///     .max_backoff(Duration::from_secs(30))
///     .jitter(0.0)
///     .build();
/// assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(200));
/// assert_eq!(policy.backoff(2, 0.5), Duration::from_millis(400));
/// assert_eq!(policy.backoff(20, 0.5), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// The wait after the first failed attempt.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// The factor applied to the wait after each failed attempt.
    pub multiplier: f64,
    /// The fraction by which a wait is randomly lengthened or shortened (0.0 to 1.0).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 3 attempts, 1 s initial backoff doubling up to 60 s, ±10% jitter.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// Starts from the default policy.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy::default(),
        }
    }

    /// A policy that never retries.
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based). `unit` is a number in `[0, 1)` that
    /// places the wait inside the jitter band (0.5 = no change), so the computation itself is pure.
    pub fn backoff(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1_000) as i32;
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let max = self.max_backoff.as_secs_f64();
        let base = (self.initial_backoff.as_secs_f64() * multiplier.powi(exponent)).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = 1.0 + jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let seconds = (base * spread).clamp(0.0, max.max(0.0));
        Duration::try_from_secs_f64(seconds).unwrap_or(self.max_backoff)
    }

    /// Whether another attempt may follow failed attempt number `attempt`.
    pub fn allows_retry_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

/// Builds a [`RetryPolicy`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Attempts in all, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.policy.max_attempts = attempts.max(1);
        self
    }

    /// The wait after the first failed attempt.
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.policy.initial_backoff = wait;
        self
    }

    /// The longest wait between two attempts.
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.policy.max_backoff = wait;
        self
    }

    /// The factor applied to the wait after each failed attempt (at least 1.0).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.policy.multiplier = multiplier;
        self
    }

    /// The fraction by which waits are randomly spread (clamped to 0.0..=1.0).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.policy.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The finished policy.
    pub fn build(self) -> RetryPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_inside_its_band_and_under_the_cap() {
        let policy = RetryPolicy::builder()
            .initial_backoff(Duration::from_secs(10))
            .max_backoff(Duration::from_secs(12))
            .jitter(0.5)
            .build();
        for unit in [0.0, 0.25, 0.5, 0.75, 0.999] {
            let wait = policy.backoff(1, unit);
            assert!(wait >= Duration::from_secs(5), "{wait:?}");
            assert!(wait <= Duration::from_secs(12), "{wait:?}");
        }
    }

    #[test]
    fn odd_multipliers_do_not_shrink_or_overflow() {
        let policy = RetryPolicy::builder()
            .multiplier(f64::NAN)
            .jitter(0.0)
            .build();
        assert_eq!(policy.backoff(5, 0.5), policy.initial_backoff);
        let huge = RetryPolicy::builder().multiplier(1e300).jitter(0.0).build();
        assert_eq!(huge.backoff(u32::MAX, 0.5), huge.max_backoff);
    }

    #[test]
    fn attempts_are_counted_from_one() {
        let policy = RetryPolicy::builder().max_attempts(3).build();
        assert!(policy.allows_retry_after(1));
        assert!(policy.allows_retry_after(2));
        assert!(!policy.allows_retry_after(3));
    }
}
