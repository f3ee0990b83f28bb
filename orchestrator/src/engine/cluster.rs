//! Several engines sharing one store: claiming runs, renewing leases, taking over dead nodes' runs.
//!
//! Active only when the store offers [`LeaseStore`](crate::store::LeaseStore) (PostgreSQL). Every
//! tick (a quarter of the lease, at most 250 ms) the node renews the leases it holds (a run missing
//! from the answer was taken over: its driver stops), claims runs that have no live owner — new ones
//! started elsewhere, and those of nodes that died or paused past their lease — and forwards the
//! signals, cancellations and operator pauses other nodes recorded for its runs (a paused run is
//! never claimed; its holder's driver lets in-flight attempts finish and gives it back). Every journal write carries the lease
//! epoch, so a node that lost a run can no longer write to it. Each successful renewal also moves
//! the run's local lease deadline (see [`lease`](super::lease)); a run missing from the answer has its
//! lease revoked at once, so nothing more starts for it here.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::driver::DriverMsg;
use super::{Engine, EngineInner};

/// The most runs claimed per tick.
const CLAIM_BATCH: usize = 64;

/// How often a node renews, claims and polls.
pub(crate) fn tick(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(20), Duration::from_millis(250))
}

/// Runs the cluster loop until the engine shuts down or is dropped.
pub(crate) async fn run(engine: Weak<EngineInner>, mut shutdown: watch::Receiver<bool>) {
    let mut last_signal = 0_i64;
    loop {
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let engine = Engine { inner };
        if engine.is_shutting_down() {
            return;
        }
        engine.cluster_tick(&mut last_signal).await;
        let period = tick(engine.inner.settings.lease);
        drop(engine);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

impl Engine {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.inner.settings.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// At start: gives back runs this node id still holds from an earlier process (they are claimed
    /// again, with a new epoch, by whichever node is first).
    pub(crate) async fn release_stale_claims(&self) -> Result<(), crate::Error> {
        let Some(leases) = self.inner.store.leases() else {
            return Ok(());
        };
        let node = self.inner.settings.node.clone();
        for claim in leases.renew_leases(&node, self.lease_ms()).await? {
            leases.release_run(&node, &claim).await?;
        }
        Ok(())
    }

    async fn cluster_tick(&self, last_signal: &mut i64) {
        let Some(leases) = self.inner.store.leases() else {
            return;
        };
        let node = self.inner.settings.node.clone();
        let lease_ms = self.lease_ms();

        // 1. Keep what we hold; stop driving what was taken over. Only runs held before the renewal
        // count: a run started or claimed while it was in flight is not in its answer.
        let before = self.inner.runs.held_epochs();
        // The local deadlines count from when the renewal was sent (the database's lease runs from
        // a later instant), so they end first.
        let sent = tokio::time::Instant::now();
        match leases.renew_leases(&node, lease_ms).await {
            Ok(held_claims) => {
                let held: HashSet<&str> =
                    held_claims.iter().map(|c| c.workflow_id.as_str()).collect();
                for claim in &held_claims {
                    if let Some(lease) = self.lease_of(&claim.workflow_id)
                        && lease.epoch() == claim.epoch
                    {
                        lease.renewed(claim.epoch, sent, self.inner.settings.lease);
                    }
                }
                let lost = self.lost_since(before, &held);
                for id in lost {
                    // Nothing more starts for the run here, even before its driver hears of it.
                    if let Some(lease) = self.lease_of(&id) {
                        lease.revoke();
                    }
                    if !self.inner.runs.is_loading(&id) {
                        self.inner.runs.send(&id, DriverMsg::LeaseLost);
                    }
                }
                // Runs this node holds that nothing here drives (its driver stopped on a journal
                // error, or it was claimed back after a lapse): drive them again.
                if !self.is_shutting_down() {
                    for claim in held_claims {
                        let id: Arc<str> = Arc::from(claim.workflow_id.as_str());
                        if !self.inner.runs.is_busy(&id) {
                            self.hold(&id, claim.epoch, sent);
                            self.adopt(id).await;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not renew leases"),
        }

        // 2. Claim runs without a live owner and drive them — unless shutting down, when whatever a
        // claim raced in is given back at once.
        if self.is_shutting_down() {
            return;
        }
        let sent = tokio::time::Instant::now();
        match leases.claim_runs(&node, lease_ms, CLAIM_BATCH).await {
            Ok(claims) if self.is_shutting_down() => {
                for claim in claims {
                    if let Err(error) = leases.release_run(&node, &claim).await {
                        tracing::warn!(workflow_id = %claim.workflow_id, %error, "could not give back a claim");
                    }
                }
                return;
            }
            Ok(claims) => {
                for claim in claims {
                    let id: Arc<str> = Arc::from(claim.workflow_id.as_str());
                    self.hold(&id, claim.epoch, sent);
                    // Re-claimed while still driven here: the driver writes under the new epoch.
                    if self.inner.runs.send(&id, DriverMsg::NewEpoch(claim.epoch)) {
                        continue;
                    }
                    self.adopt(id).await;
                }
            }
            Err(error) => tracing::warn!(%error, "could not claim runs"),
        }

        // 3. Signals and cancellations other nodes recorded for our runs.
        match leases.owned_signals(&node, *last_signal).await {
            Ok(signals) => {
                for (id, signal) in signals {
                    *last_signal = (*last_signal).max(signal.id);
                    self.inner.runs.send(&id, DriverMsg::Signal(signal));
                }
            }
            Err(error) => tracing::warn!(%error, "could not read signals"),
        }
        match leases.owned_cancellations(&node).await {
            Ok(cancellations) => {
                for (id, reason) in cancellations {
                    self.inner.runs.send(&id, DriverMsg::Cancel { reason });
                }
            }
            Err(error) => tracing::warn!(%error, "could not read cancellations"),
        }
        // 4. Pauses recorded (by any node) on runs this node holds: their drivers wind down.
        match leases.owned_pauses(&node).await {
            Ok(paused) => {
                for id in paused {
                    self.inner.runs.halt(&id);
                    self.inner.runs.send(&id, DriverMsg::Pause);
                }
            }
            Err(error) => tracing::warn!(%error, "could not read pauses"),
        }
    }

    /// Of the runs held under `before`'s epochs, those missing from the store's renewal answer `held`
    /// and still held here under the same epoch.
    fn lost_since(&self, before: Vec<(Arc<str>, i64)>, held: &HashSet<&str>) -> Vec<Arc<str>> {
        before
            .into_iter()
            .filter(|(id, epoch)| {
                !held.contains(id.as_ref()) && self.inner.runs.holds_epoch(id, *epoch)
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// Loads a run this node just claimed and drives it.
    async fn adopt(&self, id: Arc<str>) {
        let Some(ticket) = self.inner.runs.begin_load(&id) else {
            return;
        };
        let resumed = match self.inner.store.run(&id).await {
            Ok(Some(run)) if run.state == crate::store::RunState::Running => {
                self.load_journal_and_drive(run).await
            }
            Ok(Some(run)) if run.state == crate::store::RunState::Parked => {
                // A parked run waits for an operator, not a node: give its lease back.
                self.release_lease(&id).await;
                Ok(())
            }
            Ok(_) => {
                self.inner.runs.drop_lease(&id, None);
                Ok(())
            }
            Err(error) => Err(error.into()),
        };
        self.inner.runs.end_load(&id, ticket);
        if let Err(error) = resumed {
            tracing::error!(workflow_id = %id, %error, "could not drive a claimed run");
        } else {
            tracing::debug!(workflow_id = %id, "claimed run");
        }
    }
}
