//! Creating and driving a run: the one path shared by [`Engine::start`] and child runs, and the
//! spawning of a run's driver.
//!
//! A new run's driver channel is registered in the run table *before* its row is written, so every
//! signal or cancellation accepted once the row exists reaches the driver (which then needs no inbox
//! read). If the row existed already, the channel is withdrawn and the existing run is woken, in case
//! nothing drives it (an earlier attempt created it but its driver never started).
//!
//! The new run's driver is built and its body polled once before the row is written
//! ([`Driver::first_poll`]): the creation carries what that poll recorded and the starts of the
//! attempts it asked for, so a new run's first step costs no commit of its own. The driver is spawned
//! (and starts that work) only once the row exists; if the run existed already or the write failed,
//! it is dropped without having started anything.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::driver::{Driver, DriverMsg, DriverParts};
use super::registry::WorkflowFuture;
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
        mut run: NewRun,
        workflow: ErasedWorkflow,
    ) -> Result<Creation, Error> {
        let id: Arc<str> = Arc::from(run.workflow_id.as_str());
        let created_at_ms = now_ms();
        // What is about to be written: no need to read it back.
        let record = RunRecord {
            workflow_id: run.workflow_id.clone(),
            workflow_name: run.workflow_name.clone(),
            state: RunState::Running,
            input: run.input.clone(),
            output: None,
            error: None,
            created_at_ms,
            updated_at_ms: created_at_ms,
            run_no: 0,
            parent_id: run.parent_id.clone(),
            cancel_reason: None,
            deadline_ms: run.deadline_ms,
            execution_timeout_ms: run.execution_timeout_ms,
            paused: None,
        };
        let epoch = run.owner.as_ref().map(|lease| lease.epoch);
        // Register the run's channel first: whatever is sent to it once its row exists reaches it.
        let channel = self.preregister(&id);
        let sender = channel.as_ref().map(|channel| channel.tx.clone());
        // The run's first poll happens now, before its row exists: what it records and the starts of
        // the attempts it asks for are written with the row (one commit for both); the work it asks
        // for starts once the row exists.
        let pending = match channel {
            Some(channel) => match self.new_driver(&id, &workflow, &record, channel) {
                Ok(mut driver) => {
                    run.events = driver.first_poll();
                    Pending::Polled(Box::new(driver))
                }
                // The input does not decode: the run is created without events and parked.
                Err(channel) => Pending::Registered(channel),
            },
            None => Pending::Unregistered,
        };
        let sent = tokio::time::Instant::now();
        let outcome = match self.inner.store.create_run(run).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // The first poll is dropped: nothing it asked for has started.
                drop(pending);
                if let Some(sender) = &sender {
                    self.withdraw(&id, sender);
                }
                return Err(error.into());
            }
        };
        match outcome {
            CreateOutcome::Created => {
                if let Some(epoch) = epoch {
                    self.hold(&id, epoch, sent);
                }
                match pending {
                    Pending::Polled(mut driver) => {
                        driver.set_lease(self.lease_of(&id));
                        self.launch_driver(id, *driver);
                    }
                    Pending::Registered(channel) => {
                        self.spawn_new_driver(id, workflow, &record, channel)
                            .await?;
                    }
                    // Another start of this id registered first; it drives the run (or wakes it).
                    Pending::Unregistered => {
                        self.spawn_driver(id, workflow, &record, History::default())
                            .await?;
                    }
                }
                Ok(Creation::Created)
            }
            CreateOutcome::Existing(existing) => {
                // Nothing was written: the first poll is dropped, nothing it asked for has started.
                drop(pending);
                match &sender {
                    Some(sender) => self.withdraw(&id, sender),
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
    pub(crate) fn withdraw(&self, id: &str, sender: &mpsc::UnboundedSender<DriverMsg>) {
        let removed = self.inner.runs.withdraw(id, sender);
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
                if let Some(channel) = &channel {
                    self.inner.runs.withdraw(&id, &channel.tx);
                }
                return self
                    .park_stored(&id, &undecodable_input(&workflow, &error))
                    .await;
            }
        };
        let fresh = channel.is_some();
        let channel = match channel {
            // Registered before the run was created: it is ours.
            Some(channel) => channel,
            None => match self.inner.runs.register_driver(&id) {
                Some(channel) => channel,
                // Already driven (a start and a wake-up raced): one driver per run.
                None => return Ok(()),
            },
        };
        let driver = self.driver(&id, shared, future, run, channel, fresh);
        self.launch_driver(id, driver);
        Ok(())
    }

    /// The driver of a run this engine is about to create, through `channel` (registered by
    /// [`Engine::preregister`]), for its first poll before the creation ([`Driver::first_poll`]).
    /// `Err(channel)` back if the run's input does not decode.
    fn new_driver(
        &self,
        id: &Arc<str>,
        workflow: &ErasedWorkflow,
        run: &RunRecord,
        channel: Channel,
    ) -> Result<Driver, Channel> {
        let settings = &self.inner.settings;
        let shared = Arc::new(
            RunShared::new(
                id.clone(),
                settings.codec,
                ReplayMachine::new(History::default()),
            )
            .with_catalog(settings.catalog.clone(), workflow.name),
        );
        match workflow.start(shared.clone(), &run.input) {
            Ok(future) => Ok(self.driver(id, shared, future, run, channel, true)),
            Err(_) => Err(channel),
        }
    }

    /// Builds the driver of `run` on `channel`.
    fn driver(
        &self,
        id: &str,
        shared: Arc<RunShared>,
        future: WorkflowFuture,
        run: &RunRecord,
        Channel { tx, rx, halt }: Channel,
        fresh: bool,
    ) -> Driver {
        let settings = &self.inner.settings;
        let deadline = run.deadline_ms.map(|deadline| {
            let timeout = run
                .execution_timeout_ms
                .unwrap_or_else(|| deadline.saturating_sub(run.created_at_ms));
            (deadline, u64::try_from(timeout).unwrap_or(0))
        });
        Driver::new(DriverParts {
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
            lease: self.lease_of(id),
            fresh,
            #[cfg(feature = "testing")]
            mocks: settings.mocks.clone(),
        })
    }

    /// Spawns the task of `driver`, the run `id`'s (its channel is registered).
    fn launch_driver(&self, id: Arc<str>, driver: Driver) {
        self.inner.runs.publish(&id, Phase::Active);
        self.inner.active.fetch_add(1, Ordering::AcqRel);
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
    }
}

/// A new run's driver between its preregistration and the run's creation.
enum Pending {
    /// Its first poll is done (see [`Driver::first_poll`]).
    Polled(Box<Driver>),
    /// Its input does not decode: the run is parked once created.
    Registered(Channel),
    /// Another start of the same id registered a channel first.
    Unregistered,
}

/// Why a run whose input does not decode is parked.
fn undecodable_input(workflow: &ErasedWorkflow, error: &impl std::fmt::Display) -> ParkReason {
    ParkReason::UndecodablePayload {
        step: 0,
        type_name: format!("input of `{}`", workflow.name),
        message: error.to_string(),
    }
}
