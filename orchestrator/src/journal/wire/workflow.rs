//! The wire forms of [`WorkflowError`] and [`ParkReason`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::activity::WireActivityError;
use crate::error::{NonDeterminismError, ParkReason, WorkflowError};

/// [`WorkflowError`] as journaled (in `RunFinished` events and in a finished run's `error` column).
/// Append-only: a variant's index is its encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireWorkflowError {
    /// 0
    ActivityFailed {
        activity: String,
        step: u32,
        attempts: u32,
        error: WireActivityError,
    },
    /// 1
    SignalTimeout {
        name: String,
        step: u32,
        timeout: Duration,
    },
    /// 2
    Payload { step: u32, message: String },
    /// 3
    Panicked { message: String },
    /// 4
    Application { message: String },
    /// 5
    Cancelled { reason: String },
    /// 6
    TimedOut { timeout: Duration },
    /// 7
    ChildStart {
        workflow_id: String,
        message: String,
    },
    /// 8
    ChildFailed {
        workflow_id: String,
        error: Box<WireWorkflowError>,
    },
    /// 9
    CompensationFailed {
        original: Box<WireWorkflowError>,
        compensation: Box<WireWorkflowError>,
    },
    /// 10
    ContinuedAsNew,
    /// 11 (format 2, release 0.3)
    Failure {
        code: String,
        message: String,
        details: Option<Vec<u8>>,
    },
}

/// [`NonDeterminismError`] as journaled: fields in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireNonDeterminism {
    step: u32,
    recorded: String,
    requested: String,
}

/// [`ParkReason`] as journaled (a parked run's `error` column). Append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireParkReason {
    /// 0
    NonDeterminism(WireNonDeterminism),
    /// 1
    UnknownWorkflowType { name: String },
    /// 2
    UndecodablePayload {
        step: u32,
        type_name: String,
        message: String,
    },
    /// 3
    CorruptJournal { message: String },
    /// 4
    Panicked { message: String, attempts: u32 },
    /// 5
    ContextInSideEffect {
        side_effect: u32,
        step: u32,
        requested: String,
    },
}

impl From<&WorkflowError> for WireWorkflowError {
    fn from(error: &WorkflowError) -> Self {
        let boxed = |error: &WorkflowError| Box::new(WireWorkflowError::from(error));
        match error {
            WorkflowError::ActivityFailed {
                activity,
                step,
                attempts,
                error,
            } => WireWorkflowError::ActivityFailed {
                activity: activity.clone(),
                step: *step,
                attempts: *attempts,
                error: error.into(),
            },
            WorkflowError::SignalTimeout {
                name,
                step,
                timeout,
            } => WireWorkflowError::SignalTimeout {
                name: name.clone(),
                step: *step,
                timeout: *timeout,
            },
            WorkflowError::Payload { step, message } => WireWorkflowError::Payload {
                step: *step,
                message: message.clone(),
            },
            WorkflowError::Panicked { message } => WireWorkflowError::Panicked {
                message: message.clone(),
            },
            WorkflowError::Application { message } => WireWorkflowError::Application {
                message: message.clone(),
            },
            WorkflowError::Cancelled { reason } => WireWorkflowError::Cancelled {
                reason: reason.clone(),
            },
            WorkflowError::TimedOut { timeout } => {
                WireWorkflowError::TimedOut { timeout: *timeout }
            }
            WorkflowError::ChildStart {
                workflow_id,
                message,
            } => WireWorkflowError::ChildStart {
                workflow_id: workflow_id.clone(),
                message: message.clone(),
            },
            WorkflowError::ChildFailed { workflow_id, error } => WireWorkflowError::ChildFailed {
                workflow_id: workflow_id.clone(),
                error: boxed(error),
            },
            WorkflowError::CompensationFailed {
                original,
                compensation,
            } => WireWorkflowError::CompensationFailed {
                original: boxed(original),
                compensation: boxed(compensation),
            },
            WorkflowError::ContinuedAsNew => WireWorkflowError::ContinuedAsNew,
            WorkflowError::Failure {
                code,
                message,
                details,
            } => WireWorkflowError::Failure {
                code: code.clone(),
                message: message.clone(),
                details: details.clone(),
            },
        }
    }
}

// A method rather than `From`: a `From<WireWorkflowError>` impl on the public type would be listed in
// users' compile errors ("the following other types implement `From<T>`") and name a private type.
impl WireWorkflowError {
    pub(crate) fn into_public(self) -> WorkflowError {
        let error = self;
        let unboxed = |error: Box<WireWorkflowError>| Box::new((*error).into_public());
        match error {
            WireWorkflowError::ActivityFailed {
                activity,
                step,
                attempts,
                error,
            } => WorkflowError::ActivityFailed {
                activity,
                step,
                attempts,
                error: error.into(),
            },
            WireWorkflowError::SignalTimeout {
                name,
                step,
                timeout,
            } => WorkflowError::SignalTimeout {
                name,
                step,
                timeout,
            },
            WireWorkflowError::Payload { step, message } => {
                WorkflowError::Payload { step, message }
            }
            WireWorkflowError::Panicked { message } => WorkflowError::Panicked { message },
            WireWorkflowError::Application { message } => WorkflowError::Application { message },
            WireWorkflowError::Cancelled { reason } => WorkflowError::Cancelled { reason },
            WireWorkflowError::TimedOut { timeout } => WorkflowError::TimedOut { timeout },
            WireWorkflowError::ChildStart {
                workflow_id,
                message,
            } => WorkflowError::ChildStart {
                workflow_id,
                message,
            },
            WireWorkflowError::ChildFailed { workflow_id, error } => WorkflowError::ChildFailed {
                workflow_id,
                error: unboxed(error),
            },
            WireWorkflowError::CompensationFailed {
                original,
                compensation,
            } => WorkflowError::CompensationFailed {
                original: unboxed(original),
                compensation: unboxed(compensation),
            },
            WireWorkflowError::ContinuedAsNew => WorkflowError::ContinuedAsNew,
            WireWorkflowError::Failure {
                code,
                message,
                details,
            } => WorkflowError::Failure {
                code,
                message,
                details,
            },
        }
    }
}

impl From<&ParkReason> for WireParkReason {
    fn from(reason: &ParkReason) -> Self {
        match reason {
            ParkReason::NonDeterminism(error) => {
                WireParkReason::NonDeterminism(WireNonDeterminism {
                    step: error.step,
                    recorded: error.recorded.clone(),
                    requested: error.requested.clone(),
                })
            }
            ParkReason::UnknownWorkflowType { name } => {
                WireParkReason::UnknownWorkflowType { name: name.clone() }
            }
            ParkReason::UndecodablePayload {
                step,
                type_name,
                message,
            } => WireParkReason::UndecodablePayload {
                step: *step,
                type_name: type_name.clone(),
                message: message.clone(),
            },
            ParkReason::CorruptJournal { message } => WireParkReason::CorruptJournal {
                message: message.clone(),
            },
            ParkReason::Panicked { message, attempts } => WireParkReason::Panicked {
                message: message.clone(),
                attempts: *attempts,
            },
            ParkReason::ContextInSideEffect {
                side_effect,
                step,
                requested,
            } => WireParkReason::ContextInSideEffect {
                side_effect: *side_effect,
                step: *step,
                requested: requested.clone(),
            },
        }
    }
}

impl From<WireParkReason> for ParkReason {
    fn from(reason: WireParkReason) -> Self {
        match reason {
            WireParkReason::NonDeterminism(WireNonDeterminism {
                step,
                recorded,
                requested,
            }) => ParkReason::NonDeterminism(NonDeterminismError {
                step,
                recorded,
                requested,
            }),
            WireParkReason::UnknownWorkflowType { name } => {
                ParkReason::UnknownWorkflowType { name }
            }
            WireParkReason::UndecodablePayload {
                step,
                type_name,
                message,
            } => ParkReason::UndecodablePayload {
                step,
                type_name,
                message,
            },
            WireParkReason::CorruptJournal { message } => ParkReason::CorruptJournal { message },
            WireParkReason::Panicked { message, attempts } => {
                ParkReason::Panicked { message, attempts }
            }
            WireParkReason::ContextInSideEffect {
                side_effect,
                step,
                requested,
            } => ParkReason::ContextInSideEffect {
                side_effect,
                step,
                requested,
            },
        }
    }
}
