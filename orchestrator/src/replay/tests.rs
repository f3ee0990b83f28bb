//! The replay core on hand-built histories: no I/O, no runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::task::Waker;
use std::time::Duration;

use super::{Command, ReplayMachine, SideEffectStart};
use crate::error::{ActivityError, ParkReason};
use crate::journal::{Event, EventBody, History, Interrupt, SideEffectKind};

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
        m.poll_step(1, noop()).0.is_none(),
        "not delivered before its turn"
    );
    assert!(m.replay_next());
    match m.poll_step(1, noop()).0 {
        Some(EventBody::ActivityCompleted { result, .. }) => assert_eq!(result.unwrap(), b"out"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!m.is_replaying());
}

#[test]
fn an_unjournaled_step_becomes_a_command_once_the_journal_is_delivered() {
    let mut m = machine(vec![completed(1, "a", 1, b"x")]);
    m.issue_activity("a", 1, ());
    m.issue_activity("b", 2, ());
    assert!(
        m.take_commands().is_empty(),
        "commands wait until replay is over"
    );
    assert!(m.replay_next());
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
    assert!(m.poll_step(1, noop()).0.is_none());
    assert!(m.poll_step(2, noop()).0.is_some());
    assert!(m.replay_next());
    assert!(m.poll_step(1, noop()).0.is_some());
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
    assert!(!m.replay_next(), "no completion to replay");
    match m.take_commands().as_slice() {
        [
            Command::Activity {
                resume: Some(resume),
                ..
            },
        ] => {
            assert_eq!(resume.last_attempt, 2);
            assert_eq!(resume.retry_at_ms, Some(300));
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

fn interrupted(reason: &str) -> Event {
    Event {
        step: 0,
        body: EventBody::Interrupted {
            interrupt: Interrupt::Cancelled {
                reason: reason.to_string(),
            },
        },
    }
}

#[test]
fn an_interruption_resolves_every_waiting_step_and_abandons_its_work() {
    let mut m = machine(Vec::new());
    m.issue_activity("a", 1, ());
    m.issue_timer(Duration::from_secs(5), 0);
    assert_eq!(m.take_commands().len(), 2);
    m.interrupt(Interrupt::Cancelled {
        reason: "user".to_string(),
    });
    for step in [1, 2] {
        assert!(matches!(
            m.poll_step(step, noop()).0,
            Some(EventBody::Interrupted { .. })
        ));
    }
    assert_eq!(m.take_abandoned(), vec![1, 2]);
    // Steps asked for afterwards work normally (clean-up code may run activities).
    m.issue_activity("cleanup", 9, ());
    assert_eq!(m.take_commands().len(), 1);
}

#[test]
fn an_interruption_with_nothing_waiting_is_observed_by_the_next_step() {
    let mut m = machine(Vec::new());
    m.interrupt(Interrupt::Cancelled {
        reason: "early".to_string(),
    });
    m.issue_timer(Duration::from_secs(1), 0);
    assert!(m.take_commands().is_empty(), "the step is already resolved");
    assert!(matches!(
        m.poll_step(1, noop()).0,
        Some(EventBody::Interrupted { .. })
    ));
}

#[test]
fn a_journaled_interruption_replays_at_its_place_in_the_order() {
    let mut m = machine(vec![completed(1, "a", 1, b""), interrupted("stop")]);
    m.issue_activity("a", 1, ());
    assert!(m.replay_next());
    assert!(m.poll_step(1, noop()).0.is_some());
    m.issue_activity("b", 2, ());
    assert!(m.replay_next(), "the interruption is delivered");
    assert!(matches!(
        m.poll_step(2, noop()).0,
        Some(EventBody::Interrupted { .. })
    ));
    assert!(m.take_commands().is_empty(), "step 2 never runs");
}

#[test]
fn a_shielded_machine_ignores_interruptions() {
    let mut m = machine(Vec::new());
    m.shield();
    m.issue_activity("refund", 1, ());
    m.interrupt(Interrupt::Cancelled {
        reason: "late".to_string(),
    });
    assert!(m.poll_step(1, noop()).0.is_none());
    assert_eq!(m.take_commands().len(), 1);
}

#[test]
fn an_abandoned_step_drops_its_command_and_outcome() {
    let mut m = machine(Vec::new());
    m.issue_signal("x".to_string(), None, 0);
    let _waker = m.abandon(1);
    assert!(m.take_commands().is_empty());
    assert_eq!(m.take_abandoned(), vec![1]);
    m.resolve(
        1,
        EventBody::SignalTimedOut {
            name: "x".to_string(),
        },
    );
    assert!(m.poll_step(1, noop()).0.is_none());
}

#[test]
fn patched_is_true_on_new_runs_and_false_on_old_journals() {
    let mut fresh = machine(Vec::new());
    assert!(fresh.patched("v2"));
    assert_eq!(fresh.take_records().len(), 1);
    fresh.issue_activity("new", 1, ());
    assert_eq!(fresh.steps_issued(), 2);

    // A journal recorded before the change has the old call at step 1, and no marker.
    let mut old = machine(vec![completed(1, "old", 1, b"")]);
    assert!(!old.patched("v2"));
    old.issue_activity("old", 1, ());
    assert!(old.failure().is_none());

    // A journal recorded after the change has the marker at step 1.
    let mut new = machine(vec![Event {
        step: 1,
        body: EventBody::PatchMarker {
            change_id: "v2".to_string(),
        },
    }]);
    assert!(new.patched("v2"));
    assert!(new.take_records().is_empty());
}

#[test]
fn a_select_keeps_its_journaled_winner() {
    let mut m = machine(vec![Event {
        step: 1,
        body: EventBody::SelectWinner { winner: 1 },
    }]);
    assert_eq!(m.issue_select(), (1, Some(1)));
    let mut live = machine(Vec::new());
    let (step, winner) = live.issue_select();
    assert_eq!(winner, None);
    live.record_select_winner(step, 0);
    assert_eq!(live.take_records().len(), 1);
}

#[test]
fn returning_before_the_journal_ends_is_nondeterminism() {
    let mut m = machine(vec![completed(1, "a", 1, b""), completed(2, "b", 2, b"")]);
    m.issue_activity("a", 1, ());
    assert!(m.replay_next());
    let error = m.unreached_history().expect("step 2 was never reached");
    assert_eq!(error.step, 2);
    assert!(error.recorded.contains('b'), "{error}");
}

#[test]
fn continue_as_new_keeps_the_next_input() {
    let mut m = machine(Vec::new());
    assert!(m.continue_as_new().is_none());
    m.request_continue_as_new(vec![1, 2]);
    assert_eq!(m.continue_as_new(), Some(&[1u8, 2][..]));
}

#[test]
fn a_completion_of_a_step_the_code_dropped_is_skipped_on_replay() {
    // A graceful shutdown journaled both branches of an undecided select: b (step 2) then a (step 1).
    let mut m = machine(vec![completed(2, "b", 2, b"B"), completed(1, "a", 1, b"A")]);
    m.issue_activity("a", 1, ());
    m.issue_activity("b", 2, ());
    assert!(m.replay_next());
    assert!(m.poll_step(2, noop()).0.is_some());
    // The select picks b and drops a.
    let _waker = m.abandon(1);
    assert!(
        m.replay_next(),
        "a's completion is skipped, not a nondeterminism"
    );
    assert!(m.failure().is_none());
    assert!(!m.is_replaying());
    assert!(m.unreached_history().is_none());
}

#[test]
fn a_step_asked_for_while_a_side_effect_is_produced_fails_the_run() {
    let mut m = machine(Vec::new());
    let SideEffectStart::Fresh { step } = m.begin_side_effect(SideEffectKind::Closure) else {
        panic!("a new side effect is produced");
    };
    let _ = m.side_effect::<()>(SideEffectKind::Random, || Ok(vec![1]));
    m.finish_side_effect(step, SideEffectKind::Closure, vec![2]);
    assert_eq!(
        m.failure(),
        Some(&ParkReason::ContextInSideEffect {
            side_effect: 1,
            step: 2,
            requested: "side effect Random".to_string(),
        })
    );
    assert!(m.take_records().is_empty(), "nothing is journaled");
}

#[test]
fn a_finished_side_effect_lets_later_steps_through() {
    let mut m = machine(Vec::new());
    let SideEffectStart::Fresh { step } = m.begin_side_effect(SideEffectKind::Closure) else {
        panic!("a new side effect is produced");
    };
    m.finish_side_effect(step, SideEffectKind::Closure, vec![2]);
    assert!(m.patched("after"));
    assert_eq!(m.failure(), None);
    assert_eq!(m.take_records().len(), 2);
}

#[test]
fn a_delivered_step_is_woken_only_when_the_caller_asks() {
    let mut m = machine(Vec::new());
    let step = m.issue_timer(Duration::from_secs(1), 0);
    let (outcome, unused) = m.poll_step(step, noop());
    assert!(outcome.is_none() && unused.is_none());
    m.resolve(step, EventBody::TimerFired);
    assert_eq!(
        m.take_woken().len(),
        1,
        "the waker is handed back, not woken"
    );
    assert!(m.take_woken().is_empty());
}

#[test]
fn an_attempt_started_without_an_outcome_counts_and_resumes_at_once() {
    let started = |attempt| Event {
        step: 1,
        body: EventBody::ActivityAttemptStarted {
            name: "flaky".to_string(),
            input_fingerprint: 3,
            attempt,
            started_at_ms: 50,
        },
    };
    let failed = Event {
        step: 1,
        body: EventBody::ActivityAttemptFailed {
            name: "flaky".to_string(),
            input_fingerprint: 3,
            attempt: 1,
            error: ActivityError::retryable("boom"),
            retry_at_ms: 100,
        },
    };
    // Attempt 1 failed, attempt 2 started and left no outcome (a crash): 2 attempts used, the next
    // one is due at once.
    let mut m = machine(vec![started(1), failed.clone(), started(2)]);
    m.issue_activity("flaky", 3, ());
    match m.take_commands().as_slice() {
        [
            Command::Activity {
                resume: Some(resume),
                ..
            },
        ] => {
            assert_eq!(resume.last_attempt, 2);
            assert_eq!(resume.retry_at_ms, None);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Attempt 1 started and failed: resume after its backoff, as before.
    let mut m = machine(vec![started(1), failed]);
    m.issue_activity("flaky", 3, ());
    match m.take_commands().as_slice() {
        [
            Command::Activity {
                resume: Some(resume),
                ..
            },
        ] => assert_eq!((resume.last_attempt, resume.retry_at_ms), (1, Some(100))),
        other => panic!("unexpected {other:?}"),
    }
    // A start of another activity at that step (the code changed) does not count.
    let mut m = machine(vec![started(1)]);
    m.issue_activity("other", 3, ());
    match m.take_commands().as_slice() {
        [Command::Activity { resume: None, .. }] => {}
        other => panic!("unexpected {other:?}"),
    }
}
