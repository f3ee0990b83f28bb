//! The replay core on hand-built histories: no I/O, no runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::task::Waker;
use std::time::Duration;

use super::{Command, ReplayMachine};
use crate::error::{ActivityError, ParkReason};
use crate::journal::{Event, EventBody, History, SideEffectKind};

fn completed(step: u32, name: &str, fingerprint: u64, output: &[u8]) -> Event {
    Event {
        step,
        body: EventBody::ActivityCompleted {
            name: name.to_string(),
            input_fingerprint: fingerprint,
            attempts: 1,
            result: Ok(output.to_vec()),
        },
    }
}

fn machine(events: Vec<Event>) -> ReplayMachine<()> {
    ReplayMachine::new(History::new(events).unwrap())
}

fn noop() -> Waker {
    Waker::noop().clone()
}

#[test]
fn a_journaled_step_is_returned_without_a_command() {
    let mut m = machine(vec![completed(1, "parse", 7, b"out")]);
    let step = m.issue_activity("parse", 7, ());
    assert_eq!(step, 1);
    assert!(
        m.take_commands().is_empty(),
        "a journaled step must not run again"
    );
    assert!(
        m.poll_step(1, &noop()).is_none(),
        "not delivered before its turn"
    );
    assert!(m.replay_next());
    match m.poll_step(1, &noop()) {
        Some(EventBody::ActivityCompleted { result, .. }) => assert_eq!(result.unwrap(), b"out"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!m.is_replaying());
}

#[test]
fn an_unjournaled_step_becomes_a_command() {
    let mut m = machine(vec![completed(1, "a", 1, b"x")]);
    m.issue_activity("a", 1, ());
    m.issue_activity("b", 2, ());
    let commands = m.take_commands();
    assert_eq!(commands.len(), 1);
    assert!(matches!(
        commands[0],
        Command::Activity {
            step: 2,
            name: "b",
            ..
        }
    ));
}

#[test]
fn another_activity_at_a_step_is_nondeterminism_naming_both() {
    let mut m = machine(vec![completed(1, "charge_card", 7, b"")]);
    m.issue_activity("refund", 7, ());
    match m.failure() {
        Some(ParkReason::NonDeterminism(error)) => {
            assert_eq!(error.step, 1);
            assert!(error.recorded.contains("charge_card"), "{error}");
            assert!(error.requested.contains("refund"), "{error}");
        }
        other => panic!("expected nondeterminism, got {other:?}"),
    }
    assert!(m.take_commands().is_empty());
}

#[test]
fn a_changed_input_is_nondeterminism() {
    let mut m = machine(vec![completed(1, "charge_card", 7, b"")]);
    m.issue_activity("charge_card", 8, ());
    assert!(matches!(m.failure(), Some(ParkReason::NonDeterminism(e)) if e.step == 1));
}

#[test]
fn another_kind_of_step_is_nondeterminism() {
    let mut m = machine(vec![Event {
        step: 1,
        body: EventBody::TimerStarted { fire_at_ms: 10 },
    }]);
    m.issue_activity("a", 1, ());
    let error = m.failure().unwrap().to_string();
    assert!(
        error.contains("timer") && error.contains("activity `a`"),
        "{error}"
    );
}

#[test]
fn a_recorded_completion_the_code_never_reaches_is_nondeterminism() {
    let mut m = machine(vec![completed(1, "a", 1, b""), completed(2, "b", 2, b"")]);
    m.issue_activity("a", 1, ());
    assert!(m.replay_next());
    // The new code finishes after step 1, or waits elsewhere: step 2's completion has no taker.
    assert!(!m.replay_next());
    assert!(matches!(m.failure(), Some(ParkReason::NonDeterminism(e)) if e.step == 2));
}

#[test]
fn completions_replay_in_journal_order_not_step_order() {
    // Steps 1 and 2 ran concurrently; step 2 finished first.
    let mut m = machine(vec![completed(2, "b", 2, b"B"), completed(1, "a", 1, b"A")]);
    m.issue_activity("a", 1, ());
    m.issue_activity("b", 2, ());
    assert!(m.replay_next());
    assert!(m.poll_step(1, &noop()).is_none());
    assert!(m.poll_step(2, &noop()).is_some());
    assert!(m.replay_next());
    assert!(m.poll_step(1, &noop()).is_some());
}

#[test]
fn a_timer_keeps_its_journaled_fire_time() {
    let mut m = machine(vec![Event {
        step: 1,
        body: EventBody::TimerStarted { fire_at_ms: 5_000 },
    }]);
    m.issue_timer(Duration::from_secs(60), 1_000_000);
    assert!(
        m.take_records().is_empty(),
        "the start is already journaled"
    );
    match m.take_commands().as_slice() {
        [
            Command::Timer {
                step: 1,
                fire_at_ms: 5_000,
            },
        ] => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_new_timer_is_recorded_before_it_is_armed() {
    let mut m = machine(Vec::new());
    m.issue_timer(Duration::from_millis(1500), 1_000);
    let records = m.take_records();
    assert_eq!(
        records,
        vec![Event {
            step: 1,
            body: EventBody::TimerStarted { fire_at_ms: 2_500 }
        }]
    );
    assert!(matches!(
        m.take_commands().as_slice(),
        [Command::Timer {
            fire_at_ms: 2_500,
            ..
        }]
    ));
}

#[test]
fn side_effects_replay_their_recorded_value() {
    let mut m = machine(vec![Event {
        step: 1,
        body: EventBody::SideEffect {
            kind: SideEffectKind::Random,
            value: vec![42],
        },
    }]);
    let value = m
        .side_effect::<()>(SideEffectKind::Random, || {
            panic!("must not be produced again")
        })
        .unwrap();
    assert_eq!(value, Some((1, vec![42])));
    let fresh = m
        .side_effect::<()>(SideEffectKind::Now, || Ok(vec![7]))
        .unwrap();
    assert_eq!(fresh, Some((2, vec![7])));
    assert_eq!(m.take_records().len(), 1);
}

#[test]
fn an_interrupted_activity_resumes_after_its_last_failed_attempt() {
    let failed = |attempt, retry_at_ms| Event {
        step: 1,
        body: EventBody::ActivityAttemptFailed {
            name: "flaky".to_string(),
            input_fingerprint: 3,
            attempt,
            error: ActivityError::retryable("boom"),
            retry_at_ms,
        },
    };
    let mut m = machine(vec![failed(1, 100), failed(2, 300)]);
    m.issue_activity("flaky", 3, ());
    match m.take_commands().as_slice() {
        [
            Command::Activity {
                resume: Some(resume),
                ..
            },
        ] => {
            assert_eq!(resume.failed_attempts, 2);
            assert_eq!(resume.retry_at_ms, 300);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_signal_wait_keeps_its_journaled_deadline() {
    let mut m = machine(vec![Event {
        step: 1,
        body: EventBody::SignalWaitStarted {
            name: "approval".to_string(),
            deadline_ms: 9_000,
        },
    }]);
    m.issue_signal("approval".to_string(), Some(Duration::from_secs(1)), 50_000);
    assert!(m.take_records().is_empty());
    assert!(matches!(
        m.take_commands().as_slice(),
        [Command::Signal {
            deadline_ms: Some(9_000),
            ..
        }]
    ));
    assert!(m.is_waiting(1));
}

#[test]
fn two_completions_for_one_step_are_a_corrupt_journal() {
    let error =
        History::new(vec![completed(1, "a", 1, b""), completed(1, "a", 1, b"")]).unwrap_err();
    assert!(matches!(error, ParkReason::CorruptJournal { .. }));
}
