//! Timeouts (issue "workflow primitives" §8): a workflow execution timeout
//! (`engine.start(..).execution_timeout(d)`) interrupts the run like a cancellation with
//! `WorkflowError::TimedOut`; it is durable: after a restart only the remaining time is served, and a
//! deadline that passed while the engine was down fires at once. (Signal-wait timeouts and their
//! durability are covered in `signals.rs`; compensation on timeout in `sagas.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, KIND_INTERRUPTED, KIND_TIMER_FIRED, KIND_TIMER_STARTED, SlowStore,
    TestDb, bump, count, eventually, finish, gate_or_cancelled, record, recorded, stop,
};

/// Whether `result` failed with `TimedOut` (of any duration).
fn timed_out<T>(result: &Result<T, Error>) -> bool {
    matches!(
        result,
        Err(Error::WorkflowFailed {
            error: WorkflowError::TimedOut { .. },
            ..
        })
    )
}

/// The timeout a `TimedOut` failure reports.
fn reported_timeout<T: std::fmt::Debug>(result: &Result<T, Error>) -> Duration {
    match result {
        Err(Error::WorkflowFailed {
            error: WorkflowError::TimedOut { timeout },
            ..
        }) => *timeout,
        other => panic!("not a timeout: {other:?}"),
    }
}

/// Sleeps `ms`, then returns it.
#[workflow]
async fn sleeps_for(ctx: WorkflowContext, ms: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

/// Waits for `go`, then counts that it got past the wait.
#[workflow]
async fn waits_then_counts(ctx: WorkflowContext, key: String) -> Result<(), WorkflowError> {
    let () = ctx.signal("go").await?;
    bump(&key);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_timeout_interrupts_a_sleeping_run_with_timed_out() {
    let db = TestDb::new();
    let id = "timeout-sleep-1";
    let engine = db.builder().register(sleeps_for).start().await.unwrap();
    let began = Instant::now();
    let handle = engine
        .start(sleeps_for, id, 60_000)
        .execution_timeout(Duration::from_millis(100))
        .await
        .unwrap();
    let result = finish(&handle).await;
    let elapsed = began.elapsed();
    assert!(timed_out(&result), "{result:?}");
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(600),
        "timed out after {elapsed:?}"
    );
    assert!(
        matches!(
            engine.status(id).await.unwrap(),
            RunStatus::Failed(WorkflowError::TimedOut { .. })
        ),
        "a timed-out run has failed"
    );
    let interrupts = db.events_of_kind(id, KIND_INTERRUPTED);
    assert_eq!(interrupts.len(), 1);
    assert_eq!(interrupts[0].step, 0);
    assert_eq!(db.count_kind(id, KIND_TIMER_STARTED), 1);
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 0);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_finishes_in_time_is_not_interrupted() {
    let db = TestDb::new();
    let id = "timeout-in-time-1";
    let engine = db.builder().register(sleeps_for).start().await.unwrap();
    let handle = engine
        .start(sleeps_for, id, 30)
        .execution_timeout(Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 30);
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(engine.status(id).await.unwrap(), RunStatus::Completed);
    assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 0);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_timeout_survives_a_restart_serving_only_the_remaining_time() {
    let db = TestDb::new();
    let key = "timeout-restart";
    let id = "timeout-restart-1";
    let build = || db.builder().register(waits_then_counts);
    let engine = build().start().await.unwrap();
    let began = Instant::now();
    engine
        .start(waits_then_counts, id, key.to_string())
        .execution_timeout(Duration::from_millis(500))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop(engine).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let engine = build().start().await.unwrap();
    let handle = engine.handle(waits_then_counts, id).await.unwrap();
    let result = finish(&handle).await;
    let elapsed = began.elapsed();
    assert!(timed_out(&result), "{result:?}");
    assert!(
        elapsed >= Duration::from_millis(495) && elapsed < Duration::from_millis(800),
        "the run timed out {elapsed:?} after its start; its timeout was 500 ms"
    );
    assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 1);
    assert_eq!(count(key), 0);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passed_while_the_engine_was_down_fires_at_restart() {
    let db = TestDb::new();
    let key = "timeout-overdue";
    let id = "timeout-overdue-1";
    let build = || db.builder().register(waits_then_counts);
    let engine = build().start().await.unwrap();
    engine
        .start(waits_then_counts, id, key.to_string())
        .execution_timeout(Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop(engine).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let restarted = Instant::now();
    let engine = build().start().await.unwrap();
    // The signal is already waiting when the run resumes: the overdue deadline still wins.
    let handle = engine.handle(waits_then_counts, id).await.unwrap();
    let result = finish(&handle).await;
    assert!(timed_out(&result), "{result:?}");
    assert!(
        restarted.elapsed() < Duration::from_millis(300),
        "the overdue deadline fired {:?} after the restart",
        restarted.elapsed()
    );
    assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 1);
    assert_eq!(count(key), 0);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Blocks until its step is abandoned; records whether it was told.
#[activity]
async fn long_export(ctx: ActivityContext, key: String) -> Result<(), ActivityError> {
    bump(&format!("{key}/started"));
    if gate_or_cancelled(&format!("{key}/never"), &ctx).await {
        record(&key, "export:saw-cancel");
    }
    Ok(())
}

/// Records its cleanup.
#[activity]
async fn remove_partial_export(key: String) -> Result<(), ActivityError> {
    record(&key, "cleanup");
    Ok(())
}

/// Runs `long_export`; on `TimedOut` cleans up, then fails with the timeout.
#[workflow]
async fn export_with_cleanup(ctx: WorkflowContext, key: String) -> Result<(), WorkflowError> {
    match ctx.call(long_export, key.clone()).await {
        Err(timeout @ WorkflowError::TimedOut { .. }) => {
            ctx.call(remove_partial_export, key).await?;
            Err(timeout)
        }
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_activity_is_told_and_the_workflow_may_clean_up_after_a_timeout() {
    let db = TestDb::new();
    let key = "timeout-activity";
    let id = "timeout-activity-1";
    let engine = db
        .builder()
        .register(export_with_cleanup)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(export_with_cleanup, id, key.to_string())
        .execution_timeout(Duration::from_millis(150))
        .await
        .unwrap();
    let result = finish(&handle).await;
    assert!(timed_out(&result), "{result:?}");
    eventually("the export learns it was abandoned", || async {
        recorded(key).contains(&"export:saw-cancel".to_string())
    })
    .await;
    let mut seen = recorded(key);
    seen.sort();
    assert_eq!(seen, ["cleanup", "export:saw-cancel"]);
    assert_eq!(count(&format!("{key}/started")), 1);
    // Only the cleanup completed: the abandoned export's result was not journaled.
    assert_eq!(
        db.completed_activities(id),
        [(2, "remove_partial_export".to_string())]
    );
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 1);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timed_out_error_reports_the_configured_timeout_even_when_the_store_is_slow() {
    let db = TestDb::new();
    let id = "timeout-slow-store-1";
    // Creating the run's row takes 150 ms, as on a disk busy with another process's lock.
    let store = Arc::new(
        SlowStore::open(db.path())
            .await
            .delay_creates(Duration::from_millis(150)),
    );
    let engine = Engine::builder()
        .store(store)
        .register(sleeps_for)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(sleeps_for, id, 60_000)
        .execution_timeout(Duration::from_millis(400))
        .await
        .unwrap();
    let result = finish(&handle).await;
    assert_eq!(reported_timeout(&result), Duration::from_millis(400));
    stop(engine).await;
}

/// Sleeps 150 ms in its first run, then continues as new and waits for `go` forever.
#[workflow]
async fn continues_then_waits(ctx: WorkflowContext, round: u32) -> Result<(), WorkflowError> {
    if round == 0 {
        ctx.sleep(Duration::from_millis(150)).await?;
        return Err(ctx.continue_as_new(continues_then_waits, 1));
    }
    ctx.signal::<()>("go").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_continued_as_new_reports_the_configured_timeout() {
    let db = TestDb::new();
    let id = "timeout-continued-1";
    let engine = db
        .builder()
        .register(continues_then_waits)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(continues_then_waits, id, 0)
        .execution_timeout(Duration::from_millis(400))
        .await
        .unwrap();
    let result = finish(&handle).await;
    assert!(timed_out(&result), "{result:?}");
    assert_eq!(
        db.scalar("SELECT run_no FROM runs WHERE workflow_id = ?1", [id]),
        1
    );
    assert_eq!(reported_timeout(&result), Duration::from_millis(400));
    stop(engine).await;
}
