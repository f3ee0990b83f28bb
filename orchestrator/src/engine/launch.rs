//! Creating and driving a run: the one path shared by [`Engine::start`] and child runs, and the
//! spawning of a run's driver.
//!
//! A new run's driver channel is registered in the run table *before* its row is written, so every
//! signal or cancellation accepted once the row exists reaches the driver (which then needs no inbox
//! read). If the row existed already, the channel is withdrawn and the existing run is woken, in case
//! nothing drives it (an earlier attempt created it but its driver never started).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::driver::{Driver, DriverParts};
use super::{Channel, Engine, EngineLink, ErasedWorkflow, Phase};
use crate::clock::now_ms;
use crate::context::RunShared;
use crate::error::{Error, ParkReason};
use crate::journal::History;
use crate::replay::ReplayMachine;
use crate::store::{CreateOutcome, NewRun, RunRecord, RunState};

/// What [`Engine::create_and_drive`] found.
pub(crate) enum Creation {
    /// The run was created, and its driver spawned.
    Created,
    /// A run with this workflow id existed already; nothing was written (it is woken if nothing
    /// drives it here).
    Existing(Box<RunRecord>),
}

impl Engine {
    /// Creates the run `run` (idempotently on its workflow id) and drives it at once.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails (the run may or may not exist then: creating it again
    /// finds it), or what spawning the driver returns.
    pub(crate) async fn create_and_drive(
        &self,
        run: NewRun,
        workflow: ErasedWorkflow,
    ) -> Result<Creation, Error> {
        let id: Arc<str> = Arc::from(run.workflow_id.as_str());
        let created_at_ms = now_ms();
        // Register the run's channel first: whatever is sent to it once its row exists reaches it.
        let channel = self.preregister(&id);
        let sent = tokio::time::Instant::now();
        let outcome = match self.inner.store.create_run(run.clone()).await {
            Ok(outcome) => outcome,
            Err(error) => {
                if let Some(channel) = &channel {
                    self.withdraw(&id, channel);
                }
                return Err(error.into());
            }
        };
        match outcome {
            CreateOutcome::Created => {
                if let Some(lease) = &run.owner {
                    self.hold(&id, lease.epoch, sent);
                }
                // What was just written: no need to read it back.
                let record = RunRecord {
                    workflow_id: run.workflow_id,
                    workflow_name: run.workflow_name,
                    state: RunState::Running,
                    input: run.input,
                    output: None,
                    error: None,
                    created_at_ms,
                    updated_at_ms: created_at_ms,
                    run_no: 0,
                    parent_id: run.parent_id,
                    cancel_reason: None,
                    deadline_ms: run.deadline_ms,
                    execution_timeout_ms: run.execution_timeout_ms,
                    paused: None,
                };
                match channel {
                    Some(channel) => {
                        self.spawn_new_driver(id, workflow, &record, channel)
                            .await?
                    }
                    // Another start of this id registered first; it drives the run (or wakes it).
                    None => {
                        self.spawn_driver(id, workflow, &record, History::default())
                            .await?
                    }
                }
                Ok(Creation::Created)
            }
            CreateOutcome::Existing(existing) => {
                match &channel {
                    Some(channel) => self.withdraw(&id, channel),
                    // Perhaps created by an earlier attempt whose driver never started: make sure
                    // it runs (a no-op if it is driven, finished or parked).
                    None if !self.lease_mode() => self.wake(&id),
                    None => {}
                }
                Ok(Creation::Existing(existing))
            }
        }
    }

    /// Creates the driver of a run and spawns it. (Boxed: drivers spawn drivers, for children and
    /// continue-as-new, so the future type would otherwise be recursive.)
    pub(crate) fn spawn_driver<'a>(
        &'a self,
        id: Arc<str>,
        workflow: ErasedWorkflow,
        run: &'a RunRecord,
        history: History,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>> {
        Box::pin(self.spawn_driver_inner(id, workflow, run, history, None))
    }

    /// Like [`Engine::spawn_driver`], for a run just created by this engine through a channel it
    /// registered before creating it (see [`Engine::preregister`]).
    pub(crate) fn spawn_new_driver<'a>(
        &'a self,
        id: Arc<str>,
        workflow: ErasedWorkflow,
        run: &'a RunRecord,
        channel: Channel,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>> {
        Box::pin(self.spawn_driver_inner(id, workflow, run, History::default(), Some(channel)))
    }

    /// Registers a driver channel for a run about to be created, so every signal or cancellation
    /// accepted once its row exists reaches it (the new driver then needs no inbox read). `None` if a
    /// driver (or another start's channel) is registered already.
    pub(crate) fn preregister(&self, id: &str) -> Option<Channel> {
        self.inner.runs.register_driver(id)
    }

    /// Takes back a channel registered by [`Engine::preregister`] for a run that was not created
    /// (it existed already, or the write failed), and wakes that run: a wake-up or message that
    /// met the channel meanwhile was meant for it.
    pub(crate) fn withdraw(&self, id: &str, channel: &Channel) {
        let removed = self.inner.runs.withdraw(id, &channel.tx);
        if removed {
            // A waiter that saw the channel and took the run for driven here re-reads the store.
            self.release(id);
        }
        if !self.lease_mode() {
            self.wake(id);
        }
    }

    async fn spawn_driver_inner(
        &self,
        id: Arc<str>,
        workflow: ErasedWorkflow,
        run: &RunRecord,
        history: History,
        channel: Option<Channel>,
    ) -> Result<(), Error> {
        let settings = &self.inner.settings;
        let shared = Arc::new(
            RunShared::new(id.clone(), settings.codec, ReplayMachine::new(history))
                .with_catalog(settings.catalog.clone(), workflow.name),
        );
        let future = match workflow.start(shared.clone(), &run.input) {
            Ok(future) => future,
            Err(error) => {
                let reason = ParkReason::UndecodablePayload {
                    step: 0,
                    type_name: format!("input of `{}`", workflow.name),
                    message: error.to_string(),
                };
                if let Some(channel) = &channel {
                    self.inner.runs.withdraw(&id, &channel.tx);
                }
                return self.park_stored(&id, &reason).await;
            }
        };
        let fresh = channel.is_some();
        let Channel { tx, rx, halt } = match channel {
            // Registered before the run was created: it is ours.
            Some(channel) => channel,
            None => match self.inner.runs.register_driver(&id) {
                Some(channel) => channel,
                // Already driven (a start and a wake-up raced): one driver per run.
                None => return Ok(()),
            },
        };
        self.inner.runs.publish(&id, Phase::Active);
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        let deadline = run.deadline_ms.map(|deadline| {
            let timeout = run
                .execution_timeout_ms
                .unwrap_or_else(|| deadline.saturating_sub(run.created_at_ms));
            (deadline, u64::try_from(timeout).unwrap_or(0))
        });
        let driver = Driver::new(DriverParts {
            shared,
            future,
            store: self.inner.store.clone(),
            engine: EngineLink::new(&self.inner),
            tx,
            rx,
            halt,
            shutdown: self.inner.shutdown.subscribe(),
            shutdown_grace: settings.shutdown_grace,
            cancel_reason: run.cancel_reason.clone(),
            deadline,
            history_warning: settings.history_warning,
            keep_runs: settings.keep_runs,
            evict_after: settings.evict_after,
            run_no: run.run_no,
            lease: self.lease_of(&id),
            fresh,
        });
        let engine = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let exit = driver.run().await;
            let Some(inner) = engine.upgrade() else {
                return;
            };
            let engine = Engine { inner };
            engine.driver_ended(id, exit).await;
            if engine.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
                engine.inner.idle.notify_waiters();
            }
        });
        Ok(())
    }
}
