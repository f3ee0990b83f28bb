//! Sagas (issue "workflow primitives" §1, brief §5): compensations registered after successful steps run
//! in reverse order of registration when the workflow fails, is cancelled or times out; each is an
//! ordinary journaled, retried activity step, so a restart in the middle of a rollback resumes it without
//! repeating finished compensations; a compensation that still fails after its retries leaves the run
//! `CompensationFailed` with both errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orchestrator::ParkReason;
use orchestrator::prelude::*;
use orchestrator::store::RunState;
use orchestrator_tests::{
    KIND_ATTEMPT_FAILED, KIND_INTERRUPTED, TestDb, bump, count, eventually, finish, gate_wait,
    open_gate, record, recorded, stop, wait_status,
};

// ---------------------------------------------------------------------------------------------------
// Activities shared by the tests. Each records what it did in the list named by its key.

/// A forward step: records `do:<name>` and returns the name.
#[activity]
async fn do_step(input: (String, String)) -> Result<String, ActivityError> {
    let (key, name) = input;
    record(&key, format!("do:{name}"));
    Ok(name)
}

/// The step that fails for good.
#[activity]
async fn fail_step(key: String) -> Result<(), ActivityError> {
    record(&key, "do:fail");
    Err(ActivityError::non_retryable(
        "the courier refused the parcel",
    ))
}

/// Undoes one step: records `undo:<name>`. The compensation of `b` fails its first attempt (retryable),
/// so its retry policy is exercised; `blocking` compensations wait for the gate `<key>/gate`.
#[activity(retry(max_attempts = 3, backoff = "5ms..5ms", jitter = 0.0))]
async fn undo(ctx: ActivityContext, input: (String, String)) -> Result<(), ActivityError> {
    let (key, name) = input;
    let attempt = bump(&format!("{key}/undo:{name}"));
    if name == "b" && attempt == 1 {
        return Err(ActivityError::retryable("refund service busy"));
    }
    if name == "blocking" {
        gate_wait(&format!("{key}/gate")).await;
    }
    if ctx.is_cancelled() {
        record(&key, format!("undo:{name}:saw-cancel"));
    }
    record(&key, format!("undo:{name}"));
    Ok(())
}

/// A compensation that never succeeds: two attempts, both retryable failures.
#[activity(retry(max_attempts = 2, backoff = "5ms..5ms", jitter = 0.0))]
async fn undo_fragile(input: (String, String)) -> Result<(), ActivityError> {
    let (key, name) = input;
    bump(&format!("{key}/undo_fragile:{name}"));
    record(&key, format!("undo_fragile:{name}"));
    Err(ActivityError::retryable("ledger unavailable"))
}

fn pair(key: &str, name: &str) -> (String, String) {
    (key.to_string(), name.to_string())
}

// ---------------------------------------------------------------------------------------------------

/// Three steps with compensations, then a step that fails; the step after it never runs.
#[workflow]
async fn three_then_fail(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    for name in ["a", "b", "c"] {
        let done = ctx.call(do_step, pair(&key, name)).await?;
        ctx.compensate_with(undo, (key.clone(), done));
    }
    ctx.call(fail_step, key.clone()).await?;
    // Never reached: its compensation must not run.
    let done = ctx.call(do_step, pair(&key, "d")).await?;
    ctx.compensate_with(undo, (key.clone(), done));
    Ok("shipped".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensations_run_in_reverse_order_when_the_workflow_fails() {
    let db = TestDb::new();
    let key = "saga-fail";
    let id = "saga-fail-1";
    let engine = db
        .builder()
        .register(three_then_fail)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(three_then_fail, id, key.to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let original = WorkflowError::ActivityFailed {
        activity: "fail_step".to_string(),
        step: 4,
        attempts: 1,
        error: ActivityError::non_retryable("the courier refused the parcel"),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == original),
        "{error:?}"
    );
    assert_eq!(
        recorded(key),
        [
            "do:a", "do:b", "do:c", "do:fail", "undo:c", "undo:b", "undo:a"
        ]
    );
    // Each compensation is a journaled step after the failed one, in reverse order of registration.
    assert_eq!(
        db.completed_activities(id),
        [
            (1, "do_step".to_string()),
            (2, "do_step".to_string()),
            (3, "do_step".to_string()),
            (4, "fail_step".to_string()),
            (5, "undo".to_string()),
            (6, "undo".to_string()),
            (7, "undo".to_string()),
        ]
    );
    // `undo(b)` was retried per its policy: one failed attempt journaled, then success.
    assert_eq!(count(&format!("{key}/undo:b")), 2);
    assert_eq!(count(&format!("{key}/undo:a")), 1);
    assert_eq!(count(&format!("{key}/undo:c")), 1);
    assert_eq!(db.count_kind(id, KIND_ATTEMPT_FAILED), 1);
    // The run failed with the workflow's own error (the rollback succeeded).
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Failed(original)
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Registers a compensation, then succeeds.
#[workflow]
async fn succeeds_with_compensation(
    ctx: WorkflowContext,
    key: String,
) -> Result<String, WorkflowError> {
    let done = ctx.call(do_step, pair(&key, "a")).await?;
    ctx.compensate_with(undo, (key.clone(), done.clone()));
    Ok(done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_that_succeeds_runs_no_compensation() {
    let db = TestDb::new();
    let key = "saga-ok";
    let id = "saga-ok-1";
    let engine = db
        .builder()
        .register(succeeds_with_compensation)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(succeeds_with_compensation, id, key.to_string())
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "a");
    assert_eq!(recorded(key), ["do:a"]);
    assert_eq!(db.completed_activities(id).len(), 1);
    assert_eq!(engine.status(id).await.unwrap(), RunStatus::Completed);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Steps a, b, c; the compensation of b can never succeed.
#[workflow]
async fn fragile_rollback(ctx: WorkflowContext, key: String) -> Result<(), WorkflowError> {
    let a = ctx.call(do_step, pair(&key, "a")).await?;
    ctx.compensate_with(undo, (key.clone(), a));
    let b = ctx.call(do_step, pair(&key, "b")).await?;
    ctx.compensate_with(undo_fragile, (key.clone(), b));
    let c = ctx.call(do_step, pair(&key, "c")).await?;
    ctx.compensate_with(undo, (key.clone(), c));
    Err(WorkflowError::failed("fraud check failed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_that_keeps_failing_leaves_the_run_compensation_failed() {
    let db = TestDb::new();
    let key = "saga-comp-fail";
    let id = "saga-comp-fail-1";
    let engine = db
        .builder()
        .register(fragile_rollback)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(fragile_rollback, id, key.to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let expected = WorkflowError::CompensationFailed {
        original: Box::new(WorkflowError::failed("fraud check failed")),
        compensation: Box::new(WorkflowError::ActivityFailed {
            activity: "undo_fragile".to_string(),
            step: 5,
            attempts: 2,
            error: ActivityError::retryable("ledger unavailable"),
        }),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == expected),
        "{error:?}"
    );
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::CompensationFailed(expected)
    );
    // c was undone, b was tried twice (its policy), and the rollback stopped there: a was not undone.
    assert_eq!(
        recorded(key),
        [
            "do:a",
            "do:b",
            "do:c",
            "undo:c",
            "undo_fragile:b",
            "undo_fragile:b"
        ]
    );
    assert_eq!(count(&format!("{key}/undo:a")), 0);
    assert_eq!(db.count_kind(id, KIND_ATTEMPT_FAILED), 1);
    // Its own state in the `runs` table (5), not "failed" (2).
    assert_eq!(db.run_state(id), Some(RunState::CompensationFailed.code()));
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Steps a, blocking, c, then fails: the rollback undoes c, then blocks in `undo(blocking)`.
#[workflow]
async fn rollback_with_a_blocking_compensation(
    ctx: WorkflowContext,
    key: String,
) -> Result<(), WorkflowError> {
    for name in ["a", "blocking", "c"] {
        let done = ctx.call(do_step, pair(&key, name)).await?;
        ctx.compensate_with(undo, (key.clone(), done));
    }
    Err(WorkflowError::failed("inventory mismatch"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_rollback_resumes_it_without_repeating_finished_compensations() {
    let db = TestDb::new();
    let key = "saga-restart";
    let id = "saga-restart-1";
    // A short grace: the blocked compensation is abandoned at shutdown, as a crash would leave it.
    let build = || {
        db.builder()
            .shutdown_grace(Duration::from_millis(100))
            .register(rollback_with_a_blocking_compensation)
    };
    let engine = build().start().await.unwrap();
    engine
        .start(rollback_with_a_blocking_compensation, id, key.to_string())
        .await
        .unwrap();
    eventually("the blocking compensation is running", || async {
        count(&format!("{key}/undo:blocking")) == 1
    })
    .await;
    stop(engine).await;
    assert_eq!(recorded(key), ["do:a", "do:blocking", "do:c", "undo:c"]);
    assert_eq!(db.run_state(id), Some(0), "the run is still unfinished");

    open_gate(&format!("{key}/gate"));
    let engine = build().start().await.unwrap();
    let handle = engine
        .handle(rollback_with_a_blocking_compensation, id)
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == WorkflowError::failed("inventory mismatch")),
        "{error:?}"
    );
    assert_eq!(
        recorded(key),
        [
            "do:a",
            "do:blocking",
            "do:c",
            "undo:c",
            "undo:blocking",
            "undo:a"
        ]
    );
    // The finished compensation ran once; the interrupted one ran again (at-least-once); the last once.
    assert_eq!(count(&format!("{key}/undo:c")), 1);
    assert_eq!(count(&format!("{key}/undo:blocking")), 2);
    assert_eq!(count(&format!("{key}/undo:a")), 1);
    let steps: Vec<u32> = db
        .completed_activities(id)
        .into_iter()
        .map(|(step, _)| step)
        .collect();
    assert_eq!(
        steps,
        [1, 2, 3, 4, 5, 6],
        "each step completed exactly once"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Two steps with compensations, then waits for a signal that never comes (until cancelled).
#[workflow]
async fn two_steps_then_wait(ctx: WorkflowContext, key: String) -> Result<(), WorkflowError> {
    for name in ["a", "c"] {
        let done = ctx.call(do_step, pair(&key, name)).await?;
        ctx.compensate_with(undo, (key.clone(), done));
    }
    let () = ctx.signal("never").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensations_run_in_reverse_order_when_the_run_is_cancelled() {
    let db = TestDb::new();
    let key = "saga-cancel";
    let id = "saga-cancel-1";
    let engine = db
        .builder()
        .register(two_steps_then_wait)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(two_steps_then_wait, id, key.to_string())
        .await
        .unwrap();
    eventually("both steps are done", || async {
        db.completed_activities(id).len() == 2
    })
    .await;
    engine
        .cancel(id, "customer changed their mind")
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let cancelled = WorkflowError::Cancelled {
        reason: "customer changed their mind".to_string(),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == cancelled),
        "{error:?}"
    );
    assert_eq!(recorded(key), ["do:a", "do:c", "undo:c", "undo:a"]);
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Cancelled(cancelled)
    );
    assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 1);
    stop(engine).await;
}

/// Steps a, blocking, c with compensations, then waits for a signal that never comes.
#[workflow]
async fn three_steps_then_wait(ctx: WorkflowContext, key: String) -> Result<(), WorkflowError> {
    for name in ["a", "blocking", "c"] {
        let done = ctx.call(do_step, pair(&key, name)).await?;
        ctx.compensate_with(undo, (key.clone(), done));
    }
    let () = ctx.signal("never").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_rollback_after_a_cancellation_resumes_it() {
    let db = TestDb::new();
    let key = "saga-cancel-restart";
    let id = "saga-cancel-restart-1";
    let build = || {
        db.builder()
            .shutdown_grace(Duration::from_millis(100))
            .register(three_steps_then_wait)
    };
    let engine = build().start().await.unwrap();
    engine
        .start(three_steps_then_wait, id, key.to_string())
        .await
        .unwrap();
    eventually("the three steps are done", || async {
        db.completed_activities(id).len() == 3
    })
    .await;
    engine.cancel(id, "fraud suspected").await.unwrap();
    eventually("the blocking compensation is running", || async {
        count(&format!("{key}/undo:blocking")) == 1
    })
    .await;
    stop(engine).await;
    assert_eq!(recorded(key), ["do:a", "do:blocking", "do:c", "undo:c"]);

    open_gate(&format!("{key}/gate"));
    let engine = build().start().await.unwrap();
    let handle = engine.handle(three_steps_then_wait, id).await.unwrap();
    let cancelled = WorkflowError::Cancelled {
        reason: "fraud suspected".to_string(),
    };
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == cancelled),
        "{error:?}"
    );
    assert_eq!(
        recorded(key),
        [
            "do:a",
            "do:blocking",
            "do:c",
            "undo:c",
            "undo:blocking",
            "undo:a"
        ]
    );
    assert_eq!(count(&format!("{key}/undo:c")), 1);
    assert_eq!(count(&format!("{key}/undo:blocking")), 2);
    assert_eq!(count(&format!("{key}/undo:a")), 1);
    assert_eq!(db.count_kind(id, KIND_INTERRUPTED), 1);
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Cancelled(cancelled)
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensations_run_in_reverse_order_when_the_execution_timeout_expires() {
    let db = TestDb::new();
    let key = "saga-timeout";
    let id = "saga-timeout-1";
    let engine = db
        .builder()
        .register(two_steps_then_wait)
        .start()
        .await
        .unwrap();
    let began = Instant::now();
    let handle = engine
        .start(two_steps_then_wait, id, key.to_string())
        .execution_timeout(Duration::from_millis(200))
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let elapsed = began.elapsed();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::TimedOut { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(1_000),
        "timed out after {elapsed:?}"
    );
    assert_eq!(recorded(key), ["do:a", "do:c", "undo:c", "undo:a"]);
    assert!(
        matches!(
            engine.status(id).await.unwrap(),
            RunStatus::Failed(WorkflowError::TimedOut { .. })
        ),
        "a timed-out run fails with TimedOut"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_during_the_rollback_does_not_interrupt_it() {
    let db = TestDb::new();
    let key = "saga-cancel-rollback";
    let id = "saga-cancel-rollback-1";
    let engine = db
        .builder()
        .register(rollback_with_a_blocking_compensation)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(rollback_with_a_blocking_compensation, id, key.to_string())
        .await
        .unwrap();
    eventually("the blocking compensation is running", || async {
        count(&format!("{key}/undo:blocking")) == 1
    })
    .await;
    engine.cancel(id, "operator gave up").await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    open_gate(&format!("{key}/gate"));
    let error = finish(&handle).await.unwrap_err();
    // The rollback ran to its end, and the compensation was not told to stop.
    assert_eq!(
        recorded(key),
        [
            "do:a",
            "do:blocking",
            "do:c",
            "undo:c",
            "undo:blocking",
            "undo:a"
        ]
    );
    assert_eq!(count(&format!("{key}/undo:blocking")), 1);
    // The run ends with the workflow's own error.
    let original = WorkflowError::failed("inventory mismatch");
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == original),
        "{error:?}"
    );
    let status = wait_status(&engine, id, |status| *status != RunStatus::Running).await;
    assert!(
        matches!(&status, RunStatus::Failed(error) | RunStatus::Cancelled(error) if *error == original),
        "{status:?}"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Registers a compensation, then panics.
#[workflow]
async fn panics_after_a_step(ctx: WorkflowContext, key: String) -> Result<(), WorkflowError> {
    let done = ctx.call(do_step, pair(&key, "a")).await?;
    ctx.compensate_with(undo, (key.clone(), done));
    panic!("bug in the workflow");
}

/// A panic is a bug in the workflow code, not an outcome: the run is replayed, then parked for an
/// operator — its compensations do not run (a fixed deployment may still complete it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_workflow_is_parked_not_rolled_back() {
    let db = TestDb::new();
    let key = "saga-panic";
    let id = "saga-panic-1";
    let engine = db
        .builder()
        .register(panics_after_a_step)
        .panic_retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .initial_backoff(Duration::from_millis(10))
                .build(),
        )
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(panics_after_a_step, id, key.to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::RunParked { reason: ParkReason::Panicked { message, attempts: 2 }, .. }
                if message == "bug in the workflow"
        ),
        "{error:?}"
    );
    assert_eq!(recorded(key), ["do:a"]);
    stop(engine).await;
}
