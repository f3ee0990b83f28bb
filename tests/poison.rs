//! Poison runs: workflow code that panics is replayed from its journal with backoff, then parked after
//! the panic policy's attempts; other runs go on meanwhile, and a restart after a fix resumes it.
//!
//! The throughput the other runs keep while poison runs are retried is measured (as a ratio within one
//! run) by the benchmark suite (`poison_throughput_ratio`), not here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use orchestrator::ParkReason;
use orchestrator::prelude::*;
use orchestrator_tests::{TestDb, bump, count, finish, stop, wait_status};

/// When each attempt of a run's body began (per key).
fn attempts() -> &'static Mutex<HashMap<String, Vec<Instant>>> {
    static ATTEMPTS: OnceLock<Mutex<HashMap<String, Vec<Instant>>>> = OnceLock::new();
    ATTEMPTS.get_or_init(Mutex::default)
}

fn note_attempt(key: &str) {
    attempts()
        .lock()
        .unwrap()
        .entry(key.to_string())
        .or_default()
        .push(Instant::now());
}

fn attempt_times(key: &str) -> Vec<Instant> {
    attempts()
        .lock()
        .unwrap()
        .get(key)
        .cloned()
        .unwrap_or_default()
}

#[activity]
async fn tally(key: String) -> Result<u32, ActivityError> {
    Ok(u32::try_from(bump(&format!("{key}/tally"))).unwrap_or(u32::MAX))
}

/// Panics after its first step, on every attempt.
#[workflow]
async fn always_panics(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    note_attempt(&key);
    let n = ctx.call(tally, key.clone()).await?;
    panic!("poison {key} after step 1 ({n})");
}

/// Wakes its own waker, then panics in the same poll (so the driver is asked to poll it again).
#[workflow]
async fn panics_after_waking(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    let _ = &ctx;
    std::future::poll_fn(|cx| {
        cx.waker().wake_by_ref();
        std::task::Poll::Ready(())
    })
    .await;
    panic!("original panic of {key}");
}

/// Healthy work running beside the poison runs.
#[workflow]
async fn healthy(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    let a = ctx.call(tally, key.clone()).await?;
    let b = ctx.call(tally, key).await?;
    Ok(a + b)
}

/// Set by a test to make `deployed_bug` panic (a bad deployment), cleared to "deploy the fix".
static BAD_DEPLOY: AtomicBool = AtomicBool::new(false);

/// Fine when it first runs; its replay panics while `BAD_DEPLOY` is set.
#[workflow]
async fn deployed_bug(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    note_attempt(&key);
    let n = ctx.call(tally, key.clone()).await?;
    if BAD_DEPLOY.load(Ordering::SeqCst) {
        panic!("the new deployment cannot handle {key}");
    }
    let go: u32 = ctx.signal("go").await?;
    Ok(n + go)
}

fn policy(attempts: u32, first_backoff: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .initial_backoff(first_backoff)
        .jitter(0.0)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_run_is_parked_after_its_attempts_with_growing_backoff() {
    let db = TestDb::new();
    let key = "poison-backoff";
    let engine = db
        .builder()
        .register(always_panics)
        .register(healthy)
        .register(tally)
        .panic_retry(policy(4, Duration::from_millis(40)))
        .start()
        .await
        .unwrap();
    let poison = engine
        .start(always_panics, "poison-1", key.to_string())
        .await
        .unwrap();
    // Healthy runs started meanwhile complete while the poison run waits between attempts.
    let mut others = Vec::new();
    for i in 0..20 {
        let other_key = format!("poison-healthy-{i}");
        others.push(
            engine
                .start(healthy, other_key.clone(), other_key)
                .await
                .unwrap(),
        );
    }
    for other in &others {
        assert_eq!(finish(other).await.unwrap(), 3);
    }
    let error = finish(&poison).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::RunParked { reason: ParkReason::Panicked { message, attempts: 4 }, .. }
                if message.contains("poison poison-backoff after step 1 (1)")
        ),
        "{error:?}"
    );
    // Four attempts, each after the policy's (doubling) backoff; the first step's result was kept, so
    // its activity ran once.
    let times = attempt_times(key);
    assert_eq!(times.len(), 4, "attempts: {times:?}");
    for (i, pair) in times.windows(2).enumerate() {
        let waited = pair[1] - pair[0];
        let backoff = Duration::from_millis(40) * 2u32.pow(i as u32);
        assert!(
            waited >= backoff,
            "attempt {} came {waited:?} after the previous one; the backoff is {backoff:?}",
            i + 2
        );
    }
    assert_eq!(count(&format!("{key}/tally")), 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_panics_parks_the_run_until_a_fixed_deployment_resumes_it() {
    let db = TestDb::new();
    let key = "poison-deploy";
    let id = "poison-deploy-1";
    let build = || {
        db.builder()
            .register(deployed_bug)
            .register(healthy)
            .register(tally)
            .panic_retry(policy(3, Duration::from_millis(10)))
    };

    // Deployment 1: the run takes its first step and waits for a signal.
    let engine = build().start().await.unwrap();
    engine
        .start(deployed_bug, id, key.to_string())
        .await
        .unwrap();
    wait_status(&engine, id, |_| count(&format!("{key}/tally")) == 1).await;
    stop(engine).await;

    // Deployment 2 has a bug: every replay of the run panics. It is parked after 3 attempts, and the
    // engine serves other runs.
    BAD_DEPLOY.store(true, Ordering::SeqCst);
    let before = attempt_times(key).len();
    let engine = build().start().await.unwrap();
    let status = wait_status(&engine, id, |status| matches!(status, RunStatus::Parked(_))).await;
    assert!(
        matches!(
            &status,
            RunStatus::Parked(ParkReason::Panicked { attempts: 3, message })
                if message.contains("cannot handle poison-deploy")
        ),
        "{status:?}"
    );
    assert_eq!(attempt_times(key).len() - before, 3);
    let other = engine
        .start(
            healthy,
            "poison-deploy-other",
            "poison-deploy-other".to_string(),
        )
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), 3);
    stop(engine).await;

    // Deployment 3 fixes the bug: the parked run is resumed at start and completes; its first step
    // is not repeated.
    BAD_DEPLOY.store(false, Ordering::SeqCst);
    let engine = build().start().await.unwrap();
    let handle = engine.handle(deployed_bug, id).await.unwrap();
    engine.signal(id, "go", 10u32).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 11);
    assert_eq!(count(&format!("{key}/tally")), 1);
    stop(engine).await;
}

/// A panicked future is never polled again: the run is parked with the panic's own message, not
/// with "`async fn` resumed after panicking" from a second poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parked_reason_is_the_original_panic() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(panics_after_waking)
        .panic_retry(policy(2, Duration::from_millis(10)))
        .start()
        .await
        .unwrap();
    let run = engine
        .start(
            panics_after_waking,
            "poison-woken",
            "poison-woken".to_string(),
        )
        .await
        .unwrap();
    let error = finish(&run).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::RunParked { reason: ParkReason::Panicked { message, attempts: 2 }, .. }
                if message == "original panic of poison-woken"
        ),
        "{error:?}"
    );
    stop(engine).await;
}
