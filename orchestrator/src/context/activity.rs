//! What an activity knows about the step it runs for.

use std::sync::Arc;

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
}

impl ActivityContext {
    pub(crate) fn new(
        workflow_id: Arc<str>,
        activity: &'static str,
        step: u32,
        attempt: u32,
    ) -> Self {
        ActivityContext {
            workflow_id,
            activity,
            step,
            attempt,
        }
    }

    /// A context for calling an activity directly in a unit test.
    pub fn for_testing(workflow_id: &str, step: u32, attempt: u32) -> Self {
        ActivityContext::new(Arc::from(workflow_id), "test", step, attempt)
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

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `"{workflow_id}/{step}"`: identical for every attempt of this step, across restarts.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.workflow_id, self.step)
    }
}
