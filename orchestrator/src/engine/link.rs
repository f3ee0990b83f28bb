//! What a driver may ask of its engine: start children, await other runs, cancel, announce state.

use std::sync::{Arc, Weak};

use super::launch::Creation;
use super::{DriverExitView, Engine, EngineInner, Phase};
use crate::error::WorkflowError;
use crate::journal::decode_workflow_error;
use crate::store::{NewRun, RunState, StoreError};

/// A weak handle from a driver back to its engine (drivers must not keep the engine alive).
#[derive(Clone)]
pub(crate) struct EngineLink {
    inner: Weak<EngineInner>,
}

impl EngineLink {
    pub(crate) fn new(inner: &Arc<EngineInner>) -> Self {
        EngineLink {
            inner: Arc::downgrade(inner),
        }
    }

    fn engine(&self) -> Option<Engine> {
        self.inner.upgrade().map(|inner| Engine { inner })
    }

    /// Creates (idempotently) and drives the child run `child_id` of `parent`.
    pub(crate) async fn start_child(
        &self,
        workflow_name: &str,
        child_id: &str,
        input: Vec<u8>,
        parent: &str,
    ) -> Result<Result<(), WorkflowError>, StoreError> {
        let start_error = |message: String| WorkflowError::ChildStart {
            workflow_id: child_id.to_string(),
            message,
        };
        let Some(engine) = self.engine() else {
            return Err(StoreError::Closed);
        };
        let Some(workflow) = engine.workflow(workflow_name) else {
            return Ok(Err(start_error(format!(
                "workflow type `{workflow_name}` is not registered with this engine"
            ))));
        };
        let run = NewRun {
            workflow_id: child_id.to_string(),
            workflow_name: workflow_name.to_string(),
            input,
            parent_id: Some(parent.to_string()),
            deadline_ms: None,
            execution_timeout_ms: None,
            owner: engine.initial_lease(),
            events: Vec::new(),
            paused: None,
        };
        // A store error is not the step's outcome: the parent's driver stops and is revived, and
        // starting the child again finds it if the failed call created it after all.
        match engine.create_and_drive(run, workflow).await {
            Ok(Creation::Existing(existing)) if existing.workflow_name != workflow_name => {
                Ok(Err(start_error(format!(
                    "the id is used by a `{}` run",
                    existing.workflow_name
                ))))
            }
            Ok(Creation::Created | Creation::Existing(_)) => Ok(Ok(())),
            Err(crate::Error::Store(error)) => Err(error),
            Err(error) => Ok(Err(start_error(error.to_string()))),
        }
    }

    /// Waits for the outcome of run `workflow_id`: its encoded output or its error. `None` if this
    /// engine stops first (the waiting step resumes at the next start).
    pub(crate) async fn run_outcome(
        &self,
        workflow_id: &str,
    ) -> Option<Result<Vec<u8>, WorkflowError>> {
        let mut failed_reads = 0;
        loop {
            let engine = self.engine()?;
            let mut phase = engine.subscribe(workflow_id);
            let run = match engine.inner.store.run(workflow_id).await {
                Ok(Some(run)) => run,
                Ok(None) => {
                    engine.release(workflow_id);
                    return Some(Err(WorkflowError::ChildStart {
                        workflow_id: workflow_id.to_string(),
                        message: "no run has this id".to_string(),
                    }));
                }
                Err(error) => {
                    // Transient or not, the outcome is still to come: read it again shortly.
                    tracing::warn!(%workflow_id, %error, "could not read an awaited run; trying again");
                    drop(engine);
                    failed_reads += 1;
                    let wait = super::STORE_REVIVAL.backoff(failed_reads, fastrand::f64());
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let codec = engine.codec();
            let outcome = match run.state {
                RunState::Completed => Some(Ok(run.output.unwrap_or_default())),
                RunState::Running | RunState::Parked => None,
                RunState::Terminated => {
                    let termination = run
                        .error
                        .as_deref()
                        .and_then(|bytes| codec.decode::<super::Termination>(bytes).ok());
                    Some(Err(WorkflowError::failed(match termination {
                        Some(t) => format!("terminated by {}: {}", t.actor, t.reason),
                        None => "terminated by an operator".to_string(),
                    })))
                }
                _ => Some(Err(run
                    .error
                    .as_deref()
                    .and_then(|bytes| decode_workflow_error(&codec, bytes).ok())
                    .unwrap_or_else(|| {
                        WorkflowError::failed("the run ended without its error")
                    }))),
            };
            if let Some(outcome) = outcome {
                engine.release(workflow_id);
                return Some(outcome);
            }
            if engine.is_shutting_down() {
                return None;
            }
            // Stopped by a shutdown: the waiting step resumes at the next start. (A run stopped by a
            // store failure is revived; its phase changes again then.)
            let stopped = matches!(
                *phase.borrow_and_update(),
                Phase::Ended(DriverExitView::Stopped(None))
            );
            let poll = engine.poll_interval();
            drop(engine);
            if stopped && poll.is_none() {
                return None;
            }
            match poll {
                // Another node may drive it: re-read the store now and then.
                Some(every) => {
                    let _ = tokio::time::timeout(every, phase.changed()).await;
                }
                None => {
                    if phase.changed().await.is_err() && self.inner.strong_count() == 0 {
                        return None;
                    }
                }
            }
        }
    }

    /// Cancels a child run because its parent abandoned it.
    pub(crate) async fn cancel_child(&self, workflow_id: &str, reason: &str) {
        if let Some(engine) = self.engine() {
            match engine.cancel(workflow_id, reason).await {
                Ok(()) | Err(crate::Error::RunFinished { .. }) => {}
                Err(error) => {
                    tracing::warn!(%workflow_id, %error, "could not cancel a child run");
                }
            }
        }
    }

    /// See [`Engine::release_driver`].
    pub(crate) fn release_driver(
        &self,
        workflow_id: &str,
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<super::driver::DriverMsg>,
    ) -> bool {
        match self.engine() {
            Some(engine) => engine.release_driver(workflow_id, rx),
            None => false,
        }
    }

    /// See [`Engine::over_capacity`].
    pub(crate) fn over_capacity(&self) -> bool {
        self.engine().is_some_and(|engine| engine.over_capacity())
    }

    /// Wakes the waiters of published state.
    pub(crate) fn state_published(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.state_published.notify_waiters();
        }
    }
}
