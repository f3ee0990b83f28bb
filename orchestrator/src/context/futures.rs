//! The durable step futures returned by [`WorkflowContext`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::WorkflowContext;
use super::workflow::{ActivityInvocation, Marker, undecodable};
use crate::clock::now_ms;
use crate::codec::{CodecError, fingerprint};
use crate::definition::{Activity, Payload};
use crate::error::{ParkReason, WorkflowError};
use crate::journal::EventBody;

/// Parks the run because `step` received an outcome of the wrong kind, and stays pending.
fn wrong_outcome<T>(ctx: &WorkflowContext, step: u32, expected: &str, got: &EventBody) -> Poll<T> {
    ctx.shared.machine().fail(ParkReason::CorruptJournal {
        message: format!("step {step} expected {expected} but the journal delivered {got:?}"),
    });
    Poll::Pending
}

/// The future of [`WorkflowContext::call`]: resolves to the activity's output, or to
/// [`WorkflowError::ActivityFailed`] once its retries are exhausted.
#[must_use = "a step does nothing unless awaited"]
pub struct ActivityCall<A: Activity> {
    ctx: WorkflowContext,
    invocation: Option<Result<ActivityInvocation, CodecError>>,
    step: Option<u32>,
    _activity: Marker<A>,
}

impl<A: Activity> std::fmt::Debug for ActivityCall<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityCall")
            .field("activity", &A::NAME)
            .field("step", &self.step)
            .finish()
    }
}

// No field is ever pinned: the future only moves owned data out of `Option`s.
impl<A: Activity> Unpin for ActivityCall<A> {}

impl<A: Activity> ActivityCall<A> {
    pub(crate) fn new(
        ctx: WorkflowContext,
        invocation: Result<ActivityInvocation, CodecError>,
    ) -> Self {
        ActivityCall {
            ctx,
            invocation: Some(invocation),
            step: None,
            _activity: Marker::default(),
        }
    }
}

impl<A: Activity> Future for ActivityCall<A> {
    type Output = Result<A::Output, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let step = match this.step {
            Some(step) => step,
            None => {
                let Some(invocation) = this.invocation.take() else {
                    return Poll::Pending;
                };
                let mut machine = this.ctx.shared.machine();
                let invocation = match invocation {
                    Ok(invocation) => invocation,
                    Err(error) => {
                        return Poll::Ready(Err(WorkflowError::Payload {
                            step: machine.steps_issued() + 1,
                            message: error.to_string(),
                        }));
                    }
                };
                let step =
                    machine.issue_activity(A::NAME, fingerprint(&invocation.input), invocation);
                this.step = Some(step);
                step
            }
        };
        let outcome = this.ctx.shared.machine().poll_step(step, cx.waker());
        match outcome {
            None => Poll::Pending,
            Some(EventBody::ActivityCompleted {
                result, attempts, ..
            }) => match result {
                Ok(bytes) => match this.ctx.shared.codec.decode::<A::Output>(&bytes) {
                    Ok(output) => Poll::Ready(Ok(output)),
                    Err(error) => {
                        this.ctx
                            .shared
                            .machine()
                            .fail(undecodable::<A::Output>(step, &error));
                        Poll::Pending
                    }
                },
                Err(error) => Poll::Ready(Err(WorkflowError::ActivityFailed {
                    activity: A::NAME.to_string(),
                    step,
                    attempts,
                    error,
                })),
            },
            Some(other) => wrong_outcome(&this.ctx, step, "an activity outcome", &other),
        }
    }
}

/// The future of [`WorkflowContext::sleep`].
#[must_use = "a step does nothing unless awaited"]
#[derive(Debug)]
pub struct Sleep {
    ctx: WorkflowContext,
    duration: Duration,
    step: Option<u32>,
}

impl Sleep {
    pub(crate) fn new(ctx: WorkflowContext, duration: Duration) -> Self {
        Sleep {
            ctx,
            duration,
            step: None,
        }
    }
}

impl Future for Sleep {
    type Output = Result<(), WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut machine = this.ctx.shared.machine();
        let step = *this
            .step
            .get_or_insert_with(|| machine.issue_timer(this.duration, now_ms()));
        let outcome = machine.poll_step(step, cx.waker());
        drop(machine);
        match outcome {
            None => Poll::Pending,
            Some(EventBody::TimerFired) => Poll::Ready(Ok(())),
            Some(other) => wrong_outcome(&this.ctx, step, "a timer firing", &other),
        }
    }
}

/// The future of [`WorkflowContext::signal`]: the next signal of that name, decoded as `T`.
#[must_use = "a step does nothing unless awaited"]
pub struct SignalWait<T> {
    ctx: WorkflowContext,
    name: String,
    timeout: Option<Duration>,
    step: Option<u32>,
    _payload: Marker<T>,
}

impl<T> std::fmt::Debug for SignalWait<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalWait")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("step", &self.step)
            .finish()
    }
}

impl<T> Unpin for SignalWait<T> {}

impl<T: Payload> SignalWait<T> {
    pub(crate) fn new(ctx: WorkflowContext, name: String) -> Self {
        SignalWait {
            ctx,
            name,
            timeout: None,
            step: None,
            _payload: Marker::default(),
        }
    }

    /// Gives up after `timeout` (measured durably from the first poll) with
    /// [`WorkflowError::SignalTimeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<T: Payload> Future for SignalWait<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut machine = this.ctx.shared.machine();
        let step = match this.step {
            Some(step) => step,
            None => {
                let step = machine.issue_signal(this.name.clone(), this.timeout, now_ms());
                this.step = Some(step);
                step
            }
        };
        let outcome = machine.poll_step(step, cx.waker());
        drop(machine);
        match outcome {
            None => Poll::Pending,
            Some(EventBody::SignalReceived { payload, .. }) => {
                match this.ctx.shared.codec.decode::<T>(&payload) {
                    Ok(value) => Poll::Ready(Ok(value)),
                    Err(error) => Poll::Ready(Err(WorkflowError::Payload {
                        step,
                        message: format!("signal `{}`: {error}", this.name),
                    })),
                }
            }
            Some(EventBody::SignalTimedOut { name }) => {
                Poll::Ready(Err(WorkflowError::SignalTimeout {
                    name,
                    step,
                    timeout: this.timeout.unwrap_or_default(),
                }))
            }
            Some(other) => wrong_outcome(&this.ctx, step, "a signal", &other),
        }
    }
}
