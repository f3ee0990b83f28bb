//! Child workflows (issue "workflow primitives" §3): `ctx.child(workflow, id, input)` starts another
//! run durably (exactly one child per step, even across restarts) and awaits its result; a failed child
//! is `WorkflowError::ChildFailed`, an id taken by another type is `WorkflowError::ChildStart`;
//! cancelling a parent cancels the children it waits for unless they are `.detached()`;
//! `ctx.workflow_result` awaits any run by id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::store::{SqliteStore, Store};
use orchestrator_tests::{
    KIND_CHILD_STARTED, KIND_RUN_FINISHED, SlowStore, TestDb, bump, count, eventually, finish,
    status_within, stop,
};

/// Counts its runs under `children/<its id>`, waits for `go` if asked, then doubles `n` (or fails).
#[workflow]
async fn child_job(ctx: WorkflowContext, input: (u64, bool, bool)) -> Result<u64, WorkflowError> {
    let (n, wait, fail) = input;
    bump(&format!("children/{}", ctx.workflow_id()));
    if wait {
        let () = ctx.signal("go").await?;
    }
    if fail {
        return Err(WorkflowError::failed(format!("cannot process {n}")));
    }
    Ok(n * 2)
}

/// Another workflow type, to take an id.
#[workflow]
async fn squatter(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.signal::<()>("leave").await
}

/// A workflow type that no engine registers.
#[workflow]
async fn unregistered_child(_ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    Ok(())
}

/// Starts `child_job` as `<own id>/child` and adds one to its output.
#[workflow]
async fn parent(ctx: WorkflowContext, input: (u64, bool, bool)) -> Result<u64, WorkflowError> {
    let child_id = format!("{}/child", ctx.workflow_id());
    let doubled = ctx.child(child_job, child_id, input).await?;
    Ok(doubled + 1)
}

/// Like `parent`, with a detached child.
#[workflow]
async fn detaching_parent(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let child_id = format!("{}/child", ctx.workflow_id());
    let doubled = ctx
        .child(child_job, child_id, (n, true, false))
        .detached()
        .await?;
    Ok(doubled + 1)
}

/// The runs whose parent is `parent_id`.
fn children_of(db: &TestDb, parent_id: &str) -> i64 {
    db.scalar(
        "SELECT count(*) FROM runs WHERE parent_id = ?1",
        [parent_id],
    )
}

fn builder(db: &TestDb) -> orchestrator::EngineBuilder {
    db.builder()
        .register(parent)
        .register(detaching_parent)
        .register(child_job)
        .register(squatter)
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_runs_as_its_own_run_and_its_output_returns_to_the_parent() {
    let db = TestDb::new();
    let id = "child-ok-1";
    let engine = builder(&db).start().await.unwrap();
    let handle = engine.start(parent, id, (20, false, false)).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 41);
    let child_id = "child-ok-1/child";
    assert_eq!(count(&format!("children/{child_id}")), 1);
    assert_eq!(children_of(&db, id), 1);
    assert_eq!(engine.status(child_id).await.unwrap(), RunStatus::Completed);
    let child = engine.handle(child_job, child_id).await.unwrap();
    assert_eq!(finish(&child).await.unwrap(), 40);
    // The parent journaled one start and one outcome, both at step 1.
    let started = db.events_of_kind(id, KIND_CHILD_STARTED);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].step, 1);
    let finished = db.events_of_kind(id, KIND_RUN_FINISHED);
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].step, 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_fails_the_parent_step_with_child_failed() {
    let db = TestDb::new();
    let id = "child-fail-1";
    let engine = builder(&db).start().await.unwrap();
    let handle = engine.start(parent, id, (5, false, true)).await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    let expected = WorkflowError::ChildFailed {
        workflow_id: "child-fail-1/child".to_string(),
        error: Box::new(WorkflowError::failed("cannot process 5")),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == expected),
        "{error:?}"
    );
    assert_eq!(
        engine.status("child-fail-1/child").await.unwrap(),
        RunStatus::Failed(WorkflowError::failed("cannot process 5"))
    );
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Failed(expected)
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_child_run_per_step_across_restarts() {
    let db = TestDb::new();
    let id = "child-restart-1";
    let child_id = "child-restart-1/child";
    let engine = builder(&db).start().await.unwrap();
    engine.start(parent, id, (7, true, false)).await.unwrap();
    eventually("the child is running", || async {
        count(&format!("children/{child_id}")) == 1
    })
    .await;
    eventually("the parent journaled the child's start", || async {
        db.count_kind(id, KIND_CHILD_STARTED) == 1
    })
    .await;
    stop(engine).await;

    // Two restarts while the child still waits.
    for _ in 0..2 {
        let engine = builder(&db).start().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        stop(engine).await;
    }

    let engine = builder(&db).start().await.unwrap();
    engine.signal(child_id, "go", ()).await.unwrap();
    let handle = engine.handle(parent, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 15);
    assert_eq!(children_of(&db, id), 1, "one child run");
    assert_eq!(db.count_kind(id, KIND_CHILD_STARTED), 1, "one child start");
    assert_eq!(db.count_kind(id, KIND_RUN_FINISHED), 1);
    // The child's body ran once per engine start (replay), never as a second run.
    assert_eq!(db.scalar("SELECT count(*) FROM runs", []), 2);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_the_child_it_waits_for() {
    let db = TestDb::new();
    let id = "child-cancel-1";
    let child_id = "child-cancel-1/child";
    let engine = builder(&db).start().await.unwrap();
    let handle = engine.start(parent, id, (1, true, false)).await.unwrap();
    eventually("the child is running", || async {
        count(&format!("children/{child_id}")) == 1
    })
    .await;
    engine.cancel(id, "order withdrawn").await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    let cancelled = WorkflowError::Cancelled {
        reason: "order withdrawn".to_string(),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == cancelled),
        "{error:?}"
    );
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Cancelled(cancelled)
    );
    let status = status_within(&engine, child_id, Duration::from_secs(1), |status| {
        *status != RunStatus::Running
    })
    .await;
    assert!(
        matches!(
            status,
            RunStatus::Cancelled(WorkflowError::Cancelled { .. })
        ),
        "the child of a cancelled parent is {status:?}"
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_cancelled_while_the_engine_is_down_cancels_its_child_after_restart() {
    let db = TestDb::new();
    let id = "child-cancel-down-1";
    let child_id = "child-cancel-down-1/child";
    let engine = builder(&db).start().await.unwrap();
    engine.start(parent, id, (1, true, false)).await.unwrap();
    eventually("the parent journaled the child's start", || async {
        db.count_kind(id, KIND_CHILD_STARTED) == 1
    })
    .await;
    stop(engine).await;
    {
        let store = SqliteStore::open(db.path()).await.unwrap();
        store.request_cancel(id, "cancelled offline").await.unwrap();
    }
    let engine = builder(&db).start().await.unwrap();
    let handle = engine.handle(parent, id).await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::Cancelled { .. },
                ..
            }
        ),
        "{error:?}"
    );
    let status = status_within(&engine, child_id, Duration::from_secs(1), |status| {
        *status != RunStatus::Running
    })
    .await;
    assert!(
        matches!(
            status,
            RunStatus::Cancelled(WorkflowError::Cancelled { .. })
        ),
        "the child of a cancelled parent is {status:?}"
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_child_keeps_running_when_its_parent_is_cancelled() {
    let db = TestDb::new();
    let id = "child-detached-1";
    let child_id = "child-detached-1/child";
    let engine = builder(&db).start().await.unwrap();
    let handle = engine.start(detaching_parent, id, 4).await.unwrap();
    eventually("the child is running", || async {
        count(&format!("children/{child_id}")) == 1
    })
    .await;
    engine.cancel(id, "parent only").await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed { error: WorkflowError::Cancelled { reason }, .. } if reason == "parent only"
        ),
        "{error:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(engine.status(child_id).await.unwrap(), RunStatus::Running);
    engine.signal(child_id, "go", ()).await.unwrap();
    let child = engine.handle(child_job, child_id).await.unwrap();
    assert_eq!(finish(&child).await.unwrap(), 8);
    assert_eq!(engine.status(child_id).await.unwrap(), RunStatus::Completed);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Awaits the run `target` (a `child_job`) by id, without starting it.
#[workflow]
async fn watcher(ctx: WorkflowContext, target: String) -> Result<u64, WorkflowError> {
    ctx.workflow_result(child_job, target).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_awaits_any_run_by_id() {
    let db = TestDb::new();
    let engine = builder(&db).register(watcher).start().await.unwrap();
    let target = engine
        .start(child_job, "unrelated-job", (50, true, false))
        .await
        .unwrap();
    let watching = engine
        .start(watcher, "watcher-1", "unrelated-job".to_string())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        engine.status("watcher-1").await.unwrap(),
        RunStatus::Running
    );
    engine.signal("unrelated-job", "go", ()).await.unwrap();
    assert_eq!(finish(&target).await.unwrap(), 100);
    assert_eq!(finish(&watching).await.unwrap(), 100);
    // Awaiting is not owning: the awaited run has no parent and was not started again.
    assert_eq!(children_of(&db, "watcher-1"), 0);
    assert_eq!(count("children/unrelated-job"), 1);
    assert_eq!(db.count_kind("watcher-1", KIND_CHILD_STARTED), 0);
    assert_eq!(db.count_kind("watcher-1", KIND_RUN_FINISHED), 1);

    // A run that already finished is awaited at once; an unknown id is a ChildStart error.
    let again = engine
        .start(watcher, "watcher-2", "unrelated-job".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&again).await.unwrap(), 100);
    let nobody = engine
        .start(watcher, "watcher-3", "no-such-run".to_string())
        .await
        .unwrap();
    let error = finish(&nobody).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed { error: WorkflowError::ChildStart { workflow_id, .. }, .. }
                if workflow_id == "no-such-run"
        ),
        "{error:?}"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Starts a `child_job` under a fixed id, or a child of an unregistered type.
#[workflow]
async fn conflicted_parent(ctx: WorkflowContext, child_id: String) -> Result<u64, WorkflowError> {
    if child_id == "unregistered" {
        ctx.child(unregistered_child, "unregistered-child", ())
            .await?;
        return Ok(0);
    }
    ctx.child(child_job, child_id, (1, false, false)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_id_taken_by_another_type_or_an_unregistered_type_is_child_start() {
    let db = TestDb::new();
    let engine = builder(&db)
        .register(conflicted_parent)
        .start()
        .await
        .unwrap();
    engine.start(squatter, "taken-id", ()).await.unwrap();
    let handle = engine
        .start(conflicted_parent, "conflict-1", "taken-id".to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed { error: WorkflowError::ChildStart { workflow_id, .. }, .. }
                if workflow_id == "taken-id"
        ),
        "{error:?}"
    );
    // The squatter is untouched and no child run was created.
    assert_eq!(engine.status("taken-id").await.unwrap(), RunStatus::Running);
    assert_eq!(children_of(&db, "conflict-1"), 0);

    let handle = engine
        .start(conflicted_parent, "conflict-2", "unregistered".to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed { error: WorkflowError::ChildStart { workflow_id, message }, .. }
                if workflow_id == "unregistered-child" && message.contains("unregistered_child")
        ),
        "{error:?}"
    );
    assert_eq!(children_of(&db, "conflict-2"), 0);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Like `parent`, but catches its cancellation and records a cleanup step before failing.
#[workflow]
async fn catching_parent(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let child_id = format!("{}/child", ctx.workflow_id());
    match ctx.child(child_job, child_id, (n, true, false)).await {
        Err(cancelled @ WorkflowError::Cancelled { .. }) => {
            ctx.sleep(Duration::from_millis(20)).await?;
            Err(cancelled)
        }
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_that_catches_its_cancellation_still_cancels_the_child() {
    let db = TestDb::new();
    let id = "child-catch-1";
    let child_id = "child-catch-1/child";
    let engine = builder(&db)
        .register(catching_parent)
        .start()
        .await
        .unwrap();
    let handle = engine.start(catching_parent, id, 3).await.unwrap();
    eventually("the child is running", || async {
        count(&format!("children/{child_id}")) == 1
    })
    .await;
    engine.cancel(id, "stop all").await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed { error: WorkflowError::Cancelled { reason }, .. } if reason == "stop all"
        ),
        "{error:?}"
    );
    let status = status_within(&engine, child_id, Duration::from_secs(1), |status| {
        *status != RunStatus::Running
    })
    .await;
    assert!(
        matches!(
            status,
            RunStatus::Cancelled(WorkflowError::Cancelled { .. })
        ),
        "the child of a cancelled parent is {status:?}"
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_child_fails_the_parent_step_with_child_failed() {
    let db = TestDb::new();
    let id = "child-direct-cancel-1";
    let child_id = "child-direct-cancel-1/child";
    let engine = builder(&db).start().await.unwrap();
    let handle = engine.start(parent, id, (1, true, false)).await.unwrap();
    eventually("the child is running", || async {
        count(&format!("children/{child_id}")) == 1
    })
    .await;
    engine.cancel(child_id, "child only").await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    let expected = WorkflowError::ChildFailed {
        workflow_id: child_id.to_string(),
        error: Box::new(WorkflowError::Cancelled {
            reason: "child only".to_string(),
        }),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == expected),
        "{error:?}"
    );
    // The parent itself was not cancelled: it failed because its child did.
    assert_eq!(
        engine.status(id).await.unwrap(),
        RunStatus::Failed(expected)
    );
    stop(engine).await;
}

/// At a restart the engine resumes the parent first; if the parent, replaying its cancellation,
/// cancels the child before the engine has resumed the child (here: loading the child's journal takes
/// 200 ms), the child must still observe that cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cancelled_by_its_parent_while_the_child_is_being_resumed_is_cancelled() {
    let db = TestDb::new();
    let id = "child-resume-race-1";
    let child_id = "child-resume-race-1/child";
    let engine = builder(&db).start().await.unwrap();
    engine.start(parent, id, (1, true, false)).await.unwrap();
    eventually("the parent journaled the child's start", || async {
        db.count_kind(id, KIND_CHILD_STARTED) == 1
    })
    .await;
    stop(engine).await;
    {
        let store = SqliteStore::open(db.path()).await.unwrap();
        store.request_cancel(id, "cancelled offline").await.unwrap();
    }

    let store = Arc::new(SlowStore::open(db.path()).await);
    store.delay_history_of(child_id, Duration::from_millis(200));
    let engine = Engine::builder()
        .store(store)
        .register(parent)
        .register(child_job)
        .start()
        .await
        .unwrap();
    let handle = engine.handle(parent, id).await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::Cancelled { .. },
                ..
            }
        ),
        "{error:?}"
    );
    let status = status_within(&engine, child_id, Duration::from_secs(1), |status| {
        *status != RunStatus::Running
    })
    .await;
    assert!(
        matches!(
            status,
            RunStatus::Cancelled(WorkflowError::Cancelled { .. })
        ),
        "the child of a cancelled parent is {status:?}"
    );
    stop(engine).await;
}

/// Starts a child under an id of `len` bytes and reports the start error's message.
#[workflow]
async fn long_child_id(ctx: WorkflowContext, len: usize) -> Result<String, WorkflowError> {
    match ctx
        .child(child_job, "c".repeat(len), (1, false, false))
        .await
    {
        Err(WorkflowError::ChildStart {
            workflow_id,
            message,
        }) => Ok(format!("{workflow_id}: {message}")),
        other => Err(WorkflowError::failed(format!("unexpected {other:?}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_id_over_the_limit_fails_the_child_step_before_the_store() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(long_child_id)
        .register(child_job)
        .start()
        .await
        .unwrap();
    let len = orchestrator::limits::MAX_WORKFLOW_ID_BYTES + 1;
    let run = engine
        .start(long_child_id, "long-child", len)
        .await
        .unwrap();
    let message = finish(&run).await.unwrap();
    assert!(message.contains(&format!("{len} bytes")), "{message}");
    assert!(message.len() < 400, "the id is shortened: {message}");
    assert_eq!(db.count_kind("long-child", KIND_CHILD_STARTED), 0);
    let runs = db.scalar("SELECT count(*) FROM runs", []);
    assert_eq!(runs, 1, "no child run was created");
    stop(engine).await;
}
