//! The future of a signal wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::WorkflowContext;
use super::step::{StepSlot, interruption_error};
use super::workflow::Marker;
use crate::clock::now_ms;
use crate::definition::Payload;
use crate::error::WorkflowError;
use crate::journal::EventBody;

/// The future of [`WorkflowContext::signal`]: the next signal of that name, decoded as `T`.
///
/// Dropping it before a signal arrives withdraws the wait: no signal is consumed for it.
#[must_use = "a step does nothing unless awaited"]
pub struct SignalWait<T> {
    slot: StepSlot,
    name: String,
    timeout: Option<Duration>,
    _payload: Marker<T>,
}

impl<T> std::fmt::Debug for SignalWait<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalWait")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("step", &self.slot.step())
            .finish()
    }
}

impl<T: Payload> SignalWait<T> {
    pub(crate) fn new(ctx: WorkflowContext, name: String) -> Self {
        SignalWait {
            slot: StepSlot::new(ctx),
            name,
            timeout: None,
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
        let (name, timeout) = (this.name.clone(), this.timeout);
        match this
            .slot
            .poll_outcome(cx, |machine| machine.issue_signal(name, timeout, now_ms()))
        {
            None => Poll::Pending,
            Some((step, EventBody::SignalReceived { payload, .. })) => {
                match this.slot.ctx.shared.codec.decode::<T>(&payload) {
                    Ok(value) => Poll::Ready(Ok(value)),
                    Err(error) => Poll::Ready(Err(WorkflowError::Payload {
                        step,
                        message: format!("signal `{}`: {error}", this.name),
                    })),
                }
            }
            Some((step, EventBody::SignalTimedOut { name })) => {
                Poll::Ready(Err(WorkflowError::SignalTimeout {
                    name,
                    step,
                    timeout: this.timeout.unwrap_or_default(),
                }))
            }
            Some((_, EventBody::Interrupted { interrupt })) => {
                Poll::Ready(Err(interruption_error(interrupt)))
            }
            Some((step, other)) => {
                this.slot.wrong_outcome(step, "a signal", &other);
                Poll::Pending
            }
        }
    }
}
