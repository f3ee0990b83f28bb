//! Recovery at start: `start()` returns before the unfinished runs are replayed, runs can be started,
//! signalled and awaited meanwhile (each driven once), and timers fire on time whatever recovery and
//! eviction are doing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator::EngineBuilder;
use orchestrator::prelude::*;
use orchestrator::store::Durability;
use orchestrator_tests::{SlowStore, bump, count, eventually};
use tempfile::TempDir;

#[workflow]
async fn nap_hour(ctx: WorkflowContext, _n: u32) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(3600)).await?;
    Ok(())
}

#[workflow]
async fn nap(ctx: WorkflowContext, ms: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(ms)).await?;
    Ok(ms)
}

#[activity]
async fn tally(key: String) -> Result<u32, ActivityError> {
    bump(&key);
    Ok(1)
}

/// A step, a signal, a step.
#[workflow]
async fn step_wait_step(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    ctx.call(tally, format!("{key}/1")).await?;
    let word: String = ctx.signal("go").await?;
    ctx.call(tally, format!("{key}/2")).await?;
    Ok(word)
}

fn builder(db: &Path) -> EngineBuilder {
    Engine::builder()
        .sqlite(db)
        .durability(Durability::Normal)
        .register(nap_hour)
        .register(nap)
        .register(step_wait_step)
        .register(tally)
}

/// Leaves `runs` runs parked in the journal, each sleeping for an hour.
async fn park_sleepers(db: &Path, runs: u32) {
    let engine = builder(db)
        .max_resident_runs(10)
        .evict_after(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    for n in 0..runs {
        engine
            .start(nap_hour, format!("sleeper-{n}"), n)
            .await
            .unwrap();
    }
    let store = engine.store().clone();
    eventually("every sleeper journaled its timer", || async {
        store
            .due_wakeups(i64::MAX, runs as usize + 10)
            .await
            .unwrap()
            .len()
            == runs as usize
    })
    .await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_started_right_after_a_restart_fires_on_time_under_eviction_pressure() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("journal.db");
    park_sleepers(&db, 2_000).await;
    // Each restart: recovery replays 2,000 sleepers and evicts each at once (the resident cap is 5),
    // and the wake-up pager's first page query is slow (its page comes back 10 s after its snapshot,
    // as on a large journal). A run started at once sleeps 1 s and is evicted at once too. Its timer
    // was committed after that snapshot: before the fix the pager dropped its wake-up (its horizon was
    // still 0) and the page did not have it, so it fired a minute late; and a slow page delayed every
    // timer behind it. Now it fires on time. (The generous bound is for a loaded CI machine.)
    for attempt in 0..2 {
        let store = Arc::new(SlowStore::open(&db).await);
        store.delay_due_wakeups(Duration::from_secs(10));
        let engine = Engine::builder()
            .store(store)
            .register(nap_hour)
            .register(nap)
            .max_resident_runs(5)
            .start()
            .await
            .unwrap();
        let id = format!("prompt-{attempt}");
        let run = engine.start(nap, &id, 1_000).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(8), run.result()).await;
        assert_eq!(
            result
                .expect("the 1 s timer did not fire within 8 s of its start")
                .unwrap(),
            1_000,
            "attempt {attempt}"
        );
        engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_returns_before_recovery_and_runs_work_meanwhile_each_driven_once() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("journal.db");
    let keys: Vec<String> = (0..20).map(|i| format!("recovering-{i}")).collect();
    {
        let engine = builder(&db).start().await.unwrap();
        for key in &keys {
            engine
                .start(step_wait_step, key, key.clone())
                .await
                .unwrap();
        }
        eventually("every run took its first step", || async {
            keys.iter().all(|key| count(&format!("{key}/1")) == 1)
        })
        .await;
        engine.shutdown().await;
    }

    // One run's journal takes 15 s to load: a start that waited for recovery would take that long.
    let store = Arc::new(SlowStore::open(&db).await);
    store.delay_history_of(&keys[0], Duration::from_secs(15));
    let begun = Instant::now();
    let engine = Engine::builder()
        .store(store)
        .register(nap)
        .register(step_wait_step)
        .register(tally)
        .start()
        .await
        .unwrap();
    assert!(
        begun.elapsed() < Duration::from_secs(7),
        "start() waited {:?} for recovery",
        begun.elapsed()
    );

    // Meanwhile: a new run, and signals to runs recovered or not (the slow one included).
    let fresh = engine.start(nap, "fresh", 10).await.unwrap();
    assert_eq!(fresh.result().await.unwrap(), 10);
    for key in &keys {
        engine.signal(key, "go", format!("go {key}")).await.unwrap();
    }
    for key in &keys {
        let run = engine.handle(step_wait_step, key).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(60), run.result())
            .await
            .expect("a run was never recovered");
        assert_eq!(result.unwrap(), format!("go {key}"));
    }
    tokio::time::timeout(Duration::from_secs(60), engine.recovered())
        .await
        .expect("recovery never finished");
    for key in &keys {
        assert_eq!(count(&format!("{key}/1")), 1, "{key}/1 ran twice");
        assert_eq!(count(&format!("{key}/2")), 1, "{key}/2 ran twice");
    }
    engine.shutdown().await;
}
