//! The engine: starts runs, resumes them after a restart, routes signals, reports outcomes.

mod activity_task;
mod builder;
mod driver;
mod handle;
mod registry;

pub use builder::EngineBuilder;
pub use handle::{RunHandle, RunStatus};
pub(crate) use registry::ErasedWorkflow;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::codec::Codec;
use crate::context::RunShared;
use crate::definition::{Payload, Workflow};
use crate::error::{Error, ParkReason};
use crate::journal::{History, decode_history};
use crate::replay::ReplayMachine;
use crate::store::{
    Commit, CreateOutcome, NewRun, RunRecord, RunState, SignalOutcome, StatusChange, Store,
};
use driver::{Driver, DriverExit, DriverMsg, DriverParts};

/// The progress of a run as seen by waiters in this process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// A driver runs it (or is about to).
    Active,
    /// The driver ended; the store has the outcome, or the run resumes at the next start.
    Ended(DriverExitView),
}

/// How a driver ended, as reported to waiters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DriverExitView {
    Settled,
    Stopped,
}

/// The durable execution engine.
///
/// Cheap to clone (all clones share one engine). Build one with [`Engine::builder`]; it resumes every
/// unfinished run from the journal when it starts, and runs them in the background on the current tokio
/// runtime. See the crate documentation for a complete example.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "workflows",
                &self.inner.workflows.keys().collect::<Vec<_>>(),
            )
            .field("active_runs", &self.inner.active.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

struct EngineInner {
    store: Arc<dyn Store>,
    codec: Codec,
    workflows: HashMap<&'static str, ErasedWorkflow>,
    drivers: Mutex<HashMap<Arc<str>, mpsc::UnboundedSender<DriverMsg>>>,
    phases: Mutex<HashMap<Arc<str>, watch::Sender<Phase>>>,
    shutdown: watch::Sender<bool>,
    shutting_down: AtomicBool,
    shutdown_grace: Duration,
    active: AtomicUsize,
    idle: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    fn assemble(
        store: Arc<dyn Store>,
        codec: Codec,
        workflows: HashMap<&'static str, ErasedWorkflow>,
        shutdown_grace: Duration,
    ) -> Self {
        let (shutdown, _) = watch::channel(false);
        Engine {
            inner: Arc::new(EngineInner {
                store,
                codec,
                workflows,
                drivers: Mutex::new(HashMap::new()),
                phases: Mutex::new(HashMap::new()),
                shutdown,
                shutting_down: AtomicBool::new(false),
                shutdown_grace,
                active: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// The store this engine journals to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Resumes every unfinished (running or parked) run from its journal.
    async fn recover(&self) -> Result<(), Error> {
        let runs = self.inner.store.unfinished_runs().await?;
        if !runs.is_empty() {
            tracing::info!(runs = runs.len(), "resuming unfinished workflows");
        }
        for run in runs {
            let id = run.workflow_id.clone();
            match self.resume(run).await {
                Ok(()) => {}
                // A damaged row affects only its run: park it and go on with the others.
                Err(Error::Store(error @ crate::store::StoreError::MalformedRow { .. })) => {
                    let reason = ParkReason::CorruptJournal {
                        message: error.to_string(),
                    };
                    self.park_stored(&id, &reason).await?;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn resume(&self, run: RunRecord) -> Result<(), Error> {
        let id: Arc<str> = Arc::from(run.workflow_id.as_str());
        let Some(workflow) = self
            .inner
            .workflows
            .get(run.workflow_name.as_str())
            .copied()
        else {
            tracing::error!(workflow_id = %id, workflow = %run.workflow_name, "journal names an unregistered workflow type");
            if run.state == RunState::Running {
                self.park_stored(
                    &id,
                    &ParkReason::UnknownWorkflowType {
                        name: run.workflow_name.clone(),
                    },
                )
                .await?;
            }
            return Ok(());
        };
        if run.state == RunState::Parked {
            self.inner
                .store
                .commit(Commit {
                    workflow_id: run.workflow_id.clone(),
                    events: Vec::new(),
                    consume_signal: None,
                    status: Some(StatusChange::Resume),
                })
                .await?;
        }
        let rows = self.inner.store.history(&id).await?;
        let history = match decode_history(&self.inner.codec, &rows) {
            Ok(history) => history,
            Err(reason) => {
                self.park_stored(&id, &reason).await?;
                return Ok(());
            }
        };
        let inbox = self.inner.store.pending_signals(&id).await?;
        self.spawn_driver(id, workflow, &run.input, history, inbox)
            .await
    }

    async fn park_stored(&self, id: &str, reason: &ParkReason) -> Result<(), Error> {
        let reason = self.inner.codec.encode(reason)?;
        self.inner
            .store
            .commit(Commit {
                workflow_id: id.to_string(),
                events: Vec::new(),
                consume_signal: None,
                status: Some(StatusChange::Park { reason }),
            })
            .await?;
        Ok(())
    }

    async fn spawn_driver(
        &self,
        id: Arc<str>,
        workflow: ErasedWorkflow,
        input: &[u8],
        history: History,
        inbox: Vec<crate::store::SignalRecord>,
    ) -> Result<(), Error> {
        let shared = Arc::new(RunShared::new(
            id.clone(),
            self.inner.codec,
            ReplayMachine::new(history),
        ));
        let future = match workflow.start(shared.clone(), input) {
            Ok(future) => future,
            Err(error) => {
                let reason = ParkReason::UndecodablePayload {
                    step: 0,
                    type_name: format!("input of `{}`", workflow.name),
                    message: error.to_string(),
                };
                return self.park_stored(&id, &reason).await;
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.drivers).insert(id.clone(), tx.clone());
        self.publish(&id, Phase::Active);
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        let driver = Driver::new(DriverParts {
            shared,
            future,
            store: self.inner.store.clone(),
            tx,
            rx,
            shutdown: self.inner.shutdown.subscribe(),
            shutdown_grace: self.inner.shutdown_grace,
            inbox,
        });
        let engine = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let exit = driver.run().await;
            if let Some(inner) = engine.upgrade() {
                let engine = Engine { inner };
                lock(&engine.inner.drivers).remove(&id);
                let view = match exit {
                    DriverExit::Finished | DriverExit::Parked => DriverExitView::Settled,
                    DriverExit::Shutdown | DriverExit::StoreFailed(_) => DriverExitView::Stopped,
                };
                engine.publish(&id, Phase::Ended(view.clone()));
                if view == DriverExitView::Settled {
                    // The outcome is in the store; waiters holding a receiver re-read it.
                    lock(&engine.inner.phases).remove(&id);
                }
                if engine.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
                    engine.inner.idle.notify_waiters();
                }
            }
        });
        Ok(())
    }

    fn publish(&self, id: &Arc<str>, phase: Phase) {
        let mut phases = lock(&self.inner.phases);
        match phases.get(id) {
            Some(sender) => {
                sender.send_replace(phase);
            }
            None => {
                phases.insert(id.clone(), watch::channel(phase).0);
            }
        }
    }

    pub(crate) fn subscribe(&self, id: &str) -> watch::Receiver<Phase> {
        let mut phases = lock(&self.inner.phases);
        if let Some(sender) = phases.get(id) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(Phase::Active);
        phases.insert(Arc::from(id), sender);
        receiver
    }

    /// Forgets the waiters' channel of a run that no driver runs here (called once a waiter is done).
    pub(crate) fn release(&self, id: &str) {
        let driven = lock(&self.inner.drivers).contains_key(id);
        if !driven {
            lock(&self.inner.phases).remove(id);
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// Starts a run of workflow `W` with a caller-chosen id, or returns the existing run with that id.
    ///
    /// Idempotent on the id: starting `"order-42"` twice returns a handle to the same run (the second
    /// input is ignored). If the id belongs to a run of another workflow type, fails with
    /// [`Error::WorkflowIdConflict`]. Once this returns `Ok`, the run is journaled and will complete,
    /// fail or be parked — after any number of crashes.
    pub async fn start<W: Workflow>(
        &self,
        workflow: W,
        workflow_id: impl Into<String>,
        input: W::Input,
    ) -> Result<RunHandle<W::Output>, Error> {
        let _ = workflow;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let erased = self.inner.workflows.get(W::NAME).copied().ok_or_else(|| {
            Error::UnregisteredWorkflow {
                name: W::NAME.to_string(),
            }
        })?;
        let workflow_id = workflow_id.into();
        let input = self.inner.codec.encode(&input)?;
        let outcome = self
            .inner
            .store
            .create_run(NewRun {
                workflow_id: workflow_id.clone(),
                workflow_name: W::NAME.to_string(),
                input: input.clone(),
            })
            .await?;
        match outcome {
            CreateOutcome::Created => {
                let id: Arc<str> = Arc::from(workflow_id.as_str());
                self.spawn_driver(id, erased, &input, History::default(), Vec::new())
                    .await?;
            }
            CreateOutcome::Existing(existing) if existing.workflow_name != W::NAME => {
                return Err(Error::WorkflowIdConflict {
                    workflow_id,
                    existing: existing.workflow_name,
                    requested: W::NAME.to_string(),
                });
            }
            CreateOutcome::Existing(_) => {}
        }
        Ok(RunHandle::new(self.clone(), workflow_id))
    }

    /// A handle to an existing run of workflow `W`.
    pub async fn handle<W: Workflow>(
        &self,
        workflow: W,
        workflow_id: impl Into<String>,
    ) -> Result<RunHandle<W::Output>, Error> {
        let _ = workflow;
        let workflow_id = workflow_id.into();
        let run = self
            .inner
            .store
            .run(&workflow_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                workflow_id: workflow_id.clone(),
            })?;
        if run.workflow_name != W::NAME {
            return Err(Error::WrongWorkflowType {
                workflow_id,
                expected: W::NAME.to_string(),
                actual: run.workflow_name,
            });
        }
        Ok(RunHandle::new(self.clone(), workflow_id))
    }

    /// Sends the signal `name` with `payload` to a run. Signals are journaled in the run's inbox at
    /// once (so they survive crashes even before the workflow waits for them) and delivered to its
    /// waits for that name in the order they were sent, each exactly once.
    pub async fn signal<T: Payload>(
        &self,
        workflow_id: &str,
        name: &str,
        payload: T,
    ) -> Result<(), Error> {
        let payload = self.inner.codec.encode(&payload)?;
        match self
            .inner
            .store
            .send_signal(workflow_id, name, payload)
            .await?
        {
            SignalOutcome::Queued(signal) => {
                let driver = lock(&self.inner.drivers).get(workflow_id).cloned();
                if let Some(driver) = driver {
                    let _ = driver.send(DriverMsg::Signal(signal));
                }
                Ok(())
            }
            SignalOutcome::NoSuchRun => Err(Error::NotFound {
                workflow_id: workflow_id.to_string(),
            }),
            SignalOutcome::RunFinished => Err(Error::RunFinished {
                workflow_id: workflow_id.to_string(),
            }),
        }
    }

    /// The status of a run.
    pub async fn status(&self, workflow_id: &str) -> Result<RunStatus, Error> {
        let run = self
            .inner
            .store
            .run(workflow_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                workflow_id: workflow_id.to_string(),
            })?;
        RunStatus::from_record(&run, self.inner.codec)
    }

    /// Stops taking work, lets running activity attempts finish and be journaled (up to the shutdown
    /// grace period), and stops every run's driver. Unfinished runs resume at the next start.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.shutdown.send_replace(true);
        let grace = self.inner.shutdown_grace + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.active.load(Ordering::Acquire) == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
    }
}
