//! Child workflows, and awaiting any run's outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::WorkflowContext;
use super::step::{StepSlot, interruption_error};
use super::workflow::{Marker, undecodable};
use crate::codec::CodecError;
use crate::definition::Workflow;
use crate::error::WorkflowError;
use crate::journal::EventBody;

/// What a run-outcome future waits for.
#[derive(Debug)]
enum Target {
    /// Start this child (encoded input), then await it.
    Child {
        input: Option<Result<Vec<u8>, CodecError>>,
        cancel_with_parent: bool,
    },
    /// Await an existing run.
    Existing,
}

/// The future of [`WorkflowContext::child`] and [`WorkflowContext::workflow_result`]: the other run's
/// output, or [`WorkflowError::ChildFailed`] with its error.
///
/// A child is started durably: exactly one run per step, across crashes (its id is the one given, and
/// starting an id is idempotent). By default cancelling the parent cancels a child it is waiting for;
/// [`ChildCall::detached`] opts out.
#[must_use = "a step does nothing unless awaited"]
pub struct ChildCall<W: Workflow> {
    slot: StepSlot,
    workflow_id: String,
    target: Target,
    _workflow: Marker<W>,
}

impl<W: Workflow> std::fmt::Debug for ChildCall<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildCall")
            .field("workflow", &W::NAME)
            .field("workflow_id", &self.workflow_id)
            .field("step", &self.slot.step())
            .finish()
    }
}

impl<W: Workflow> ChildCall<W> {
    pub(crate) fn child(ctx: WorkflowContext, workflow_id: String, input: &W::Input) -> Self {
        let input = ctx.shared.codec.encode(input);
        ChildCall {
            slot: StepSlot::new(ctx),
            workflow_id,
            target: Target::Child {
                input: Some(input),
                cancel_with_parent: true,
            },
            _workflow: Marker::default(),
        }
    }

    pub(crate) fn existing(ctx: WorkflowContext, workflow_id: String) -> Self {
        ChildCall {
            slot: StepSlot::new(ctx),
            workflow_id,
            target: Target::Existing,
            _workflow: Marker::default(),
        }
    }

    /// Keeps the child running when the parent is cancelled (the parent's wait still ends).
    pub fn detached(mut self) -> Self {
        if let Target::Child {
            cancel_with_parent, ..
        } = &mut self.target
        {
            *cancel_with_parent = false;
        }
        self
    }
}

impl<W: Workflow> Future for ChildCall<W> {
    type Output = Result<W::Output, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.slot.step().is_none()
            && let Err(error) = crate::limits::check_workflow_id(&this.workflow_id)
        {
            // Refused before a step is issued (the same on replay), like an unencodable input.
            return Poll::Ready(Err(WorkflowError::ChildStart {
                workflow_id: crate::limits::shortened(&this.workflow_id),
                message: error.to_string(),
            }));
        }
        if this.slot.step().is_none()
            && let Target::Child {
                input: Some(Err(error)),
                ..
            } = &this.target
        {
            let step = this.slot.ctx.shared.machine().steps_issued() + 1;
            return Poll::Ready(Err(WorkflowError::Payload {
                step,
                message: format!("input of child `{}`: {error}", this.workflow_id),
            }));
        }
        let workflow_id = this.workflow_id.clone();
        let target = &mut this.target;
        let outcome = this.slot.poll_outcome(cx, |machine| match target {
            Target::Child {
                input,
                cancel_with_parent,
            } => {
                let input = match input.take() {
                    Some(Ok(input)) => input,
                    _ => Vec::new(),
                };
                machine.issue_child(W::NAME.to_string(), workflow_id, input, *cancel_with_parent)
            }
            Target::Existing => machine.issue_await_run(workflow_id),
        });
        match outcome {
            None => Poll::Pending,
            Some((step, EventBody::RunFinished { result, .. })) => match result {
                Ok(bytes) => match this.slot.ctx.shared.codec.decode::<W::Output>(&bytes) {
                    Ok(output) => Poll::Ready(Ok(output)),
                    Err(error) => {
                        this.slot
                            .ctx
                            .shared
                            .machine()
                            .fail(undecodable::<W::Output>(step, &error));
                        Poll::Pending
                    }
                },
                Err(error) => Poll::Ready(Err(match error {
                    start @ WorkflowError::ChildStart { .. } => start,
                    error => WorkflowError::ChildFailed {
                        workflow_id: this.workflow_id.clone(),
                        error: Box::new(error),
                    },
                })),
            },
            Some((_, EventBody::Interrupted { interrupt })) => {
                Poll::Ready(Err(interruption_error(interrupt)))
            }
            Some((step, other)) => {
                this.slot.wrong_outcome(step, "a run outcome", &other);
                Poll::Pending
            }
        }
    }
}
