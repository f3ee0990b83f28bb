//! Why a run is not progressing right now: one precise reason.

use serde::{Deserialize, Serialize};

use super::render::rfc3339;
use super::timeline::{AttemptOutcome, StepKind, StepStatus, Timeline};
use crate::store::RunState;

/// Why a run is not progressing right now. Its `Display` is the line to show people, e.g.
/// "activity `charge_card` step 3, attempt 4 of 5, next attempt at 2026-12-02T14:03:05.000Z (last
/// error: card declined)".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlockedOn {
    /// The run has finished: nothing blocks it.
    Finished {
        /// How it ended.
        state: RunState,
    },
    /// Parked: it waits for an operator (or the next engine start).
    Parked {
        /// The park reason.
        message: String,
    },
    /// Paused by an operator.
    Paused {
        /// Who paused it.
        by: String,
        /// Why.
        reason: String,
    },
    /// An activity attempt failed; the next one is scheduled.
    ActivityRetry {
        /// The activity.
        name: String,
        /// Its step.
        step: u32,
        /// The number of the next attempt.
        next_attempt: u32,
        /// The attempt budget, when this engine knows the activity.
        max_attempts: Option<u32>,
        /// When the next attempt is due.
        next_attempt_at_ms: i64,
        /// The last attempt's error.
        last_error: String,
    },
    /// An activity attempt is running.
    ActivityRunning {
        /// The activity.
        name: String,
        /// Its step.
        step: u32,
        /// The running attempt's number.
        attempt: u32,
        /// When it started (or was due), if known.
        since_ms: Option<i64>,
    },
    /// A durable timer.
    Timer {
        /// Its step.
        step: u32,
        /// When it fires.
        fire_at_ms: i64,
    },
    /// A signal wait with a deadline.
    Signal {
        /// The signal's name.
        name: String,
        /// Its step.
        step: u32,
        /// When the wait gives up.
        deadline_ms: i64,
    },
    /// A child run.
    Child {
        /// The child's workflow id.
        child_id: String,
        /// The child's workflow type.
        workflow_name: String,
        /// The step that awaits it.
        step: u32,
    },
    /// Several steps at once (concurrent branches): each reason.
    Several {
        /// One reason per open step.
        reasons: Vec<BlockedOn>,
    },
    /// A step that journals nothing until it completes: a signal without a deadline or an awaited
    /// run (`workflow_result`).
    Unjournaled {
        /// The run's unconsumed signals.
        pending_signals: usize,
    },
    /// A cancellation was requested and not yet processed.
    CancelRequested {
        /// The reason given.
        reason: String,
    },
    /// Another node's lease on the run ran out and no node has taken it over yet.
    LeaseExpired {
        /// The last holder.
        node: String,
        /// When its lease ran out.
        expired_at_ms: i64,
    },
    /// Held by another node (PostgreSQL): it progresses there.
    LeaseHeld {
        /// The holder.
        node: String,
        /// Its lease's expiry.
        until_ms: i64,
    },
    /// No node owns the running run yet (PostgreSQL): it waits to be claimed.
    Unclaimed,
    /// The run's workflow type is not registered with this engine, which therefore cannot drive it.
    UnknownWorkflowType {
        /// The type's name.
        name: String,
    },
}

impl std::fmt::Display for BlockedOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockedOn::Finished { state } => write!(f, "nothing: the run {}", state_word(*state)),
            BlockedOn::Parked { message } => write!(f, "parked: {message}"),
            BlockedOn::Paused { by, reason } => write!(f, "paused by {by}: {reason}"),
            BlockedOn::ActivityRetry {
                name,
                step,
                next_attempt,
                max_attempts,
                next_attempt_at_ms,
                last_error,
            } => {
                write!(f, "activity `{name}` step {step}, attempt {next_attempt}")?;
                if let Some(max) = max_attempts {
                    write!(f, " of {max}")?;
                }
                write!(
                    f,
                    ", next attempt at {} (last error: {last_error})",
                    rfc3339(*next_attempt_at_ms)
                )
            }
            BlockedOn::ActivityRunning {
                name,
                step,
                attempt,
                since_ms,
            } => {
                write!(f, "running activity `{name}` step {step} attempt {attempt}")?;
                match since_ms {
                    Some(since) => write!(f, " since {}", rfc3339(*since)),
                    None => Ok(()),
                }
            }
            BlockedOn::Timer { step, fire_at_ms } => {
                write!(f, "timer until {} (step {step})", rfc3339(*fire_at_ms))
            }
            BlockedOn::Signal {
                name,
                step,
                deadline_ms,
            } => write!(
                f,
                "signal `{name}` (deadline {}, step {step})",
                rfc3339(*deadline_ms)
            ),
            BlockedOn::Child {
                child_id,
                workflow_name,
                step,
            } => write!(f, "child `{child_id}` ({workflow_name}, step {step})"),
            BlockedOn::Several { reasons } => {
                for (index, reason) in reasons.iter().enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{reason}")?;
                }
                Ok(())
            }
            BlockedOn::Unjournaled { pending_signals } => write!(
                f,
                "a signal without deadline or an awaited run ({pending_signals} signal(s) pending in the inbox)"
            ),
            BlockedOn::CancelRequested { reason } => {
                write!(f, "cancellation requested ({reason}), not yet processed")
            }
            BlockedOn::LeaseExpired {
                node,
                expired_at_ms,
            } => write!(
                f,
                "lease of node {node} expired at {}: waiting for a takeover",
                rfc3339(*expired_at_ms)
            ),
            BlockedOn::LeaseHeld { node, until_ms } => {
                write!(f, "lease held by node {node} until {}", rfc3339(*until_ms))
            }
            BlockedOn::Unclaimed => f.write_str("no node has claimed the run yet"),
            BlockedOn::UnknownWorkflowType { name } => write!(
                f,
                "workflow type `{name}` is not registered with this engine"
            ),
        }
    }
}

fn state_word(state: RunState) -> &'static str {
    match state {
        RunState::Running => "is running",
        RunState::Completed => "completed",
        RunState::Failed => "failed",
        RunState::Parked => "is parked",
        RunState::Cancelled => "was cancelled",
        RunState::CompensationFailed => "failed and a compensation failed",
        RunState::Terminated => "was terminated",
    }
}

/// What the steps of a running run wait on, from its timeline; `None` when no open step is journaled.
pub(crate) fn open_steps(
    timeline: &Timeline,
    max_attempts: impl Fn(&str) -> Option<u32>,
) -> Option<BlockedOn> {
    let mut reasons = Vec::new();
    for entry in &timeline.steps {
        let reason = match (entry.kind, entry.status) {
            (StepKind::Activity, StepStatus::Retrying | StepStatus::Running) => {
                let name = entry.name.clone().unwrap_or_default();
                let last = entry.attempts.last();
                match last {
                    Some(attempt) if attempt.outcome == AttemptOutcome::Failed => {
                        let retry_at = attempt.retry_at_ms.unwrap_or_default();
                        if entry.status == StepStatus::Retrying {
                            BlockedOn::ActivityRetry {
                                max_attempts: max_attempts(&name),
                                name,
                                step: entry.step,
                                next_attempt: attempt.attempt + 1,
                                next_attempt_at_ms: retry_at,
                                last_error: attempt
                                    .error
                                    .as_ref()
                                    .map(|e| e.message.clone())
                                    .unwrap_or_default(),
                            }
                        } else {
                            BlockedOn::ActivityRunning {
                                name,
                                step: entry.step,
                                attempt: attempt.attempt + 1,
                                since_ms: Some(retry_at),
                            }
                        }
                    }
                    Some(attempt) => BlockedOn::ActivityRunning {
                        name,
                        step: entry.step,
                        attempt: attempt.attempt,
                        since_ms: attempt.started_at_ms,
                    },
                    None => BlockedOn::ActivityRunning {
                        name,
                        step: entry.step,
                        attempt: 1,
                        since_ms: entry.started_at_ms,
                    },
                }
            }
            (StepKind::Timer, StepStatus::Waiting) => BlockedOn::Timer {
                step: entry.step,
                fire_at_ms: entry.fire_at_ms.unwrap_or_default(),
            },
            (StepKind::Signal, StepStatus::Waiting) => BlockedOn::Signal {
                name: entry.name.clone().unwrap_or_default(),
                step: entry.step,
                deadline_ms: entry.deadline_ms.unwrap_or_default(),
            },
            (StepKind::Child, StepStatus::Waiting) => BlockedOn::Child {
                child_id: entry.child_id.clone().unwrap_or_default(),
                workflow_name: entry.name.clone().unwrap_or_default(),
                step: entry.step,
            },
            _ => continue,
        };
        reasons.push(reason);
    }
    match reasons.len() {
        0 => None,
        1 => reasons.pop(),
        _ => Some(BlockedOn::Several { reasons }),
    }
}
