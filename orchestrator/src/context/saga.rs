//! Sagas: compensations registered by a workflow and run, in reverse, when it fails.

use super::WorkflowContext;
use super::activity_call::RawActivityCall;
use super::workflow::ActivityInvocation;
use crate::codec::CodecError;
use crate::error::WorkflowError;

/// One registered compensation: an activity call kept for later.
pub(crate) struct Compensation {
    pub(crate) name: &'static str,
    pub(crate) invocation: Result<ActivityInvocation, CodecError>,
}

impl std::fmt::Debug for Compensation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compensation")
            .field("activity", &self.name)
            .finish_non_exhaustive()
    }
}

/// Runs the registered compensations in reverse order after the workflow failed with `original`.
///
/// Each is an ordinary journaled activity step, so replay after a crash skips the finished ones and
/// resumes the rollback. Compensation steps are shielded from cancellation and timeouts: a rollback,
/// once begun, runs to its end. The first compensation that still fails after its retries stops the
/// rollback and the run ends as `CompensationFailed`.
pub(crate) async fn run_compensations(
    ctx: &WorkflowContext,
    original: WorkflowError,
) -> WorkflowError {
    let compensations = std::mem::take(&mut *ctx.shared.compensations());
    if compensations.is_empty() {
        return original;
    }
    ctx.shared.machine().shield();
    for compensation in compensations.into_iter().rev() {
        let call = RawActivityCall::new(ctx.clone(), compensation.name, compensation.invocation);
        if let Err(error) = call.await {
            return WorkflowError::CompensationFailed {
                original: Box::new(original),
                compensation: Box::new(error),
            };
        }
    }
    original
}
