//! The supervisor: what happens to a run once its driver ends, and how runs come back into memory.
//!
//! A driver that ends hands its [`DriverExit`] here. A finished or parked run is settled (its waiters
//! are told, the run table forgets it); an evicted one is left to the wake-up index; a run that stopped
//! on a store failure is revived from its journal after a backoff, without limit; a run whose
//! workflow code panicked is replayed again under the panic policy, then parked. Every way a run
//! comes back into memory — recovery at start, a timer's wake-up, a signal or cancellation for an
//! evicted run, a revival — goes through [`Engine::load_and_drive`], which the run table admits once
//! per run at a time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::driver::{DriverExit, DriverMsg};
use super::{DriverExitView, Engine, Phase, STORE_REVIVAL};
use crate::error::{Error, ParkReason};
use crate::journal::decode_history;
use crate::store::{Commit, RunRecord, RunState, StatusChange};

impl Engine {
    /// Resumes a run; if a journal row of it is damaged, parks it instead (the damage affects only
    /// that run).
    pub(super) async fn resume_or_park(&self, run: RunRecord) -> Result<(), Error> {
        let id = run.workflow_id.clone();
        match self.load_journal_and_drive(run).await {
            Err(Error::Store(error @ crate::store::StoreError::MalformedRow { .. })) => {
                let reason = ParkReason::CorruptJournal {
                    message: error.to_string(),
                };
                self.park_stored(&id, &reason).await
            }
            other => other,
        }
    }

    /// Loads a run's journal and drives it.
    pub(super) async fn load_journal_and_drive(&self, run: RunRecord) -> Result<(), Error> {
        let id: Arc<str> = Arc::from(run.workflow_id.as_str());
        if run.paused.is_some() {
            // Paused by an operator: it stays out of memory (and, with leases, unheld) until resumed.
            if self.lease_mode() {
                self.release_lease(&id).await;
            }
            return Ok(());
        }
        let Some(workflow) = self.workflow(&run.workflow_name) else {
            tracing::error!(workflow_id = %id, workflow = %run.workflow_name, "journal names an unregistered workflow type");
            if run.state == RunState::Running {
                let reason = ParkReason::UnknownWorkflowType {
                    name: run.workflow_name.clone(),
                };
                self.park_stored(&id, &reason).await?;
            }
            return Ok(());
        };
        if run.state == RunState::Parked {
            let mut resume = Commit::events(&run.workflow_id, Vec::new());
            resume.status = Some(StatusChange::Resume);
            resume.fence = self.fence_for(&id);
            self.inner.store.commit(resume).await?;
        }
        let rows = self.inner.store.history(&id).await?;
        let history = match decode_history(&self.codec(), &rows) {
            Ok(history) => history,
            Err(reason) => {
                self.park_stored(&id, &reason).await?;
                return Ok(());
            }
        };
        self.spawn_driver(id, workflow, &run, history).await
    }

    pub(super) async fn park_stored(&self, id: &str, reason: &ParkReason) -> Result<(), Error> {
        let mut park = Commit::events(id, Vec::new());
        park.status = Some(StatusChange::Park {
            reason: crate::journal::encode_park_reason(&self.codec(), reason)?,
        });
        park.error_text = Some(super::driver::searchable(reason));
        park.fence = self.fence_for(id);
        self.inner.store.commit(park).await?;
        Ok(())
    }

    /// What happens to a run once its driver has ended.
    pub(super) async fn driver_ended(&self, id: Arc<str>, exit: DriverExit) {
        if !matches!(exit, DriverExit::Evicted { .. }) {
            // (An evicted driver left the table itself, and a new one may be registered already.)
            self.inner.runs.remove_driver(&id);
        }
        match exit {
            DriverExit::LeaseLost {
                rejected_write,
                epoch,
            } => {
                // Another node owns the run now; it drives it (waiters poll the store). If this
                // node claimed it back meanwhile (a newer epoch is held), the cluster loop adopts it.
                self.inner.runs.drop_lease(&id, Some(epoch));
                if rejected_write {
                    self.inner.stale_writes.fetch_add(1, Ordering::AcqRel);
                }
            }
            DriverExit::Evicted { wake_at_ms } => {
                // The driver already left the drivers map; the run waits in the store. Nothing of it
                // stays in memory: waiters see their channel close, re-read the store (still running)
                // and wait on a fresh channel until the run is woken.
                tracing::debug!(workflow_id = %id, ?wake_at_ms, "run evicted from memory");
                if let Some(at) = wake_at_ms {
                    self.inner.wakeups.schedule(id.clone(), at);
                }
                self.inner.runs.release_waiters(&id);
            }
            DriverExit::ContinuedAsNew => {
                self.inner.runs.clear_panics(&id);
                // Drives the fresh run that replaced this one, from the store.
                self.wake(&id);
            }
            DriverExit::Shutdown => {
                self.release_lease(&id).await;
                self.inner
                    .runs
                    .publish(&id, Phase::Ended(DriverExitView::Stopped(None)));
            }
            DriverExit::StoreFailed { message, retryable } => {
                // A write refused because the run finished meanwhile (an operator terminated it):
                // nothing to revive.
                if let Ok(Some(run)) = self.inner.store.run(&id).await
                    && run.state.is_finished()
                {
                    self.settle(&id, None);
                    return;
                }
                if !retryable {
                    // Waiters learn of it (a typed error); the engine keeps trying meanwhile.
                    self.inner
                        .runs
                        .publish(&id, Phase::Ended(DriverExitView::Stopped(Some(message))));
                }
                self.revive(id, STORE_REVIVAL.initial_backoff);
            }
            DriverExit::Panicked { message } => {
                self.after_panic(id, message).await;
            }
            DriverExit::Finished { output } => {
                self.settle(&id, output.map(Arc::new));
            }
            DriverExit::Parked | DriverExit::Terminated => {
                self.settle(&id, None);
            }
            DriverExit::Paused => {
                // Its waiters re-read the store (still unfinished) and wait for it to be driven
                // again. With leases the run is given back (claims skip it while it is paused);
                // without, it is loaded again at once in case it was resumed meanwhile (the load
                // skips it if it is still paused).
                tracing::info!(workflow_id = %id, "paused run left memory");
                self.inner.runs.release_waiters(&id);
                if self.lease_mode() {
                    self.release_lease(&id).await;
                } else {
                    self.wake(&id);
                }
            }
        }
    }

    /// Tells the waiters of a run that its outcome is in the store (a completed run's output comes
    /// along), and forgets the run.
    pub(super) fn settle(&self, id: &str, output: Option<Arc<Vec<u8>>>) {
        // Waiters holding a receiver re-read the store.
        self.inner
            .runs
            .settle(id, Phase::Ended(DriverExitView::Settled(output)));
    }

    /// After the workflow code of `id` panicked: replays the run again after the panic policy's
    /// backoff, or parks it once the policy's attempts are spent.
    async fn after_panic(&self, id: Arc<str>, message: String) {
        let policy = &self.inner.settings.panic_retry;
        let attempts = self.inner.runs.count_panic(&id);
        if policy.allows_retry_after(attempts) {
            let wait = policy.backoff(attempts, fastrand::f64());
            tracing::warn!(workflow_id = %id, attempts, ?wait, %message, "workflow code panicked; replaying the run again after a backoff");
            self.revive(id, wait);
            return;
        }
        let reason = ParkReason::Panicked { message, attempts };
        tracing::error!(workflow_id = %id, %reason, "run parked");
        match self.park_stored(&id, &reason).await {
            Ok(()) => self.settle(&id, None),
            Err(error) => {
                // Not parked: try again (the attempt count stays, so it parks at the next panic).
                tracing::error!(workflow_id = %id, %error, "could not park a panicking run; reviving it");
                self.revive(id, STORE_REVIVAL.initial_backoff);
            }
        }
    }

    /// Gives the lease on `id` back so another node can take the run over at once (graceful stop).
    pub(super) async fn release_lease(&self, id: &str) {
        let Some((node, epoch)) = self.fence_for(id) else {
            return;
        };
        self.inner.runs.drop_lease(id, None);
        if let Some(leases) = self.inner.store.leases() {
            let claim = crate::store::Claim {
                workflow_id: id.to_string(),
                epoch,
            };
            if let Err(error) = leases.release_run(&node, &claim).await {
                tracing::warn!(workflow_id = %id, %error, "could not release a lease; it expires instead");
            }
        }
    }

    /// Drives `id` again from its journal after `delay`: its driver stopped on a store failure or a
    /// panic. Nothing happens if the engine shuts down first.
    fn revive(&self, id: Arc<str>, delay: Duration) {
        let engine = Arc::downgrade(&self.inner);
        let mut shutdown = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            if let Some(inner) = engine.upgrade() {
                Engine { inner }.wake(&id);
            }
        });
    }

    /// Drives a run that is not in memory (evicted) again, from its journal. No-op if it is in memory,
    /// being loaded, finished or parked.
    pub(crate) fn wake(&self, workflow_id: &str) {
        if self.is_shutting_down() || self.inner.runs.is_resident(workflow_id) {
            return;
        }
        let engine = self.clone();
        let id: Arc<str> = Arc::from(workflow_id);
        tokio::spawn(async move { engine.load_and_drive(id, false).await });
    }

    /// Loads a run that is not in memory from its journal and drives it now (a parked one only if
    /// `parked_too`, as at start), retrying while the store fails. No-op if it is in memory, being
    /// loaded by another call, or finished: one load per run at a time, and one driver per run.
    ///
    /// The one entry point for "drive this run now": recovery, wake-ups, revivals and repair verbs
    /// that rewrote a run's journal all come through here.
    pub(crate) async fn load_and_drive(&self, id: Arc<str>, parked_too: bool) {
        if !self.inner.settings.drive_runs {
            // A client engine: the journal's owner (or a node) drives the run.
            return;
        }
        let Some(ticket) = self.inner.runs.begin_load(&id) else {
            return;
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.inner.store.run(&id).await {
                Ok(_) if self.inner.runs.is_resident(&id) => Ok(()),
                Ok(Some(run))
                    if run.state == RunState::Running
                        || (parked_too && run.state == RunState::Parked) =>
                {
                    self.resume_or_park(run).await
                }
                Ok(Some(_)) => {
                    // Finished or parked meanwhile (perhaps by a write reported as failed that
                    // took effect): waiters read the outcome from the store.
                    self.settle(&id, None);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error.into()),
            };
            match result {
                Ok(()) => break,
                Err(error) if self.is_shutting_down() => {
                    tracing::warn!(workflow_id = %id, %error, "could not load a run before shutdown; it resumes at the next start");
                    break;
                }
                Err(error) => {
                    let wait = STORE_REVIVAL.backoff(attempt, fastrand::f64());
                    tracing::warn!(workflow_id = %id, %error, attempt, ?wait, "could not load a run; trying again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.inner.runs.end_load(&id, ticket);
    }

    /// Removes an idle driver from the run table unless a message is waiting for it. `true` if it
    /// may leave memory.
    pub(crate) fn release_driver(
        &self,
        workflow_id: &str,
        rx: &mut mpsc::UnboundedReceiver<DriverMsg>,
    ) -> bool {
        self.inner.runs.release_idle(workflow_id, rx)
    }
}
