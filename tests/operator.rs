//! Operator verbs on one run (issue 12 §2), on a real SQLite file: `pause`, `resume`, `terminate`.
//!
//! Each verb's effect, its audit event in the run's own history (read back through
//! `engine.store().history(id)`), and its typed refusals. A paused run starts no new step or attempt
//! (an attempt in flight finishes and is journaled); a timer, a retry and a signal that come while it
//! is paused take effect only after the resume; the pause survives a clean restart and a SIGKILL of
//! the process that paused it (`operator_worker`). Terminate ends a run at once without its
//! compensations and discards the result of an activity still in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orchestrator::Termination;
use orchestrator::codec::Codec;
use orchestrator::journal::{EventBody, OperatorAction};
use orchestrator::prelude::*;
use orchestrator::store::{RunQuery, RunState};
use orchestrator_tests::{
    ChildWorker, KIND_ACTIVITY_COMPLETED, KIND_ATTEMPT_FAILED, KIND_SIGNAL_RECEIVED,
    KIND_TIMER_FIRED, TestDb, bump, count, eventually, finish, gate_wait, open_gate, stop,
};

/// The operator events (action, actor) of a run, in history order.
async fn operator_events(engine: &Engine, id: &str) -> Vec<(OperatorAction, String, i64)> {
    engine
        .store()
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(
            |row| match Codec::default().decode::<EventBody>(&row.payload).unwrap() {
                EventBody::Operator {
                    action,
                    actor,
                    at_ms,
                } => {
                    assert_eq!(row.step, 0, "an operator event is stored at step 0");
                    Some((action, actor, at_ms))
                }
                _ => None,
            },
        )
        .collect()
}

fn paused(reason: &str) -> OperatorAction {
    OperatorAction::Paused {
        reason: reason.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------------

/// Counts its runs under `key/n`, waits for the gate `key/gate-n` (for n = 1 only), returns `n * 10`.
#[activity]
async fn gated_step(key: String, n: u32) -> Result<u32, ActivityError> {
    bump(&format!("{key}/{n}"));
    if n == 1 {
        gate_wait(&format!("{key}/gate")).await;
    }
    Ok(n * 10)
}

/// Three activity steps in a row.
#[workflow]
async fn three_steps(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    let mut sum = 0;
    for n in 1..=3 {
        sum += ctx.call(gated_step, (key.clone(), n)).await?;
    }
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_finishes_its_attempt_in_flight_starts_nothing_new_and_completes_after_resume()
{
    let db = TestDb::new();
    let (key, id) = ("op-pause", "op-pause-1");
    let engine = db
        .builder()
        .register(three_steps)
        .register(gated_step)
        .start()
        .await
        .unwrap();
    let run = engine
        .start(three_steps, id, key.to_string())
        .await
        .unwrap();
    eventually("step 1 is running", || async { count("op-pause/1") == 1 }).await;

    engine.pause(id, "alice", "investigating").await.unwrap();
    // The attempt in flight finishes and is journaled; nothing after it starts.
    open_gate("op-pause/gate");
    eventually("step 1's completion is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count("op-pause/2"), 0, "a paused run starts no new step");
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 1);
    assert_eq!(engine.resident_runs(), 0, "a paused run leaves memory");

    // Visible on the status and the record.
    let RunStatus::Paused(pause) = engine.status(id).await.unwrap() else {
        panic!("the run is not reported paused");
    };
    assert_eq!(
        (pause.by.as_str(), pause.reason.as_str()),
        ("alice", "investigating")
    );
    let record = engine.store().run(id).await.unwrap().unwrap();
    assert_eq!(record.state, RunState::Running);
    assert_eq!(record.paused, Some(pause.clone()));
    let listed = engine
        .list_runs(&RunQuery::new().paused(true))
        .await
        .unwrap();
    assert_eq!(listed.runs.len(), 1);
    assert!(
        engine
            .list_runs(&RunQuery::new().paused(false))
            .await
            .unwrap()
            .runs
            .is_empty()
    );

    engine.resume(id, "bob").await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 60);
    assert_eq!(count("op-pause/1"), 1, "step 1 ran once");
    assert_eq!(count("op-pause/2"), 1);
    assert_eq!(count("op-pause/3"), 1);
    assert!(
        engine
            .store()
            .run(id)
            .await
            .unwrap()
            .unwrap()
            .paused
            .is_none()
    );

    let events = operator_events(&engine, id).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[0].0.clone(), events[0].1.as_str()),
        (paused("investigating"), "alice")
    );
    assert_eq!(events[0].2, pause.at_ms);
    assert_eq!(
        (events[1].0.clone(), events[1].1.as_str()),
        (OperatorAction::Resumed, "bob")
    );
    assert!(events[1].2 >= events[0].2);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Sleeps `ms` milliseconds, then returns it.
#[workflow]
async fn napper(ctx: WorkflowContext, ms: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verbs_refuse_what_does_not_apply_with_typed_errors() {
    let db = TestDb::new();
    let engine = db.builder().register(napper).start().await.unwrap();
    let id = "op-refuse-1";
    let run = engine.start(napper, id, 60_000).await.unwrap();

    // Resume of a run that is not paused: refused, nothing recorded.
    let refused = engine.resume(id, "alice").await;
    assert!(
        matches!(&refused, Err(Error::NotApplicable { action: "resume", workflow_id, .. }) if workflow_id == id),
        "{refused:?}"
    );
    // Pausing twice: one pause, one audit event.
    engine.pause(id, "alice", "first").await.unwrap();
    engine.pause(id, "bob", "second").await.unwrap();
    let RunStatus::Paused(pause) = engine.status(id).await.unwrap() else {
        panic!("not paused");
    };
    assert_eq!(
        (pause.by.as_str(), pause.reason.as_str()),
        ("alice", "first")
    );
    assert_eq!(operator_events(&engine, id).await.len(), 1);

    // Unknown runs.
    for result in [
        engine.pause("op-nobody", "a", "r").await,
        engine.resume("op-nobody", "a").await,
        engine.terminate("op-nobody", "a", "r").await,
    ] {
        assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    }

    // Terminate a paused run; then every verb is refused as finished.
    engine.terminate(id, "carol", "obsolete").await.unwrap();
    let result = finish(&run).await;
    assert!(
        matches!(&result, Err(Error::RunTerminated { actor, reason, .. }) if actor == "carol" && reason == "obsolete"),
        "{result:?}"
    );
    for result in [
        engine.pause(id, "a", "r").await,
        engine.resume(id, "a").await,
        engine.terminate(id, "a", "again").await,
        engine.cancel(id, "too late").await,
    ] {
        assert!(
            matches!(result, Err(Error::RunFinished { .. })),
            "{result:?}"
        );
    }
    let signal = engine.signal(id, "any", 1_u32).await;
    assert!(
        matches!(signal, Err(Error::RunFinished { .. })),
        "{signal:?}"
    );
    let events = operator_events(&engine, id).await;
    let actions: Vec<_> = events.iter().map(|(action, _, _)| action.clone()).collect();
    assert_eq!(
        actions,
        vec![
            paused("first"),
            OperatorAction::Terminated {
                reason: "obsolete".to_string()
            }
        ]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_that_falls_due_while_paused_fires_only_after_the_resume() {
    let db = TestDb::new();
    let engine = db.builder().register(napper).start().await.unwrap();
    let id = "op-timer-1";
    let run = engine.start(napper, id, 300).await.unwrap();
    engine.pause(id, "alice", "hold the timer").await.unwrap();
    // Well past the timer's fire time.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        db.count_kind(id, KIND_TIMER_FIRED),
        0,
        "the timer fired while paused"
    );
    assert!(matches!(
        engine.status(id).await.unwrap(),
        RunStatus::Paused(_)
    ));

    let resumed = Instant::now();
    engine.resume(id, "alice").await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 300);
    assert!(
        resumed.elapsed() < Duration::from_secs(2),
        "an overdue timer fires at once on resume ({:?})",
        resumed.elapsed()
    );
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 1);
    stop(engine).await;
}

/// Waits for the signal `go` and returns its payload.
#[workflow]
async fn waits_for_go(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("go").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_while_paused_is_accepted_and_delivered_after_the_resume() {
    let db = TestDb::new();
    let engine = db.builder().register(waits_for_go).start().await.unwrap();
    let id = "op-signal-1";
    let run = engine.start(waits_for_go, id, ()).await.unwrap();
    engine.pause(id, "alice", "hold").await.unwrap();
    engine.signal(id, "go", 42_u32).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        db.count_kind(id, KIND_SIGNAL_RECEIVED),
        0,
        "delivered while paused"
    );
    engine.resume(id, "alice").await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 42);
    stop(engine).await;
}

/// Fails its first attempt (retryable), succeeds after; counts attempts under `key`.
#[activity(retry(max_attempts = 3, backoff = "400ms..400ms", jitter = 0.0))]
async fn flaky_once(key: String) -> Result<u32, ActivityError> {
    if bump(&key) == 1 {
        return Err(ActivityError::retryable("first attempt fails"));
    }
    Ok(7)
}

#[workflow]
async fn retries_once(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(flaky_once, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_falls_due_while_paused_runs_only_after_the_resume() {
    let db = TestDb::new();
    let (key, id) = ("op-retry", "op-retry-1");
    let engine = db
        .builder()
        .register(retries_once)
        .register(flaky_once)
        .start()
        .await
        .unwrap();
    let run = engine
        .start(retries_once, id, key.to_string())
        .await
        .unwrap();
    eventually("the first attempt failed and is journaled", || async {
        db.count_kind(id, KIND_ATTEMPT_FAILED) == 1
    })
    .await;
    engine.pause(id, "alice", "hold the retry").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(count(key), 1, "no new attempt while paused");
    engine.resume(id, "alice").await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 7);
    assert_eq!(count(key), 2);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_stays_paused_across_a_restart() {
    let db = TestDb::new();
    let id = "op-restart-1";
    let engine = db.builder().register(napper).start().await.unwrap();
    engine.start(napper, id, 200).await.unwrap();
    engine.pause(id, "alice", "over the weekend").await.unwrap();
    stop(engine).await;

    let engine = db.builder().register(napper).start().await.unwrap();
    engine.recovered().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(
        engine.status(id).await.unwrap(),
        RunStatus::Paused(_)
    ));
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 0);
    engine.resume(id, "alice").await.unwrap();
    let run = engine.handle(napper, id).await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 200);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Books a seat (counted under `key/booked`).
#[activity]
async fn book(key: String) -> Result<(), ActivityError> {
    bump(&format!("{key}/booked"));
    Ok(())
}

/// Releases a seat: the compensation (counted under `key/released`).
#[activity]
async fn release(key: String) -> Result<(), ActivityError> {
    bump(&format!("{key}/released"));
    Ok(())
}

/// Runs under `key/slow`, waits for the gate `key/gate`, returns 1.
#[activity]
async fn slow_charge(key: String) -> Result<u32, ActivityError> {
    bump(&format!("{key}/slow"));
    gate_wait(&format!("{key}/gate")).await;
    bump(&format!("{key}/slow-done"));
    Ok(1)
}

/// Books (with a compensation), then charges slowly.
#[workflow]
async fn booking(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(book, key.clone()).await?;
    ctx.compensate_with(release, key.clone());
    ctx.call(slow_charge, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_ends_a_run_at_once_without_compensations_and_discards_the_activity_in_flight() {
    let db = TestDb::new();
    let (key, id) = ("op-term", "op-term-1");
    let engine = db
        .builder()
        .register(booking)
        .register(book)
        .register(release)
        .register(slow_charge)
        .start()
        .await
        .unwrap();
    let run = engine.start(booking, id, key.to_string()).await.unwrap();
    eventually("the slow activity is running", || async {
        count("op-term/slow") == 1
    })
    .await;
    let before = db.events(id).len();

    engine.terminate(id, "carol", "fraud").await.unwrap();
    let result = finish(&run).await;
    assert!(
        matches!(&result, Err(Error::RunTerminated { actor, reason, .. }) if actor == "carol" && reason == "fraud"),
        "{result:?}"
    );
    let RunStatus::Terminated(Termination { actor, reason, .. }) = engine.status(id).await.unwrap()
    else {
        panic!("not terminated");
    };
    assert_eq!((actor.as_str(), reason.as_str()), ("carol", "fraud"));
    assert_eq!(db.run_state(id), Some(6), "the terminated state is 6");

    // The activity that was in flight finishes (if it still can): nothing of it is journaled.
    open_gate("op-term/gate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count("op-term/released"),
        0,
        "terminate runs no compensation"
    );
    let after = db.events(id);
    assert_eq!(
        after.len(),
        before + 1,
        "only the audit event was added: {after:?}"
    );
    assert!(matches!(
        &after.last().unwrap().body,
        EventBody::Operator { action: OperatorAction::Terminated { reason }, actor, .. }
            if reason == "fraud" && actor == "carol"
    ));
    assert_eq!(
        db.count_kind(id, KIND_ACTIVITY_COMPLETED),
        1,
        "only `book` completed"
    );
    let by_text = engine
        .list_runs(&RunQuery::new().error_contains("FRAUD"))
        .await
        .unwrap();
    assert_eq!(
        by_text.runs.len(),
        1,
        "the termination's text is searchable"
    );
    assert!(
        engine
            .list_runs(&RunQuery::new().state(RunState::Terminated))
            .await
            .unwrap()
            .runs
            .iter()
            .any(|run| run.workflow_id == id)
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// The `operator_worker` binary (built with the tests).
fn worker_path() -> String {
    env!("CARGO_BIN_EXE_operator_worker").to_string()
}

/// Sleeps 300 ms, then returns `seed + 1` (the same workflow as `operator_worker`'s).
#[workflow]
async fn paused_in_a_crash(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(300)).await?;
    Ok(seed + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_a_sigkill_of_the_process_that_paused_the_run() {
    let db = TestDb::new();
    let id = "op-crash-1";
    let path = db.path().to_string_lossy().into_owned();
    let mut worker = ChildWorker::spawn(&worker_path(), [path.as_str(), id]);
    worker
        .wait_for("PAUSED", Duration::from_secs(30))
        .expect("the worker paused the run");
    worker.kill();

    let engine = db
        .builder()
        .register(paused_in_a_crash)
        .start()
        .await
        .unwrap();
    engine.recovered().await;
    // Well past the run's timer: it must not fire.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let RunStatus::Paused(pause) = engine.status(id).await.unwrap() else {
        panic!("the pause was lost in the crash");
    };
    assert_eq!(pause.by, "worker");
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 0);
    engine.resume(id, "alice").await.unwrap();
    let run = engine.handle(paused_in_a_crash, id).await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 6);
    let actions: Vec<_> = operator_events(&engine, id)
        .await
        .into_iter()
        .map(|(action, actor, _)| (action, actor))
        .collect();
    assert_eq!(
        actions,
        vec![
            (paused("before the crash"), "worker".to_string()),
            (OperatorAction::Resumed, "alice".to_string())
        ]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Fails (not retryable) the first time it runs for `key`, succeeds after.
#[activity]
async fn fails_once(key: String) -> Result<u32, ActivityError> {
    if bump(&key) == 1 {
        return Err(ActivityError::non_retryable("first run fails"));
    }
    Ok(1)
}

#[workflow]
async fn fails_once_then_ok(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(fails_once, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_runs_are_retried_in_bulk() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(fails_once_then_ok)
        .register(fails_once)
        .start()
        .await
        .unwrap();
    let mut runs = Vec::new();
    for n in 0..5 {
        let id = format!("op-bulk-retry-{n}");
        let run = engine
            .start(
                fails_once_then_ok,
                id.as_str(),
                format!("op-bulk-retry/{n}"),
            )
            .await
            .unwrap();
        assert!(finish(&run).await.is_err(), "the first run fails");
        runs.push(run);
    }
    let failed = RunQuery::new()
        .id_prefix("op-bulk-retry-")
        .state(RunState::Failed);
    let report = engine
        .bulk(
            &failed,
            orchestrator::BulkAction::Retry,
            orchestrator::BulkOptions::new("ops"),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.matched, report.applied, report.failed),
        (5, 5, 0),
        "{report:?}"
    );
    for run in &runs {
        assert_eq!(finish(run).await.unwrap(), 1);
    }
    stop(engine).await;
}
