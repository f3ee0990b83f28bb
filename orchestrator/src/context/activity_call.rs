//! The future of an activity call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::WorkflowContext;
use super::step::{StepSlot, interruption_error};
use super::workflow::{ActivityInvocation, Marker, undecodable};
use crate::codec::{CodecError, fingerprint};
use crate::definition::Activity;
use crate::error::WorkflowError;
use crate::journal::EventBody;

/// An activity call with its output still encoded (used for typed calls and compensations).
#[derive(Debug)]
pub(crate) struct RawActivityCall {
    slot: StepSlot,
    name: &'static str,
    invocation: Option<Result<ActivityInvocation, CodecError>>,
}

impl RawActivityCall {
    pub(crate) fn new(
        ctx: WorkflowContext,
        name: &'static str,
        invocation: Result<ActivityInvocation, CodecError>,
    ) -> Self {
        RawActivityCall {
            slot: StepSlot::new(ctx),
            name,
            invocation: Some(invocation),
        }
    }

    pub(crate) fn step(&self) -> Option<u32> {
        self.slot.step()
    }
}

impl Future for RawActivityCall {
    type Output = Result<Vec<u8>, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let name = this.name;
        match this.invocation.take() {
            Some(Err(error)) => {
                // The input never encoded: no step is issued (the same on replay).
                let step = this.slot.ctx.shared.machine().steps_issued() + 1;
                return Poll::Ready(Err(WorkflowError::Payload {
                    step,
                    message: error.to_string(),
                }));
            }
            Some(Ok(invocation)) => this.slot.issue(|machine| {
                machine.issue_activity(name, fingerprint(&invocation.input), invocation)
            }),
            None => {}
        }
        let outcome = this.slot.poll_issued(cx);
        match outcome {
            None => Poll::Pending,
            Some((
                step,
                EventBody::ActivityCompleted {
                    result, attempts, ..
                },
            )) => Poll::Ready(result.map_err(|error| WorkflowError::ActivityFailed {
                activity: name.to_string(),
                step,
                attempts,
                error,
            })),
            Some((_, EventBody::Interrupted { interrupt })) => {
                Poll::Ready(Err(interruption_error(interrupt)))
            }
            Some((step, other)) => {
                this.slot.wrong_outcome(step, "an activity outcome", &other);
                Poll::Pending
            }
        }
    }
}

/// The future of [`WorkflowContext::call`]: resolves to the activity's output, or to
/// [`WorkflowError::ActivityFailed`] once its retries are exhausted.
///
/// Dropping it before it completes (e.g. as the loser of a [`select`](WorkflowContext::select))
/// abandons the step: the activity is told to stop through its context and its result is discarded.
#[must_use = "a step does nothing unless awaited"]
pub struct ActivityCall<A: Activity> {
    raw: RawActivityCall,
    _activity: Marker<A>,
}

impl<A: Activity> std::fmt::Debug for ActivityCall<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityCall")
            .field("activity", &A::NAME)
            .field("step", &self.raw.step())
            .finish()
    }
}

impl<A: Activity> ActivityCall<A> {
    pub(crate) fn new(
        ctx: WorkflowContext,
        invocation: Result<ActivityInvocation, CodecError>,
    ) -> Self {
        ActivityCall {
            raw: RawActivityCall::new(ctx, A::NAME, invocation),
            _activity: Marker::default(),
        }
    }
}

impl<A: Activity> Future for ActivityCall<A> {
    type Output = Result<A::Output, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let bytes = match Pin::new(&mut this.raw).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(bytes)) => bytes,
        };
        let codec = this.raw.slot.ctx.shared.codec;
        match codec.decode::<A::Output>(&bytes) {
            Ok(output) => Poll::Ready(Ok(output)),
            Err(error) => {
                let step = this.raw.step().unwrap_or(0);
                this.raw
                    .slot
                    .ctx
                    .shared
                    .machine()
                    .fail(undecodable::<A::Output>(step, &error));
                Poll::Pending
            }
        }
    }
}
