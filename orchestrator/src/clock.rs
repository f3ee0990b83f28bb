//! The engine's clock, in the unit the journal stores: milliseconds since the Unix epoch.
//!
//! The wall clock is read once, when the process first asks for the time; from then on time advances
//! with tokio's monotonic clock. Durable timers are stored as wall-clock instants (they must mean the
//! same thing after a restart), while the waits of this process follow the clock its tasks sleep on:
//! so a test runtime with paused time (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`)
//! moves the journal's clock too, and a 30-day timer fires in a simulation as soon as the runtime is
//! idle. A wall clock stepped back or forth while the process runs does not disturb running timers.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall-clock time and the (tokio) instant of the process's first reading.
fn origin() -> (i64, std::time::Instant) {
    static ORIGIN: OnceLock<(i64, std::time::Instant)> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        (wall, tokio::time::Instant::now().into_std())
    })
}

/// Now, in milliseconds since the Unix epoch (counted from 0 if the wall clock is before 1970).
///
/// An affine function of tokio's clock, floored to the millisecond: a runtime whose paused clock is
/// behind the first reading (another runtime's) gets earlier times, never a clamped one.
pub(crate) fn now_ms() -> i64 {
    let (wall, at) = origin();
    let now = tokio::time::Instant::now().into_std();
    let nanos = match now.checked_duration_since(at) {
        Some(ahead) => i128::try_from(ahead.as_nanos()).unwrap_or(i128::MAX),
        None => -i128::try_from(at.duration_since(now).as_nanos()).unwrap_or(i128::MAX),
    };
    let millis = i64::try_from(nanos.div_euclid(1_000_000)).unwrap_or(i64::MAX);
    wall.saturating_add(millis)
}

/// How long from now until `at_ms` (zero if it has passed).
pub(crate) fn until(at_ms: i64) -> Duration {
    let wait = at_ms.saturating_sub(now_ms());
    Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wall_clock() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or(0);
        assert!((now_ms() - wall).abs() < 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn advances_with_paused_tokio_time() {
        let before = now_ms();
        tokio::time::sleep(Duration::from_secs(30 * 86_400)).await;
        let after = now_ms();
        // Whole milliseconds on both sides: one may be lost to rounding.
        assert!(
            after - before >= 30 * 86_400 * 1_000 - 1,
            "{before} → {after}"
        );
        assert_eq!(until(after - 5), Duration::ZERO);
        assert_eq!(until(after + 1_000), Duration::from_secs(1));
    }
}
