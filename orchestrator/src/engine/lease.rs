//! A node's lease on one run, as this process knows it: the epoch its writes carry, until when it may
//! start work for the run, and whether it was lost.
//!
//! Shared by the cluster loop (which extends it on each successful renewal and revokes it when a
//! renewal misses the run), the run's driver and its activity tasks (which check it before starting
//! any attempt, timer or child, and revoke it when a write is rejected as stale). The local deadline
//! is measured from when the renewal (or claim, or creation) request was *sent*, minus a safety
//! margin, so it ends before the database's lease can: once it has passed, nothing new starts until a
//! renewal answers (or the lease is found lost).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The part of the lease the node gives up locally: its local deadline ends this much before the
/// database's lease would (a fifth of the lease).
pub(crate) fn safety_margin(lease: Duration) -> Duration {
    lease / 5
}

#[derive(Debug, Clone, Copy)]
struct LeaseState {
    epoch: i64,
    /// Work may start before this instant.
    valid_until: Instant,
    revoked: bool,
}

/// This node's lease on one run.
#[derive(Debug)]
pub(crate) struct RunLease {
    node: Arc<str>,
    state: watch::Sender<LeaseState>,
}

impl RunLease {
    /// A lease held under `epoch` whose request was sent at `sent`.
    pub(crate) fn new(node: Arc<str>, epoch: i64, sent: Instant, lease: Duration) -> Arc<Self> {
        let (state, _) = watch::channel(LeaseState {
            epoch,
            valid_until: deadline(sent, lease),
            revoked: false,
        });
        Arc::new(RunLease { node, state })
    }

    /// The `(node, epoch)` the run's writes carry.
    pub(crate) fn fence(&self) -> (String, i64) {
        (self.node.to_string(), self.epoch())
    }

    pub(crate) fn epoch(&self) -> i64 {
        self.state.borrow().epoch
    }

    pub(crate) fn is_revoked(&self) -> bool {
        self.state.borrow().revoked
    }

    /// A renewal (or claim) sent at `sent` confirmed the run is held under `epoch`. A revoked lease
    /// stays revoked: its run's work is stopping, and a new claim gets a new lease.
    pub(crate) fn renewed(&self, epoch: i64, sent: Instant, lease: Duration) {
        self.state.send_if_modified(|state| {
            if state.revoked {
                return false;
            }
            state.epoch = epoch;
            state.valid_until = state.valid_until.max(deadline(sent, lease));
            true
        });
    }

    /// The lease is gone (another node owns the run): nothing starts for the run any more.
    pub(crate) fn revoke(&self) {
        self.state.send_if_modified(|state| {
            let changed = !state.revoked;
            state.revoked = true;
            changed
        });
    }

    /// Revokes the lease if it is still held under `epoch` (a write under `epoch` was rejected).
    pub(crate) fn revoke_epoch(&self, epoch: i64) {
        if self.epoch() == epoch {
            self.revoke();
        }
    }

    /// Waits until work may start: `true` while the local deadline has not passed (at once, the
    /// common case), after the next renewal if it has; `false` once the lease is revoked.
    pub(crate) async fn usable(&self) -> bool {
        let mut changes = self.state.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            if state.revoked {
                return false;
            }
            if Instant::now() < state.valid_until {
                return true;
            }
            if changes.changed().await.is_err() {
                return false;
            }
        }
    }
}

fn deadline(sent: Instant, lease: Duration) -> Instant {
    sent + lease.saturating_sub(safety_margin(lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_waits_past_the_local_deadline_until_a_renewal_or_a_revocation() {
        let lease_for = Duration::from_secs(10);
        let lease = RunLease::new(Arc::from("n"), 1, Instant::now(), lease_for);
        assert!(lease.usable().await);
        assert_eq!(lease.fence(), ("n".to_string(), 1));

        // Past the local deadline (8 s: the margin is 2 s), work waits for the next renewal.
        tokio::time::advance(Duration::from_secs(9)).await;
        let waiting = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.usable().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        lease.renewed(1, Instant::now(), lease_for);
        assert!(waiting.await.unwrap());

        // A revoked lease never becomes usable again, even if a late renewal arrives.
        tokio::time::advance(Duration::from_secs(9)).await;
        let waiting = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.usable().await })
        };
        tokio::task::yield_now().await;
        lease.revoke_epoch(2);
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "another epoch's rejection revokes nothing"
        );
        lease.revoke_epoch(1);
        assert!(!waiting.await.unwrap());
        lease.renewed(1, Instant::now(), lease_for);
        assert!(!lease.usable().await);
        assert!(lease.is_revoked());
    }
}
