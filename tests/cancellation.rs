//! Cancellation (issue "workflow primitives" §2): `engine.cancel(id, reason)` is durable; a sleeping,
//! signal-waiting or activity-running workflow observes it at its next await point as a typed
//! `WorkflowError::Cancelled` it may catch to clean up; the activity in flight learns it through
//! `ActivityContext::is_cancelled` and its result is not journaled; the request survives restarts;
//! cancelling a finished or unknown run is a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use orchestrator::store::{SqliteStore, Store};
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, KIND_INTERRUPTED, KIND_TIMER_FIRED, KIND_TIMER_STARTED, SlowStore,
    TestDb, bump, count, eventually, finish, gate_or_cancelled, record, recorded, stop,
    wait_status,
};

fn cancelled(reason: &str) -> WorkflowError {
    WorkflowError::Cancelled {
        reason: reason.to_string(),
    }
}

/// Whether `result` is the failure of a run cancelled with `reason`.
fn is_cancelled<T>(result: &Result<T, Error>, reason: &str) -> bool {
    matches!(result, Err(Error::WorkflowFailed { error, .. }) if *error == cancelled(reason))
}

// ---------------------------------------------------------------------------------------------------

/// Sleeps for a minute.
#[workflow]
async fn long_sleeper(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_workflow_observes_the_cancellation() {
    let db = TestDb::new();
    let id = "cancel-sleep-1";
    let engine = db.builder().register(long_sleeper).start().await.unwrap();
    let handle = engine.start(long_sleeper, id, ()).await.unwrap();
    eventually("the timer is journaled", || async {
        db.count_kind(id, KIND_TIMER_STARTED) == 1
    })
    .await;
    let began = Instant::now();
    engine.cancel(id, "no longer needed").await.unwrap();
    let result = finish(&handle).await;
    assert!(is_cancelled(&result, "no longer needed"), "{result:?}");
    assert!(began.elapsed() < Duration::from_millis(500));
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Cancelled(cancelled("no longer needed"))
    );
    // The cancellation is journaled once, at step 0; the timer never fires.
    let interrupts = db.events_of_kind(id, KIND_INTERRUPTED);
    assert_eq!(interrupts.len(), 1);
    assert_eq!(interrupts[0].step, 0);
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 0);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Waits for the signal `go`.
#[workflow]
async fn waits_for_go(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("go").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_waiting_workflow_observes_the_cancellation() {
    let db = TestDb::new();
    let id = "cancel-signal-1";
    let engine = db.builder().register(waits_for_go).start().await.unwrap();
    let handle = engine.start(waits_for_go, id, ()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    engine.cancel(id, "timeout upstream").await.unwrap();
    let result = finish(&handle).await;
    assert!(is_cancelled(&result, "timeout upstream"), "{result:?}");
    // The run is finished: a late signal is refused, not queued.
    let late = engine.signal(id, "go", 1u32).await;
    assert!(
        matches!(&late, Err(Error::RunFinished { workflow_id }) if workflow_id == id),
        "{late:?}"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM signals", []), 0);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Records `dropped` if the activity's future is dropped before it returns (the task was aborted).
struct DropWitness {
    key: String,
    armed: bool,
}

impl Drop for DropWitness {
    fn drop(&mut self) {
        if self.armed {
            record(&self.key, "dropped");
        }
    }
}

/// Works until cancelled, then (uncooperatively) still returns a value after a while.
#[activity]
async fn stubborn_work(ctx: ActivityContext, key: String) -> Result<String, ActivityError> {
    bump(&format!("{key}/started"));
    let mut witness = DropWitness {
        key: key.clone(),
        armed: true,
    };
    let saw_cancel = gate_or_cancelled(&format!("{key}/never"), &ctx).await;
    if saw_cancel && ctx.is_cancelled() {
        record(&key, "saw-cancel");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    record(&key, "returned");
    witness.armed = false;
    Ok("late result".to_string())
}

/// Calls `stubborn_work`.
#[workflow]
async fn runs_stubborn_work(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    ctx.call(stubborn_work, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_activity_learns_of_the_cancellation_and_its_result_is_discarded() {
    let db = TestDb::new();
    let key = "cancel-activity";
    let id = "cancel-activity-1";
    let engine = db
        .builder()
        .register(runs_stubborn_work)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(runs_stubborn_work, id, key.to_string())
        .await
        .unwrap();
    eventually("the activity is running", || async {
        count(&format!("{key}/started")) == 1
    })
    .await;
    engine.cancel(id, "user aborted").await.unwrap();
    let result = finish(&handle).await;
    assert!(is_cancelled(&result, "user aborted"), "{result:?}");
    eventually(
        "the activity observes the cancellation or is dropped",
        || async { !recorded(key).is_empty() },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Its late result (if any) was not applied: no completion of step 1 in the journal.
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 0);
    assert_eq!(count(&format!("{key}/started")), 1);
    // It was told, through its context, and finished on its own terms.
    assert_eq!(
        recorded(key),
        ["saw-cancel", "returned"],
        "the activity was not told (`is_cancelled` never became true): its task was aborted"
    );
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Cancelled(cancelled("user aborted"))
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Records what it cleans up.
#[activity]
async fn clean_up(input: (String, String)) -> Result<(), ActivityError> {
    let (key, what) = input;
    record(&key, format!("cleanup:{what}"));
    Ok(())
}

/// Undoes the reservation.
#[activity]
async fn release_reservation(key: String) -> Result<(), ActivityError> {
    record(&key, "compensation:release");
    Ok(())
}

/// Reserves, registers a compensation, waits; on cancellation cleans up and re-raises (`catch`), or
/// returns a value instead (`!rethrow`).
#[workflow]
async fn catches_cancellation(
    ctx: WorkflowContext,
    input: (String, bool),
) -> Result<String, WorkflowError> {
    let (key, rethrow) = input;
    ctx.call(clean_up, (key.clone(), "warm-up".to_string()))
        .await?;
    ctx.compensate_with(release_reservation, key.clone());
    match ctx.signal::<()>("done").await {
        Ok(()) => Ok("finished".to_string()),
        Err(WorkflowError::Cancelled { reason }) => {
            ctx.call(clean_up, (key.clone(), reason.clone())).await?;
            if rethrow {
                Err(WorkflowError::Cancelled { reason })
            } else {
                Ok(format!("cleaned up after: {reason}"))
            }
        }
        Err(other) => Err(other),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_may_catch_the_cancellation_clean_up_and_then_its_compensations_run() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(catches_cancellation)
        .start()
        .await
        .unwrap();

    // Re-raised after cleaning up: the cleanup activity runs, then the compensation; run cancelled.
    let key = "cancel-catch-rethrow";
    let id = "cancel-catch-1";
    let handle = engine
        .start(catches_cancellation, id, (key.to_string(), true))
        .await
        .unwrap();
    eventually("the warm-up is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    engine.cancel(id, "shop closed").await.unwrap();
    let result = finish(&handle).await;
    assert!(is_cancelled(&result, "shop closed"), "{result:?}");
    assert_eq!(
        recorded(key),
        [
            "cleanup:warm-up",
            "cleanup:shop closed",
            "compensation:release"
        ]
    );
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Cancelled(cancelled("shop closed"))
    );
    assert_eq!(
        db.completed_activities(id),
        [
            (1, "clean_up".to_string()),
            (3, "clean_up".to_string()),
            (4, "release_reservation".to_string())
        ]
    );

    // Swallowed: the workflow completes with its own value and nothing is compensated.
    let key = "cancel-catch-swallow";
    let id = "cancel-catch-2";
    let handle = engine
        .start(catches_cancellation, id, (key.to_string(), false))
        .await
        .unwrap();
    eventually("the warm-up is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    engine.cancel(id, "shop closed").await.unwrap();
    assert_eq!(
        finish(&handle).await.unwrap(),
        "cleaned up after: shop closed"
    );
    assert_eq!(recorded(key), ["cleanup:warm-up", "cleanup:shop closed"]);
    assert_eq!(engine.status(id).await.unwrap(), RunStatus::Completed);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_recorded_while_the_engine_is_down_is_applied_at_restart() {
    let db = TestDb::new();
    let id = "cancel-down-1";
    let build = || db.builder().register(waits_for_go);
    let engine = build().start().await.unwrap();
    engine.start(waits_for_go, id, ()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop(engine).await;

    // An operator tool records the cancellation in the journal while no engine runs.
    {
        let store = SqliteStore::open(db.path()).await.unwrap();
        store.request_cancel(id, "cancelled offline").await.unwrap();
    }
    assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 0);

    let engine = build().start().await.unwrap();
    let handle = engine.handle(waits_for_go, id).await.unwrap();
    let result = finish(&handle).await;
    assert!(is_cancelled(&result, "cancelled offline"), "{result:?}");
    assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_followed_at_once_by_a_shutdown_survives_the_restart() {
    let db = TestDb::new();
    let build = || db.builder().register(waits_for_go).register(long_sleeper);
    let engine = build().start().await.unwrap();
    let ids = ["cancel-restart-1", "cancel-restart-2", "cancel-restart-3"];
    for id in ids {
        engine.start(waits_for_go, id, ()).await.unwrap();
    }
    engine
        .start(long_sleeper, "cancel-restart-4", ())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Whether or not a driver applies it before stopping, the request is durable.
    for id in ids {
        engine.cancel(id, "decommissioned").await.unwrap();
    }
    engine
        .cancel("cancel-restart-4", "decommissioned")
        .await
        .unwrap();
    stop(engine).await;

    let engine = build().start().await.unwrap();
    for id in ids {
        let handle = engine.handle(waits_for_go, id).await.unwrap();
        let result = finish(&handle).await;
        assert!(is_cancelled(&result, "decommissioned"), "{id}: {result:?}");
        assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 1, "{id}");
    }
    let handle = engine
        .handle(long_sleeper, "cancel-restart-4")
        .await
        .unwrap();
    let result = finish(&handle).await;
    assert!(is_cancelled(&result, "decommissioned"), "{result:?}");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[workflow]
async fn instant(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_finished_or_unknown_run_is_a_clear_error_and_the_first_reason_wins() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(instant)
        .register(waits_for_go)
        .start()
        .await
        .unwrap();
    let handle = engine.start(instant, "cancel-done-1", 7).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 7);
    let error = engine
        .cancel("cancel-done-1", "too late")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::RunFinished { workflow_id } if workflow_id == "cancel-done-1"),
        "{error:?}"
    );
    assert_eq!(
        engine.status("cancel-done-1").await.unwrap(),
        RunStatus::Completed
    );

    let error = engine.cancel("cancel-nobody", "why").await.unwrap_err();
    assert!(
        matches!(&error, Error::NotFound { workflow_id } if workflow_id == "cancel-nobody"),
        "{error:?}"
    );

    // Cancelling twice keeps the first reason; once cancelled, a third request is refused.
    let handle = engine
        .start(waits_for_go, "cancel-twice-1", ())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    engine.cancel("cancel-twice-1", "first").await.unwrap();
    let _ = engine.cancel("cancel-twice-1", "second").await;
    let result = finish(&handle).await;
    assert!(is_cancelled(&result, "first"), "{result:?}");
    let error = engine.cancel("cancel-twice-1", "third").await.unwrap_err();
    assert!(matches!(error, Error::RunFinished { .. }), "{error:?}");
    assert_eq!(db.count_kind("cancel-twice-1", KIND_INTERRUPTED), 1);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Waits for `go` with a timeout, so a lost cancellation shows as a signal timeout, not a hang.
#[workflow]
async fn waits_for_go_briefly(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("go")
        .timeout(Duration::from_millis(800))
        .await
}

/// A cancellation accepted while `start` is still setting the run up (its row exists, so `cancel`
/// accepts it, but the driver is not yet running) must reach the workflow without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_accepted_while_start_is_in_progress_is_not_lost() {
    let db = TestDb::new();
    let id = "cancel-race-1";
    // `create_run` commits the row, then answers 150 ms later: `start` has not driven it yet.
    let store = Arc::new(
        SlowStore::open(db.path())
            .await
            .delay_create_replies(Duration::from_millis(150)),
    );
    let engine = Engine::builder()
        .store(store.clone())
        .register(waits_for_go_briefly)
        .start()
        .await
        .unwrap();
    let starter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let handle = engine.start(waits_for_go_briefly, id, ()).await.unwrap();
            finish(&handle).await
        })
    };
    eventually("the new run's row exists", || async {
        db.run_state(id).is_some()
    })
    .await;
    // The row exists and no driver runs it yet: the request is accepted and must not be lost.
    engine.cancel(id, "raced").await.unwrap();
    let result = starter.await.unwrap();
    assert!(
        is_cancelled(&result, "raced"),
        "a cancellation accepted before the driver started was lost: {result:?}"
    );
    let status = wait_status(&engine, id, |status| *status != RunStatus::Running).await;
    assert_eq!(status, RunStatus::Cancelled(cancelled("raced")));
    stop(engine).await;
}
