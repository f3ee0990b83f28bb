//! Bounded memory: runs waiting on timers or signals leave memory and are replayed when woken.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use tempfile::TempDir;

/// Executions of `count_step` by input (tests use distinct inputs).
static STEPS: Mutex<Option<HashMap<u64, usize>>> = Mutex::new(None);

fn executions(input: u64) -> usize {
    STEPS
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|counts| counts.get(&input).copied())
        .unwrap_or(0)
}

#[activity]
async fn count_step(value: u64) -> Result<u64, ActivityError> {
    *STEPS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(value)
        .or_default() += 1;
    Ok(value + 1)
}

#[workflow]
async fn nap_then_step(ctx: WorkflowContext, nap_ms: u64) -> Result<u64, WorkflowError> {
    let first = ctx.call(count_step, nap_ms).await?;
    ctx.sleep(Duration::from_millis(nap_ms)).await?;
    ctx.call(count_step, first).await
}

#[workflow]
async fn wait_for_go(ctx: WorkflowContext, _input: ()) -> Result<String, WorkflowError> {
    let word: String = ctx.signal("go").await?;
    let again: String = ctx.signal("go").await?;
    Ok(format!("{word}-{again}"))
}

async fn engine(dir: &TempDir, evict_after: Duration, max_resident: usize) -> Engine {
    Engine::builder()
        .sqlite(dir.path().join("journal.db"))
        .evict_after(evict_after)
        .max_resident_runs(max_resident)
        .register(nap_then_step)
        .register(wait_for_go)
        .start()
        .await
        .unwrap()
}

async fn until_resident(engine: &Engine, at_most: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while engine.resident_runs() > at_most {
        assert!(
            Instant::now() < deadline,
            "still {} runs resident after {within:?}",
            engine.resident_runs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_leaves_memory_and_its_timer_brings_it_back() {
    let dir = TempDir::new().unwrap();
    let engine = engine(&dir, Duration::from_millis(30), 10_000).await;
    let run = engine.start(nap_then_step, "nap", 613).await.unwrap();
    until_resident(&engine, 0, Duration::from_millis(500)).await;
    assert_eq!(run.status().await.unwrap(), RunStatus::Running);
    assert_eq!(run.result().await.unwrap(), 615);
    // Replay after the wake-up did not run the first step again.
    assert_eq!(executions(613), 1);
    assert_eq!(executions(614), 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_wakes_an_evicted_run() {
    let dir = TempDir::new().unwrap();
    let engine = engine(&dir, Duration::from_millis(20), 10_000).await;
    let run = engine.start(wait_for_go, "waiter", ()).await.unwrap();
    until_resident(&engine, 0, Duration::from_millis(500)).await;
    engine
        .signal("waiter", "go", "one".to_string())
        .await
        .unwrap();
    // It wakes, consumes the signal, and leaves memory again while it waits for the second.
    until_resident(&engine, 0, Duration::from_secs(2)).await;
    engine
        .signal("waiter", "go", "two".to_string())
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "one-two");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_wakes_an_evicted_run() {
    let dir = TempDir::new().unwrap();
    let engine = engine(&dir, Duration::from_millis(20), 10_000).await;
    let run = engine.start(wait_for_go, "to-cancel", ()).await.unwrap();
    until_resident(&engine, 0, Duration::from_millis(500)).await;
    engine
        .cancel("to-cancel", "no longer needed")
        .await
        .unwrap();
    assert!(matches!(
        run.result().await,
        Err(Error::WorkflowFailed {
            error: WorkflowError::Cancelled { .. },
            ..
        })
    ));
    assert!(matches!(
        engine.status("to-cancel").await.unwrap(),
        RunStatus::Cancelled(_)
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_resident_limit_idle_runs_leave_at_once_and_all_complete() {
    let dir = TempDir::new().unwrap();
    // Idle runs would stay a minute, but only 20 may be resident.
    let engine = engine(&dir, Duration::from_secs(60), 20).await;
    let mut runs = Vec::new();
    for i in 0..200u64 {
        let nap = 400 + (i % 5) * 50;
        runs.push(
            engine
                .start(nap_then_step, format!("many-{i}"), nap)
                .await
                .unwrap(),
        );
    }
    until_resident(&engine, 20, Duration::from_secs(5)).await;
    for (i, run) in runs.iter().enumerate() {
        let nap = 400 + (i as u64 % 5) * 50;
        assert_eq!(run.result().await.unwrap(), nap + 2);
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_racing_with_eviction_are_never_lost() {
    let dir = TempDir::new().unwrap();
    // Evict almost immediately, so signals keep arriving while drivers are leaving.
    let engine = engine(&dir, Duration::from_millis(1), 10_000).await;
    let mut runs = Vec::new();
    for i in 0..40 {
        runs.push(
            engine
                .start(wait_for_go, format!("race-{i}"), ())
                .await
                .unwrap(),
        );
    }
    for round in ["a", "b"] {
        for i in 0..40 {
            engine
                .signal(&format!("race-{i}"), "go", round.to_string())
                .await
                .unwrap();
            if i % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    for run in runs {
        let result = tokio::time::timeout(Duration::from_secs(10), run.result())
            .await
            .expect("a signal was lost: the run never finished");
        assert_eq!(result.unwrap(), "a-b");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_run_is_woken_after_a_restart_by_its_timer() {
    let dir = TempDir::new().unwrap();
    let engine1 = engine(&dir, Duration::from_millis(20), 10_000).await;
    engine1.start(nap_then_step, "across", 700).await.unwrap();
    until_resident(&engine1, 0, Duration::from_millis(500)).await;
    engine1.shutdown().await;
    drop(engine1);
    let engine2 = engine(&dir, Duration::from_millis(20), 10_000).await;
    let run = engine2.handle(nap_then_step, "across").await.unwrap();
    assert_eq!(run.result().await.unwrap(), 702);
    engine2.shutdown().await;
}
