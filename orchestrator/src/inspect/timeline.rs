//! The timeline of a run: one entry per step, built from its journal alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, PayloadType};
use super::render::Rendered;
use crate::codec::Codec;
use crate::error::{ActivityError, WorkflowError};
use crate::journal::{EventBody, Interrupt, OperatorAction, SideEffectKind};

/// The most step entries a timeline holds; later steps are left out and [`Timeline::truncated`] is
/// set.
pub const MAX_TIMELINE_STEPS: usize = 5_000;

/// A decoded journal event with where and when it was recorded (input of the timeline builder).
#[derive(Debug, Clone)]
pub(crate) struct TimedEvent {
    pub(crate) seq: i64,
    pub(crate) step: u32,
    pub(crate) recorded_at_ms: i64,
    pub(crate) body: EventBody,
}

/// What a run did, step by step, plus what happened to the run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Timeline {
    /// One entry per step, in step order.
    pub steps: Vec<StepEntry>,
    /// Run-level events (interruptions, operator actions), in journal order.
    pub run_events: Vec<RunEvent>,
    /// Journal rows that could not be decoded: `(seq, step, why)`.
    pub undecodable: Vec<UndecodableEvent>,
    /// Whether steps beyond [`MAX_TIMELINE_STEPS`] were left out.
    pub truncated: bool,
}

/// A journal row that did not decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UndecodableEvent {
    /// Its position in the store's commit order.
    pub seq: i64,
    /// Its step.
    pub step: u32,
    /// Why it did not decode.
    pub message: String,
}

/// What kind of step an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepKind {
    /// `ctx.call(..)` (or a compensation).
    Activity,
    /// `ctx.sleep(..)`.
    Timer,
    /// `ctx.signal(..)`.
    Signal,
    /// `ctx.child(..)`.
    Child,
    /// `ctx.workflow_result(..)`: awaiting another run.
    Await,
    /// `ctx.now()`, `random_u64()`, `uuid()`, `side_effect(..)`.
    SideEffect,
    /// The winner of `ctx.select(..)`.
    Select,
    /// A `ctx.patched(..)` marker.
    Patch,
    /// `ctx.set_state(..)`.
    State,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// Finished successfully (or a record: side effect, marker, published value).
    Completed,
    /// Finished with an error (activity error, failed child, signal timeout).
    Failed,
    /// Waiting: a timer, a signal, a child.
    Waiting,
    /// An activity attempt is running.
    Running,
    /// An activity attempt failed and the next one is scheduled.
    Retrying,
    /// Never finished: the run ended (or was interrupted) while it was open.
    Unfinished,
}

/// How one activity attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Returned its output.
    Succeeded,
    /// Returned an error.
    Failed,
    /// Started and not finished yet.
    InFlight,
    /// Started, never finished: the process running it stopped (a crash) and the run moved on or
    /// restarted.
    CutShort,
}

/// One attempt of an activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// The attempt's number (1-based).
    pub attempt: u32,
    /// When it started (journaled attempt starts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// When its end was journaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Its error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    /// When the next attempt was scheduled, after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<i64>,
    /// Whether it was cut short by a crash (same as `outcome == CutShort`).
    pub cut_short_by_crash: bool,
}

/// An error, as its message and its structured form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorView {
    /// The error's `Display`.
    pub message: String,
    /// The error's fields as JSON.
    pub detail: Rendered,
}

impl ErrorView {
    pub(crate) fn of<E: std::fmt::Display + Serialize>(error: &E) -> Self {
        ErrorView {
            message: error.to_string(),
            detail: Rendered::value(error),
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepEntry {
    /// The step number (1-based).
    pub step: u32,
    /// What kind of step.
    pub kind: StepKind,
    /// The activity, signal, child workflow type, patch or state key name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it stands.
    pub status: StepStatus,
    /// When its first event (or first attempt start) was journaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    /// When its completion was journaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
    /// Activity attempts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// A timer's fire time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fire_at_ms: Option<i64>,
    /// A signal wait's deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// The child (or awaited) run's workflow id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_id: Option<String>,
    /// A select's winning branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_winner: Option<u32>,
    /// The step's value: activity or child output, signal payload, side effect, published value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Rendered>,
    /// The error it ended with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
    /// Whether this activity step is a compensation (saga rollback). The journal does not mark
    /// compensations: an activity step is taken for one when its activity was registered with
    /// `ctx.compensate_with` in this process and it comes after the run's first failure or
    /// interruption.
    pub compensation: bool,
}

impl StepEntry {
    fn new(step: u32, kind: StepKind) -> Self {
        StepEntry {
            step,
            kind,
            name: None,
            status: StepStatus::Waiting,
            started_at_ms: None,
            ended_at_ms: None,
            attempts: Vec::new(),
            fire_at_ms: None,
            deadline_ms: None,
            child_id: None,
            select_winner: None,
            output: None,
            error: None,
            compensation: false,
        }
    }

    fn touch(&mut self, at_ms: i64) {
        self.started_at_ms = Some(self.started_at_ms.map_or(at_ms, |start| start.min(at_ms)));
    }

    fn attempt(&mut self, number: u32) -> &mut Attempt {
        let index = match self.attempts.iter().position(|a| a.attempt == number) {
            Some(index) => index,
            None => {
                self.attempts.push(Attempt {
                    attempt: number,
                    started_at_ms: None,
                    ended_at_ms: None,
                    outcome: AttemptOutcome::InFlight,
                    error: None,
                    retry_at_ms: None,
                    cut_short_by_crash: false,
                });
                self.attempts.sort_by_key(|a| a.attempt);
                self.attempts
                    .iter()
                    .position(|a| a.attempt == number)
                    .unwrap_or(0)
            }
        };
        &mut self.attempts[index]
    }
}

/// Something that happened to the run as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunEvent {
    /// Its position in the store's commit order.
    pub seq: i64,
    /// When it was journaled.
    pub at_ms: i64,
    /// What happened.
    pub what: RunEventKind,
}

/// What happened to a run (see [`RunEvent`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEventKind {
    /// `Engine::cancel` interrupted the run.
    Cancelled {
        /// The reason given.
        reason: String,
    },
    /// The execution timeout interrupted the run.
    TimedOut {
        /// The configured timeout in milliseconds.
        timeout_ms: u64,
    },
    /// An operator acted on the run.
    Operator {
        /// Who.
        actor: String,
        /// What.
        action: OperatorActionView,
    },
}

/// An operator action in JSON-friendly form (see [`OperatorAction`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperatorActionView {
    /// Paused.
    Paused {
        /// Why.
        reason: String,
    },
    /// Resumed.
    Resumed,
    /// Retried from `step` (0: replayed again).
    Retried {
        /// The step run again.
        step: u32,
    },
    /// Terminated.
    Terminated {
        /// Why.
        reason: String,
    },
    /// Forked from another run.
    ForkedFrom {
        /// The original run.
        source_id: String,
        /// The first step run live.
        from_step: u32,
    },
    /// Forked into a new run.
    ForkedTo {
        /// The new run.
        new_id: String,
        /// The first step not copied.
        from_step: u32,
    },
    /// What a retry superseded: the outcome the run had and how many journal events of the
    /// retried step were dropped.
    RetrySuperseded {
        /// The state the run was in.
        state: String,
        /// Its error or park reason, as text.
        error: String,
        /// How many events of the retried step were removed.
        dropped_events: u32,
    },
}

impl From<&OperatorAction> for OperatorActionView {
    fn from(action: &OperatorAction) -> Self {
        match action.clone() {
            OperatorAction::Paused { reason } => OperatorActionView::Paused { reason },
            OperatorAction::Resumed => OperatorActionView::Resumed,
            OperatorAction::Retried { step } => OperatorActionView::Retried { step },
            OperatorAction::Terminated { reason } => OperatorActionView::Terminated { reason },
            OperatorAction::ForkedFrom {
                source_id,
                from_step,
            } => OperatorActionView::ForkedFrom {
                source_id,
                from_step,
            },
            OperatorAction::ForkedTo { new_id, from_step } => {
                OperatorActionView::ForkedTo { new_id, from_step }
            }
            OperatorAction::RetrySuperseded {
                state,
                error,
                dropped_events,
            } => OperatorActionView::RetrySuperseded {
                state,
                error,
                dropped_events,
            },
        }
    }
}

impl std::fmt::Display for RunEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEventKind::Cancelled { reason } => write!(f, "cancelled: {reason}"),
            RunEventKind::TimedOut { timeout_ms } => {
                write!(f, "timed out after {timeout_ms} ms")
            }
            RunEventKind::Operator { actor, action } => match action {
                OperatorActionView::Paused { reason } => {
                    write!(f, "paused by {actor}: {reason}")
                }
                OperatorActionView::Resumed => write!(f, "resumed by {actor}"),
                OperatorActionView::Retried { step } => {
                    write!(f, "retried by {actor} from step {step}")
                }
                OperatorActionView::Terminated { reason } => {
                    write!(f, "terminated by {actor}: {reason}")
                }
                OperatorActionView::ForkedFrom {
                    source_id,
                    from_step,
                } => write!(
                    f,
                    "forked by {actor} from `{source_id}` at step {from_step}"
                ),
                OperatorActionView::ForkedTo { new_id, from_step } => {
                    write!(f, "forked by {actor} into `{new_id}` at step {from_step}")
                }
                OperatorActionView::RetrySuperseded {
                    state,
                    error,
                    dropped_events,
                } => write!(
                    f,
                    "retry by {actor} superseded a {state} outcome ({error}); {dropped_events} event(s) of the step dropped"
                ),
            },
        }
    }
}

/// What the builder needs besides the events.
pub(crate) struct TimelineInput<'a> {
    pub(crate) codec: &'a Codec,
    pub(crate) catalog: &'a Catalog,
    pub(crate) workflow_name: &'a str,
    /// Whether the run is still running (open attempts are in flight rather than cut short).
    pub(crate) running: bool,
    pub(crate) now_ms: i64,
}

/// Builds the timeline from decoded events in journal order.
pub(crate) fn build(
    input: &TimelineInput<'_>,
    events: &[TimedEvent],
    undecodable: Vec<UndecodableEvent>,
) -> Timeline {
    let mut steps: BTreeMap<u32, StepEntry> = BTreeMap::new();
    let mut run_events = Vec::new();
    // The seq of the run's first failure or interruption: compensations come after it.
    let mut failure_seq: Option<i64> = None;
    let mut first_seq_of_step: BTreeMap<u32, i64> = BTreeMap::new();
    let mut truncated = false;
    for event in events {
        if event.step == 0 {
            match &event.body {
                EventBody::Interrupted { interrupt } => {
                    failure_seq.get_or_insert(event.seq);
                    run_events.push(RunEvent {
                        seq: event.seq,
                        at_ms: event.recorded_at_ms,
                        what: match interrupt {
                            Interrupt::Cancelled { reason } => RunEventKind::Cancelled {
                                reason: reason.clone(),
                            },
                            Interrupt::TimedOut { timeout_ms } => RunEventKind::TimedOut {
                                timeout_ms: *timeout_ms,
                            },
                        },
                    });
                }
                EventBody::Operator { action, actor, .. } => run_events.push(RunEvent {
                    seq: event.seq,
                    at_ms: event.recorded_at_ms,
                    what: RunEventKind::Operator {
                        actor: actor.clone(),
                        action: action.into(),
                    },
                }),
                _ => {}
            }
            continue;
        }
        if !steps.contains_key(&event.step) && steps.len() >= MAX_TIMELINE_STEPS {
            truncated = true;
            continue;
        }
        first_seq_of_step.entry(event.step).or_insert(event.seq);
        let entry = steps
            .entry(event.step)
            .or_insert_with(|| StepEntry::new(event.step, kind_of(&event.body)));
        if apply(input, entry, event) {
            failure_seq.get_or_insert(event.seq);
        }
    }
    for entry in steps.values_mut() {
        settle(input, entry);
        if entry.kind == StepKind::Activity {
            let after_failure = match (failure_seq, first_seq_of_step.get(&entry.step)) {
                (Some(failure), Some(first)) => *first > failure,
                _ => false,
            };
            entry.compensation = after_failure
                && entry
                    .name
                    .as_deref()
                    .is_some_and(|name| input.catalog.is_compensation(name));
        }
    }
    Timeline {
        steps: steps.into_values().collect(),
        run_events,
        undecodable,
        truncated,
    }
}

fn kind_of(body: &EventBody) -> StepKind {
    match body {
        EventBody::ActivityCompleted { .. }
        | EventBody::ActivityAttemptFailed { .. }
        | EventBody::ActivityAttemptStarted { .. } => StepKind::Activity,
        EventBody::TimerStarted { .. } | EventBody::TimerFired => StepKind::Timer,
        EventBody::SignalWaitStarted { .. }
        | EventBody::SignalReceived { .. }
        | EventBody::SignalTimedOut { .. } => StepKind::Signal,
        EventBody::ChildStarted { .. } => StepKind::Child,
        EventBody::RunFinished { .. } => StepKind::Await,
        EventBody::SideEffect { .. } => StepKind::SideEffect,
        EventBody::SelectWinner { .. } => StepKind::Select,
        EventBody::PatchMarker { .. } => StepKind::Patch,
        EventBody::StatePublished { .. } => StepKind::State,
        // Run-level events never reach here (step 0).
        EventBody::Interrupted { .. } | EventBody::Operator { .. } => StepKind::Activity,
    }
}

/// Folds one event into its step; `true` when the event is a failure (the run may roll back after
/// it).
fn apply(input: &TimelineInput<'_>, entry: &mut StepEntry, event: &TimedEvent) -> bool {
    let at = event.recorded_at_ms;
    entry.touch(at);
    let codec = input.codec;
    match &event.body {
        EventBody::ActivityAttemptStarted {
            name,
            attempt,
            started_at_ms,
            ..
        } => {
            entry.name = Some(name.clone());
            entry.touch(*started_at_ms);
            entry.attempt(*attempt).started_at_ms = Some(*started_at_ms);
        }
        EventBody::ActivityAttemptFailed {
            name,
            attempt,
            error,
            retry_at_ms,
            ..
        } => {
            entry.name = Some(name.clone());
            let record = entry.attempt(*attempt);
            record.ended_at_ms = Some(at);
            record.outcome = AttemptOutcome::Failed;
            record.error = Some(ErrorView::of(error));
            record.retry_at_ms = Some(*retry_at_ms);
        }
        EventBody::ActivityCompleted {
            name,
            attempts,
            result,
            ..
        } => {
            entry.name = Some(name.clone());
            entry.ended_at_ms = Some(at);
            let record = entry.attempt((*attempts).max(1));
            record.ended_at_ms = Some(at);
            match result {
                Ok(bytes) => {
                    record.outcome = AttemptOutcome::Succeeded;
                    entry.status = StepStatus::Completed;
                    let ty = input.catalog.activity(name).map(|a| a.signature.output);
                    entry.output = Some(Rendered::payload(codec, ty, bytes));
                }
                Err(error) => {
                    record.outcome = AttemptOutcome::Failed;
                    record.error = Some(ErrorView::of::<ActivityError>(error));
                    entry.status = StepStatus::Failed;
                    entry.error = Some(ErrorView::of::<ActivityError>(error));
                    return true;
                }
            }
        }
        EventBody::TimerStarted { fire_at_ms } => entry.fire_at_ms = Some(*fire_at_ms),
        EventBody::TimerFired => {
            entry.ended_at_ms = Some(at);
            entry.status = StepStatus::Completed;
        }
        EventBody::SignalWaitStarted { name, deadline_ms } => {
            entry.name = Some(name.clone());
            entry.deadline_ms = Some(*deadline_ms);
        }
        EventBody::SignalReceived { name, payload, .. } => {
            entry.name = Some(name.clone());
            entry.ended_at_ms = Some(at);
            entry.status = StepStatus::Completed;
            let ty = input.catalog.signal(input.workflow_name, name);
            entry.output = Some(Rendered::payload(codec, ty, payload));
        }
        EventBody::SignalTimedOut { name } => {
            entry.name = Some(name.clone());
            entry.ended_at_ms = Some(at);
            entry.status = StepStatus::Failed;
            entry.error = Some(ErrorView {
                message: format!("signal `{name}` timed out"),
                detail: Rendered::Json(serde_json::json!({ "signal_timeout": name })),
            });
            return true;
        }
        EventBody::ChildStarted {
            workflow_name,
            child_id,
        } => {
            entry.kind = StepKind::Child;
            entry.name = Some(workflow_name.clone());
            entry.child_id = Some(child_id.clone());
        }
        EventBody::RunFinished {
            workflow_id,
            result,
        } => {
            entry.child_id = Some(workflow_id.clone());
            entry.ended_at_ms = Some(at);
            match result {
                Ok(bytes) => {
                    entry.status = StepStatus::Completed;
                    let ty: Option<PayloadType> = entry
                        .name
                        .as_deref()
                        .and_then(|name| input.catalog.workflow(name))
                        .map(|signature| signature.output);
                    entry.output = Some(Rendered::payload(codec, ty, bytes));
                }
                Err(error) => {
                    entry.status = StepStatus::Failed;
                    entry.error = Some(ErrorView::of::<WorkflowError>(error));
                    return true;
                }
            }
        }
        EventBody::SideEffect { kind, value } => {
            entry.name = Some(
                match kind {
                    SideEffectKind::Now => "now",
                    SideEffectKind::Random => "random_u64",
                    SideEffectKind::Uuid => "uuid",
                    SideEffectKind::Closure => "side_effect",
                }
                .to_string(),
            );
            let ty = match kind {
                SideEffectKind::Now | SideEffectKind::Random => Some(PayloadType::of::<u64>()),
                SideEffectKind::Uuid => Some(PayloadType::of::<uuid::Uuid>()),
                SideEffectKind::Closure => None,
            };
            entry.output = Some(Rendered::payload(codec, ty, value));
            entry.status = StepStatus::Completed;
            entry.ended_at_ms = Some(at);
        }
        EventBody::SelectWinner { winner } => {
            entry.kind = StepKind::Select;
            entry.select_winner = Some(*winner);
            entry.status = StepStatus::Completed;
            entry.ended_at_ms = Some(at);
        }
        EventBody::PatchMarker { change_id } => {
            entry.name = Some(change_id.clone());
            entry.status = StepStatus::Completed;
            entry.ended_at_ms = Some(at);
        }
        EventBody::StatePublished { key, value } => {
            entry.name = Some(key.clone());
            let ty = input.catalog.state(input.workflow_name, key);
            entry.output = Some(Rendered::payload(codec, ty, value));
            entry.status = StepStatus::Completed;
            entry.ended_at_ms = Some(at);
        }
        EventBody::Interrupted { .. } | EventBody::Operator { .. } => {}
    }
    false
}

/// Decides the status of open steps and which attempts were cut short.
fn settle(input: &TimelineInput<'_>, entry: &mut StepEntry) {
    let finished = entry.ended_at_ms.is_some();
    let last_attempt = entry.attempts.last().map_or(0, |a| a.attempt);
    for attempt in &mut entry.attempts {
        if attempt.outcome == AttemptOutcome::InFlight
            && (attempt.attempt < last_attempt || finished || !input.running)
        {
            attempt.outcome = AttemptOutcome::CutShort;
            attempt.cut_short_by_crash = true;
        }
    }
    if finished {
        return;
    }
    if !input.running {
        entry.status = StepStatus::Unfinished;
        return;
    }
    entry.status = match entry.kind {
        StepKind::Activity => match entry.attempts.last() {
            Some(Attempt {
                outcome: AttemptOutcome::Failed,
                retry_at_ms: Some(retry_at),
                ..
            }) if *retry_at > input.now_ms => StepStatus::Retrying,
            _ => StepStatus::Running,
        },
        _ => StepStatus::Waiting,
    };
}
