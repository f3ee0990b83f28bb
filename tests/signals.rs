//! Brief §7 (signals): buffered until waited for, delivered in order and exactly once, durable across
//! restarts, with timeouts; clear errors for unknown and finished runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{Either, select};
use orchestrator::prelude::*;
use orchestrator_tests::{
    KIND_SIGNAL_RECEIVED, KIND_TIMER_FIRED, SlowStore, TestDb, bump, eventually, finish, gate_wait,
    open_gate, stop, wait_status,
};

/// The `signals` table of a run: (name, consumed_by_step), in sending order.
fn inbox(db: &TestDb, id: &str) -> Vec<(String, Option<i64>)> {
    let conn = db.conn();
    let mut statement = conn
        .prepare("SELECT name, consumed_by_step FROM signals WHERE workflow_id = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Blocks until the test opens the gate `key`.
#[activity]
async fn blocked(key: String) -> Result<(), ActivityError> {
    bump(&format!("{key}/entered"));
    gate_wait(&key).await;
    Ok(())
}

/// Runs `blocked`, then waits for `greeting`.
#[workflow]
async fn greet_after_work(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    ctx.call(blocked, key).await?;
    let name: String = ctx.signal("greeting").await?;
    Ok(format!("hello {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_sent_before_the_workflow_waits_is_buffered() {
    let db = TestDb::new();
    let key = "signal-buffered";
    let id = "signal-buffered-1";
    let engine = db
        .builder()
        .register(greet_after_work)
        .register(blocked)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(greet_after_work, id, key.to_string())
        .await
        .unwrap();
    eventually("the activity is running", || async {
        orchestrator_tests::count(&format!("{key}/entered")) == 1
    })
    .await;
    // The workflow has not reached its wait yet.
    engine
        .signal(id, "greeting", "early bird".to_string())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    open_gate(key);
    assert_eq!(finish(&handle).await.unwrap(), "hello early bird");
    assert_eq!(inbox(&db, id), vec![("greeting".to_string(), Some(2))]);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Receives `n` signals named `item`, then one named `done`.
#[workflow]
async fn collector(ctx: WorkflowContext, n: u32) -> Result<(Vec<u32>, String), WorkflowError> {
    let mut items = Vec::new();
    for _ in 0..n {
        items.push(ctx.signal::<u32>("item").await?);
    }
    let done: String = ctx.signal("done").await?;
    Ok((items, done))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_of_one_name_are_delivered_in_order_exactly_once_across_a_restart() {
    let db = TestDb::new();
    let id = "signal-order-1";
    let build = || db.builder().register(collector);
    let engine = build().start().await.unwrap();
    engine.start(collector, id, 8).await.unwrap();
    // Interleave another name with the items: `done` must not be taken by an `item` wait.
    for item in 1..=3u32 {
        engine.signal(id, "item", item).await.unwrap();
    }
    engine
        .signal(id, "done", "finished".to_string())
        .await
        .unwrap();
    for item in 4..=5u32 {
        engine.signal(id, "item", item).await.unwrap();
    }
    eventually("five items are consumed", || async {
        db.count_kind(id, KIND_SIGNAL_RECEIVED) == 5
    })
    .await;
    stop(engine).await;

    let engine = build().start().await.unwrap();
    for item in 6..=8u32 {
        engine.signal(id, "item", item).await.unwrap();
    }
    let handle = engine.handle(collector, id).await.unwrap();
    let (items, done) = finish(&handle).await.unwrap();
    assert_eq!(items, (1..=8).collect::<Vec<u32>>());
    assert_eq!(done, "finished");
    // Each signal consumed once, by its own step.
    let consumed = inbox(&db, id);
    assert_eq!(consumed.len(), 9);
    let mut steps: Vec<i64> = consumed.iter().map(|(_, step)| step.unwrap()).collect();
    steps.sort_unstable();
    assert_eq!(steps, (1..=9).collect::<Vec<i64>>());
    assert_eq!(consumed[3], ("done".to_string(), Some(9)));
    assert_eq!(db.count_kind(id, KIND_SIGNAL_RECEIVED), 9);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Two waits for one name at once, then a third.
#[workflow]
async fn twin_waits(ctx: WorkflowContext, _: ()) -> Result<(u32, u32, u32), WorkflowError> {
    let (first, second) = futures::join!(ctx.signal::<u32>("n"), ctx.signal::<u32>("n"));
    let third = ctx.signal::<u32>("n").await?;
    Ok((first?, second?, third))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_waits_for_one_name_take_signals_in_step_order() {
    let db = TestDb::new();
    let id = "signal-twins-1";
    let engine = db.builder().register(twin_waits).start().await.unwrap();
    let handle = engine.start(twin_waits, id, ()).await.unwrap();
    for n in [10u32, 20, 30] {
        engine.signal(id, "n", n).await.unwrap();
    }
    assert_eq!(finish(&handle).await.unwrap(), (10, 20, 30));
    assert_eq!(
        inbox(&db, id),
        vec![
            ("n".to_string(), Some(1)),
            ("n".to_string(), Some(2)),
            ("n".to_string(), Some(3))
        ]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[workflow]
async fn impatient(ctx: WorkflowContext, ms: u64) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("answer")
        .timeout(Duration::from_millis(ms))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_wait_with_timeout_expires_with_signal_timeout() {
    let db = TestDb::new();
    let engine = db.builder().register(impatient).start().await.unwrap();
    let began = Instant::now();
    let handle = engine
        .start(impatient, "signal-timeout-1", 50)
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    let expected = WorkflowError::SignalTimeout {
        name: "answer".to_string(),
        step: 1,
        timeout: Duration::from_millis(50),
    };
    assert!(
        matches!(&error, Error::WorkflowFailed { error, .. } if *error == expected),
        "{error:?}"
    );
    assert!(began.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        engine.status("signal-timeout-1").await.unwrap(),
        RunStatus::Failed(expected)
    );
    // A signal that arrives in time wins.
    let handle = engine
        .start(impatient, "signal-timeout-2", 2_000)
        .await
        .unwrap();
    engine
        .signal("signal-timeout-2", "answer", 42u32)
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 42);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_wait_deadline_is_durable_across_a_restart() {
    let db = TestDb::new();
    let id = "signal-deadline-1";
    let build = || db.builder().register(impatient);
    let engine = build().start().await.unwrap();
    let began = Instant::now();
    engine.start(impatient, id, 400).await.unwrap();
    eventually("the wait is journaled", || async {
        !db.events(id).is_empty()
    })
    .await;
    stop(engine).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let engine = build().start().await.unwrap();
    let handle = engine.handle(impatient, id).await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    let elapsed = began.elapsed();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::SignalTimeout { step: 1, .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(395) && elapsed < Duration::from_millis(700),
        "the wait ended {elapsed:?} after the start, its deadline was 400 ms"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Sleeps, then waits for `a` and then `b`.
#[workflow]
async fn two_names(ctx: WorkflowContext, _: ()) -> Result<(String, String), WorkflowError> {
    ctx.sleep(Duration::from_millis(100)).await?;
    let a: String = ctx.signal("a").await?;
    let b: String = ctx.signal("b").await?;
    Ok((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_sent_before_shutdown_are_consumed_after_restart() {
    let db = TestDb::new();
    let id = "signal-restart-1";
    let build = || db.builder().register(two_names);
    let engine = build().start().await.unwrap();
    engine.start(two_names, id, ()).await.unwrap();
    // Sent in the opposite order of the waits, before the workflow waits for either.
    engine.signal(id, "b", "bee".to_string()).await.unwrap();
    engine.signal(id, "a", "ay".to_string()).await.unwrap();
    stop(engine).await;
    assert_eq!(
        inbox(&db, id),
        vec![("b".to_string(), None), ("a".to_string(), None)]
    );

    let engine = build().start().await.unwrap();
    let handle = engine.handle(two_names, id).await.unwrap();
    assert_eq!(
        finish(&handle).await.unwrap(),
        ("ay".to_string(), "bee".to_string())
    );
    assert_eq!(
        inbox(&db, id),
        vec![("b".to_string(), Some(3)), ("a".to_string(), Some(2))]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[workflow]
async fn quick(_ctx: WorkflowContext, fail: bool) -> Result<u8, WorkflowError> {
    if fail {
        return Err(WorkflowError::failed("as asked"));
    }
    Ok(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_an_unknown_or_finished_run_is_a_clear_error() {
    let db = TestDb::new();
    let engine = db.builder().register(quick).start().await.unwrap();
    let error = engine.signal("nobody", "x", 1u8).await.unwrap_err();
    assert!(
        matches!(&error, Error::NotFound { workflow_id } if workflow_id == "nobody"),
        "{error:?}"
    );

    let done = engine
        .start(quick, "signal-finished-ok", false)
        .await
        .unwrap();
    assert_eq!(finish(&done).await.unwrap(), 1);
    let error = engine
        .signal("signal-finished-ok", "x", 1u8)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::RunFinished { workflow_id } if workflow_id == "signal-finished-ok"),
        "{error:?}"
    );

    let failed = engine
        .start(quick, "signal-finished-err", true)
        .await
        .unwrap();
    assert!(finish(&failed).await.is_err());
    let error = engine
        .signal("signal-finished-err", "x", 1u8)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::RunFinished { workflow_id } if workflow_id == "signal-finished-err"),
        "{error:?}"
    );
    // Nothing was queued for any of them.
    assert!(inbox(&db, "nobody").is_empty());
    assert!(inbox(&db, "signal-finished-ok").is_empty());
    assert!(inbox(&db, "signal-finished-err").is_empty());
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_handle_signals_and_cancels_its_run() {
    let db = TestDb::new();
    let engine = db.builder().register(wants_a_number).start().await.unwrap();
    let answered = engine
        .start(wants_a_number, "handle-signal", ())
        .await
        .unwrap();
    answered.signal("number", 42u64).await.unwrap();
    assert_eq!(finish(&answered).await.unwrap(), 42);
    assert!(matches!(
        answered.signal("number", 1u64).await,
        Err(Error::RunFinished { .. })
    ));

    let cancelled = engine
        .start(wants_a_number, "handle-cancel", ())
        .await
        .unwrap();
    cancelled.cancel("no longer needed").await.unwrap();
    match finish(&cancelled).await.unwrap_err() {
        Error::WorkflowFailed {
            error: WorkflowError::Cancelled { reason },
            ..
        } => assert_eq!(reason, "no longer needed"),
        other => panic!("expected a cancelled run, got {other:?}"),
    }
    assert!(matches!(
        cancelled.cancel("again").await,
        Err(Error::RunFinished { .. })
    ));
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[workflow]
async fn wants_a_number(ctx: WorkflowContext, _: ()) -> Result<u64, WorkflowError> {
    ctx.signal::<u64>("number").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_payload_of_the_wrong_type_is_a_payload_error() {
    let db = TestDb::new();
    let engine = db.builder().register(wants_a_number).start().await.unwrap();
    let handle = engine
        .start(wants_a_number, "signal-type-1", ())
        .await
        .unwrap();
    engine
        .signal("signal-type-1", "number", "not a number at all".to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed { error: WorkflowError::Payload { step: 1, message }, .. }
                if message.contains("number")
        ),
        "{error:?}"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[workflow]
async fn waits_for_ping(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("ping")
        .timeout(Duration::from_millis(1_000))
        .await
}

/// A signal sent while `start` is still setting its run up (the run's row is committed, so `signal`
/// accepts it, but `start` has not returned) must reach the workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_sent_while_start_is_in_progress_is_not_lost() {
    let db = TestDb::new();
    let id = "signal-race-1";
    let store = Arc::new(
        SlowStore::open(db.path())
            .await
            .delay_create_replies(Duration::from_millis(100)),
    );
    let engine = Engine::builder()
        .store(store)
        .register(waits_for_ping)
        .start()
        .await
        .unwrap();
    let starter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let handle = engine.start(waits_for_ping, id, ()).await.unwrap();
            finish(&handle).await
        })
    };
    let sent_at = loop {
        match engine.signal(id, "ping", 7u32).await {
            Ok(()) => break Instant::now(),
            Err(Error::NotFound { .. }) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(other) => panic!("signal failed: {other:?}"),
        }
    };
    let result = starter.await.unwrap();
    assert!(
        matches!(result, Ok(7)),
        "a signal accepted {:?} before the run's result was lost: {result:?}; inbox {:?}",
        sent_at.elapsed(),
        inbox(&db, id)
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Races a short sleep against a signal wait, and after the sleep wins waits for the signal again.
#[workflow]
async fn select_then_wait(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    let raced = select(ctx.sleep(Duration::from_millis(30)), ctx.signal::<u32>("x")).await;
    match raced {
        Either::Left((slept, _abandoned_wait)) => slept?,
        Either::Right((value, _)) => return Ok(value? + 1_000),
    }
    ctx.signal::<u32>("x")
        .timeout(Duration::from_millis(1_000))
        .await
}

/// A signal wait that lost a race and was dropped must not swallow a later signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_is_not_consumed_by_a_wait_abandoned_in_a_select() {
    let db = TestDb::new();
    let id = "signal-select-1";
    let engine = db
        .builder()
        .register(select_then_wait)
        .start()
        .await
        .unwrap();
    let handle = engine.start(select_then_wait, id, ()).await.unwrap();
    eventually("the sleep wins the race", || async {
        db.count_kind(id, KIND_TIMER_FIRED) == 1
    })
    .await;
    wait_status(&engine, id, |status| *status == RunStatus::Running).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    engine.signal(id, "x", 7u32).await.unwrap();
    let result = finish(&handle).await;
    assert!(
        matches!(result, Ok(7)),
        "the signal went to the abandoned wait: {result:?}; inbox {:?}",
        inbox(&db, id)
    );
    stop(engine).await;
}
