//! Select / race (issue "workflow primitives" §4): `ctx.select` / `ctx.select2` wait for the first of
//! several durable futures (timer, signal, activity, child); the winner is journaled so replay picks the
//! same branch even when several are complete; losers are dropped: activities told to stop
//! (`ActivityContext::is_cancelled`) with their results discarded, timers cancelled, signal waits
//! withdrawn without consuming a signal, child runs cancelled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator::codec::Codec;
use orchestrator::journal::EventBody;
use orchestrator::prelude::*;
use orchestrator::{Either, EngineBuilder};
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, KIND_SELECT_WINNER, KIND_SIGNAL_RECEIVED, KIND_TIMER_FIRED, TestDb,
    bump, count, eventually, finish, record, recorded, status_within, stop,
};

/// Works for `ms` unless its step is abandoned first; records `<label>:done` or `<label>:cancelled`.
/// Even when cancelled it returns a value, which must be discarded.
#[activity]
async fn race_work(
    ctx: ActivityContext,
    input: (String, String, u64),
) -> Result<String, ActivityError> {
    let (key, label, ms) = input;
    bump(&format!("{key}/{label}"));
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => record(&key, format!("{label}:done")),
        () = ctx.cancelled() => {
            assert!(ctx.is_cancelled());
            record(&key, format!("{label}:cancelled"));
        }
    }
    Ok(label)
}

fn work(key: &str, label: &str, ms: u64) -> (String, String, u64) {
    (key.to_string(), label.to_string(), ms)
}

/// The winners journaled for a run, as `(step, winner)`.
fn winners(db: &TestDb, id: &str) -> Vec<(u32, u32)> {
    db.events_of_kind(id, KIND_SELECT_WINNER)
        .into_iter()
        .map(|row| match row.body {
            EventBody::SelectWinner { winner } => (row.step, winner),
            other => panic!("kind 14 holds {other:?}"),
        })
        .collect()
}

/// The steps of the events of `kind`.
fn steps_of(db: &TestDb, id: &str, kind: u16) -> Vec<u32> {
    db.events_of_kind(id, kind)
        .into_iter()
        .map(|row| row.step)
        .collect()
}

// ---------------------------------------------------------------------------------------------------

/// Races the signal `answer` against a timer of `ms`. If the signal wins, sleeps `2 × ms` (so a timer
/// that was not cancelled would fire meanwhile); if the timer wins, waits for `answer` again.
#[workflow]
async fn signal_or_timer(ctx: WorkflowContext, ms: u64) -> Result<(String, String), WorkflowError> {
    let raced = ctx
        .select2(
            ctx.signal::<String>("answer"),
            ctx.sleep(Duration::from_millis(ms)),
        )
        .await;
    let first = match raced {
        Either::Left(answer) => format!("signal:{}", answer?),
        Either::Right(slept) => {
            slept?;
            "timer".to_string()
        }
    };
    let second = if first == "timer" {
        ctx.signal::<String>("answer")
            .timeout(Duration::from_secs(1))
            .await?
    } else {
        ctx.sleep(Duration::from_millis(2 * ms)).await?;
        "slept".to_string()
    };
    Ok((first, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_beats_a_timer_and_the_losing_timer_is_cancelled() {
    let db = TestDb::new();
    let id = "select-signal-1";
    let engine = db
        .builder()
        .register(signal_or_timer)
        .start()
        .await
        .unwrap();
    let handle = engine.start(signal_or_timer, id, 100).await.unwrap();
    engine
        .signal(id, "answer", "yes".to_string())
        .await
        .unwrap();
    assert_eq!(
        finish(&handle).await.unwrap(),
        ("signal:yes".to_string(), "slept".to_string())
    );
    // Steps: 1 select, 2 signal wait, 3 raced timer, 4 the later sleep.
    assert_eq!(winners(&db, id), [(1, 0)]);
    assert_eq!(steps_of(&db, id, KIND_SIGNAL_RECEIVED), [2]);
    assert_eq!(
        steps_of(&db, id, KIND_TIMER_FIRED),
        [4],
        "the losing timer (step 3) fired"
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_beats_a_signal_and_the_withdrawn_wait_consumes_no_signal() {
    let db = TestDb::new();
    let id = "select-timer-1";
    let engine = db
        .builder()
        .register(signal_or_timer)
        .start()
        .await
        .unwrap();
    let handle = engine.start(signal_or_timer, id, 30).await.unwrap();
    eventually("the timer wins", || async { winners(&db, id) == [(1, 1)] }).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    engine
        .signal(id, "answer", "late".to_string())
        .await
        .unwrap();
    assert_eq!(
        finish(&handle).await.unwrap(),
        ("timer".to_string(), "late".to_string())
    );
    assert_eq!(steps_of(&db, id, KIND_TIMER_FIRED), [3]);
    // The signal went to the later wait (step 4), not to the withdrawn one (step 2).
    assert_eq!(steps_of(&db, id, KIND_SIGNAL_RECEIVED), [4]);
    assert_eq!(
        db.scalar(
            "SELECT consumed_by_step FROM signals WHERE workflow_id = ?1",
            [id]
        ),
        4
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Races a slow activity against a fast one, then waits for `go` (a point to restart at).
#[workflow]
async fn fast_or_slow(ctx: WorkflowContext, key: String) -> Result<(usize, String), WorkflowError> {
    let (index, output) = ctx
        .select(vec![
            ctx.call(race_work, work(&key, "slow", 2_000)),
            ctx.call(race_work, work(&key, "fast", 10)),
        ])
        .await;
    let output = output?;
    let () = ctx.signal("go").await?;
    Ok((index, output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losing_activity_is_told_to_stop_and_replay_keeps_the_journaled_winner() {
    let db = TestDb::new();
    let key = "select-activities";
    let id = "select-activities-1";
    let build = || db.builder().register(fast_or_slow);
    let engine = build().start().await.unwrap();
    engine
        .start(fast_or_slow, id, key.to_string())
        .await
        .unwrap();
    eventually("the loser learns it lost", || async {
        recorded(key).contains(&"slow:cancelled".to_string())
    })
    .await;
    assert_eq!(recorded(key), ["fast:done", "slow:cancelled"]);
    // Steps: 1 select, 2 slow, 3 fast. Only the winner's completion is journaled.
    assert_eq!(winners(&db, id), [(1, 1)]);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(steps_of(&db, id, KIND_ACTIVITY_COMPLETED), [3]);
    stop(engine).await;

    let engine = build().start().await.unwrap();
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(fast_or_slow, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), (1, "fast".to_string()));
    // Replay did not run either activity again.
    assert_eq!(count(&format!("{key}/slow")), 1);
    assert_eq!(count(&format!("{key}/fast")), 1);
    assert_eq!(winners(&db, id), [(1, 1)]);
    assert_eq!(steps_of(&db, id, KIND_ACTIVITY_COMPLETED), [3]);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Issues two activities, sleeps until both have completed, then selects between them: both are
/// complete when the select first polls them. Then waits for `go`.
#[workflow]
async fn both_complete(
    ctx: WorkflowContext,
    key: String,
) -> Result<(usize, String), WorkflowError> {
    let mut a = ctx.call(race_work, work(&key, "a", 60));
    let mut b = ctx.call(race_work, work(&key, "b", 10));
    // Polling each once issues its step (steps 1 and 2) and starts it.
    let _ = futures::poll!(&mut a);
    let _ = futures::poll!(&mut b);
    ctx.sleep(Duration::from_millis(150)).await?;
    let (index, output) = ctx.select(vec![a, b]).await;
    let output = output?;
    let () = ctx.signal("go").await?;
    Ok((index, output))
}

fn both_complete_engine(db: &TestDb) -> EngineBuilder {
    db.builder().register(both_complete)
}

/// Runs `both_complete` until it waits for `go`, then stops the engine.
async fn run_until_selected(db: &TestDb, key: &str, id: &str) {
    let engine = both_complete_engine(db).start().await.unwrap();
    engine
        .start(both_complete, id, key.to_string())
        .await
        .unwrap();
    eventually("the select is journaled", || async {
        !winners(db, id).is_empty()
    })
    .await;
    stop(engine).await;
    // Steps: 1 a, 2 b, 3 sleep, 4 select. b finished first, yet a is first in the select's list.
    assert_eq!(steps_of(db, id, KIND_ACTIVITY_COMPLETED), [2, 1]);
    assert_eq!(winners(db, id), [(4, 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_several_branches_are_complete_replay_picks_the_same_winner() {
    let db = TestDb::new();
    let key = "select-both";
    let id = "select-both-1";
    run_until_selected(&db, key, id).await;

    let engine = both_complete_engine(&db).start().await.unwrap();
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(both_complete, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), (0, "a".to_string()));
    assert_eq!(count(&format!("{key}/a")), 1);
    assert_eq!(count(&format!("{key}/b")), 1);
    assert_eq!(winners(&db, id), [(4, 0)]);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_follows_the_journaled_winner_not_the_branch_order() {
    let db = TestDb::new();
    let key = "select-journaled";
    let id = "select-journaled-1";
    run_until_selected(&db, key, id).await;

    // The journal, not the order of the branches, decides: record branch 1 as the winner.
    let payload = Codec::default()
        .encode(&EventBody::SelectWinner { winner: 1 })
        .unwrap();
    let changed = db
        .conn()
        .execute(
            "UPDATE events SET payload = ?1 WHERE workflow_id = ?2 AND kind = ?3",
            rusqlite::params![payload, id, KIND_SELECT_WINNER],
        )
        .unwrap();
    assert_eq!(changed, 1);

    let engine = both_complete_engine(&db).start().await.unwrap();
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(both_complete, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), (1, "b".to_string()));
    assert_eq!(count(&format!("{key}/a")), 1);
    assert_eq!(count(&format!("{key}/b")), 1);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Races the two activities and returns the winner's output at once.
#[workflow]
async fn race_and_return(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let (_, output) = ctx
        .select(vec![
            ctx.call(race_work, work(&key, "slow", 2_000)),
            ctx.call(race_work, work(&key, "fast", 10)),
        ])
        .await;
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losing_activity_is_told_to_stop_even_when_the_workflow_returns_right_away() {
    let db = TestDb::new();
    let key = "select-return";
    let id = "select-return-1";
    let engine = db
        .builder()
        .register(race_and_return)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(race_and_return, id, key.to_string())
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "fast");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while !recorded(key).contains(&"slow:cancelled".to_string())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        recorded(key),
        ["fast:done", "slow:cancelled"],
        "the loser was never told it lost (its task was aborted or left running)"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Waits for `go` forever.
#[workflow]
async fn slow_child(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("go").await
}

/// Races a child against a 30 ms timer, then sleeps a little before returning.
#[workflow]
async fn child_or_timer(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let child_id = format!("{}/child", ctx.workflow_id());
    let raced = ctx
        .select2(
            ctx.child(slow_child, child_id, ()),
            ctx.sleep(Duration::from_millis(30)),
        )
        .await;
    let outcome = match raced {
        Either::Left(output) => format!("child:{}", output?),
        Either::Right(slept) => {
            slept?;
            "timer".to_string()
        }
    };
    ctx.sleep(Duration::from_millis(20)).await?;
    Ok(outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_losing_child_run_is_cancelled() {
    let db = TestDb::new();
    let id = "select-child-1";
    let engine = db
        .builder()
        .register(child_or_timer)
        .register(slow_child)
        .start()
        .await
        .unwrap();
    let handle = engine.start(child_or_timer, id, ()).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "timer");
    assert_eq!(winners(&db, id), [(1, 1)]);
    let status = status_within(
        &engine,
        "select-child-1/child",
        Duration::from_secs(1),
        |s| *s != RunStatus::Running,
    )
    .await;
    assert!(
        matches!(
            status,
            RunStatus::Cancelled(WorkflowError::Cancelled { .. })
        ),
        "the losing child is {status:?}"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// When told to stop, takes 50 ms to clean up and then reports the stop as a (retryable) error, as
/// activities commonly do.
#[activity(retry(max_attempts = 3, backoff = "10ms..10ms", jitter = 0.0))]
async fn quits_with_an_error(ctx: ActivityContext, key: String) -> Result<(), ActivityError> {
    bump(&format!("{key}/started"));
    ctx.cancelled().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    record(&key, "quit");
    Err(ActivityError::retryable("stopped: the step was abandoned"))
}

/// Round 0 races `quits_with_an_error` against a 10 ms timer, then continues as new. Round 1 waits
/// for `go`, then sleeps (step 2).
#[workflow]
async fn race_then_continue(
    ctx: WorkflowContext,
    input: (String, u32),
) -> Result<u32, WorkflowError> {
    let (key, round) = input;
    if round == 0 {
        // Steps: 1 select, 2 activity, 3 timer, 4 sleep.
        let raced = ctx
            .select2(
                ctx.call(quits_with_an_error, key.clone()),
                ctx.sleep(Duration::from_millis(10)),
            )
            .await;
        if let Either::Left(outcome) = raced {
            outcome?;
        }
        ctx.sleep(Duration::from_millis(1)).await?;
        return Err(ctx.continue_as_new(race_then_continue, (key, 1)));
    }
    let () = ctx.signal("go").await?;
    ctx.sleep(Duration::from_millis(1)).await?;
    Ok(round)
}

/// The abandoned activity of an earlier run must not write into the journal of the run that replaced
/// it: after a restart that journal would no longer match the new run's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_losing_activity_that_ends_after_the_run_continued_as_new_leaves_the_new_journal_alone() {
    let db = TestDb::new();
    let key = "select-late-loser";
    let id = "select-late-loser-1";
    let build = || db.builder().register(race_then_continue);
    let engine = build().start().await.unwrap();
    engine
        .start(race_then_continue, id, (key.to_string(), 0))
        .await
        .unwrap();
    eventually("the loser has quit", || async { recorded(key) == ["quit"] }).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        db.scalar("SELECT run_no FROM runs WHERE workflow_id = ?1", [id]),
        1
    );
    let foreign: Vec<(u32, EventBody)> = db
        .events(id)
        .into_iter()
        .map(|row| (row.step, row.body))
        .collect();
    assert!(
        foreign.is_empty(),
        "the new run's journal holds events of the previous run: {foreign:?}"
    );
    stop(engine).await;

    let engine = build().start().await.unwrap();
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(race_then_continue, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 1);
    assert_eq!(count(&format!("{key}/started")), 1);
    stop(engine).await;
}
