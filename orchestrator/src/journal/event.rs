//! The events a run's journal is made of.

use serde::{Deserialize, Serialize};

use crate::error::{ActivityError, WorkflowError};

/// One journal entry of a run, attached to a step.
///
/// Steps are numbered from 1 in the order the workflow code asks for them. Two families of events exist:
/// *completions* ([`EventBody::is_completion`]) unblock a waiting step and are delivered to the workflow
/// in journal order — on replay too, which is what makes concurrency inside a workflow replay
/// identically; *records* (timer started, side effects, failed attempts) are looked up by step number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The step this event belongs to.
    pub step: u32,
    /// What happened.
    pub body: EventBody,
}

/// What a journal event records. The numeric kind of each variant is stored beside the encoded event
/// (see [`EventBody::kind`]) and documented in `docs/journal.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    /// An activity finished for good: success, a non-retryable error or exhausted attempts.
    ActivityCompleted {
        /// The activity's name.
        name: String,
        /// Fingerprint of the encoded input, to detect a changed call on replay.
        input_fingerprint: u64,
        /// How many attempts were made.
        attempts: u32,
        /// The encoded output or the last error.
        result: Result<Vec<u8>, ActivityError>,
    },
    /// One attempt of an activity failed and another will follow at `retry_at_ms`.
    ActivityAttemptFailed {
        /// The activity's name.
        name: String,
        /// Fingerprint of the encoded input.
        input_fingerprint: u64,
        /// The failed attempt's number (1-based).
        attempt: u32,
        /// Its error.
        error: ActivityError,
        /// When the next attempt is due, in milliseconds since the Unix epoch.
        retry_at_ms: i64,
    },
    /// A durable timer was started and fires at `fire_at_ms`.
    TimerStarted {
        /// When the timer fires, in milliseconds since the Unix epoch.
        fire_at_ms: i64,
    },
    /// A durable timer fired.
    TimerFired,
    /// A wait for a signal with a timeout started; it gives up at `deadline_ms`.
    SignalWaitStarted {
        /// The signal's name.
        name: String,
        /// When the wait gives up, in milliseconds since the Unix epoch.
        deadline_ms: i64,
    },
    /// A signal was delivered to a waiting step.
    SignalReceived {
        /// The signal's name.
        name: String,
        /// The signal's inbox id (consumed in the same transaction).
        signal_id: i64,
        /// The encoded payload.
        payload: Vec<u8>,
    },
    /// A signal wait expired.
    SignalTimedOut {
        /// The signal's name.
        name: String,
    },
    /// A non-deterministic value (clock, random number, UUID, closure result) recorded for replay.
    SideEffect {
        /// What produced the value.
        kind: SideEffectKind,
        /// The encoded value.
        value: Vec<u8>,
    },
    /// A child workflow run was created (or found, if it already existed) for this step.
    ChildStarted {
        /// The child's workflow type.
        workflow_name: String,
        /// The child's workflow id.
        child_id: String,
    },
    /// The run this step awaited (a child, or any run by id) finished.
    RunFinished {
        /// The awaited run's workflow id.
        workflow_id: String,
        /// Its encoded output, or the error it ended with.
        result: Result<Vec<u8>, WorkflowError>,
    },
    /// The run was interrupted (cancelled or timed out): step 0, delivered in journal order.
    Interrupted {
        /// Why.
        interrupt: Interrupt,
    },
    /// The workflow published a value under a key.
    StatePublished {
        /// The key.
        key: String,
        /// The encoded value.
        value: Vec<u8>,
    },
    /// A versioning marker: the run reached `patched(change_id)` on code that has the change.
    PatchMarker {
        /// The change's id.
        change_id: String,
    },
    /// The winner of a `select`, so replay picks the same branch.
    SelectWinner {
        /// The index of the winning branch.
        winner: u32,
    },
    /// An attempt of an activity started (journaled with the commit that scheduled it, so an attempt
    /// cut short by a crash leaves a trace). Not matched by replay; only counted, so that a step's
    /// next attempt is numbered after every attempt that started (see `docs/journal.md`).
    ActivityAttemptStarted {
        /// The activity's name.
        name: String,
        /// Fingerprint of the encoded input.
        input_fingerprint: u64,
        /// The attempt's number (1-based), counting attempts cut short by crashes.
        attempt: u32,
        /// When it started, in milliseconds since the Unix epoch.
        started_at_ms: i64,
    },
    /// An operator acted on the run (pause, resume, retry, terminate, fork): step 0, an audit
    /// record. Not read by replay.
    Operator {
        /// What was done.
        action: OperatorAction,
        /// Who did it (as given to the engine, or the admin API token's identity).
        actor: String,
        /// When, in milliseconds since the Unix epoch.
        at_ms: i64,
    },
}

/// What an operator did to a run (see [`EventBody::Operator`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OperatorAction {
    /// The run was paused: it starts no new step or attempt until resumed.
    Paused {
        /// Why.
        reason: String,
    },
    /// The run was resumed after a pause.
    Resumed,
    /// A failed, parked or compensation-failed run was driven again on the current code.
    Retried {
        /// The step that runs again with a fresh retry budget (0: the run is replayed again).
        step: u32,
    },
    /// The run was ended at once, without compensations.
    Terminated {
        /// Why.
        reason: String,
    },
    /// This run was forked from another run's journal prefix (recorded on the new run).
    ForkedFrom {
        /// The original run's workflow id.
        source_id: String,
        /// The first step that was not copied: the new run executes it live.
        from_step: u32,
    },
    /// A new run was forked from this one (recorded on the original run).
    ForkedTo {
        /// The new run's workflow id.
        new_id: String,
        /// The first step that was not copied.
        from_step: u32,
    },
    /// What a retry superseded (recorded with [`OperatorAction::Retried`], in the same commit): the
    /// outcome the run had and how many journal events of the retried step were dropped.
    RetrySuperseded {
        /// The state the run was in (`Failed`, `Parked`, `CompensationFailed`).
        state: String,
        /// The error (or park reason) it had, as text.
        error: String,
        /// How many events of the retried step were removed from the journal.
        dropped_events: u32,
    },
}

/// Why a run was interrupted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Interrupt {
    /// `Engine::cancel` was called with this reason.
    Cancelled {
        /// The reason given.
        reason: String,
    },
    /// The run's execution timeout expired.
    TimedOut {
        /// The configured timeout, in milliseconds.
        timeout_ms: u64,
    },
}

/// What produced a [`EventBody::SideEffect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SideEffectKind {
    /// `ctx.now()`.
    Now,
    /// `ctx.random_u64()`.
    Random,
    /// `ctx.uuid()`.
    Uuid,
    /// `ctx.side_effect(..)`.
    Closure,
}

impl EventBody {
    /// Whether this event resolves a waiting step (and is therefore delivered in journal order).
    pub fn is_completion(&self) -> bool {
        matches!(
            self,
            EventBody::ActivityCompleted { .. }
                | EventBody::TimerFired
                | EventBody::SignalReceived { .. }
                | EventBody::SignalTimedOut { .. }
                | EventBody::RunFinished { .. }
                | EventBody::Interrupted { .. }
        )
    }

    /// Whether this event is an annotation for people (attempt starts, operator actions): kept in the
    /// journal and shown in the timeline, never matched by replay (attempt starts are only counted,
    /// for the retry budget).
    pub fn is_annotation(&self) -> bool {
        matches!(
            self,
            EventBody::ActivityAttemptStarted { .. } | EventBody::Operator { .. }
        )
    }

    /// Whether this event belongs to the run rather than to a step (stored at step 0).
    pub fn is_run_level(&self) -> bool {
        matches!(
            self,
            EventBody::Interrupted { .. } | EventBody::Operator { .. }
        )
    }

    /// The numeric kind stored in the `kind` column.
    pub fn kind(&self) -> u16 {
        match self {
            EventBody::ActivityCompleted { .. } => 1,
            EventBody::ActivityAttemptFailed { .. } => 2,
            EventBody::TimerStarted { .. } => 3,
            EventBody::TimerFired => 4,
            EventBody::SignalWaitStarted { .. } => 5,
            EventBody::SignalReceived { .. } => 6,
            EventBody::SignalTimedOut { .. } => 7,
            EventBody::SideEffect { .. } => 8,
            EventBody::ChildStarted { .. } => 9,
            EventBody::RunFinished { .. } => 10,
            EventBody::Interrupted { .. } => 11,
            EventBody::StatePublished { .. } => 12,
            EventBody::PatchMarker { .. } => 13,
            EventBody::SelectWinner { .. } => 14,
            EventBody::ActivityAttemptStarted { .. } => 15,
            EventBody::Operator { .. } => 16,
        }
    }
}
