//! Published state (issue "workflow primitives" §5) and versioning markers (§6).
//!
//! `ctx.set_state(key, value)` publishes a value that outside code reads with `engine.get_state` and
//! awaits with `engine.wait_state`; it is journaled with the run (kind 12) and survives restarts.
//! `ctx.patched(change_id)` is `true` on runs that reach it on new code, journaling a marker (kind 13)
//! that replay honours. (Replaying a journal recorded before a change is covered by the replay
//! machine's unit tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator::journal::EventBody;
use orchestrator::prelude::*;
use orchestrator_tests::{
    KIND_PATCH_MARKER, KIND_STATE_PUBLISHED, TestDb, bump, count, eventually, finish, stop,
};

/// Sleeps 50 ms, publishes `progress = 1`, waits for `next`, publishes `progress = 2` and a second key,
/// waits for `next` again, returns.
#[workflow]
async fn progress_reporter(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.sleep(Duration::from_millis(50)).await?;
    ctx.set_state("progress", &1u32)?;
    let () = ctx.signal("next").await?;
    ctx.set_state("progress", &2u32)?;
    ctx.set_state("phase", &"shipping".to_string())?;
    let () = ctx.signal("next").await?;
    Ok(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_read_awaited_and_updated() {
    let db = TestDb::new();
    let id = "state-basic-1";
    let engine = db
        .builder()
        .register(progress_reporter)
        .start()
        .await
        .unwrap();
    let handle = engine.start(progress_reporter, id, ()).await.unwrap();
    // Nothing published yet.
    assert_eq!(engine.get_state::<u32>(id, "progress").await.unwrap(), None);
    // Awaited before it is set: resolves once the workflow publishes it.
    let first: u32 =
        tokio::time::timeout(Duration::from_secs(2), engine.wait_state(id, "progress"))
            .await
            .expect("wait_state resolves")
            .unwrap();
    assert_eq!(first, 1);
    assert_eq!(
        engine.get_state::<u32>(id, "progress").await.unwrap(),
        Some(1)
    );

    engine.signal(id, "next", ()).await.unwrap();
    eventually("the value is updated", || async {
        engine.get_state::<u32>(id, "progress").await.unwrap() == Some(2)
    })
    .await;
    assert_eq!(
        engine.get_state::<String>(id, "phase").await.unwrap(),
        Some("shipping".to_string())
    );
    engine.signal(id, "next", ()).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 2);
    // Still readable after the run finished; each publication journaled once, in order.
    assert_eq!(
        engine.get_state::<u32>(id, "progress").await.unwrap(),
        Some(2)
    );
    let published: Vec<(u32, String)> = db
        .events_of_kind(id, KIND_STATE_PUBLISHED)
        .into_iter()
        .map(|row| match row.body {
            EventBody::StatePublished { key, .. } => (row.step, key),
            other => panic!("kind 12 holds {other:?}"),
        })
        .collect();
    assert_eq!(
        published,
        [
            (2, "progress".to_string()),
            (4, "progress".to_string()),
            (5, "phase".to_string())
        ]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Publishes nothing and returns once signalled.
#[workflow]
async fn silent(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.signal::<()>("done").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_state_a_run_never_sets_and_unknown_runs_are_clear_errors() {
    let db = TestDb::new();
    let id = "state-never-1";
    let engine = db.builder().register(silent).start().await.unwrap();
    let handle = engine.start(silent, id, ()).await.unwrap();
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.wait_state::<u32>(id, "progress").await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !waiter.is_finished(),
        "wait_state returned before the run finished"
    );
    engine.signal(id, "done", ()).await.unwrap();
    finish(&handle).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("wait_state ends when the run finishes")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&error, Error::StateNeverSet { workflow_id, key } if workflow_id == id && key == "progress"),
        "{error:?}"
    );
    // Once finished, the answer is immediate.
    let error = engine.wait_state::<u32>(id, "progress").await.unwrap_err();
    assert!(matches!(error, Error::StateNeverSet { .. }), "{error:?}");
    assert_eq!(engine.get_state::<u32>(id, "progress").await.unwrap(), None);

    let error = engine
        .get_state::<u32>("state-nobody", "progress")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::NotFound { workflow_id } if workflow_id == "state-nobody"),
        "{error:?}"
    );
    let error = engine
        .wait_state::<u32>("state-nobody", "progress")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Publishes a value and returns in the same poll.
#[workflow]
async fn publishes_and_returns(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ctx.set_state("result-preview", &(n * 10))?;
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_published_right_before_returning_is_readable() {
    let db = TestDb::new();
    let id = "state-final-1";
    let engine = db
        .builder()
        .register(publishes_and_returns)
        .start()
        .await
        .unwrap();
    let handle = engine.start(publishes_and_returns, id, 4).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 4);
    assert_eq!(
        engine.get_state::<u32>(id, "result-preview").await.unwrap(),
        Some(40)
    );
    assert_eq!(
        engine
            .wait_state::<u32>(id, "result-preview")
            .await
            .unwrap(),
        40
    );
    assert_eq!(db.count_kind(id, KIND_STATE_PUBLISHED), 1);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Publishes `stage = 1`, waits for `next`, publishes `stage = 2`, waits for `next`.
#[workflow]
async fn staged(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    bump(&format!("state-body/{}", ctx.workflow_id()));
    ctx.set_state("stage", &1u32)?;
    let () = ctx.signal("next").await?;
    ctx.set_state("stage", &2u32)?;
    ctx.signal::<()>("next").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_state_survives_a_restart_and_replay_does_not_republish_it() {
    let db = TestDb::new();
    let id = "state-restart-1";
    let build = || db.builder().register(staged);
    let engine = build().start().await.unwrap();
    engine.start(staged, id, ()).await.unwrap();
    assert_eq!(engine.wait_state::<u32>(id, "stage").await.unwrap(), 1);
    engine.signal(id, "next", ()).await.unwrap();
    eventually("stage 2 is published", || async {
        db.count_kind(id, KIND_STATE_PUBLISHED) == 2
    })
    .await;
    stop(engine).await;

    let engine = build().start().await.unwrap();
    assert_eq!(engine.get_state::<u32>(id, "stage").await.unwrap(), Some(2));
    eventually("the run is replayed", || async {
        count(&format!("state-body/{id}")) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Replay re-ran both `set_state` calls without journaling them again or rolling the value back.
    assert_eq!(db.count_kind(id, KIND_STATE_PUBLISHED), 2);
    assert_eq!(engine.get_state::<u32>(id, "stage").await.unwrap(), Some(2));
    engine.signal(id, "next", ()).await.unwrap();
    let handle = engine.handle(staged, id).await.unwrap();
    finish(&handle).await.unwrap();
    assert_eq!(engine.get_state::<u32>(id, "stage").await.unwrap(), Some(2));
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Versioning markers.

/// Takes the new path when patched; waits for `go` so the run can be restarted in the middle.
#[workflow]
async fn versioned(ctx: WorkflowContext, _: ()) -> Result<(bool, bool), WorkflowError> {
    let before = ctx.patched("use-new-pricing");
    let () = ctx.signal("go").await?;
    let after = ctx.patched("second-change");
    Ok((before, after))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patched_is_true_on_a_new_run_and_its_marker_is_journaled_and_replayed() {
    let db = TestDb::new();
    let id = "patched-new-1";
    let build = || db.builder().register(versioned);
    let engine = build().start().await.unwrap();
    engine.start(versioned, id, ()).await.unwrap();
    eventually("the marker is journaled", || async {
        db.count_kind(id, KIND_PATCH_MARKER) == 1
    })
    .await;
    let markers = db.events_of_kind(id, KIND_PATCH_MARKER);
    assert_eq!(markers[0].step, 1);
    assert_eq!(
        markers[0].body,
        EventBody::PatchMarker {
            change_id: "use-new-pricing".to_string()
        }
    );
    stop(engine).await;

    // Replayed on the same code: the marker is honoured (still true) and not journaled twice.
    let engine = build().start().await.unwrap();
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(versioned, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), (true, true));
    let markers: Vec<(u32, EventBody)> = db
        .events_of_kind(id, KIND_PATCH_MARKER)
        .into_iter()
        .map(|row| (row.step, row.body))
        .collect();
    assert_eq!(
        markers,
        [
            (
                1,
                EventBody::PatchMarker {
                    change_id: "use-new-pricing".to_string()
                }
            ),
            (
                3,
                EventBody::PatchMarker {
                    change_id: "second-change".to_string()
                }
            )
        ]
    );
    stop(engine).await;
}

/// The code before the change: a short sleep, then waits for `go`.
#[workflow(name = "pricing")]
async fn pricing_v1(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_millis(1)).await?;
    let () = ctx.signal("go").await?;
    Ok("old pricing".to_string())
}

/// The code after the change, under the same workflow name: a patch point before the sleep.
#[workflow(name = "pricing")]
async fn pricing_v2(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let new_pricing = ctx.patched("new-pricing");
    ctx.sleep(Duration::from_millis(1)).await?;
    let () = ctx.signal("go").await?;
    Ok(if new_pricing {
        "new pricing"
    } else {
        "old pricing"
    }
    .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patched_is_false_for_a_run_recorded_before_the_change_and_true_for_new_runs() {
    let db = TestDb::new();
    let old_id = "patched-old-1";
    let engine = db.builder().register(pricing_v1).start().await.unwrap();
    engine.start(pricing_v1, old_id, ()).await.unwrap();
    eventually("the old run passed its sleep", || async {
        db.count_kind(old_id, orchestrator_tests::KIND_TIMER_FIRED) == 1
    })
    .await;
    stop(engine).await;

    // Deploy the new code and restart.
    let engine = db.builder().register(pricing_v2).start().await.unwrap();
    let new_id = "patched-new-2";
    let fresh = engine.start(pricing_v2, new_id, ()).await.unwrap();
    engine.signal(old_id, "go", ()).await.unwrap();
    engine.signal(new_id, "go", ()).await.unwrap();
    let old = engine.handle(pricing_v2, old_id).await.unwrap();
    assert_eq!(finish(&old).await.unwrap(), "old pricing");
    assert_eq!(finish(&fresh).await.unwrap(), "new pricing");
    assert_eq!(db.count_kind(old_id, KIND_PATCH_MARKER), 0);
    assert_eq!(db.count_kind(new_id, KIND_PATCH_MARKER), 1);
    stop(engine).await;
}
