//! Handles to runs: their status and their typed result.

use std::marker::PhantomData;

use super::{DriverExitView, Engine, Phase};
use crate::codec::Codec;
use crate::definition::Payload;
use crate::error::{Error, ParkReason, WorkflowError};
use crate::journal::{decode_park_reason, decode_workflow_error};
use crate::store::{PauseInfo, RunRecord, RunState};

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunStatus {
    /// Started and not finished: running, sleeping or waiting for a signal.
    Running,
    /// Completed with an output.
    Completed,
    /// Failed with this error.
    Failed(WorkflowError),
    /// Parked for this reason; it needs an operator ([`Engine::retry`]; the engine also retries it at
    /// its next start).
    Parked(ParkReason),
    /// Cancelled; this is the error the workflow ended with (its compensations ran).
    Cancelled(WorkflowError),
    /// Failed, and then a compensation failed too: the rollback is incomplete and needs an operator.
    CompensationFailed(WorkflowError),
    /// Unfinished, and paused by an operator (see [`Engine::pause`]): it starts no new step or
    /// attempt until [`Engine::resume`]. (A parked run that is also paused reports `Parked`; its
    /// pause is on [`RunRecord::paused`].)
    Paused(PauseInfo),
    /// Ended at once by an operator, without compensations (see [`Engine::terminate`]).
    Terminated(Termination),
}

/// Who terminated a run, why and when: the stored outcome of a [`RunStatus::Terminated`] run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Termination {
    /// The operator (as given to [`Engine::terminate`]).
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

impl RunStatus {
    pub(crate) fn from_record(run: &RunRecord, codec: Codec) -> Result<Self, Error> {
        Ok(match run.state {
            RunState::Running => match &run.paused {
                Some(pause) => RunStatus::Paused(pause.clone()),
                None => RunStatus::Running,
            },
            RunState::Completed => RunStatus::Completed,
            RunState::Failed => RunStatus::Failed(run_error(run, codec)?),
            RunState::Parked => RunStatus::Parked(park_reason(run, codec)?),
            RunState::Cancelled => RunStatus::Cancelled(run_error(run, codec)?),
            RunState::CompensationFailed => RunStatus::CompensationFailed(run_error(run, codec)?),
            RunState::Terminated => RunStatus::Terminated(termination(run, codec)?),
        })
    }
}

/// The error a failed, cancelled or compensation-failed run ended with, from its `error` column.
fn run_error(run: &RunRecord, codec: Codec) -> Result<WorkflowError, Error> {
    Ok(decode_workflow_error(&codec, error_column(run)?)?)
}

/// Why a parked run was parked, from its `error` column.
fn park_reason(run: &RunRecord, codec: Codec) -> Result<ParkReason, Error> {
    Ok(decode_park_reason(&codec, error_column(run)?)?)
}

/// Who terminated a run and why, from its `error` column.
fn termination(run: &RunRecord, codec: Codec) -> Result<Termination, Error> {
    Ok(codec.decode(error_column(run)?)?)
}

fn error_column(run: &RunRecord) -> Result<&[u8], Error> {
    let bytes = run.error.as_deref().ok_or_else(|| {
        Error::Store(crate::store::StoreError::MalformedRow {
            operation: "reading a run's outcome",
            message: format!(
                "run `{}` is {:?} without its error",
                run.workflow_id, run.state
            ),
        })
    })?;
    Ok(bytes)
}

/// The output type of a [`RunHandle`] whose workflow type is not known statically (the run made by
/// [`Engine::fork`]): [`RunHandle::typed`] turns it into a typed handle. Has no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyOutput {}

/// A handle to one run, typed by its workflow's output.
///
/// Returned by [`Engine::start`] and [`Engine::handle`]; cheap to clone. [`Engine::fork`] returns an
/// untyped one (`RunHandle<AnyOutput>`, the default), see [`RunHandle::typed`].
#[derive(Debug, Clone)]
pub struct RunHandle<T = AnyOutput> {
    engine: Engine,
    workflow_id: String,
    _output: PhantomData<fn() -> T>,
}

impl RunHandle<AnyOutput> {
    /// This handle typed by `workflow`'s output, once the run is checked to be of that type
    /// ([`Error::WrongWorkflowType`] otherwise).
    pub async fn typed<W: crate::definition::Workflow>(
        self,
        workflow: W,
    ) -> Result<RunHandle<W::Output>, Error> {
        self.engine.handle(workflow, self.workflow_id).await
    }
}

impl<T> RunHandle<T> {
    pub(super) fn new(engine: Engine, workflow_id: String) -> Self {
        RunHandle {
            engine,
            workflow_id,
            _output: PhantomData,
        }
    }

    /// The run's workflow id.
    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// Where the run stands now.
    pub async fn status(&self) -> Result<RunStatus, Error> {
        self.engine.status(&self.workflow_id).await
    }

    /// Sends the signal `name` with `payload` to this run; see [`Engine::signal`] (same errors:
    /// [`Error::RunFinished`] once the run has finished, [`Error::NotFound`] if its record is gone).
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn approval(ctx: WorkflowContext, _: ()) -> Result<bool, WorkflowError> {
    ///     ctx.signal::<bool>("approved").await
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(approval).start().await?;
    /// let run = engine.start(approval, "loan-7", ()).await?;
    /// run.signal("approved", true).await?;
    /// assert!(run.result().await?);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn signal<P: Payload>(&self, name: &str, payload: P) -> Result<(), Error> {
        self.engine.signal(&self.workflow_id, name, payload).await
    }

    /// Cancels this run with `reason`; see [`Engine::cancel`] (same errors: [`Error::RunFinished`]
    /// once the run has finished).
    pub async fn cancel(&self, reason: &str) -> Result<(), Error> {
        self.engine.cancel(&self.workflow_id, reason).await
    }

    /// Pauses this run; see [`Engine::pause`].
    pub async fn pause(&self, actor: &str, reason: &str) -> Result<(), Error> {
        self.engine.pause(&self.workflow_id, actor, reason).await
    }

    /// Resumes this paused run; see [`Engine::resume`].
    pub async fn resume(&self, actor: &str) -> Result<(), Error> {
        self.engine.resume(&self.workflow_id, actor).await
    }

    /// Terminates this run at once, without compensations; see [`Engine::terminate`].
    pub async fn terminate(&self, actor: &str, reason: &str) -> Result<(), Error> {
        self.engine
            .terminate(&self.workflow_id, actor, reason)
            .await
    }
}

impl<T: Payload> RunHandle<T> {
    /// Waits for the run to finish and returns its output; [`Error::WorkflowFailed`] if it failed,
    /// [`Error::RunParked`] if it was parked, [`Error::ShuttingDown`] if the engine stopped first.
    pub async fn result(&self) -> Result<T, Error> {
        let outcome = self.wait_for_outcome().await;
        self.engine.release(&self.workflow_id);
        outcome
    }

    async fn wait_for_outcome(&self) -> Result<T, Error> {
        let store = self.engine.store().clone();
        loop {
            let mut phase = self.engine.subscribe(&self.workflow_id);
            // Fast path: a run driven by this engine hands its output over through the channel.
            let settled = match &*phase.borrow() {
                Phase::Ended(DriverExitView::Settled(Some(output))) => Some(output.clone()),
                _ => None,
            };
            if let Some(output) = settled {
                return Ok(self.engine.codec().decode(&output)?);
            }
            let driven_here = matches!(*phase.borrow(), Phase::Active)
                && self.engine.is_driven(&self.workflow_id)
                && self.engine.poll_interval().is_none();
            if driven_here {
                // No need to read the store: its driver reports the outcome (or, if it leaves
                // memory or stops, closes or changes the channel and the store is read then).
                let _ = phase.changed().await;
                continue;
            }
            let run = store
                .run(&self.workflow_id)
                .await?
                .ok_or_else(|| Error::NotFound {
                    workflow_id: self.workflow_id.clone(),
                })?;
            let codec = self.engine.codec();
            match run.state {
                RunState::Completed => {
                    let bytes = run.output.as_deref().unwrap_or_default();
                    return Ok(codec.decode(bytes)?);
                }
                RunState::Failed | RunState::Cancelled | RunState::CompensationFailed => {
                    return Err(Error::WorkflowFailed {
                        workflow_id: self.workflow_id.clone(),
                        error: run_error(&run, codec)?,
                    });
                }
                RunState::Parked => {
                    return Err(Error::RunParked {
                        workflow_id: self.workflow_id.clone(),
                        reason: park_reason(&run, codec)?,
                    });
                }
                RunState::Terminated => {
                    let termination = termination(&run, codec)?;
                    return Err(Error::RunTerminated {
                        workflow_id: self.workflow_id.clone(),
                        actor: termination.actor,
                        reason: termination.reason,
                    });
                }
                _ => {}
            }
            let stopped = match &*phase.borrow_and_update() {
                Phase::Ended(DriverExitView::Stopped(reason)) => Some(reason.clone()),
                _ => None,
            };
            if let Some(every) = self.engine.poll_interval() {
                // Several engines share the store: whichever node drives the run, re-read it.
                if self.engine.is_shutting_down() {
                    return Err(Error::ShuttingDown);
                }
                let _ = tokio::time::timeout(every, phase.changed()).await;
                continue;
            }
            match stopped {
                Some(Some(reason)) => {
                    return Err(Error::RunStopped {
                        workflow_id: self.workflow_id.clone(),
                        reason,
                    });
                }
                Some(None) => return Err(Error::ShuttingDown),
                None if self.engine.is_shutting_down() => return Err(Error::ShuttingDown),
                None => {}
            }
            // Wait for the driver to report; a closed channel means it ended, so read the store again.
            let _ = phase.changed().await;
        }
    }
}
