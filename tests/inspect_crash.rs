//! Issue 12 §1: an activity attempt cut short by a crash shows in the timeline. A child process
//! (`inspect_worker`) starts an activity and is SIGKILLed while it runs; this process then describes
//! the run (attempt 1 started, never ended), drives it to completion on attempt 2, and describes it
//! again (attempt 1 cut short by the crash, attempt 2 succeeded).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator::inspect::{AttemptOutcome, BlockedOn, Rendered, StepStatus};
use orchestrator::prelude::*;
use orchestrator_tests::{ChildWorker, TestDb, finish, stop};

/// The same activity as the worker's; here it returns its attempt number at once.
#[activity(retry(max_attempts = 3, backoff = "1ms..1ms", jitter = 0.0))]
async fn effect(ctx: ActivityContext, order: u64) -> Result<u64, ActivityError> {
    Ok(order * 100 + u64::from(ctx.attempt()))
}

#[workflow]
async fn crashes(ctx: WorkflowContext, order: u64) -> Result<u64, WorkflowError> {
    ctx.call(effect, order).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_short_by_sigkill_shows_in_the_timeline() {
    let db = TestDb::new();
    let path = db.path().to_str().unwrap().to_string();
    let mut worker = ChildWorker::spawn(env!("CARGO_BIN_EXE_inspect_worker"), [path]);
    assert_eq!(
        worker
            .wait_for("STARTED", Duration::from_secs(20))
            .as_deref(),
        Some("STARTED 1")
    );
    worker.kill();

    // An engine that cannot drive the run describes it: attempt 1 started, no end yet.
    let engine = db.builder().start().await.unwrap();
    let d = engine.describe("crash-inspect").await.unwrap();
    // At once, or once this engine's recovery parked the run for its unknown type.
    assert!(
        match &d.blocked_on {
            BlockedOn::UnknownWorkflowType { .. } => true,
            BlockedOn::Parked { message } => message.contains("is not registered"),
            _ => false,
        },
        "{:?}",
        d.blocked_on
    );
    let step = &d.timeline.steps[0];
    assert_eq!(step.attempts.len(), 1);
    assert!(step.attempts[0].started_at_ms.is_some());
    assert_eq!(step.attempts[0].ended_at_ms, None);
    stop(engine).await;

    let engine = db
        .builder()
        .register(crashes)
        .register(effect)
        .start()
        .await
        .unwrap();
    let run = engine.handle(crashes, "crash-inspect").await.unwrap();
    assert_eq!(
        finish(&run).await.unwrap(),
        4202,
        "attempt 2 ran after the crash"
    );
    let d = engine.describe("crash-inspect").await.unwrap();
    let step = &d.timeline.steps[0];
    assert_eq!(step.status, StepStatus::Completed);
    let outcomes: Vec<_> = step.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::CutShort, AttemptOutcome::Succeeded],
        "{step:?}"
    );
    assert!(step.attempts[0].cut_short_by_crash);
    assert!(step.attempts[0].started_at_ms.is_some());
    assert!(step.attempts[1].started_at_ms.is_some());
    assert_eq!(step.output, Some(Rendered::Json(serde_json::json!(4202))));
    stop(engine).await;
}
