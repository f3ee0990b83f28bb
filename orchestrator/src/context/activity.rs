//! What an activity knows about the step it runs for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Tells a running activity that its step was abandoned (run cancelled, select lost).
#[derive(Debug, Clone, Default)]
pub(crate) struct CancellationFlag {
    inner: Arc<(AtomicBool, Notify)>,
}

impl CancellationFlag {
    /// Raises the flag and wakes every waiter.
    pub(crate) fn cancel(&self) {
        self.inner.0.store(true, Ordering::Release);
        self.inner.1.notify_waiters();
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.inner.0.load(Ordering::Acquire)
    }

    pub(crate) async fn raised(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.is_raised() {
                return;
            }
            notified.await;
        }
    }
}

/// Passed to an activity that takes it as its first argument: which workflow and step it runs for, which
/// attempt this is, and a stable idempotency key.
///
/// The idempotency key is the same for every attempt of one step, across crashes and restarts, so an
/// activity can hand it to an external system (a payment API's `Idempotency-Key` header, a unique
/// constraint) and make its effect happen once even when the activity itself runs more than once.
///
/// ```
/// use orchestrator::ActivityContext;
///
/// let ctx = ActivityContext::for_testing("order-42", 3, 2);
/// assert_eq!(ctx.workflow_id(), "order-42");
/// assert_eq!(ctx.step(), 3);
/// assert_eq!(ctx.attempt(), 2);
/// assert_eq!(ctx.idempotency_key(), "order-42/3");
/// ```
#[derive(Debug, Clone)]
pub struct ActivityContext {
    workflow_id: Arc<str>,
    activity: &'static str,
    step: u32,
    attempt: u32,
    cancellation: CancellationFlag,
}

impl ActivityContext {
    pub(crate) fn new(
        workflow_id: Arc<str>,
        activity: &'static str,
        step: u32,
        attempt: u32,
        cancellation: CancellationFlag,
    ) -> Self {
        ActivityContext {
            workflow_id,
            activity,
            step,
            attempt,
            cancellation,
        }
    }

    /// A context for calling an activity directly in a unit test.
    pub fn for_testing(workflow_id: &str, step: u32, attempt: u32) -> Self {
        ActivityContext::new(
            Arc::from(workflow_id),
            "test",
            step,
            attempt,
            CancellationFlag::default(),
        )
    }

    /// Whether the step this activity runs for was abandoned: the run was cancelled or timed out, or
    /// the step lost a `select`. Its result will be discarded; a long activity should check this (or
    /// await [`ActivityContext::cancelled`]) and stop early.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_raised()
    }

    /// Resolves when the step is abandoned (see [`ActivityContext::is_cancelled`]); use it in a
    /// `tokio::select!` beside the activity's work.
    pub async fn cancelled(&self) {
        self.cancellation.raised().await;
    }

    /// The id of the workflow that called this activity.
    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// The activity's registered name.
    pub fn activity_name(&self) -> &'static str {
        self.activity
    }

    /// The step number of the call within its workflow.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// The attempt number, starting at 1. Every attempt's start is journaled before it runs, so an
    /// attempt cut short by a crash (or by a shutdown that outlived its grace period) counts: the next
    /// one is numbered after it, and it counts toward the retry policy's `max_attempts`.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `"{workflow_id}/{step}"`: identical for every attempt of this step, across restarts.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.workflow_id, self.step)
    }
}
