//! The engine's API: idempotent start, id conflicts, registration and configuration errors, handles,
//! status transitions, resuming unfinished runs at start, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orchestrator::Engine;
use orchestrator::prelude::*;
use orchestrator_tests::{TestDb, bump, count, finish, stop};

#[activity]
async fn shout(text: String) -> Result<String, ActivityError> {
    Ok(text.to_uppercase())
}

/// Counts how often its body starts, then shouts its input after a signal.
#[workflow]
async fn counted_greeter(ctx: WorkflowContext, text: String) -> Result<String, WorkflowError> {
    bump(&format!("api/{}", ctx.workflow_id()));
    let _: () = ctx.signal("go").await?;
    ctx.call(shout, text).await
}

/// Another workflow type, for conflicts.
#[workflow]
async fn other_type(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

/// Fails on request.
#[workflow]
async fn judge(ctx: WorkflowContext, approve: bool) -> Result<String, WorkflowError> {
    let _: () = ctx.signal("decide").await?;
    if approve {
        Ok("approved".to_string())
    } else {
        Err(WorkflowError::failed("income below threshold"))
    }
}

/// Sleeps 300 ms, then answers.
#[workflow]
async fn napper(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    bump(&format!("api/{}", ctx.workflow_id()));
    ctx.sleep(Duration::from_millis(300)).await?;
    Ok(n * 2)
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_idempotent_on_the_workflow_id() {
    let db = TestDb::new();
    let id = "api-idem-1";
    let build = || db.builder().register(counted_greeter).register(shout);
    let engine = build().start().await.unwrap();
    let first = engine
        .start(counted_greeter, id, "first".to_string())
        .await
        .unwrap();
    let second = engine
        .start(counted_greeter, id, "second input is ignored".to_string())
        .await
        .unwrap();
    assert_eq!(first.workflow_id(), second.workflow_id());
    engine.signal(id, "go", ()).await.unwrap();
    assert_eq!(finish(&first).await.unwrap(), "FIRST");
    assert_eq!(finish(&second).await.unwrap(), "FIRST");
    assert_eq!(count(&format!("api/{id}")), 1, "the workflow ran twice");

    // After completion and after a restart, start still returns the same finished run.
    let journal_len = db.events(id).len();
    let third = engine
        .start(counted_greeter, id, "third".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&third).await.unwrap(), "FIRST");
    stop(engine).await;
    let engine = build().start().await.unwrap();
    let fourth = engine
        .start(counted_greeter, id, "fourth".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&fourth).await.unwrap(), "FIRST");
    // A start of an id this engine does not drive polls a new body once before its creation finds
    // the run (issue 12: the first poll goes with the creation); that body is dropped, having
    // started nothing and written nothing: the third and the fourth start.
    assert_eq!(count(&format!("api/{id}")), 3);
    assert_eq!(
        db.events(id).len(),
        journal_len,
        "the later starts journaled nothing"
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_of_one_id_create_one_run() {
    let db = TestDb::new();
    let id = "api-concurrent-1";
    let engine = db
        .builder()
        .register(counted_greeter)
        .register(shout)
        .start()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            engine
                .start(counted_greeter, id, format!("input {i}"))
                .await
        }));
    }
    let mut handles = Vec::new();
    for task in tasks {
        handles.push(task.await.unwrap().unwrap());
    }
    engine.signal(id, "go", ()).await.unwrap();
    let mut outputs = Vec::new();
    for handle in &handles {
        outputs.push(finish(handle).await.unwrap());
    }
    assert!(
        outputs.iter().all(|output| *output == outputs[0]),
        "{outputs:?}"
    );
    assert!(outputs[0].starts_with("INPUT "), "{outputs:?}");
    // The body of the run ran once; a start that lost the creation race to another may also have
    // run its first poll speculatively (up to its first step, nothing started or written: see
    // `start_is_idempotent_on_the_workflow_id`), so at most one more body start is seen.
    let bodies = count(&format!("api/{id}"));
    assert!(
        (1..=2).contains(&bodies),
        "the workflow ran more than once: {bodies} body starts"
    );
    let shouts: i64 = db
        .conn()
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 1 AND workflow_id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(shouts, 1, "the activity step was journaled more than once");
    let runs: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(runs, 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_id_with_another_workflow_type_is_a_conflict_naming_both() {
    let db = TestDb::new();
    let id = "api-conflict-1";
    let engine = db
        .builder()
        .register(counted_greeter)
        .register(other_type)
        .register(shout)
        .start()
        .await
        .unwrap();
    engine
        .start(counted_greeter, id, "x".to_string())
        .await
        .unwrap();
    let error = engine.start(other_type, id, 1).await.unwrap_err();
    match &error {
        Error::WorkflowIdConflict {
            workflow_id,
            existing,
            requested,
        } => {
            assert_eq!(workflow_id, id);
            assert_eq!(existing, "counted_greeter");
            assert_eq!(requested, "other_type");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("counted_greeter") && message.contains("other_type"),
        "{message}"
    );
    // The existing run is untouched.
    assert_eq!(engine.status(id).await.unwrap(), RunStatus::Running);
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(counted_greeter, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "X");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_configuration_errors() {
    let db = TestDb::new();
    // Starting an unregistered workflow.
    let engine = db.builder().register(other_type).start().await.unwrap();
    let error = engine
        .start(counted_greeter, "api-unregistered", "x".to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::UnregisteredWorkflow { name } if name == "counted_greeter"),
        "{error:?}"
    );
    assert!(matches!(
        engine.status("api-unregistered").await,
        Err(Error::NotFound { .. })
    ));
    stop(engine).await;

    // Registering one name twice: the same workflow, the same activity, or a workflow and an activity.
    let error = db
        .builder()
        .register(other_type)
        .register(other_type)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::DuplicateRegistration { name } if name == "other_type"),
        "{error:?}"
    );
    let error = db
        .builder()
        .register(shout)
        .register(shout)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::DuplicateRegistration { name } if name == "shout"),
        "{error:?}"
    );
    let error = db
        .builder()
        .register(clash_workflow)
        .register(clash_activity)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::DuplicateRegistration { name } if name == "clash"),
        "{error:?}"
    );

    // No store at all, and a zero payload limit.
    let error = Engine::builder()
        .register(other_type)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Config { .. }), "{error:?}");
    let error = db.builder().payload_limit(0).start().await.unwrap_err();
    assert!(matches!(&error, Error::Config { .. }), "{error:?}");
}

#[workflow(name = "clash")]
async fn clash_workflow(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    Ok(())
}

#[activity(name = "clash")]
async fn clash_activity() -> Result<(), ActivityError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_checks_the_id_and_the_workflow_type() {
    let db = TestDb::new();
    let id = "api-handle-1";
    let engine = db
        .builder()
        .register(other_type)
        .register(counted_greeter)
        .register(shout)
        .start()
        .await
        .unwrap();
    let done = engine.start(other_type, id, 21).await.unwrap();
    assert_eq!(finish(&done).await.unwrap(), 21);
    let error = engine.handle(counted_greeter, id).await.unwrap_err();
    match &error {
        Error::WrongWorkflowType {
            workflow_id,
            expected,
            actual,
        } => {
            assert_eq!(workflow_id, id);
            assert_eq!(expected, "counted_greeter");
            assert_eq!(actual, "other_type");
        }
        other => panic!("expected WrongWorkflowType, got {other:?}"),
    }
    let error = engine.handle(other_type, "api-nobody").await.unwrap_err();
    assert!(
        matches!(&error, Error::NotFound { workflow_id } if workflow_id == "api-nobody"),
        "{error:?}"
    );
    let handle = engine.handle(other_type, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 21);
    assert!(matches!(
        engine.status("api-nobody").await,
        Err(Error::NotFound { .. })
    ));
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_goes_from_running_to_completed_or_failed() {
    let db = TestDb::new();
    let engine = db.builder().register(judge).start().await.unwrap();
    let yes = engine.start(judge, "api-status-yes", true).await.unwrap();
    let no = engine.start(judge, "api-status-no", false).await.unwrap();
    assert_eq!(yes.status().await.unwrap(), RunStatus::Running);
    assert_eq!(no.status().await.unwrap(), RunStatus::Running);

    engine.signal("api-status-yes", "decide", ()).await.unwrap();
    engine.signal("api-status-no", "decide", ()).await.unwrap();
    assert_eq!(finish(&yes).await.unwrap(), "approved");
    let error = finish(&no).await.unwrap_err();
    let expected = WorkflowError::Application {
        message: "income below threshold".to_string(),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { workflow_id, error } if workflow_id == "api-status-no" && *error == expected),
        "{error:?}"
    );
    assert_eq!(yes.status().await.unwrap(), RunStatus::Completed);
    assert_eq!(
        engine.status("api-status-no").await.unwrap(),
        RunStatus::Failed(expected.clone())
    );
    stop(engine).await;

    // The outcomes are durable.
    let engine = db.builder().register(judge).start().await.unwrap();
    assert_eq!(
        engine.status("api-status-yes").await.unwrap(),
        RunStatus::Completed
    );
    assert_eq!(
        engine.status("api-status-no").await.unwrap(),
        RunStatus::Failed(expected)
    );
    let yes = engine.handle(judge, "api-status-yes").await.unwrap();
    assert_eq!(finish(&yes).await.unwrap(), "approved");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_runs_resume_when_the_engine_starts() {
    let db = TestDb::new();
    let ids = ["api-resume-1", "api-resume-2", "api-resume-3"];
    let build = || db.builder().register(napper);
    let engine = build().start().await.unwrap();
    for (n, id) in (1..).zip(ids) {
        engine.start(napper, id, n).await.unwrap();
    }
    stop(engine).await;
    assert!(ids.iter().all(|id| db.run_state(id) == Some(0)));

    let began = Instant::now();
    let engine = build().start().await.unwrap();
    for (n, id) in (1..).zip(ids) {
        let handle = engine.handle(napper, id).await.unwrap();
        assert_eq!(finish(&handle).await.unwrap(), n * 2);
    }
    // Generous for a loaded 2-core CI machine; a stuck or restarted-from-scratch run takes far longer.
    assert!(
        began.elapsed() < Duration::from_millis(3_000),
        "{:?}",
        began.elapsed()
    );
    for id in ids {
        assert_eq!(engine.status(id).await.unwrap(), RunStatus::Completed);
    }
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_the_engine_takes_no_new_work_and_waiters_are_told() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(counted_greeter)
        .register(shout)
        .start()
        .await
        .unwrap();
    let waiting = engine
        .start(counted_greeter, "api-shutdown-1", "x".to_string())
        .await
        .unwrap();
    let waiter = tokio::spawn(async move { waiting.result().await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    engine.shutdown().await;
    let result = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("a waiter hung after shutdown")
        .unwrap();
    assert!(matches!(result, Err(Error::ShuttingDown)), "{result:?}");
    let error = engine
        .start(counted_greeter, "api-shutdown-2", "y".to_string())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ShuttingDown), "{error:?}");
    drop(engine);
    // The run that was waiting is still there for the next engine.
    let engine = db
        .builder()
        .register(counted_greeter)
        .register(shout)
        .start()
        .await
        .unwrap();
    assert_eq!(
        engine.status("api-shutdown-1").await.unwrap(),
        RunStatus::Running
    );
    assert!(matches!(
        engine.status("api-shutdown-2").await,
        Err(Error::NotFound { .. })
    ));
    engine.signal("api-shutdown-1", "go", ()).await.unwrap();
    let handle = engine
        .handle(counted_greeter, "api-shutdown-1")
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "X");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_engine_runs_workflows_and_keeps_nothing() {
    let engine = Engine::builder()
        .in_memory()
        .register(napper)
        .start()
        .await
        .unwrap();
    let handle = engine.start(napper, "api-memory-1", 4).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 8);
    stop(engine).await;
    let engine = Engine::builder()
        .in_memory()
        .register(napper)
        .start()
        .await
        .unwrap();
    assert!(matches!(
        engine.status("api-memory-1").await,
        Err(Error::NotFound { .. })
    ));
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_runs_progress_side_by_side() {
    let db = TestDb::new();
    let engine = db.builder().register(napper).start().await.unwrap();
    let began = Instant::now();
    let mut handles = Vec::new();
    for n in 0..50u32 {
        handles.push(
            engine
                .start(napper, format!("api-many-{n}"), n)
                .await
                .unwrap(),
        );
    }
    for (n, handle) in (0..).zip(&handles) {
        assert_eq!(finish(handle).await.unwrap(), n * 2);
    }
    // The 300 ms sleeps overlap.
    assert!(
        began.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        began.elapsed()
    );
    for n in 0..50u32 {
        let status = engine.status(&format!("api-many-{n}")).await.unwrap();
        assert_eq!(status, RunStatus::Completed);
    }
    stop(engine).await;
}

/// Runs `counted_greeter` to its signal with one reply-waiting setting, stops, and finishes it after
/// a restart with another: both ways of awaiting the store's replies journal the same steps.
async fn greet_across_a_restart(first: Duration, second: Duration, id: &str) {
    let db = TestDb::new();
    let build = |spin: Duration| {
        db.builder()
            .spin_wait(spin)
            .register(counted_greeter)
            .register(shout)
    };
    let engine = build(first).start().await.unwrap();
    engine
        .start(counted_greeter, id, "spin".to_string())
        .await
        .unwrap();
    // Many quick requests in a row: a spinning waiter takes each reply.
    for _ in 0..50 {
        assert_eq!(engine.status(id).await.unwrap(), RunStatus::Running);
    }
    stop(engine).await;

    let engine = build(second).start().await.unwrap();
    engine.signal(id, "go", ()).await.unwrap();
    let run = engine.handle(counted_greeter, id).await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), run.result())
        .await
        .expect("the run finishes")
        .unwrap();
    assert_eq!(output, "SPIN");
    // The body started once before the restart and once after it (replay), never more.
    assert_eq!(count(&format!("api/{id}")), 2);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_and_sleeping_waiters_journal_the_same_run() {
    greet_across_a_restart(Duration::ZERO, Duration::from_secs(1), "api-spin-multi").await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_waiter_on_a_single_threaded_runtime_lets_the_run_finish() {
    greet_across_a_restart(Duration::from_secs(1), Duration::ZERO, "api-spin-single").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_are_futures_that_join_all_awaits_together() {
    let db = TestDb::new();
    let engine = db.builder().register(other_type).start().await.unwrap();
    let ids: Vec<String> = (0..8).map(|i| format!("joined-{i}")).collect();
    // `join_all` needs `Future`s, not only `IntoFuture`s: this line is what must compile.
    let started =
        orchestrator::join_all(ids.iter().map(|id| engine.start(other_type, id.clone(), 7)));
    let handles: Vec<_> = started.await.into_iter().map(Result::unwrap).collect();
    for handle in &handles {
        assert_eq!(finish(handle).await.unwrap(), 7);
    }
    stop(engine).await;
}
