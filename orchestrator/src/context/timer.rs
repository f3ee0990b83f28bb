//! The future of a durable sleep.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::WorkflowContext;
use super::step::{StepSlot, interruption_error};
use crate::clock::now_ms;
use crate::error::WorkflowError;
use crate::journal::EventBody;

/// The future of [`WorkflowContext::sleep`]. Dropping it before it fires cancels the timer.
#[must_use = "a step does nothing unless awaited"]
#[derive(Debug)]
pub struct Sleep {
    slot: StepSlot,
    duration: Duration,
}

impl Sleep {
    pub(crate) fn new(ctx: WorkflowContext, duration: Duration) -> Self {
        Sleep {
            slot: StepSlot::new(ctx),
            duration,
        }
    }
}

impl Future for Sleep {
    type Output = Result<(), WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let duration = this.duration;
        match this
            .slot
            .poll_outcome(cx, |machine| machine.issue_timer(duration, now_ms()))
        {
            None => Poll::Pending,
            Some((_, EventBody::TimerFired)) => Poll::Ready(Ok(())),
            Some((_, EventBody::Interrupted { interrupt })) => {
                Poll::Ready(Err(interruption_error(interrupt)))
            }
            Some((step, other)) => {
                this.slot.wrong_outcome(step, "a timer firing", &other);
                Poll::Pending
            }
        }
    }
}
