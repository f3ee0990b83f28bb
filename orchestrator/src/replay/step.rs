//! What the code asks for at a step, and how that is compared with the journal.

use std::fmt;
use std::time::Duration;

use crate::journal::{EventBody, SideEffectKind};

/// What the workflow code asks for at one step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StepRequest {
    /// Call an activity with an input of the given fingerprint.
    Activity {
        name: &'static str,
        input_fingerprint: u64,
    },
    /// Sleep for a duration.
    Timer { duration: Duration },
    /// Wait for a named signal, optionally with a timeout.
    Signal {
        name: String,
        timeout: Option<Duration>,
    },
    /// Record a non-deterministic value.
    SideEffect { kind: SideEffectKind },
    /// Start a child workflow and await it.
    Child {
        workflow_name: String,
        child_id: String,
    },
    /// Await another run's outcome.
    AwaitRun { workflow_id: String },
    /// Publish a value under a key.
    PublishState { key: String },
    /// Wait for the first of several steps.
    Select,
}

impl fmt::Display for StepRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepRequest::Activity {
                name,
                input_fingerprint,
            } => write!(
                f,
                "activity `{name}` (input fingerprint {input_fingerprint:#018x})"
            ),
            StepRequest::Timer { duration } => write!(f, "timer ({duration:?})"),
            StepRequest::Signal { name, .. } => write!(f, "signal `{name}`"),
            StepRequest::SideEffect { kind } => write!(f, "side effect {kind:?}"),
            StepRequest::Child {
                workflow_name,
                child_id,
            } => write!(f, "child workflow `{workflow_name}` with id `{child_id}`"),
            StepRequest::AwaitRun { workflow_id } => write!(f, "await of run `{workflow_id}`"),
            StepRequest::PublishState { key } => write!(f, "published state `{key}`"),
            StepRequest::Select => write!(f, "select"),
        }
    }
}

/// A short description of a recorded event, for nondeterminism errors.
pub(crate) fn describe(body: &EventBody) -> String {
    match body {
        EventBody::ActivityCompleted {
            name,
            input_fingerprint,
            ..
        }
        | EventBody::ActivityAttemptFailed {
            name,
            input_fingerprint,
            ..
        } => format!("activity `{name}` (input fingerprint {input_fingerprint:#018x})"),
        EventBody::TimerStarted { .. } | EventBody::TimerFired => "timer".to_string(),
        EventBody::SignalWaitStarted { name, .. }
        | EventBody::SignalReceived { name, .. }
        | EventBody::SignalTimedOut { name } => format!("signal `{name}`"),
        EventBody::SideEffect { kind, .. } => format!("side effect {kind:?}"),
        EventBody::ChildStarted {
            workflow_name,
            child_id,
        } => format!("child workflow `{workflow_name}` with id `{child_id}`"),
        EventBody::RunFinished { workflow_id, .. } => format!("outcome of run `{workflow_id}`"),
        EventBody::Interrupted { interrupt } => format!("interruption {interrupt:?}"),
        EventBody::StatePublished { key, .. } => format!("published state `{key}`"),
        EventBody::PatchMarker { change_id } => format!("patch marker `{change_id}`"),
        EventBody::SelectWinner { .. } => "select".to_string(),
        EventBody::ActivityAttemptStarted { name, attempt, .. } => {
            format!("attempt {attempt} of activity `{name}`")
        }
        EventBody::Operator { action, actor, .. } => {
            format!("operator action {action:?} by {actor}")
        }
    }
}

/// Whether a recorded event is consistent with the request made at its step.
pub(crate) fn matches(request: &StepRequest, recorded: &EventBody) -> bool {
    match (request, recorded) {
        (
            StepRequest::Activity {
                name,
                input_fingerprint,
            },
            EventBody::ActivityCompleted {
                name: recorded_name,
                input_fingerprint: recorded_fingerprint,
                ..
            }
            | EventBody::ActivityAttemptFailed {
                name: recorded_name,
                input_fingerprint: recorded_fingerprint,
                ..
            },
        ) => name == recorded_name && input_fingerprint == recorded_fingerprint,
        (StepRequest::Timer { .. }, EventBody::TimerStarted { .. } | EventBody::TimerFired) => true,
        (
            StepRequest::Signal { name, .. },
            EventBody::SignalWaitStarted {
                name: recorded_name,
                ..
            }
            | EventBody::SignalReceived {
                name: recorded_name,
                ..
            }
            | EventBody::SignalTimedOut {
                name: recorded_name,
            },
        ) => name == recorded_name,
        (
            StepRequest::SideEffect { kind },
            EventBody::SideEffect {
                kind: recorded_kind,
                ..
            },
        ) => kind == recorded_kind,
        (
            StepRequest::Child {
                workflow_name,
                child_id,
            },
            EventBody::ChildStarted {
                workflow_name: recorded_name,
                child_id: recorded_id,
            },
        ) => workflow_name == recorded_name && child_id == recorded_id,
        (
            StepRequest::Child { child_id: id, .. } | StepRequest::AwaitRun { workflow_id: id },
            EventBody::RunFinished { workflow_id, .. },
        ) => id == workflow_id,
        (
            StepRequest::PublishState { key },
            EventBody::StatePublished {
                key: recorded_key, ..
            },
        ) => key == recorded_key,
        (StepRequest::Select, EventBody::SelectWinner { .. }) => true,
        _ => false,
    }
}
