//! Brief §3: replay is deterministic and checked. Changed workflow code parks the run with a
//! nondeterminism error naming the step and both calls; other runs go on; `random_u64()` / `uuid()`
//! replay identically; a panicking workflow fails cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::{NonDeterminismError, ParkReason};
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, KIND_SIDE_EFFECT, TestDb, bump, count, eventually, finish, record,
    recorded, stop, wait_status,
};

#[activity]
async fn alpha(key: String) -> Result<String, ActivityError> {
    bump(&format!("{key}/alpha"));
    Ok("a".to_string())
}

#[activity]
async fn bravo(key: String) -> Result<String, ActivityError> {
    bump(&format!("{key}/bravo"));
    Ok("b".to_string())
}

#[activity]
async fn charlie(key: String) -> Result<String, ActivityError> {
    bump(&format!("{key}/charlie"));
    Ok("c".to_string())
}

/// Version 1: alpha, bravo, then a signal.
#[workflow(name = "same")]
async fn same_v1(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(alpha, key.clone()).await?;
    let b = ctx.call(bravo, key).await?;
    let s: String = ctx.signal("go").await?;
    Ok(format!("{a}{b}{s}"))
}

/// Version 2: step 2 now calls charlie.
#[workflow(name = "same")]
async fn same_v2(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(alpha, key.clone()).await?;
    let c = ctx.call(charlie, key).await?;
    let s: String = ctx.signal("go").await?;
    Ok(format!("{a}{c}{s}"))
}

/// Version 3: step 2 calls bravo with another input.
#[workflow(name = "same")]
async fn same_v3(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(alpha, key.clone()).await?;
    let b = ctx.call(bravo, format!("{key}-changed")).await?;
    let s: String = ctx.signal("go").await?;
    Ok(format!("{a}{b}{s}"))
}

/// Version 4: step 2 is now a sleep.
#[workflow(name = "same")]
async fn same_v4(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(alpha, key).await?;
    ctx.sleep(Duration::from_millis(1)).await?;
    let s: String = ctx.signal("go").await?;
    Ok(format!("{a}{s}"))
}

/// Version 5: stops after step 1, although the journal holds a completed step 2.
#[workflow(name = "same")]
async fn same_v5(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(alpha, key).await?;
    Ok(a)
}

/// An unrelated workflow that must keep working next to a parked run.
#[workflow]
async fn bystander(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(alpha, key).await?;
    Ok(format!("bystander {a}"))
}

/// Runs `same_v1` until it waits for its signal, and stops the engine.
async fn run_v1_to_the_signal(db: &TestDb, id: &str, key: &str) {
    let engine = db
        .builder()
        .register(same_v1)
        .register(alpha)
        .register(bravo)
        .start()
        .await
        .unwrap();
    engine.start(same_v1, id, key.to_string()).await.unwrap();
    eventually("two steps are journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 2
    })
    .await;
    stop(engine).await;
}

fn nondeterminism(status: &RunStatus) -> &NonDeterminismError {
    match status {
        RunStatus::Parked(ParkReason::NonDeterminism(error)) => error,
        other => panic!("expected a nondeterminism park, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_activity_at_a_journaled_step_parks_the_run_naming_both() {
    let db = TestDb::new();
    let key = "det-activity";
    let id = "det-activity-1";
    run_v1_to_the_signal(&db, id, key).await;

    let engine = db
        .builder()
        .register(same_v2)
        .register(bystander)
        .register(alpha)
        .register(charlie)
        .start()
        .await
        .unwrap();
    let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
    let error = nondeterminism(&status);
    assert_eq!(error.step, 2);
    assert!(error.recorded.contains("bravo"), "{error:?}");
    assert!(error.requested.contains("charlie"), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("step 2") && message.contains("bravo") && message.contains("charlie"),
        "{message}"
    );

    let handle = engine.handle(same_v2, id).await.unwrap();
    let result = finish(&handle).await;
    assert!(
        matches!(
            &result,
            Err(Error::RunParked { workflow_id, reason: ParkReason::NonDeterminism(e) })
                if workflow_id == id && e == error
        ),
        "{result:?}"
    );
    // The changed step never ran, the journaled one did not run again.
    assert_eq!(count(&format!("{key}/charlie")), 0);
    assert_eq!(count(&format!("{key}/alpha")), 1);
    assert_eq!(count(&format!("{key}/bravo")), 1);
    // Nothing was appended to the journal by the diverging code (two attempt starts, two
    // completions).
    assert_eq!(db.events(id).len(), 4);

    // Another workflow in the same engine completes.
    let other = engine
        .start(
            bystander,
            "det-activity-bystander",
            "det-activity-b".to_string(),
        )
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "bystander a");
    stop(engine).await;

    // Deploying the old code again resumes the parked run, and a signal sent now is delivered.
    let engine = db
        .builder()
        .register(same_v1)
        .register(alpha)
        .register(bravo)
        .start()
        .await
        .unwrap();
    engine.signal(id, "go", "!".to_string()).await.unwrap();
    let handle = engine.handle(same_v1, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "ab!");
    assert_eq!(count(&format!("{key}/alpha")), 1);
    assert_eq!(count(&format!("{key}/bravo")), 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_activity_input_at_a_journaled_step_is_nondeterminism() {
    let db = TestDb::new();
    let key = "det-input";
    let id = "det-input-1";
    run_v1_to_the_signal(&db, id, key).await;
    let engine = db
        .builder()
        .register(same_v3)
        .register(alpha)
        .register(bravo)
        .start()
        .await
        .unwrap();
    let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
    let error = nondeterminism(&status);
    assert_eq!(error.step, 2);
    assert!(error.recorded.contains("bravo"), "{error:?}");
    assert!(error.requested.contains("bravo"), "{error:?}");
    assert_ne!(
        error.recorded, error.requested,
        "the inputs' fingerprints should differ"
    );
    assert_eq!(count(&format!("{key}/bravo")), 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_kind_of_step_at_a_journaled_step_is_nondeterminism() {
    let db = TestDb::new();
    let key = "det-kind";
    let id = "det-kind-1";
    run_v1_to_the_signal(&db, id, key).await;
    let engine = db
        .builder()
        .register(same_v4)
        .register(alpha)
        .start()
        .await
        .unwrap();
    let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
    let error = nondeterminism(&status);
    assert_eq!(error.step, 2);
    assert!(error.recorded.contains("bravo"), "{error:?}");
    assert!(error.requested.contains("timer"), "{error:?}");
    stop(engine).await;
}

/// Code that finishes without asking for a step its journal recorded has diverged too: it must not
/// complete as if step 2 had never happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_no_longer_asks_for_a_journaled_step_is_nondeterminism() {
    let db = TestDb::new();
    let key = "det-removed";
    let id = "det-removed-1";
    run_v1_to_the_signal(&db, id, key).await;
    let engine = db
        .builder()
        .register(same_v5)
        .register(alpha)
        .start()
        .await
        .unwrap();
    let status = wait_status(&engine, id, |s| *s != RunStatus::Running).await;
    let error = nondeterminism(&status);
    assert_eq!(error.step, 2);
    assert!(error.recorded.contains("bravo"), "{error:?}");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Draws random values, waits for a signal, draws again; records what each run of the body saw.
#[workflow]
async fn dice(ctx: WorkflowContext, key: String) -> Result<Vec<String>, WorkflowError> {
    let first = ctx.random_u64();
    let second = ctx.random_u64();
    let id = ctx.uuid().to_string();
    record(&key, format!("{first},{second},{id}"));
    let _: () = ctx.signal("go").await?;
    let later = ctx.uuid().to_string();
    Ok(vec![first.to_string(), second.to_string(), id, later])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_numbers_and_uuids_replay_identically_across_a_restart() {
    let db = TestDb::new();
    let key = "det-dice";
    let id = "det-dice-1";
    let build = || db.builder().register(dice);
    let engine = build().start().await.unwrap();
    engine.start(dice, id, key.to_string()).await.unwrap();
    eventually("the draws are journaled", || async {
        db.count_kind(id, KIND_SIDE_EFFECT) == 3
    })
    .await;
    stop(engine).await;

    let engine = build().start().await.unwrap();
    eventually("the body is replayed", || async {
        recorded(key).len() == 2
    })
    .await;
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(dice, id).await.unwrap();
    let output = finish(&handle).await.unwrap();
    let seen = recorded(key);
    assert_eq!(seen[0], seen[1], "the replay drew other values");
    assert_eq!(seen[0], output[..3].join(","));
    assert_ne!(output[0], output[1], "two draws gave the same number");
    assert_eq!(output[2].len(), 36);
    assert_eq!(
        &output[2][14..15],
        "4",
        "not a version 4 UUID: {}",
        output[2]
    );
    assert_ne!(output[2], output[3]);
    assert_eq!(db.count_kind(id, KIND_SIDE_EFFECT), 4);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[workflow]
async fn explodes(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    bump(&format!("{key}/body"));
    ctx.call(alpha, key.clone()).await?;
    if !key.is_empty() {
        panic!("workflow exploded: {}", 42);
    }
    Ok(0)
}

/// Three attempts, 20 ms apart at first: the panic policy of the tests below.
fn quick_panic_retry() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(20))
        .jitter(0.0)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_workflow_is_replayed_then_parked_and_the_engine_keeps_working() {
    let db = TestDb::new();
    let key = "det-panic";
    let id = "det-panic-1";
    let build = || {
        db.builder()
            .register(explodes)
            .register(bystander)
            .register(alpha)
            .panic_retry(quick_panic_retry())
    };
    let engine = build().start().await.unwrap();
    let handle = engine.start(explodes, id, key.to_string()).await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    let message = match &error {
        Error::RunParked {
            reason: ParkReason::Panicked { message, attempts },
            ..
        } => {
            assert_eq!(*attempts, 3);
            message.clone()
        }
        other => panic!("expected a run parked after panics, got {other:?}"),
    };
    assert!(message.contains("workflow exploded: 42"), "{message}");
    // Replayed from its journal each time: the body ran three times, its activity once (the
    // completion delivered before the panic is kept).
    assert_eq!(count(&format!("{key}/body")), 3);
    assert_eq!(count(&format!("{key}/alpha")), 1);
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 1);
    assert!(
        matches!(
            engine.status(id).await.unwrap(),
            RunStatus::Parked(ParkReason::Panicked { message: m, attempts: 3 }) if m == message
        ),
        "the parking is not recorded"
    );
    let other = engine
        .start(bystander, "det-panic-bystander", "det-panic-b".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "bystander a");
    stop(engine).await;

    // A restart tries the parked run again (a fix may have been deployed); the same bug parks it
    // again after as many attempts, and its activity still does not run again.
    let engine = build().start().await.unwrap();
    let handle = engine.handle(explodes, id).await.unwrap();
    assert!(matches!(
        finish(&handle).await,
        Err(Error::RunParked {
            reason: ParkReason::Panicked { attempts: 3, .. },
            ..
        })
    ));
    assert_eq!(count(&format!("{key}/body")), 6);
    assert_eq!(count(&format!("{key}/alpha")), 1);
    stop(engine).await;
}
