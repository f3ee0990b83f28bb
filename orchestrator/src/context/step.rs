//! What every durable step future shares: lazy numbering, outcome polling, abandonment on drop.

use std::task::Context;

use super::WorkflowContext;
use crate::error::{ParkReason, WorkflowError};
use crate::journal::{EventBody, Interrupt};
use crate::replay::ReplayMachine;

use super::workflow::ActivityInvocation;

/// The slot of one step inside a step future.
#[derive(Debug)]
pub(crate) struct StepSlot {
    pub(crate) ctx: WorkflowContext,
    step: Option<u32>,
    done: bool,
}

impl StepSlot {
    pub(crate) fn new(ctx: WorkflowContext) -> Self {
        StepSlot {
            ctx,
            step: None,
            done: false,
        }
    }

    /// The step number, once issued.
    pub(crate) fn step(&self) -> Option<u32> {
        self.step
    }

    /// Issues the step on the first call (with `issue`), then returns its outcome once delivered.
    pub(crate) fn poll_outcome(
        &mut self,
        cx: &mut Context<'_>,
        issue: impl FnOnce(&mut ReplayMachine<ActivityInvocation>) -> u32,
    ) -> Option<(u32, EventBody)> {
        if self.done {
            return None;
        }
        // Cloned and (when replaced) dropped outside the machine's lock: a waker is user code.
        let waker = cx.waker().clone();
        let (outcome, unused) = {
            let mut machine = self.ctx.shared.machine();
            let step = *self.step.get_or_insert_with(|| issue(&mut machine));
            machine.poll_step(step, waker)
        };
        drop(unused);
        let step = self.step?;
        let outcome = outcome?;
        self.done = true;
        Some((step, outcome))
    }

    /// The outcome of a step already issued with [`StepSlot::issue`]; `None` while it is pending
    /// (or if it was never issued).
    pub(crate) fn poll_issued(&mut self, cx: &mut Context<'_>) -> Option<(u32, EventBody)> {
        let step = self.step?;
        self.poll_outcome(cx, |_| step)
    }

    /// Issues the step now (once).
    pub(crate) fn issue(
        &mut self,
        issue: impl FnOnce(&mut ReplayMachine<ActivityInvocation>) -> u32,
    ) {
        if self.step.is_none() {
            let step = issue(&mut self.ctx.shared.machine());
            self.step = Some(step);
        }
    }

    /// Parks the run because `step` received an outcome of the wrong kind.
    pub(crate) fn wrong_outcome(&self, step: u32, expected: &str, got: &EventBody) {
        self.ctx.shared.machine().fail(ParkReason::CorruptJournal {
            message: format!("step {step} expected {expected} but the journal delivered {got:?}"),
        });
    }
}

impl Drop for StepSlot {
    fn drop(&mut self) {
        if let (Some(step), false) = (self.step, self.done) {
            let waker = self.ctx.shared.machine().abandon(step);
            drop(waker);
        }
    }
}

/// The error a step returns when the run was interrupted while it waited.
pub(crate) fn interruption_error(interrupt: Interrupt) -> WorkflowError {
    match interrupt {
        Interrupt::Cancelled { reason } => WorkflowError::Cancelled { reason },
        Interrupt::TimedOut { timeout_ms } => WorkflowError::TimedOut {
            timeout: std::time::Duration::from_millis(timeout_ms),
        },
    }
}
