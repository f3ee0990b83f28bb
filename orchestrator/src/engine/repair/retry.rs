//! `Engine::retry`: a failed, parked or compensation-failed run is driven again, now, on the current
//! code.
//!
//! What is rewound, by the state the run is in:
//! - **Parked**: nothing; the run is replayed again from its whole journal (audit step 0).
//! - **Failed** at a step (an activity whose attempts ran out or whose error was not retryable, a
//!   signal wait that timed out): every journal event of that step is dropped (its failing
//!   completion, its failed attempts and attempt starts), so it runs again live with a fresh retry
//!   budget; everything else is kept. Refused if compensations already ran after the failure (the
//!   effects the journal would replay were rolled back: fork from an earlier step instead), and for
//!   failures not at a step (the workflow's own error, a child's failure, a timeout).
//! - **CompensationFailed**: the failed compensation's events are dropped; replay reaches the
//!   original failure again, the compensations that succeeded are replayed, and the failed one runs
//!   again with a fresh budget, then the ones registered before it. The run then ends `Failed` with
//!   its original error (or `CompensationFailed` again).
//!
//! The rewind, the state change back to running and the audit annotations are one transaction
//! ([`Store::rewind`](crate::store::Store::rewind)), conditional on the state the plan was computed
//! from: of two concurrent retries one wins, the other is refused, and the run is driven once.

use std::collections::HashSet;

use super::not_applicable;
use crate::engine::Engine;
use crate::error::{Error, WorkflowError};
use crate::journal::{Event, EventBody, OperatorAction, decode_events};
use crate::store::{Rewind, RewindOutcome, RunRecord, RunState, StoredEvent};

const ACTION: &str = "retry";

/// What a retry rewinds.
struct Plan {
    /// The step that runs again (0: the run is replayed again).
    step: u32,
    drop_seqs: Vec<i64>,
    wakeups: Vec<(u32, i64)>,
    error: String,
}

impl Engine {
    /// Drives a failed, parked or compensation-failed run again — now, on the current code, without
    /// a restart — recording the retry by `actor` in the run's history
    /// ([`OperatorAction::Retried`]).
    ///
    /// The journal up to the failed step is kept and the failed step runs again with a fresh retry
    /// budget; a parked run is replayed again (one parked for nondeterminism on unchanged code parks
    /// again with the same error). A run whose compensation failed runs that compensation again;
    /// see `docs/operations.md` for exactly what is rewound. The run is driven by this engine, or,
    /// on a store shared by several engines, by whichever node claims it first. Await it with
    /// [`Engine::handle`].
    ///
    /// # Errors
    ///
    /// - [`Error::NotApplicable`] (nothing changed) for a running, completed or cancelled run, a run
    ///   that failed in its own code rather than at a step, a failed run whose compensations already
    ///   ran (fork it instead), or when a concurrent retry won.
    /// - [`Error::UnregisteredWorkflow`] when this engine (without a shared store) does not know the
    ///   run's workflow type: it would drive it and park it at once.
    /// - [`Error::NotFound`], [`Error::Store`], [`Error::Codec`].
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[activity(retry(max_attempts = 1))]
    /// async fn flaky(n: u32) -> Result<u32, ActivityError> {
    ///     Err(ActivityError::retryable("the service is down"))
    /// }
    ///
    /// #[workflow]
    /// async fn job(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ///     ctx.call(flaky, n).await
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(job).register(flaky).start().await?;
    /// let run = engine.start(job, "job-1", 7).await?;
    /// assert!(run.result().await.is_err());
    /// engine.retry("job-1", "alice").await?; // runs `flaky` again, with a fresh budget
    /// assert!(run.result().await.is_err()); // (still down)
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn retry(&self, workflow_id: &str, actor: &str) -> Result<(), Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let run = self.run_record(workflow_id).await?;
        if !self.lease_mode() && self.drives_runs() && self.workflow(&run.workflow_name).is_none() {
            // This engine would drive it and park it at once as an unknown type.
            return Err(Error::UnregisteredWorkflow {
                name: run.workflow_name,
            });
        }
        let plan = match run.state {
            RunState::Parked => {
                let reason = crate::journal::decode_park_reason(&self.codec(), error_column(&run))?;
                Plan {
                    step: 0,
                    drop_seqs: Vec::new(),
                    wakeups: Vec::new(),
                    error: reason.to_string(),
                }
            }
            RunState::Failed | RunState::CompensationFailed => self.plan_rewind(&run).await?,
            RunState::Running => {
                return Err(not_applicable(
                    workflow_id,
                    ACTION,
                    "it is running (only failed, parked or compensation-failed runs are retried)",
                ));
            }
            other => {
                return Err(not_applicable(
                    workflow_id,
                    ACTION,
                    format!(
                        "it is {other:?} (only failed, parked or compensation-failed runs are retried)"
                    ),
                ));
            }
        };
        let dropped_events = u32::try_from(plan.drop_seqs.len()).unwrap_or(u32::MAX);
        let events = vec![
            self.operator_event(OperatorAction::Retried { step: plan.step }, actor)?,
            self.operator_event(
                OperatorAction::RetrySuperseded {
                    state: format!("{:?}", run.state),
                    error: plan.error,
                    dropped_events,
                },
                actor,
            )?,
        ];
        let outcome = self
            .inner
            .store
            .rewind(Rewind {
                workflow_id: workflow_id.to_string(),
                run_no: run.run_no,
                expected_state: run.state,
                drop_seqs: plan.drop_seqs,
                events,
                wakeups: plan.wakeups,
            })
            .await?;
        match outcome {
            RewindOutcome::Rewound => {
                tracing::info!(
                    workflow_id,
                    actor,
                    step = plan.step,
                    "run retried by an operator"
                );
                // With leases the run is unowned now: whichever node claims it first drives it.
                if !self.lease_mode() {
                    self.wake(workflow_id);
                }
                Ok(())
            }
            RewindOutcome::NoSuchRun => Err(Error::NotFound {
                workflow_id: workflow_id.to_string(),
            }),
            RewindOutcome::Changed(state) => Err(not_applicable(
                workflow_id,
                ACTION,
                format!("it changed meanwhile and is {state:?} now (a concurrent retry?)"),
            )),
        }
    }

    /// A failed or compensation-failed run's rewind: the failed step's events are dropped.
    async fn plan_rewind(&self, run: &RunRecord) -> Result<Plan, Error> {
        let id = run.workflow_id.as_str();
        let error = crate::journal::decode_workflow_error(&self.codec(), error_column(run))?;
        let failed = match (&error, run.state) {
            (WorkflowError::CompensationFailed { compensation, .. }, _) => step_of(compensation),
            (_, RunState::CompensationFailed) => None,
            (error, _) => step_of(error),
        };
        let Some(step) = failed else {
            return Err(not_applicable(
                id,
                ACTION,
                format!(
                    "it did not fail at a step that can run again ({error}); fork it from a step instead"
                ),
            ));
        };
        let rows = self.inner.store.history(id).await?;
        let events = decode_events(&self.codec(), &rows).map_err(|reason| {
            not_applicable(id, ACTION, format!("its journal cannot be read: {reason}"))
        })?;
        let Some(failing) = events
            .iter()
            .position(|event| event.step == step && event.body.is_completion())
        else {
            return Err(not_applicable(
                id,
                ACTION,
                format!("its journal has no outcome for the failed step {step}"),
            ));
        };
        if run.state == RunState::Failed {
            // Steps issued after the failure are compensations (the body returned at the failure).
            let issued = events[..=failing]
                .iter()
                .map(|event| event.step)
                .max()
                .unwrap_or(step);
            let compensated = events[failing..]
                .iter()
                .any(|event| event.step > issued && !event.body.is_annotation());
            if compensated {
                return Err(not_applicable(
                    id,
                    ACTION,
                    format!(
                        "its compensations already ran after step {step} failed: replaying it forward \
                         would reuse effects that were rolled back; fork it from a step before {step} instead"
                    ),
                ));
            }
        }
        Ok(Plan {
            step,
            drop_seqs: dropped(&rows, &events, step),
            wakeups: pending_wakeups(&events, step),
            error: error.to_string(),
        })
    }
}

/// A finished or parked run's `error` column (empty if missing: it then fails to decode).
fn error_column(run: &RunRecord) -> &[u8] {
    run.error.as_deref().unwrap_or_default()
}

/// The step a failure happened at, if it is one that can run again.
fn step_of(error: &WorkflowError) -> Option<u32> {
    match error {
        WorkflowError::ActivityFailed { step, .. } | WorkflowError::SignalTimeout { step, .. } => {
            Some(*step)
        }
        _ => None,
    }
}

/// The `seq`s of every event of `step` (run-level events, at step 0, are never dropped).
fn dropped(rows: &[StoredEvent], events: &[Event], step: u32) -> Vec<i64> {
    rows.iter()
        .zip(events)
        .filter(|(_, event)| step != 0 && event.step == step)
        .map(|(row, _)| row.seq)
        .collect()
}

/// The wake-ups still pending once `step`'s events are dropped: timers and signal deadlines of
/// other steps without a completion.
fn pending_wakeups(events: &[Event], step: u32) -> Vec<(u32, i64)> {
    let completed: HashSet<u32> = events
        .iter()
        .filter(|event| event.body.is_completion())
        .map(|event| event.step)
        .collect();
    events
        .iter()
        .filter(|event| event.step != step && !completed.contains(&event.step))
        .filter_map(|event| match &event.body {
            EventBody::TimerStarted { fire_at_ms } => Some((event.step, *fire_at_ms)),
            EventBody::SignalWaitStarted { deadline_ms, .. } => Some((event.step, *deadline_ms)),
            _ => None,
        })
        .collect()
}
