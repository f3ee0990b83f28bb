//! Brief §4: retries follow the activity's policy; every failed attempt is journaled; non-retryable
//! errors, timeouts and panics are reported precisely; backoff waits are durable across restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orchestrator::journal::EventBody;
use orchestrator::prelude::*;
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, KIND_ATTEMPT_FAILED, KIND_ATTEMPT_STARTED, TestDb, bump, count,
    eventually, finish, now_ms, record, recorded, stop,
};

/// The failed-attempt events of a run as (step, attempt, error).
fn failed_attempts(db: &TestDb, id: &str) -> Vec<(u32, u32, ActivityError)> {
    db.events_of_kind(id, KIND_ATTEMPT_FAILED)
        .into_iter()
        .map(|row| match row.body {
            EventBody::ActivityAttemptFailed { attempt, error, .. } => (row.step, attempt, error),
            other => panic!("kind 2 row holds {other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------

/// Fails attempts 1 and 2, succeeds on attempt 3.
#[activity(retry(max_attempts = 3, backoff = "5ms..20ms", jitter = 0.0))]
async fn fails_twice(ctx: ActivityContext, key: String) -> Result<String, ActivityError> {
    record(&key, ctx.attempt());
    if ctx.attempt() <= 2 {
        return Err(ActivityError::retryable(format!(
            "transient #{}",
            ctx.attempt()
        )));
    }
    Ok(format!("ok after {}", ctx.attempt()))
}

#[workflow]
async fn flaky_workflow(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    ctx.call(fails_twice, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_twice_then_succeeding_uses_attempts_1_2_3_and_journals_each_failure() {
    let db = TestDb::new();
    let id = "retry-flaky-1";
    let engine = db
        .builder()
        .register(flaky_workflow)
        .register(fails_twice)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(flaky_workflow, id, "retry-flaky".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "ok after 3");
    assert_eq!(recorded("retry-flaky"), vec!["1", "2", "3"]);
    assert_eq!(
        failed_attempts(&db, id),
        vec![
            (1, 1, ActivityError::retryable("transient #1")),
            (1, 2, ActivityError::retryable("transient #2")),
        ]
    );
    let completed = db.events_of_kind(id, KIND_ACTIVITY_COMPLETED);
    assert_eq!(completed.len(), 1);
    assert!(
        matches!(
            &completed[0].body,
            EventBody::ActivityCompleted {
                attempts: 3,
                result: Ok(_),
                ..
            }
        ),
        "{:?}",
        completed[0].body
    );
    // Each attempt's start, then its failure; the completion last.
    let kinds: Vec<u16> = db.events(id).iter().map(|row| row.kind).collect();
    assert_eq!(
        kinds,
        vec![
            KIND_ATTEMPT_STARTED,
            KIND_ATTEMPT_FAILED,
            KIND_ATTEMPT_STARTED,
            KIND_ATTEMPT_FAILED,
            KIND_ATTEMPT_STARTED,
            KIND_ACTIVITY_COMPLETED
        ]
    );
    assert_eq!(engine.status(id).await.unwrap(), RunStatus::Completed);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[activity(retry(max_attempts = 5, backoff = "5ms..5ms"))]
async fn declines(key: String) -> Result<u32, ActivityError> {
    bump(&key);
    Err(ActivityError::non_retryable("card declined"))
}

#[workflow]
async fn declining_workflow(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(declines, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_error_fails_at_once_after_one_attempt() {
    let db = TestDb::new();
    let id = "retry-declined-1";
    let engine = db
        .builder()
        .register(declining_workflow)
        .register(declines)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(declining_workflow, id, "retry-declined".to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let expected = WorkflowError::ActivityFailed {
        activity: "declines".to_string(),
        step: 1,
        attempts: 1,
        error: ActivityError::non_retryable("card declined"),
    };
    match &error {
        Error::WorkflowFailed { workflow_id, error } => {
            assert_eq!(workflow_id, id);
            assert_eq!(error, &expected);
        }
        other => panic!("expected WorkflowFailed, got {other:?}"),
    }
    assert_eq!(count("retry-declined"), 1);
    assert!(failed_attempts(&db, id).is_empty());
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Failed(expected)
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Always fails, with the attempt number in the message.
#[activity(retry(max_attempts = 3, backoff = "5ms..10ms", jitter = 0.0))]
async fn always_fails(ctx: ActivityContext, key: String) -> Result<u32, ActivityError> {
    bump(&key);
    Err(ActivityError::retryable(format!("boom #{}", ctx.attempt())))
}

#[workflow]
async fn exhausting_workflow(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(always_fails, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_the_workflow_with_the_last_error() {
    let db = TestDb::new();
    let id = "retry-exhausted-1";
    let engine = db
        .builder()
        .register(exhausting_workflow)
        .register(always_fails)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(exhausting_workflow, id, "retry-exhausted".to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::ActivityFailed {
                    step: 1,
                    attempts: 3,
                    error: ActivityError::Retryable { message },
                    ..
                },
                ..
            } if message == "boom #3"
        ),
        "{error:?}"
    );
    assert_eq!(count("retry-exhausted"), 3);
    assert_eq!(
        failed_attempts(&db, id),
        vec![
            (1, 1, ActivityError::retryable("boom #1")),
            (1, 2, ActivityError::retryable("boom #2")),
        ]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Sleeps far longer than its 50 ms timeout.
#[activity(timeout = "50ms", retry(max_attempts = 2, backoff = "5ms..5ms"))]
async fn too_slow(key: String) -> Result<u32, ActivityError> {
    bump(&format!("{key}/started"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    bump(&format!("{key}/finished"));
    Ok(1)
}

#[workflow]
async fn timeout_workflow(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(too_slow, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_option_turns_slow_attempts_into_timeout_errors() {
    let db = TestDb::new();
    let id = "retry-timeout-1";
    let engine = db
        .builder()
        .register(timeout_workflow)
        .register(too_slow)
        .start()
        .await
        .unwrap();
    let began = Instant::now();
    let handle = engine
        .start(timeout_workflow, id, "retry-timeout".to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let elapsed = began.elapsed();
    let timeout = Duration::from_millis(50);
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::ActivityFailed {
                    attempts: 2,
                    error: ActivityError::Timeout { timeout: t },
                    ..
                },
                ..
            } if *t == timeout
        ),
        "{error:?}"
    );
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1),
        "attempts were not cut short: {elapsed:?}"
    );
    assert_eq!(
        failed_attempts(&db, id),
        vec![(1, 1, ActivityError::Timeout { timeout })]
    );
    assert_eq!(count("retry-timeout/started"), 2);
    assert_eq!(
        count("retry-timeout/finished"),
        0,
        "a timed-out attempt kept running"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[activity(retry(max_attempts = 1))]
async fn panics(code: u32) -> Result<u32, ActivityError> {
    if code > 0 {
        panic!("kaboom {code}");
    }
    Ok(code)
}

#[workflow]
async fn panicking_activity_workflow(
    ctx: WorkflowContext,
    code: u32,
) -> Result<u32, WorkflowError> {
    ctx.call(panics, code).await
}

/// Panics on its first attempt only.
#[activity(retry(max_attempts = 2, backoff = "5ms..5ms"))]
async fn panics_once(ctx: ActivityContext) -> Result<u32, ActivityError> {
    if ctx.attempt() == 1 {
        panic!("first attempt panics");
    }
    Ok(ctx.attempt())
}

#[workflow]
async fn panic_then_recover(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    ctx.call(panics_once, ()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_activity_is_caught_and_the_engine_keeps_working() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(panicking_activity_workflow)
        .register(panics)
        .register(panic_then_recover)
        .register(panics_once)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(panicking_activity_workflow, "retry-panic-1", 7)
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let expected = WorkflowError::ActivityFailed {
        activity: "panics".to_string(),
        step: 1,
        attempts: 1,
        error: ActivityError::Panicked {
            message: "kaboom 7".to_string(),
        },
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == expected),
        "{error:?}"
    );

    // The engine still runs workflows, including the same activity.
    let ok = engine
        .start(panicking_activity_workflow, "retry-panic-2", 0)
        .await
        .unwrap();
    assert_eq!(finish(&ok).await.unwrap(), 0);

    // A panic counts as a retryable failure.
    let recovered = engine
        .start(panic_then_recover, "retry-panic-3", ())
        .await
        .unwrap();
    assert_eq!(finish(&recovered).await.unwrap(), 2);
    assert_eq!(
        failed_attempts(&db, "retry-panic-3"),
        vec![(
            1,
            1,
            ActivityError::Panicked {
                message: "first attempt panics".to_string()
            }
        )]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Durable backoff.

/// Fails its first attempt; the next one is due 1.5 s later. Records when each attempt starts.
#[activity(retry(max_attempts = 2, backoff = "1500ms..1500ms", jitter = 0.0))]
async fn slow_backoff(ctx: ActivityContext, key: String) -> Result<u32, ActivityError> {
    record(&key, format!("{}@{}", ctx.attempt(), now_ms()));
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable("try again later"));
    }
    Ok(ctx.attempt())
}

#[workflow]
async fn backoff_workflow(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(slow_backoff, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_wait_is_durable_across_a_restart() {
    let db = TestDb::new();
    let key = "retry-durable";
    let id = "retry-durable-1";
    let build = || {
        db.builder()
            .register(backoff_workflow)
            .register(slow_backoff)
    };
    let engine = build().start().await.unwrap();
    engine
        .start(backoff_workflow, id, key.to_string())
        .await
        .unwrap();
    eventually("the first failure is journaled", || async {
        db.count_kind(id, KIND_ATTEMPT_FAILED) == 1
    })
    .await;
    let retry_at_ms = match &db.events_of_kind(id, KIND_ATTEMPT_FAILED)[0].body {
        EventBody::ActivityAttemptFailed {
            attempt: 1,
            retry_at_ms,
            ..
        } => *retry_at_ms,
        other => panic!("unexpected event {other:?}"),
    };
    let first_at: i64 = recorded(key)[0]
        .strip_prefix("1@")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1_450..=1_700).contains(&(retry_at_ms - first_at)),
        "retry due {} ms after the first attempt",
        retry_at_ms - first_at
    );

    // Shutting down does not wait out the backoff.
    let began = Instant::now();
    stop(engine).await;
    assert!(
        began.elapsed() < Duration::from_millis(700),
        "shutdown waited {:?} for a backoff",
        began.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted_at = now_ms();
    let engine = build().start().await.unwrap();
    let handle = engine.handle(backoff_workflow, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 2);
    let attempts = recorded(key);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let second_at: i64 = attempts[1].strip_prefix("2@").unwrap().parse().unwrap();
    // Not immediately at restart, and not a full new backoff from the restart: at the journaled time.
    assert!(
        second_at >= retry_at_ms - 5,
        "attempt 2 ran {} ms before its journaled time (restart was {} ms before it)",
        retry_at_ms - second_at,
        retry_at_ms - restarted_at
    );
    assert!(
        second_at <= retry_at_ms + 350,
        "attempt 2 ran {} ms after its journaled time",
        second_at - retry_at_ms
    );
    stop(engine).await;
}
