//! The wire form of [`EventBody`] and the enums it embeds.
//!
//! Encoding borrows the event's strings and byte payloads (no copy on the hot path); decoding owns
//! them (a `Cow` deserializes as `Cow::Owned`), so `into_owned` below moves rather than copies.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::activity::WireActivityError;
use super::workflow::WireWorkflowError;
use crate::journal::{EventBody, Interrupt, OperatorAction, SideEffectKind};

/// [`EventBody`] as journaled. Append-only: a variant's index is its encoding (the `kind` column is
/// the index plus one, see [`EventBody::kind`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireEventBody<'a> {
    /// Kind 1.
    ActivityCompleted {
        name: Cow<'a, str>,
        input_fingerprint: u64,
        attempts: u32,
        result: Result<Cow<'a, [u8]>, WireActivityError>,
    },
    /// Kind 2.
    ActivityAttemptFailed {
        name: Cow<'a, str>,
        input_fingerprint: u64,
        attempt: u32,
        error: WireActivityError,
        retry_at_ms: i64,
    },
    /// Kind 3.
    TimerStarted { fire_at_ms: i64 },
    /// Kind 4.
    TimerFired,
    /// Kind 5.
    SignalWaitStarted {
        name: Cow<'a, str>,
        deadline_ms: i64,
    },
    /// Kind 6.
    SignalReceived {
        name: Cow<'a, str>,
        signal_id: i64,
        payload: Cow<'a, [u8]>,
    },
    /// Kind 7.
    SignalTimedOut { name: Cow<'a, str> },
    /// Kind 8.
    SideEffect {
        kind: WireSideEffectKind,
        value: Cow<'a, [u8]>,
    },
    /// Kind 9 (format 2).
    ChildStarted {
        workflow_name: Cow<'a, str>,
        child_id: Cow<'a, str>,
    },
    /// Kind 10 (format 2).
    RunFinished {
        workflow_id: Cow<'a, str>,
        result: Result<Cow<'a, [u8]>, WireWorkflowError>,
    },
    /// Kind 11 (format 2).
    Interrupted { interrupt: WireInterrupt },
    /// Kind 12 (format 2).
    StatePublished {
        key: Cow<'a, str>,
        value: Cow<'a, [u8]>,
    },
    /// Kind 13 (format 2).
    PatchMarker { change_id: Cow<'a, str> },
    /// Kind 14 (format 2).
    SelectWinner { winner: u32 },
    /// Kind 15 (format 3).
    ActivityAttemptStarted {
        name: Cow<'a, str>,
        input_fingerprint: u64,
        attempt: u32,
        started_at_ms: i64,
    },
    /// Kind 16 (format 3).
    Operator {
        action: WireOperatorAction,
        actor: Cow<'a, str>,
        at_ms: i64,
    },
}

/// [`Interrupt`] as journaled. Append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireInterrupt {
    /// 0
    Cancelled { reason: String },
    /// 1
    TimedOut { timeout_ms: u64 },
}

/// [`SideEffectKind`] as journaled. Append-only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireSideEffectKind {
    /// 0
    Now,
    /// 1
    Random,
    /// 2
    Uuid,
    /// 3
    Closure,
}

/// [`OperatorAction`] as journaled (format 3). Append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireOperatorAction {
    /// 0
    Paused { reason: String },
    /// 1
    Resumed,
    /// 2
    Retried { step: u32 },
    /// 3
    Terminated { reason: String },
    /// 4
    ForkedFrom { source_id: String, from_step: u32 },
    /// 5
    ForkedTo { new_id: String, from_step: u32 },
    /// 6
    RetrySuperseded {
        state: String,
        error: String,
        dropped_events: u32,
    },
}

fn bytes<'a>(bytes: &'a [u8]) -> Cow<'a, [u8]> {
    Cow::Borrowed(bytes)
}

fn text<'a>(text: &'a str) -> Cow<'a, str> {
    Cow::Borrowed(text)
}

impl<'a> From<&'a EventBody> for WireEventBody<'a> {
    fn from(body: &'a EventBody) -> Self {
        match body {
            EventBody::ActivityCompleted {
                name,
                input_fingerprint,
                attempts,
                result,
            } => WireEventBody::ActivityCompleted {
                name: text(name),
                input_fingerprint: *input_fingerprint,
                attempts: *attempts,
                result: match result {
                    Ok(output) => Ok(bytes(output)),
                    Err(error) => Err(error.into()),
                },
            },
            EventBody::ActivityAttemptFailed {
                name,
                input_fingerprint,
                attempt,
                error,
                retry_at_ms,
            } => WireEventBody::ActivityAttemptFailed {
                name: text(name),
                input_fingerprint: *input_fingerprint,
                attempt: *attempt,
                error: error.into(),
                retry_at_ms: *retry_at_ms,
            },
            EventBody::TimerStarted { fire_at_ms } => WireEventBody::TimerStarted {
                fire_at_ms: *fire_at_ms,
            },
            EventBody::TimerFired => WireEventBody::TimerFired,
            EventBody::SignalWaitStarted { name, deadline_ms } => {
                WireEventBody::SignalWaitStarted {
                    name: text(name),
                    deadline_ms: *deadline_ms,
                }
            }
            EventBody::SignalReceived {
                name,
                signal_id,
                payload,
            } => WireEventBody::SignalReceived {
                name: text(name),
                signal_id: *signal_id,
                payload: bytes(payload),
            },
            EventBody::SignalTimedOut { name } => {
                WireEventBody::SignalTimedOut { name: text(name) }
            }
            EventBody::SideEffect { kind, value } => WireEventBody::SideEffect {
                kind: (*kind).into(),
                value: bytes(value),
            },
            EventBody::ChildStarted {
                workflow_name,
                child_id,
            } => WireEventBody::ChildStarted {
                workflow_name: text(workflow_name),
                child_id: text(child_id),
            },
            EventBody::RunFinished {
                workflow_id,
                result,
            } => WireEventBody::RunFinished {
                workflow_id: text(workflow_id),
                result: match result {
                    Ok(output) => Ok(bytes(output)),
                    Err(error) => Err(error.into()),
                },
            },
            EventBody::Interrupted { interrupt } => WireEventBody::Interrupted {
                interrupt: interrupt.into(),
            },
            EventBody::StatePublished { key, value } => WireEventBody::StatePublished {
                key: text(key),
                value: bytes(value),
            },
            EventBody::PatchMarker { change_id } => WireEventBody::PatchMarker {
                change_id: text(change_id),
            },
            EventBody::SelectWinner { winner } => WireEventBody::SelectWinner { winner: *winner },
            EventBody::ActivityAttemptStarted {
                name,
                input_fingerprint,
                attempt,
                started_at_ms,
            } => WireEventBody::ActivityAttemptStarted {
                name: text(name),
                input_fingerprint: *input_fingerprint,
                attempt: *attempt,
                started_at_ms: *started_at_ms,
            },
            EventBody::Operator {
                action,
                actor,
                at_ms,
            } => WireEventBody::Operator {
                action: action.into(),
                actor: text(actor),
                at_ms: *at_ms,
            },
        }
    }
}

impl From<WireEventBody<'_>> for EventBody {
    fn from(body: WireEventBody<'_>) -> Self {
        match body {
            WireEventBody::ActivityCompleted {
                name,
                input_fingerprint,
                attempts,
                result,
            } => EventBody::ActivityCompleted {
                name: name.into_owned(),
                input_fingerprint,
                attempts,
                result: result.map(Cow::into_owned).map_err(Into::into),
            },
            WireEventBody::ActivityAttemptFailed {
                name,
                input_fingerprint,
                attempt,
                error,
                retry_at_ms,
            } => EventBody::ActivityAttemptFailed {
                name: name.into_owned(),
                input_fingerprint,
                attempt,
                error: error.into(),
                retry_at_ms,
            },
            WireEventBody::TimerStarted { fire_at_ms } => EventBody::TimerStarted { fire_at_ms },
            WireEventBody::TimerFired => EventBody::TimerFired,
            WireEventBody::SignalWaitStarted { name, deadline_ms } => {
                EventBody::SignalWaitStarted {
                    name: name.into_owned(),
                    deadline_ms,
                }
            }
            WireEventBody::SignalReceived {
                name,
                signal_id,
                payload,
            } => EventBody::SignalReceived {
                name: name.into_owned(),
                signal_id,
                payload: payload.into_owned(),
            },
            WireEventBody::SignalTimedOut { name } => EventBody::SignalTimedOut {
                name: name.into_owned(),
            },
            WireEventBody::SideEffect { kind, value } => EventBody::SideEffect {
                kind: kind.into(),
                value: value.into_owned(),
            },
            WireEventBody::ChildStarted {
                workflow_name,
                child_id,
            } => EventBody::ChildStarted {
                workflow_name: workflow_name.into_owned(),
                child_id: child_id.into_owned(),
            },
            WireEventBody::RunFinished {
                workflow_id,
                result,
            } => EventBody::RunFinished {
                workflow_id: workflow_id.into_owned(),
                result: result
                    .map(Cow::into_owned)
                    .map_err(WireWorkflowError::into_public),
            },
            WireEventBody::Interrupted { interrupt } => EventBody::Interrupted {
                interrupt: interrupt.into(),
            },
            WireEventBody::StatePublished { key, value } => EventBody::StatePublished {
                key: key.into_owned(),
                value: value.into_owned(),
            },
            WireEventBody::PatchMarker { change_id } => EventBody::PatchMarker {
                change_id: change_id.into_owned(),
            },
            WireEventBody::SelectWinner { winner } => EventBody::SelectWinner { winner },
            WireEventBody::ActivityAttemptStarted {
                name,
                input_fingerprint,
                attempt,
                started_at_ms,
            } => EventBody::ActivityAttemptStarted {
                name: name.into_owned(),
                input_fingerprint,
                attempt,
                started_at_ms,
            },
            WireEventBody::Operator {
                action,
                actor,
                at_ms,
            } => EventBody::Operator {
                action: action.into(),
                actor: actor.into_owned(),
                at_ms,
            },
        }
    }
}

impl From<&Interrupt> for WireInterrupt {
    fn from(interrupt: &Interrupt) -> Self {
        match interrupt {
            Interrupt::Cancelled { reason } => WireInterrupt::Cancelled {
                reason: reason.clone(),
            },
            Interrupt::TimedOut { timeout_ms } => WireInterrupt::TimedOut {
                timeout_ms: *timeout_ms,
            },
        }
    }
}

impl From<WireInterrupt> for Interrupt {
    fn from(interrupt: WireInterrupt) -> Self {
        match interrupt {
            WireInterrupt::Cancelled { reason } => Interrupt::Cancelled { reason },
            WireInterrupt::TimedOut { timeout_ms } => Interrupt::TimedOut { timeout_ms },
        }
    }
}

impl From<SideEffectKind> for WireSideEffectKind {
    fn from(kind: SideEffectKind) -> Self {
        match kind {
            SideEffectKind::Now => WireSideEffectKind::Now,
            SideEffectKind::Random => WireSideEffectKind::Random,
            SideEffectKind::Uuid => WireSideEffectKind::Uuid,
            SideEffectKind::Closure => WireSideEffectKind::Closure,
        }
    }
}

impl From<WireSideEffectKind> for SideEffectKind {
    fn from(kind: WireSideEffectKind) -> Self {
        match kind {
            WireSideEffectKind::Now => SideEffectKind::Now,
            WireSideEffectKind::Random => SideEffectKind::Random,
            WireSideEffectKind::Uuid => SideEffectKind::Uuid,
            WireSideEffectKind::Closure => SideEffectKind::Closure,
        }
    }
}

impl From<&OperatorAction> for WireOperatorAction {
    fn from(action: &OperatorAction) -> Self {
        match action {
            OperatorAction::Paused { reason } => WireOperatorAction::Paused {
                reason: reason.clone(),
            },
            OperatorAction::Resumed => WireOperatorAction::Resumed,
            OperatorAction::Retried { step } => WireOperatorAction::Retried { step: *step },
            OperatorAction::Terminated { reason } => WireOperatorAction::Terminated {
                reason: reason.clone(),
            },
            OperatorAction::ForkedFrom {
                source_id,
                from_step,
            } => WireOperatorAction::ForkedFrom {
                source_id: source_id.clone(),
                from_step: *from_step,
            },
            OperatorAction::ForkedTo { new_id, from_step } => WireOperatorAction::ForkedTo {
                new_id: new_id.clone(),
                from_step: *from_step,
            },
            OperatorAction::RetrySuperseded {
                state,
                error,
                dropped_events,
            } => WireOperatorAction::RetrySuperseded {
                state: state.clone(),
                error: error.clone(),
                dropped_events: *dropped_events,
            },
        }
    }
}

impl From<WireOperatorAction> for OperatorAction {
    fn from(action: WireOperatorAction) -> Self {
        match action {
            WireOperatorAction::Paused { reason } => OperatorAction::Paused { reason },
            WireOperatorAction::Resumed => OperatorAction::Resumed,
            WireOperatorAction::Retried { step } => OperatorAction::Retried { step },
            WireOperatorAction::Terminated { reason } => OperatorAction::Terminated { reason },
            WireOperatorAction::ForkedFrom {
                source_id,
                from_step,
            } => OperatorAction::ForkedFrom {
                source_id,
                from_step,
            },
            WireOperatorAction::ForkedTo { new_id, from_step } => {
                OperatorAction::ForkedTo { new_id, from_step }
            }
            WireOperatorAction::RetrySuperseded {
                state,
                error,
                dropped_events,
            } => OperatorAction::RetrySuperseded {
                state,
                error,
                dropped_events,
            },
        }
    }
}
