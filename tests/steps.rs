//! Brief §1: a journaled step is never executed again; an interrupted one gets a stable idempotency key;
//! outputs round-trip through the journal; `join!` / `join_all` replay without re-running activities.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use orchestrator::{join_all, journal::EventBody};
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, KIND_TIMER_STARTED, TestDb, bump, count, eventually, finish,
    gate_wait, open_gate, record, recorded, stop,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------
// A journaled step is not executed again after a restart.

/// Counts its executions under `key`.
#[activity]
async fn counted(ctx: ActivityContext, key: String) -> Result<String, ActivityError> {
    let n = bump(&key);
    Ok(format!("{key}#{n}@{}", ctx.step()))
}

/// Calls `counted` twice around a signal wait.
#[workflow]
async fn two_counted_steps(
    ctx: WorkflowContext,
    key: String,
) -> Result<(String, String), WorkflowError> {
    let first = ctx.call(counted, format!("{key}/first")).await?;
    let _: () = ctx.signal("go").await?;
    let second = ctx.call(counted, format!("{key}/second")).await?;
    Ok((first, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journaled_step_is_not_executed_again_after_restart() {
    let db = TestDb::new();
    let key = "steps-restart";
    let id = "steps-restart-1";
    let engine = db
        .builder()
        .register(two_counted_steps)
        .register(counted)
        .start()
        .await
        .unwrap();
    engine
        .start(two_counted_steps, id, key.to_string())
        .await
        .unwrap();
    eventually("step 1 is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    stop(engine).await;
    assert_eq!(count("steps-restart/first"), 1);

    // Two restarts in a row: the journaled step must stay journaled.
    for _ in 0..2 {
        let engine = db
            .builder()
            .register(two_counted_steps)
            .register(counted)
            .start()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop(engine).await;
    }

    let engine = db
        .builder()
        .register(two_counted_steps)
        .register(counted)
        .start()
        .await
        .unwrap();
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(two_counted_steps, id).await.unwrap();
    let (first, second) = finish(&handle).await.unwrap();
    assert_eq!(first, "steps-restart/first#1@1");
    assert_eq!(second, "steps-restart/second#1@3");
    assert_eq!(count("steps-restart/first"), 1, "step 1 ran again");
    assert_eq!(count("steps-restart/second"), 1);
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 2);
    stop(engine).await;

    // A completed run is not run again either.
    let engine = db
        .builder()
        .register(two_counted_steps)
        .register(counted)
        .start()
        .await
        .unwrap();
    let handle = engine.handle(two_counted_steps, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap().1, "steps-restart/second#1@3");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(count("steps-restart/first"), 1);
    assert_eq!(count("steps-restart/second"), 1);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Shutdown lets an in-flight activity finish and journals it.

/// Takes 200 ms; counts starts and finishes separately.
#[activity]
async fn slow_200ms(key: String) -> Result<u64, ActivityError> {
    bump(&format!("{key}/started"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    bump(&format!("{key}/finished"));
    Ok(200)
}

#[workflow]
async fn slow_then_wait(ctx: WorkflowContext, key: String) -> Result<u64, WorkflowError> {
    let slow = ctx.call(slow_200ms, key).await?;
    let extra: u64 = ctx.signal("extra").await?;
    Ok(slow + extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_activity_finishes_and_is_journaled_at_shutdown() {
    let db = TestDb::new();
    let key = "steps-inflight";
    let id = "steps-inflight-1";
    let engine = db
        .builder()
        .register(slow_then_wait)
        .register(slow_200ms)
        .start()
        .await
        .unwrap();
    engine
        .start(slow_then_wait, id, key.to_string())
        .await
        .unwrap();
    eventually("the slow activity starts", || async {
        count("steps-inflight/started") == 1
    })
    .await;
    let began = Instant::now();
    stop(engine).await;
    // Shutdown waited for the attempt instead of abandoning it.
    assert_eq!(count("steps-inflight/finished"), 1);
    assert!(
        began.elapsed() >= Duration::from_millis(100),
        "shutdown returned after {:?}, before the attempt could finish",
        began.elapsed()
    );
    let completed = db.events_of_kind(id, KIND_ACTIVITY_COMPLETED);
    assert_eq!(completed.len(), 1, "the finished attempt was not journaled");
    assert_eq!(completed[0].step, 1);
    match &completed[0].body {
        EventBody::ActivityCompleted {
            name,
            attempts,
            result,
            ..
        } => {
            assert_eq!(name, "slow_200ms");
            assert_eq!(*attempts, 1);
            assert!(result.is_ok(), "{result:?}");
        }
        other => panic!("expected an activity completion, got {other:?}"),
    }

    let engine = db
        .builder()
        .register(slow_then_wait)
        .register(slow_200ms)
        .start()
        .await
        .unwrap();
    engine.signal(id, "extra", 5u64).await.unwrap();
    let handle = engine.handle(slow_then_wait, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 205);
    assert_eq!(count("steps-inflight/started"), 1, "the activity ran again");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// The idempotency key.

/// Records what its context says; fails its first two attempts.
#[activity(retry(max_attempts = 3, backoff = "5ms..10ms", jitter = 0.0))]
async fn keyed_flaky(ctx: ActivityContext, key: String) -> Result<String, ActivityError> {
    record(
        &key,
        format!(
            "{}|{}|{}|{}|{}",
            ctx.workflow_id(),
            ctx.step(),
            ctx.attempt(),
            ctx.activity_name(),
            ctx.idempotency_key()
        ),
    );
    if ctx.attempt() < 3 {
        return Err(ActivityError::retryable(format!(
            "attempt {}",
            ctx.attempt()
        )));
    }
    Ok(ctx.idempotency_key())
}

/// A plain first step, so the keyed call is step 2.
#[activity]
async fn warm_up() -> Result<(), ActivityError> {
    Ok(())
}

#[workflow]
async fn keyed_workflow(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    ctx.call(warm_up, ()).await?;
    ctx.call(keyed_flaky, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_is_workflow_id_slash_step_for_every_attempt() {
    let db = TestDb::new();
    let key = "steps-idem";
    let id = "orders/eu-7";
    let engine = db
        .builder()
        .register(keyed_workflow)
        .register(keyed_flaky)
        .register(warm_up)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(keyed_workflow, id, key.to_string())
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "orders/eu-7/2");
    assert_eq!(
        recorded(key),
        vec![
            "orders/eu-7|2|1|keyed_flaky|orders/eu-7/2",
            "orders/eu-7|2|2|keyed_flaky|orders/eu-7/2",
            "orders/eu-7|2|3|keyed_flaky|orders/eu-7/2",
        ]
    );
    stop(engine).await;
}

/// Fails its first attempt with a long backoff, so a restart happens between attempts.
#[activity(retry(max_attempts = 2, backoff = "300ms..300ms", jitter = 0.0))]
async fn keyed_slow_retry(ctx: ActivityContext, key: String) -> Result<String, ActivityError> {
    record(&key, format!("{}|{}", ctx.attempt(), ctx.idempotency_key()));
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable("first attempt fails"));
    }
    Ok(ctx.idempotency_key())
}

#[workflow]
async fn keyed_restart_workflow(
    ctx: WorkflowContext,
    key: String,
) -> Result<String, WorkflowError> {
    let _ = ctx.now();
    ctx.call(keyed_slow_retry, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_is_identical_across_a_restart() {
    let db = TestDb::new();
    let key = "steps-idem-restart";
    let id = "steps-idem-restart-1";
    let build = || {
        db.builder()
            .register(keyed_restart_workflow)
            .register(keyed_slow_retry)
    };
    let engine = build().start().await.unwrap();
    engine
        .start(keyed_restart_workflow, id, key.to_string())
        .await
        .unwrap();
    eventually("the first attempt fails", || async {
        recorded(key).len() == 1
    })
    .await;
    stop(engine).await;
    let engine = build().start().await.unwrap();
    let handle = engine.handle(keyed_restart_workflow, id).await.unwrap();
    let key_seen = finish(&handle).await.unwrap();
    assert_eq!(key_seen, "steps-idem-restart-1/2");
    assert_eq!(
        recorded(key),
        vec!["1|steps-idem-restart-1/2", "2|steps-idem-restart-1/2"]
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Output types round-trip through the journal (live and on replay).

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Circle { radius: f64 },
    Polygon(Vec<(i32, i32)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Rich {
    name: String,
    count: u64,
    negative: i64,
    big: u128,
    ratio: f64,
    flag: bool,
    maybe: Option<Box<Rich>>,
    bytes: Vec<u8>,
    tags: BTreeMap<String, Vec<Shape>>,
    shape: Shape,
    tuple: (char, u8, String),
}

fn sample(seed: u64) -> Rich {
    let inner = Rich {
        name: "inner".to_string(),
        count: 0,
        negative: i64::MIN,
        big: 0,
        ratio: -0.0,
        flag: false,
        maybe: None,
        bytes: vec![],
        tags: BTreeMap::new(),
        shape: Shape::Unit,
        tuple: ('\0', 0, String::new()),
    };
    let mut tags = BTreeMap::new();
    tags.insert(
        "ключ 🔑".to_string(),
        vec![
            Shape::Circle { radius: 1.5 },
            Shape::Polygon(vec![(-1, 2), (i32::MAX, i32::MIN)]),
        ],
    );
    tags.insert(String::new(), vec![]);
    Rich {
        name: format!("rich-{seed}\u{0}\u{ffff}"),
        count: u64::MAX - seed,
        negative: -42,
        big: u128::MAX / 3,
        ratio: std::f64::consts::PI,
        flag: true,
        maybe: Some(Box::new(inner)),
        bytes: (0..=255).collect(),
        tags,
        shape: Shape::Polygon(vec![(1, 1)]),
        tuple: ('é', 255, "tuple".to_string()),
    }
}

#[activity]
async fn make_rich(seed: u64) -> Result<Rich, ActivityError> {
    bump("steps-rich/make");
    Ok(sample(seed))
}

#[workflow]
async fn rich_workflow(ctx: WorkflowContext, seed: u64) -> Result<(Rich, Rich), WorkflowError> {
    let live = ctx.call(make_rich, seed).await?;
    let echoed: Rich = ctx.signal("echo").await?;
    Ok((live, echoed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_types_round_trip_live_and_on_replay() {
    let db = TestDb::new();
    let id = "steps-rich-1";
    let build = || db.builder().register(rich_workflow).register(make_rich);
    let engine = build().start().await.unwrap();
    engine.start(rich_workflow, id, 7).await.unwrap();
    eventually("the activity is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    stop(engine).await;

    let engine = build().start().await.unwrap();
    engine.signal(id, "echo", sample(9)).await.unwrap();
    let handle = engine.handle(rich_workflow, id).await.unwrap();
    let (live, echoed) = finish(&handle).await.unwrap();
    assert_eq!(live, sample(7));
    assert_eq!(echoed, sample(9));
    assert_eq!(count("steps-rich/make"), 1);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// join! and join_all.

/// Returns `x * 10`; counts executions per input; the three `join!` inputs also wait for each other,
/// which proves they run concurrently.
#[activity]
async fn times_ten(ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    let n = bump(&format!("steps-join/{}/{x}", ctx.workflow_id()));
    if x >= 100 && n == 1 {
        // Each of the three joined calls waits until all three have started.
        let gate = format!("steps-join/{}/all-started", ctx.workflow_id());
        if bump(&format!("steps-join/{}/joined", ctx.workflow_id())) == 3 {
            open_gate(&gate);
        }
        if tokio::time::timeout(Duration::from_secs(2), gate_wait(&gate))
            .await
            .is_err()
        {
            return Err(ActivityError::non_retryable(
                "joined calls did not run concurrently",
            ));
        }
    }
    // Finish in reverse order of input, so completion order differs from issue order.
    tokio::time::sleep(Duration::from_millis(30u64.saturating_sub(x % 100 * 3))).await;
    Ok(x * 10)
}

#[workflow]
async fn joins(ctx: WorkflowContext, _: ()) -> Result<(Vec<u64>, Vec<u64>, u64), WorkflowError> {
    let (a, b, c) = futures::join!(
        ctx.call(times_ten, 100),
        ctx.call(times_ten, 101),
        ctx.call(times_ten, 102)
    );
    let three = vec![a?, b?, c?];
    let ten: Vec<u64> = join_all((0..10).map(|i| ctx.call(times_ten, i)))
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    ctx.sleep(Duration::from_millis(300)).await?;
    let after = ctx.call(times_ten, 50).await?;
    Ok((three, ten, after))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_join_all_give_right_results_and_replay_without_rerunning() {
    let db = TestDb::new();
    let id = "steps-join-1";
    let build = || db.builder().register(joins).register(times_ten);
    let engine = build().start().await.unwrap();
    engine.start(joins, id, ()).await.unwrap();
    eventually(
        "the join results are journaled and the sleep started",
        || async { db.count_kind(id, KIND_TIMER_STARTED) == 1 },
    )
    .await;
    stop(engine).await;
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 13);

    let engine = build().start().await.unwrap();
    let handle = engine.handle(joins, id).await.unwrap();
    let (three, ten, after) = finish(&handle).await.unwrap();
    assert_eq!(three, vec![1000, 1010, 1020]);
    assert_eq!(ten, (0..10).map(|i| i * 10).collect::<Vec<_>>());
    assert_eq!(after, 500);
    for x in (100..=102).chain(0..10).chain([50]) {
        assert_eq!(
            count(&format!("steps-join/{id}/{x}")),
            1,
            "times_ten({x}) ran more than once"
        );
    }
    // Steps 1-3 are the join, 4-13 the join_all, 14 the timer, 15 the last call.
    let steps: Vec<u32> = db
        .events_of_kind(id, KIND_ACTIVITY_COMPLETED)
        .iter()
        .map(|row| row.step)
        .collect();
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=13).chain([15]).collect::<Vec<u32>>());
    stop(engine).await;
}

/// Concurrent steps that complete in a different order on every run still replay to the same values.
#[activity]
async fn jittery(x: u64) -> Result<u64, ActivityError> {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..15))).await;
    Ok(x + 1000)
}

#[workflow]
async fn jittery_joins(ctx: WorkflowContext, n: u64) -> Result<Vec<u64>, WorkflowError> {
    let mut all = Vec::new();
    for round in 0..2 {
        let got: Vec<u64> = join_all((0..n).map(|i| ctx.call(jittery, round * 100 + i)))
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        all.extend(got);
        let _: () = ctx.signal("next").await?;
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_all_with_out_of_order_completions_replays_after_each_restart() {
    let db = TestDb::new();
    let id = "steps-jittery-1";
    let build = || db.builder().register(jittery_joins).register(jittery);
    let engine = build().start().await.unwrap();
    engine.start(jittery_joins, id, 8).await.unwrap();
    eventually("the first round is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 8
    })
    .await;
    stop(engine).await;

    let engine = build().start().await.unwrap();
    engine.signal(id, "next", ()).await.unwrap();
    eventually("the second round is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 16
    })
    .await;
    stop(engine).await;

    let engine = build().start().await.unwrap();
    engine.signal(id, "next", ()).await.unwrap();
    let handle = engine.handle(jittery_joins, id).await.unwrap();
    let expected: Vec<u64> = (0..8).chain(100..108).map(|x| x + 1000).collect();
    assert_eq!(finish(&handle).await.unwrap(), expected);
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 16);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// An attempt still running when the shutdown grace runs out is abandoned and runs again (at least once)
// with the same idempotency key.

/// Takes 500 ms; records its attempt and key at the start and counts finishes.
#[activity]
async fn outlives_grace(ctx: ActivityContext, key: String) -> Result<String, ActivityError> {
    record(&key, format!("{}|{}", ctx.attempt(), ctx.idempotency_key()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    bump(&format!("{key}/finished"));
    Ok(ctx.idempotency_key())
}

#[workflow]
async fn outlives_grace_workflow(
    ctx: WorkflowContext,
    key: String,
) -> Result<String, WorkflowError> {
    ctx.call(outlives_grace, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_abandoned_after_the_grace_period_runs_again_with_the_same_key() {
    let db = TestDb::new();
    let key = "steps-grace";
    let id = "steps-grace-1";
    let engine = db
        .builder()
        .shutdown_grace(Duration::from_millis(50))
        .register(outlives_grace_workflow)
        .register(outlives_grace)
        .start()
        .await
        .unwrap();
    engine
        .start(outlives_grace_workflow, id, key.to_string())
        .await
        .unwrap();
    eventually("the attempt starts", || async { recorded(key).len() == 1 }).await;
    let began = Instant::now();
    stop(engine).await;
    assert!(
        began.elapsed() < Duration::from_millis(400),
        "shutdown waited {:?}, past its 50 ms grace",
        began.elapsed()
    );
    assert_eq!(db.count_kind(id, KIND_ACTIVITY_COMPLETED), 0);

    let engine = db
        .builder()
        .register(outlives_grace_workflow)
        .register(outlives_grace)
        .start()
        .await
        .unwrap();
    let handle = engine.handle(outlives_grace_workflow, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "steps-grace-1/1");
    // The abandoned attempt was cut short: it counts, so the re-run is attempt 2 (event format 3).
    assert_eq!(
        recorded(key),
        vec!["1|steps-grace-1/1", "2|steps-grace-1/1"],
        "the re-run must carry the same idempotency key"
    );
    assert_eq!(
        count("steps-grace/finished"),
        1,
        "the abandoned attempt kept running"
    );
    stop(engine).await;
}
