//! The wall clock, in the unit the journal stores: milliseconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long from now until `at_ms` (zero if it has passed).
pub(crate) fn until(at_ms: i64) -> Duration {
    let wait = at_ms.saturating_sub(now_ms());
    Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}
