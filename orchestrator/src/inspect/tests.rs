//! Timeline and blocked-on from histories built by hand: attempt starts (including attempts cut
//! short by a crash) and operator actions, which the engine journals as annotations.

use super::blocked_on::{BlockedOn, open_steps};
use super::catalog::Catalog;
use super::description::pause_in_effect;
use super::render::Rendered;
use super::timeline::{
    AttemptOutcome, OperatorActionView, RunEventKind, StepKind, StepStatus, TimedEvent,
    TimelineInput, build,
};
use crate::codec::Codec;
use crate::error::ActivityError;
use crate::journal::{EventBody, OperatorAction};

fn at(seq: i64, step: u32, recorded_at_ms: i64, body: EventBody) -> TimedEvent {
    TimedEvent {
        seq,
        step,
        recorded_at_ms,
        body,
    }
}

fn started(attempt: u32, started_at_ms: i64) -> EventBody {
    EventBody::ActivityAttemptStarted {
        name: "charge_card".into(),
        input_fingerprint: 7,
        attempt,
        started_at_ms,
    }
}

fn failed(attempt: u32, retry_at_ms: i64) -> EventBody {
    EventBody::ActivityAttemptFailed {
        name: "charge_card".into(),
        input_fingerprint: 7,
        attempt,
        error: ActivityError::retryable("card declined"),
        retry_at_ms,
    }
}

fn operator(action: OperatorAction, at_ms: i64) -> EventBody {
    EventBody::Operator {
        action,
        actor: "alice".into(),
        at_ms,
    }
}

fn input<'a>(codec: &'a Codec, catalog: &'a Catalog, running: bool) -> TimelineInput<'a> {
    TimelineInput {
        codec,
        catalog,
        workflow_name: "checkout",
        running,
        now_ms: 10_000,
    }
}

#[test]
fn an_attempt_started_and_never_ended_before_a_later_attempt_was_cut_short_by_a_crash() {
    let (codec, catalog) = (Codec::default(), Catalog::default());
    let output = codec.encode(&"ch-1".to_string()).unwrap();
    let events = [
        at(1, 1, 1_000, started(1, 1_000)),
        // The process died here; after the restart attempt 2 ran and succeeded.
        at(2, 1, 5_000, started(2, 5_000)),
        at(
            3,
            1,
            5_100,
            EventBody::ActivityCompleted {
                name: "charge_card".into(),
                input_fingerprint: 7,
                attempts: 2,
                result: Ok(output),
            },
        ),
    ];
    let timeline = build(&input(&codec, &catalog, true), &events, Vec::new());
    let step = &timeline.steps[0];
    assert_eq!(
        (step.kind, step.status),
        (StepKind::Activity, StepStatus::Completed)
    );
    assert_eq!(
        (step.started_at_ms, step.ended_at_ms),
        (Some(1_000), Some(5_100))
    );
    assert_eq!(step.attempts.len(), 2);
    assert_eq!(step.attempts[0].outcome, AttemptOutcome::CutShort);
    assert!(step.attempts[0].cut_short_by_crash);
    assert_eq!(step.attempts[0].started_at_ms, Some(1_000));
    assert_eq!(step.attempts[1].outcome, AttemptOutcome::Succeeded);
    assert_eq!(
        (step.attempts[1].started_at_ms, step.attempts[1].ended_at_ms),
        (Some(5_000), Some(5_100))
    );
    assert!(!step.attempts[1].cut_short_by_crash);
    // The activity type is unknown to this catalog: its output is opaque, not an error.
    assert!(matches!(
        step.output,
        Some(Rendered::Opaque { size: 5, .. })
    ));
}

#[test]
fn an_open_attempt_is_running_while_the_run_runs_and_cut_short_once_it_is_parked() {
    let (codec, catalog) = (Codec::default(), Catalog::default());
    let events = [
        at(1, 1, 1_000, started(1, 1_000)),
        at(2, 1, 1_500, failed(1, 2_000)),
        at(3, 1, 2_000, started(2, 2_000)),
    ];
    let timeline = build(&input(&codec, &catalog, true), &events, Vec::new());
    assert_eq!(timeline.steps[0].status, StepStatus::Running);
    assert_eq!(
        timeline.steps[0].attempts[1].outcome,
        AttemptOutcome::InFlight
    );
    let blocked = open_steps(&timeline, |_| Some(5)).unwrap();
    assert_eq!(
        blocked,
        BlockedOn::ActivityRunning {
            name: "charge_card".into(),
            step: 1,
            attempt: 2,
            since_ms: Some(2_000),
        }
    );
    assert_eq!(
        blocked.to_string(),
        "running activity `charge_card` step 1 attempt 2 since 1970-01-01T00:00:02.000Z"
    );

    let parked = build(&input(&codec, &catalog, false), &events, Vec::new());
    assert_eq!(parked.steps[0].status, StepStatus::Unfinished);
    assert_eq!(
        parked.steps[0].attempts[1].outcome,
        AttemptOutcome::CutShort
    );
}

#[test]
fn a_failed_attempt_due_later_is_a_retry_with_its_budget() {
    let (codec, catalog) = (Codec::default(), Catalog::default());
    let events = [
        at(1, 1, 1_000, started(1, 1_000)),
        at(2, 1, 1_200, failed(1, 1_000_000)),
    ];
    let timeline = build(&input(&codec, &catalog, true), &events, Vec::new());
    let blocked = open_steps(&timeline, |_| Some(5)).unwrap();
    assert_eq!(
        blocked.to_string(),
        "activity `charge_card` step 1, attempt 2 of 5, next attempt at 1970-01-01T00:16:40.000Z (last error: card declined)"
    );
}

#[test]
fn operator_actions_are_run_events_and_the_last_pause_without_resume_is_in_effect() {
    let (codec, catalog) = (Codec::default(), Catalog::default());
    let events = [
        at(
            1,
            0,
            100,
            operator(
                OperatorAction::Paused {
                    reason: "db migration".into(),
                },
                100,
            ),
        ),
        at(2, 0, 200, operator(OperatorAction::Resumed, 200)),
        at(3, 1, 300, EventBody::TimerStarted { fire_at_ms: 50_000 }),
        at(
            4,
            0,
            400,
            operator(
                OperatorAction::Paused {
                    reason: "incident 7".into(),
                },
                400,
            ),
        ),
    ];
    let timeline = build(&input(&codec, &catalog, true), &events, Vec::new());
    assert_eq!(timeline.steps.len(), 1);
    assert_eq!(timeline.run_events.len(), 3);
    assert_eq!(
        timeline.run_events[0].what,
        RunEventKind::Operator {
            actor: "alice".into(),
            action: OperatorActionView::Paused {
                reason: "db migration".into()
            },
        }
    );
    assert_eq!(timeline.run_events[1].what.to_string(), "resumed by alice");
    let pause = pause_in_effect(&timeline.run_events).unwrap();
    assert_eq!(
        (pause.by.as_str(), pause.reason.as_str(), pause.at_ms),
        ("alice", "incident 7", 400)
    );
    assert_eq!(
        serde_json::to_value(&timeline.run_events[2].what).unwrap(),
        serde_json::json!({"event": "operator", "actor": "alice", "action": {"action": "paused", "reason": "incident 7"}})
    );
    assert_eq!(
        pause_in_effect(&timeline.run_events[..2]),
        None,
        "a resume ends the pause"
    );
    assert_eq!(
        BlockedOn::Paused {
            by: pause.by,
            reason: pause.reason
        }
        .to_string(),
        "paused by alice: incident 7"
    );
}

#[test]
fn blocked_on_serializes_with_a_kind_tag() {
    let blocked = BlockedOn::Timer {
        step: 3,
        fire_at_ms: 0,
    };
    assert_eq!(
        serde_json::to_value(&blocked).unwrap(),
        serde_json::json!({"kind": "timer", "step": 3, "fire_at_ms": 0})
    );
    assert_eq!(
        BlockedOn::LeaseHeld {
            node: "b".into(),
            until_ms: 1_796_220_185_000
        }
        .to_string(),
        "lease held by node b until 2026-12-02T14:03:05.000Z"
    );
}
