//! The values of the golden journal fixtures (`tests/fixtures/journal/format-N.hex`): one of every
//! event kind and of every error and park-reason variant, under a stable name.
//!
//! Only public API is used here, through the names the including module imports (`use super::*`):
//! the format-2 fixture was written by including this file into a program built on the code of
//! format 2 (see `docs/journal.md`), the format-3 one by the ignored test `write_format3_fixture`.

#![allow(dead_code, unreachable_pub)]

use super::*;

/// A journaled value: an event body, or a run's `error` column.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// An event's `payload`.
    Event(EventBody),
    /// A failed, cancelled or compensation-failed run's `error`.
    WorkflowError(WorkflowError),
    /// A parked run's `error`.
    ParkReason(ParkReason),
}

fn activity_errors() -> Vec<(&'static str, ActivityError)> {
    vec![
        ("retryable", ActivityError::retryable("network down")),
        ("non_retryable", ActivityError::non_retryable("bad iban")),
        (
            "timeout",
            ActivityError::Timeout {
                timeout: Duration::from_millis(1500),
            },
        ),
        (
            "panicked",
            ActivityError::Panicked {
                message: "index out of bounds".into(),
            },
        ),
        (
            "payload",
            ActivityError::Payload {
                message: "bad bytes".into(),
            },
        ),
        (
            "failure",
            ActivityError::failure("card_declined", "declined").with_details(&7_u32),
        ),
        (
            "retryable_failure",
            ActivityError::retryable_failure("rate_limited", "slow down"),
        ),
    ]
}

fn workflow_errors() -> Vec<(&'static str, WorkflowError)> {
    vec![
        (
            "activity_failed",
            WorkflowError::ActivityFailed {
                activity: "charge".into(),
                step: 3,
                attempts: 2,
                error: ActivityError::failure("card_declined", "declined"),
            },
        ),
        (
            "signal_timeout",
            WorkflowError::SignalTimeout {
                name: "approval".into(),
                step: 4,
                timeout: Duration::from_secs(60),
            },
        ),
        (
            "payload",
            WorkflowError::Payload {
                step: 5,
                message: "too large".into(),
            },
        ),
        (
            "panicked",
            WorkflowError::Panicked {
                message: "boom".into(),
            },
        ),
        (
            "application",
            WorkflowError::failed("income below threshold"),
        ),
        (
            "cancelled",
            WorkflowError::Cancelled {
                reason: "customer left".into(),
            },
        ),
        (
            "timed_out",
            WorkflowError::TimedOut {
                timeout: Duration::from_secs(3600),
            },
        ),
        (
            "child_start",
            WorkflowError::ChildStart {
                workflow_id: "order-1/ship".into(),
                message: "unregistered".into(),
            },
        ),
        (
            "child_failed",
            WorkflowError::ChildFailed {
                workflow_id: "order-1/ship".into(),
                error: Box::new(WorkflowError::failed("no stock")),
            },
        ),
        (
            "compensation_failed",
            WorkflowError::CompensationFailed {
                original: Box::new(WorkflowError::failed("no stock")),
                compensation: Box::new(WorkflowError::Cancelled {
                    reason: "refund refused".into(),
                }),
            },
        ),
        ("continued_as_new", WorkflowError::ContinuedAsNew),
        (
            "failure",
            WorkflowError::failure("income_too_low", "income below threshold")
                .with_details(&42_u64),
        ),
    ]
}

fn park_reasons() -> Vec<(&'static str, ParkReason)> {
    vec![
        (
            "nondeterminism",
            ParkReason::NonDeterminism(NonDeterminismError {
                step: 2,
                recorded: "timer".into(),
                requested: "activity `charge`".into(),
            }),
        ),
        (
            "unknown_workflow_type",
            ParkReason::UnknownWorkflowType {
                name: "loan_review".into(),
            },
        ),
        (
            "undecodable_payload",
            ParkReason::UndecodablePayload {
                step: 0,
                type_name: "u64".into(),
                message: "unexpected end".into(),
            },
        ),
        (
            "corrupt_journal",
            ParkReason::CorruptJournal {
                message: "event #9".into(),
            },
        ),
        (
            "panicked",
            ParkReason::Panicked {
                message: "boom".into(),
                attempts: 3,
            },
        ),
        (
            "context_in_side_effect",
            ParkReason::ContextInSideEffect {
                side_effect: 4,
                step: 5,
                requested: "side effect Random".into(),
            },
        ),
    ]
}

/// The samples every format since 2 has: event kinds 1–14, every error and park-reason variant.
pub fn format2_samples() -> Vec<(String, Sample)> {
    let mut samples = vec![
        (
            "event/01_activity_completed_ok".to_string(),
            EventBody::ActivityCompleted {
                name: "charge".into(),
                input_fingerprint: 0x0123_4567_89ab_cdef,
                attempts: 1,
                result: Ok(vec![1, 2, 3]),
            },
        ),
        (
            "event/03_timer_started".to_string(),
            EventBody::TimerStarted {
                fire_at_ms: 1_700_000_000_000,
            },
        ),
        ("event/04_timer_fired".to_string(), EventBody::TimerFired),
        (
            "event/05_signal_wait_started".to_string(),
            EventBody::SignalWaitStarted {
                name: "approval".into(),
                deadline_ms: 1_700_000_060_000,
            },
        ),
        (
            "event/06_signal_received".to_string(),
            EventBody::SignalReceived {
                name: "approval".into(),
                signal_id: 77,
                payload: vec![4, 5],
            },
        ),
        (
            "event/07_signal_timed_out".to_string(),
            EventBody::SignalTimedOut {
                name: "approval".into(),
            },
        ),
        (
            "event/09_child_started".to_string(),
            EventBody::ChildStarted {
                workflow_name: "ship".into(),
                child_id: "order-1/ship".into(),
            },
        ),
        (
            "event/10_run_finished_ok".to_string(),
            EventBody::RunFinished {
                workflow_id: "order-1/ship".into(),
                result: Ok(vec![9]),
            },
        ),
        (
            "event/11_interrupted_cancelled".to_string(),
            EventBody::Interrupted {
                interrupt: Interrupt::Cancelled {
                    reason: "customer left".into(),
                },
            },
        ),
        (
            "event/11_interrupted_timed_out".to_string(),
            EventBody::Interrupted {
                interrupt: Interrupt::TimedOut { timeout_ms: 60_000 },
            },
        ),
        (
            "event/12_state_published".to_string(),
            EventBody::StatePublished {
                key: "progress".into(),
                value: vec![50],
            },
        ),
        (
            "event/13_patch_marker".to_string(),
            EventBody::PatchMarker {
                change_id: "new-check".into(),
            },
        ),
        (
            "event/14_select_winner".to_string(),
            EventBody::SelectWinner { winner: 1 },
        ),
    ];
    for (name, kind) in [
        ("now", SideEffectKind::Now),
        ("random", SideEffectKind::Random),
        ("uuid", SideEffectKind::Uuid),
        ("closure", SideEffectKind::Closure),
    ] {
        samples.push((
            format!("event/08_side_effect_{name}"),
            EventBody::SideEffect {
                kind,
                value: vec![1, 2, 3, 4, 5, 6, 7, 8],
            },
        ));
    }
    for (name, error) in activity_errors() {
        samples.push((
            format!("event/01_activity_completed_err_{name}"),
            EventBody::ActivityCompleted {
                name: "charge".into(),
                input_fingerprint: 7,
                attempts: 3,
                result: Err(error.clone()),
            },
        ));
        samples.push((
            format!("event/02_activity_attempt_failed_{name}"),
            EventBody::ActivityAttemptFailed {
                name: "charge".into(),
                input_fingerprint: 7,
                attempt: 2,
                error,
                retry_at_ms: 1_700_000_000_500,
            },
        ));
    }
    let mut samples: Vec<(String, Sample)> = samples
        .into_iter()
        .map(|(name, body)| (name, Sample::Event(body)))
        .collect();
    for (name, error) in workflow_errors() {
        samples.push((
            format!("event/10_run_finished_err_{name}"),
            Sample::Event(EventBody::RunFinished {
                workflow_id: "order-1/ship".into(),
                result: Err(error.clone()),
            }),
        ));
        samples.push((format!("run_error/{name}"), Sample::WorkflowError(error)));
    }
    for (name, reason) in park_reasons() {
        samples.push((format!("park_reason/{name}"), Sample::ParkReason(reason)));
    }
    samples
}
