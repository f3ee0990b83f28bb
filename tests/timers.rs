//! Brief §6 and §3: durable sleep survives restarts and fires once, at its journaled time; `ctx.now()`
//! replays the recorded value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator::journal::EventBody;
use orchestrator::prelude::*;
use orchestrator_tests::{
    KIND_SIDE_EFFECT, KIND_TIMER_FIRED, KIND_TIMER_STARTED, TestDb, bump, count, eventually,
    finish, now_ms, record, recorded, stop,
};

/// Records when it runs (ms since the epoch) under `key`.
#[activity]
async fn stamp(key: String) -> Result<i64, ActivityError> {
    bump(&key);
    let at = now_ms();
    record(&key, at);
    Ok(at)
}

/// Sleeps `ms`, then stamps.
#[workflow]
async fn sleeper(ctx: WorkflowContext, input: (String, u64)) -> Result<i64, WorkflowError> {
    let (key, ms) = input;
    ctx.sleep(Duration::from_millis(ms)).await?;
    ctx.call(stamp, key).await
}

fn fire_at(db: &TestDb, id: &str) -> i64 {
    let started = db.events_of_kind(id, KIND_TIMER_STARTED);
    assert_eq!(started.len(), 1, "{started:?}");
    match started[0].body {
        EventBody::TimerStarted { fire_at_ms } => fire_at_ms,
        ref other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_survives_a_restart_serving_only_the_remaining_time() {
    let db = TestDb::new();
    let key = "timer-remaining";
    let id = "timer-remaining-1";
    let build = || db.builder().register(sleeper).register(stamp);
    let engine = build().start().await.unwrap();
    let started_at = now_ms();
    engine
        .start(sleeper, id, (key.to_string(), 600))
        .await
        .unwrap();
    eventually("the timer is journaled", || async {
        db.count_kind(id, KIND_TIMER_STARTED) == 1
    })
    .await;
    let fire_at_ms = fire_at(&db, id);
    assert!(
        (590..=800).contains(&(fire_at_ms - started_at)),
        "timer due {} ms after start",
        fire_at_ms - started_at
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(engine).await;
    assert_eq!(count(key), 0, "the timer fired early");

    let engine = build().start().await.unwrap();
    let handle = engine.handle(sleeper, id).await.unwrap();
    let stamped = finish(&handle).await.unwrap();
    assert!(
        stamped >= fire_at_ms,
        "woke {} ms before the journaled time",
        fire_at_ms - stamped
    );
    assert!(
        stamped <= fire_at_ms + 250,
        "woke {} ms after the journaled time (a full new sleep from the restart?)",
        stamped - fire_at_ms
    );
    assert_eq!(
        db.count_kind(id, KIND_TIMER_STARTED),
        1,
        "the timer was re-armed"
    );
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 1);
    assert_eq!(count(key), 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_timer_fires_immediately_at_restart_and_only_once() {
    let db = TestDb::new();
    let key = "timer-overdue";
    let id = "timer-overdue-1";
    let build = || db.builder().register(sleeper).register(stamp);
    let engine = build().start().await.unwrap();
    engine
        .start(sleeper, id, (key.to_string(), 1_000))
        .await
        .unwrap();
    eventually("the timer is journaled", || async {
        db.count_kind(id, KIND_TIMER_STARTED) == 1
    })
    .await;
    stop(engine).await;
    let fire_at_ms = fire_at(&db, id);
    let overdue_at = fire_at_ms + 200;
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(overdue_at - now_ms()).unwrap_or(0) + 10,
    ))
    .await;
    assert!(now_ms() > overdue_at);

    // Fired at once: well before a full new 1 s sleep from the restart would end, with room for a
    // loaded machine (the engine's start is inside the measured time).
    let restarted_at = now_ms();
    let engine = build().start().await.unwrap();
    let handle = engine.handle(sleeper, id).await.unwrap();
    let stamped = finish(&handle).await.unwrap();
    assert!(
        stamped - restarted_at < 600,
        "an overdue timer took {} ms to fire after the restart",
        stamped - restarted_at
    );
    stop(engine).await;

    // Later restarts neither fire it again nor re-run what followed it.
    let engine = build().start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop(engine).await;
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 1);
    assert_eq!(count(key), 1);
    assert_eq!(recorded(key).len(), 1);
}

/// Several sleeps, two of them concurrent, around a restart.
#[workflow]
async fn many_sleeps(ctx: WorkflowContext, key: String) -> Result<Vec<i64>, WorkflowError> {
    let mut out = Vec::new();
    ctx.sleep(Duration::ZERO).await?;
    out.push(ctx.call(stamp, format!("{key}/a")).await?);
    let (x, y) = futures::join!(
        ctx.sleep(Duration::from_millis(250)),
        ctx.sleep(Duration::from_millis(50))
    );
    x?;
    y?;
    out.push(ctx.call(stamp, format!("{key}/b")).await?);
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_and_concurrent_sleeps_fire_once_each_across_a_restart() {
    let db = TestDb::new();
    let key = "timer-many";
    let id = "timer-many-1";
    let build = || db.builder().register(many_sleeps).register(stamp);
    let engine = build().start().await.unwrap();
    engine
        .start(many_sleeps, id, key.to_string())
        .await
        .unwrap();
    eventually("the short one of the joined sleeps fires", || async {
        db.count_kind(id, KIND_TIMER_FIRED) == 2
    })
    .await;
    stop(engine).await;
    let engine = build().start().await.unwrap();
    let handle = engine.handle(many_sleeps, id).await.unwrap();
    let stamps = finish(&handle).await.unwrap();
    assert_eq!(stamps.len(), 2);
    assert!(stamps[1] - stamps[0] >= 245, "{stamps:?}");
    assert_eq!(db.count_kind(id, KIND_TIMER_STARTED), 3);
    assert_eq!(db.count_kind(id, KIND_TIMER_FIRED), 3);
    let fired_steps: Vec<u32> = db
        .events_of_kind(id, KIND_TIMER_FIRED)
        .iter()
        .map(|row| row.step)
        .collect();
    // Step 1 is the zero sleep, 2 the stamp, 3 and 4 the joined sleeps (4, the short one, fires first).
    assert_eq!(fired_steps, vec![1, 4, 3]);
    assert_eq!(count(&format!("{key}/a")), 1);
    assert_eq!(count(&format!("{key}/b")), 1);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

fn nanos(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// Reads the clock, waits for a signal, reads it again; reports each value it saw.
#[workflow]
async fn clock_reader(ctx: WorkflowContext, key: String) -> Result<(u128, u128), WorkflowError> {
    let first = nanos(ctx.now());
    record(&format!("{key}/first"), first);
    let _: () = ctx.signal("go").await?;
    let second = nanos(ctx.now());
    record(&format!("{key}/second"), second);
    Ok((first, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_replays_the_recorded_value_across_a_restart() {
    let db = TestDb::new();
    let key = "timer-now";
    let id = "timer-now-1";
    let build = || db.builder().register(clock_reader);
    let engine = build().start().await.unwrap();
    engine
        .start(clock_reader, id, key.to_string())
        .await
        .unwrap();
    eventually("the first reading is journaled", || async {
        db.count_kind(id, KIND_SIDE_EFFECT) == 1
    })
    .await;
    stop(engine).await;
    let original = recorded(&format!("{key}/first"));
    assert_eq!(original.len(), 1);
    tokio::time::sleep(Duration::from_millis(30)).await;

    let engine = build().start().await.unwrap();
    eventually("the body is replayed", || async {
        recorded(&format!("{key}/first")).len() == 2
    })
    .await;
    let replayed = recorded(&format!("{key}/first"));
    assert_eq!(replayed[0], replayed[1], "now() changed on replay");
    engine.signal(id, "go", ()).await.unwrap();
    let handle = engine.handle(clock_reader, id).await.unwrap();
    let (first, second) = finish(&handle).await.unwrap();
    assert_eq!(first.to_string(), original[0]);
    assert!(
        second >= first + 30_000_000,
        "the second reading is not a fresh one: {first} then {second}"
    );
    assert_eq!(db.count_kind(id, KIND_SIDE_EFFECT), 2);
    stop(engine).await;
}
