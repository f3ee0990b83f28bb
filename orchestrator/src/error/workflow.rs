//! The error a workflow returns, and the reasons a run is parked.

use std::fmt::Display;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ActivityError;
use crate::codec::{Codec, CodecError};

/// Why a workflow (or one of its steps) failed.
///
/// Step futures of [`WorkflowContext`](crate::WorkflowContext) return this error, so `?` inside a
/// `#[workflow]` function propagates a failed activity or an expired signal wait. A workflow that returns
/// `Err` is recorded as failed with this error; [`RunHandle::result`](crate::RunHandle::result) returns it
/// inside [`Error::WorkflowFailed`](crate::Error::WorkflowFailed).
///
/// ```
/// use orchestrator::WorkflowError;
///
/// let error = WorkflowError::failed("income below threshold");
/// assert_eq!(error.to_string(), "income below threshold");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// An activity failed for good: its error was not retryable or its attempts ran out.
    #[error("activity `{activity}` (step {step}) failed after {attempts} attempt(s): {error}")]
    ActivityFailed {
        /// The activity's registered name.
        activity: String,
        /// The step number of the call.
        step: u32,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error (its code, if any: [`WorkflowError::failure_code`]).
        error: ActivityError,
    },
    /// A signal wait with a timeout expired before the signal arrived.
    #[error("no signal `{name}` arrived within {timeout:?} (step {step})")]
    SignalTimeout {
        /// The signal's name.
        name: String,
        /// The step number of the wait.
        step: u32,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A value could not be encoded into (or decoded from) the journal.
    #[error("payload error at step {step}: {message}")]
    Payload {
        /// The step whose payload failed.
        step: u32,
        /// The codec's description of the problem.
        message: String,
    },
    /// The workflow function panicked and the run failed with its message. Only in journals of
    /// versions before 0.2: a panicking run is now replayed again and then parked
    /// ([`ParkReason::Panicked`]).
    #[error("workflow panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// A failure decided by the workflow's own logic (see [`WorkflowError::failed`]).
    #[error("{message}")]
    Application {
        /// The workflow's description of the failure.
        message: String,
    },
    /// The run was cancelled ([`Engine::cancel`](crate::Engine::cancel)); returned by the step the
    /// workflow was waiting on when the cancellation arrived. Catch it to clean up, or propagate it with
    /// `?` to end the run (compensations then run).
    #[error("cancelled: {reason}")]
    Cancelled {
        /// The reason given to `cancel`.
        reason: String,
    },
    /// The run's execution timeout expired; returned like [`WorkflowError::Cancelled`].
    #[error("workflow execution timed out after {timeout:?}")]
    TimedOut {
        /// The execution timeout.
        timeout: Duration,
    },
    /// A child workflow (or an awaited run) could not be started or found.
    #[error("could not start child workflow `{workflow_id}`: {message}")]
    ChildStart {
        /// The child's workflow id.
        workflow_id: String,
        /// Why.
        message: String,
    },
    /// A child workflow (or an awaited run) ended with an error.
    #[error("workflow `{workflow_id}` failed: {error}")]
    ChildFailed {
        /// The child's workflow id.
        workflow_id: String,
        /// The child's error.
        #[source]
        error: Box<WorkflowError>,
    },
    /// The workflow failed, and then one of its compensations failed too (after its retries). The run
    /// ends in [`RunStatus::CompensationFailed`](crate::RunStatus::CompensationFailed); the
    /// compensations registered before the failed one were not run.
    #[error("compensation failed: {compensation} (after the workflow failed: {original})")]
    CompensationFailed {
        /// Why the workflow failed in the first place.
        original: Box<WorkflowError>,
        /// How the compensation failed.
        #[source]
        compensation: Box<WorkflowError>,
    },
    /// Returned by [`WorkflowContext::continue_as_new`](crate::WorkflowContext::continue_as_new): the
    /// run ends here and a fresh run of the same workflow id starts. Return it as the workflow's error.
    #[error("continued as new")]
    ContinuedAsNew,
    /// A failure decided by the workflow's own logic, with a code the caller can match (see
    /// [`WorkflowError::failure`]).
    #[error("{code}: {message}")]
    Failure {
        /// A stable, machine-readable code, e.g. `income_too_low`.
        code: String,
        /// What went wrong, for people.
        message: String,
        /// Encoded details (see [`WorkflowError::with_details`]).
        details: Option<Vec<u8>>,
    },
}

impl WorkflowError {
    /// A failure decided by the workflow itself, e.g. a business rule that rejects the input.
    pub fn failed(message: impl Display) -> Self {
        WorkflowError::Application {
            message: message.to_string(),
        }
    }

    /// A failure decided by the workflow, with a stable `code` the caller can match with
    /// [`Error::failure_code`](crate::Error::failure_code).
    ///
    /// ```
    /// use orchestrator::WorkflowError;
    ///
    /// let error = WorkflowError::failure("income_too_low", "income below threshold");
    /// assert_eq!(error.failure_code(), Some("income_too_low"));
    /// assert_eq!(error.to_string(), "income_too_low: income below threshold");
    /// ```
    pub fn failure(code: impl Into<String>, message: impl Display) -> Self {
        WorkflowError::Failure {
            code: code.into(),
            message: message.to_string(),
            details: None,
        }
    }

    /// This failure with typed `details` attached, read back with
    /// [`WorkflowError::failure_details`]. Only a [`WorkflowError::Failure`] carries details: any other
    /// error is returned unchanged. If the details cannot be encoded, the failure keeps none and its
    /// message says why.
    #[must_use]
    pub fn with_details<T: Serialize + ?Sized>(self, details: &T) -> Self {
        match self {
            WorkflowError::Failure {
                code, mut message, ..
            } => {
                let details = match Codec::default().encode(details) {
                    Ok(bytes) => Some(bytes),
                    Err(error) => {
                        message = format!("{message} (details dropped: {error})");
                        None
                    }
                };
                WorkflowError::Failure {
                    code,
                    message,
                    details,
                }
            }
            other => other,
        }
    }

    /// The code of the business failure behind this error, wherever it was decided: the workflow's own
    /// [`WorkflowError::failure`], or an activity's [`ActivityError::failure`], also through a failed
    /// child workflow or a failed compensation's original error. `None` for failures without a code.
    ///
    /// ```
    /// use orchestrator::{ActivityError, WorkflowError};
    ///
    /// let error = WorkflowError::ActivityFailed {
    ///     activity: "charge".into(),
    ///     step: 1,
    ///     attempts: 1,
    ///     error: ActivityError::failure("card_declined", "declined"),
    /// };
    /// assert_eq!(error.failure_code(), Some("card_declined"));
    /// ```
    pub fn failure_code(&self) -> Option<&str> {
        match self {
            WorkflowError::Failure { code, .. } => Some(code),
            WorkflowError::ActivityFailed { error, .. } => error.code(),
            WorkflowError::ChildFailed { error, .. } => error.failure_code(),
            WorkflowError::CompensationFailed { original, .. } => original.failure_code(),
            _ => None,
        }
    }

    /// The details of the failure [`WorkflowError::failure_code`] finds, decoded as a `T`: `None`
    /// when it has none, `Err` when they are not a `T`.
    pub fn failure_details<T: DeserializeOwned>(&self) -> Option<Result<T, CodecError>> {
        match self {
            WorkflowError::Failure {
                details: Some(bytes),
                ..
            } => Some(Codec::default().decode(bytes)),
            WorkflowError::ActivityFailed { error, .. } => error.details(),
            WorkflowError::ChildFailed { error, .. } => error.failure_details(),
            WorkflowError::CompensationFailed { original, .. } => original.failure_details(),
            _ => None,
        }
    }

    /// Whether this is the error a cancellation or an execution timeout produces.
    pub fn is_interruption(&self) -> bool {
        matches!(
            self,
            WorkflowError::Cancelled { .. } | WorkflowError::TimedOut { .. }
        )
    }
}

/// `Err("..")?` and `Err(format!(..))?` in a workflow: an [`WorkflowError::Application`] failure.
impl From<String> for WorkflowError {
    fn from(message: String) -> Self {
        WorkflowError::Application { message }
    }
}

/// `Err("..")?` in a workflow: an [`WorkflowError::Application`] failure.
impl From<&str> for WorkflowError {
    fn from(message: &str) -> Self {
        WorkflowError::failed(message)
    }
}

/// A change of workflow code that makes it disagree with a run's journal.
///
/// Raised when, at some step, the code asks for something other than what the journal recorded there:
/// another kind of step, another activity, or the same activity with a different input. The run is parked
/// (see [`ParkReason::NonDeterminism`]) rather than allowed to diverge; other runs continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "nondeterminism at step {step}: the journal recorded {recorded}, but the code now asks for {requested}"
)]
pub struct NonDeterminismError {
    /// The step number where code and journal disagree.
    pub step: u32,
    /// What the journal recorded at that step (e.g. ``activity `parse` (input 0x…)``).
    pub recorded: String,
    /// What the current code asked for at that step.
    pub requested: String,
}

/// Why a run was parked: it stopped without completing and needs an operator.
///
/// A parked run keeps its journal. The engine tries it again the next time it starts (so deploying a fix
/// and restarting resumes it); until then [`RunHandle::result`](crate::RunHandle::result) returns
/// [`Error::RunParked`](crate::Error::RunParked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ParkReason {
    /// The code disagrees with the journal.
    #[error(transparent)]
    NonDeterminism(#[from] NonDeterminismError),
    /// The journal names a workflow type this engine has not registered.
    #[error("workflow type `{name}` is not registered with this engine")]
    UnknownWorkflowType {
        /// The recorded workflow type name.
        name: String,
    },
    /// A journaled value no longer decodes into the type the code expects (e.g. the type changed).
    #[error("journaled payload at step {step} does not decode as `{type_name}`: {message}")]
    UndecodablePayload {
        /// The step whose recorded value failed to decode (0 for the workflow input).
        step: u32,
        /// The Rust type the code expected.
        type_name: String,
        /// The codec's description of the problem.
        message: String,
    },
    /// A journal row could not be read back (corrupted or truncated bytes).
    #[error("corrupt journal: {message}")]
    CorruptJournal {
        /// What was wrong with the row.
        message: String,
    },
    /// The workflow code panicked on every attempt to drive the run (see
    /// [`EngineBuilder::panic_retry`](crate::EngineBuilder::panic_retry)).
    #[error("workflow code panicked {attempts} times in a row; last panic: {message}")]
    Panicked {
        /// The last panic's message.
        message: String,
        /// How many attempts panicked.
        attempts: u32,
    },
    /// The closure of a [`side_effect`](crate::WorkflowContext::side_effect) used the workflow
    /// context (asked for a step, `now()`, `random_u64()`, a patch marker, ...). The closure does not
    /// run on replay, so those steps would vanish and shift every later one: take the values before
    /// the closure and move them in.
    #[error(
        "the closure of the side effect at step {side_effect} used the workflow context: it asked for {requested} (step {step}); use the context outside the closure"
    )]
    ContextInSideEffect {
        /// The side effect whose closure was running.
        side_effect: u32,
        /// The step number the forbidden request received.
        step: u32,
        /// What was asked for (e.g. `side effect Random`).
        requested: String,
    },
}
