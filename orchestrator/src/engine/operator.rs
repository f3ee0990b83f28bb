//! Operator actions on one run: pause, resume, terminate.
//!
//! Each action is one store transaction that changes the run's row and appends an audit event
//! ([`EventBody::Operator`], at step 0, never read by replay) to the run's own history. The engine
//! then tells the run's driver, if it is resident here; otherwise the run's state in the store is
//! what every later load, wake-up and (with leases) claim reads: a paused run is skipped by all of
//! them, and with leases the node holding it learns of a pause in its cluster loop (like a
//! cancellation) and of a termination by its lease renewal missing the run.

use super::driver::DriverMsg;
use super::{Engine, Termination};
use crate::clock::now_ms;
use crate::error::Error;
use crate::journal::{Event, EventBody, OperatorAction, encode_event};
use crate::store::{OperatorChange, OperatorOutcome, OperatorWrite, PauseInfo};

impl Engine {
    /// Pauses a run: it starts no new step and no new attempt until [`Engine::resume`]. Activity
    /// attempts in flight finish and are journaled (within the
    /// [shutdown grace](crate::EngineBuilder::shutdown_grace); one still running then is cut short
    /// and runs again after the resume), then the run leaves memory. Timers, retries and the
    /// execution deadline that fall due while it is paused fire on resume; signals are still
    /// accepted into its inbox, and cancellation is recorded (both are seen on resume). The pause is
    /// durable: the run stays paused across restarts and, with several nodes, takeovers. It is
    /// recorded with `actor`, `reason` and the time in the run's history (an
    /// [`OperatorAction::Paused`] event) and on its record ([`RunRecord::paused`](crate::store::RunRecord)).
    ///
    /// Pausing a paused run is a no-op (`Ok`, no second audit event).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no run has this id, [`Error::RunFinished`] when it has finished,
    /// [`Error::Store`] when the store fails.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn nap(ctx: WorkflowContext, _input: ()) -> Result<u32, WorkflowError> {
    ///     ctx.sleep(Duration::from_millis(200)).await?;
    ///     Ok(7)
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(nap).start().await?;
    /// let run = engine.start(nap, "nap-1", ()).await?;
    /// engine.pause("nap-1", "alice", "investigating").await?;
    /// assert!(matches!(engine.status("nap-1").await?, RunStatus::Paused(_)));
    /// engine.resume("nap-1", "alice").await?;
    /// assert_eq!(run.result().await?, 7);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pause(&self, workflow_id: &str, actor: &str, reason: &str) -> Result<(), Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        let at_ms = now_ms();
        let action = OperatorAction::Paused {
            reason: reason.to_string(),
        };
        let change = OperatorChange::Pause(PauseInfo {
            by: actor.to_string(),
            reason: reason.to_string(),
            at_ms,
        });
        match self
            .operate(workflow_id, "pause", change, action, actor, at_ms)
            .await?
        {
            OperatorOutcome::AlreadyPaused => Ok(()),
            _ => {
                // Resident here: it starts nothing more from now on. Elsewhere (with leases), its
                // holder learns it in its cluster loop; not in memory, every load skips it.
                self.inner.runs.halt(workflow_id);
                self.inner.runs.send(workflow_id, DriverMsg::Pause);
                tracing::info!(%workflow_id, %actor, %reason, "run paused");
                Ok(())
            }
        }
    }

    /// Resumes a paused run: it is driven again from its journal (here, or with several nodes by
    /// whichever node claims it), and whatever fell due while it was paused happens now. Recorded
    /// with `actor` and the time in the run's history ([`OperatorAction::Resumed`]).
    ///
    /// # Errors
    ///
    /// [`Error::NotApplicable`] when the run is not paused (nothing is recorded),
    /// [`Error::NotFound`] when no run has this id, [`Error::RunFinished`] when it has finished,
    /// [`Error::Store`] when the store fails.
    pub async fn resume(&self, workflow_id: &str, actor: &str) -> Result<(), Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        let at_ms = now_ms();
        self.operate(
            workflow_id,
            "resume",
            OperatorChange::Resume,
            OperatorAction::Resumed,
            actor,
            at_ms,
        )
        .await?;
        tracing::info!(%workflow_id, %actor, "run resumed");
        // A driver still letting its attempts finish wakes the run again when it leaves (see
        // `driver_ended`); with leases, the run is claimable again once its holder gives it back.
        if !self.lease_mode() {
            self.wake(workflow_id);
        }
        Ok(())
    }

    /// Terminates a run: it ends at once as [`RunStatus::Terminated`](crate::RunStatus), with **no**
    /// compensations (unlike [`Engine::cancel`]). Works on running, paused and parked runs. A
    /// resident driver stops; the result of an activity attempt still in flight is discarded (the
    /// store refuses any write to a terminated run, and with leases the old holder's writes are
    /// fenced out). Child runs are not terminated. Recorded with `actor`, `reason` and the time in
    /// the run's history ([`OperatorAction::Terminated`]); waiters get [`Error::RunTerminated`].
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no run has this id, [`Error::RunFinished`] when it has already
    /// finished (terminated included), [`Error::Codec`] if the termination cannot be encoded,
    /// [`Error::Store`] when the store fails.
    pub async fn terminate(
        &self,
        workflow_id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(), Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        let at_ms = now_ms();
        let error = self.codec().encode(&Termination {
            actor: actor.to_string(),
            reason: reason.to_string(),
            at_ms,
        })?;
        let action = OperatorAction::Terminated {
            reason: reason.to_string(),
        };
        self.operate(
            workflow_id,
            "terminate",
            OperatorChange::Terminate {
                error,
                text: format!("terminated by {actor}: {reason}"),
            },
            action,
            actor,
            at_ms,
        )
        .await?;
        tracing::info!(%workflow_id, %actor, %reason, "run terminated");
        if !self.inner.runs.send(workflow_id, DriverMsg::Terminate) {
            // Not driven here: its waiters read the outcome from the store.
            self.settle(workflow_id, None);
        }
        Ok(())
    }

    /// Writes an operator action with its audit event; maps the outcomes that refuse it to errors.
    async fn operate(
        &self,
        workflow_id: &str,
        verb: &'static str,
        change: OperatorChange,
        action: OperatorAction,
        actor: &str,
        at_ms: i64,
    ) -> Result<OperatorOutcome, Error> {
        let audit = encode_event(
            &self.codec(),
            &Event {
                step: 0,
                body: EventBody::Operator {
                    action,
                    actor: actor.to_string(),
                    at_ms,
                },
            },
        )?;
        let write = OperatorWrite {
            workflow_id: workflow_id.to_string(),
            change,
            audit,
        };
        match self.inner.store.operate(write).await? {
            OperatorOutcome::NoSuchRun => Err(Error::NotFound {
                workflow_id: workflow_id.to_string(),
            }),
            OperatorOutcome::RunFinished => Err(Error::RunFinished {
                workflow_id: workflow_id.to_string(),
            }),
            OperatorOutcome::NotPaused => Err(Error::NotApplicable {
                workflow_id: workflow_id.to_string(),
                action: verb,
                reason: "the run is not paused".to_string(),
            }),
            outcome => Ok(outcome),
        }
    }
}
