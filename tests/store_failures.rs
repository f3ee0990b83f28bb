//! A run whose journal access fails is revived from its journal by the engine, without a restart:
//! transient errors stay invisible, others reach the run's waiters as a typed error while the engine
//! keeps trying, and a write reported as failed that took effect is not journaled twice.
//!
//! (Before revival existed, a driver that hit a store error stopped, and its run resumed only at the
//! next engine start: `run.result()` after the fault waited forever.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::store::{SqliteStore, StoreError};
use orchestrator_tests::store_hooks::{HookedStore, StoreCall, StoreHook};
use orchestrator_tests::{KIND_ACTIVITY_COMPLETED, TestDb, bump, count, finish, stop};

/// When the one armed fault strikes: before the call (nothing happens) or after it took effect.
#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    Before,
    AfterItTookEffect,
}

/// Fails the first commit that carries an activity completion, once.
#[derive(Default)]
struct OneFault {
    armed: Mutex<Option<(When, StoreError)>>,
    struck: Mutex<u32>,
}

impl OneFault {
    fn arm(&self, when: When, error: StoreError) {
        *self.armed.lock().unwrap() = Some((when, error));
    }

    fn struck(&self) -> u32 {
        *self.struck.lock().unwrap()
    }

    fn strike(&self, call: &StoreCall<'_>, now: When) -> Option<StoreError> {
        let StoreCall::Commit(commit) = call else {
            return None;
        };
        if !commit
            .events
            .iter()
            .any(|event| event.kind == KIND_ACTIVITY_COMPLETED)
        {
            return None;
        }
        let mut armed = self.armed.lock().unwrap();
        match armed.take() {
            Some((when, error)) if when == now => {
                *self.struck.lock().unwrap() += 1;
                Some(error)
            }
            other => {
                *armed = other;
                None
            }
        }
    }
}

impl StoreHook for OneFault {
    fn before(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        self.strike(call, When::Before)
    }

    fn after_ok(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        self.strike(call, When::AfterItTookEffect)
    }
}

#[activity]
async fn charge(key: String) -> Result<u32, ActivityError> {
    bump(&format!("{key}/charge"));
    Ok(7)
}

#[workflow]
async fn checkout(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    let amount = ctx.call(charge, key.clone()).await?;
    ctx.sleep(Duration::from_millis(5)).await?;
    Ok(amount * 2)
}

async fn engine_with(db: &TestDb, fault: &Arc<OneFault>) -> Engine {
    let sqlite: Arc<dyn orchestrator::store::Store> =
        Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let store = Arc::new(HookedStore::new(sqlite, fault.clone()));
    Engine::builder()
        .store(store)
        .register(checkout)
        .register(charge)
        .shutdown_grace(Duration::from_secs(2))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_reported_failed_after_it_took_effect_is_not_journaled_twice() {
    let db = TestDb::new();
    let key = "sf-ambiguous";
    let fault = Arc::new(OneFault::default());
    fault.arm(
        When::AfterItTookEffect,
        StoreError::Io {
            operation: "commit",
            message: "connection lost after COMMIT was sent".to_string(),
        },
    );
    let engine = engine_with(&db, &fault).await;
    let handle = engine.start(checkout, key, key.to_string()).await.unwrap();
    // An I/O error is transient: the waiter does not see it.
    assert_eq!(finish(&handle).await.unwrap(), 14);
    assert_eq!(fault.struck(), 1);
    // The completion that did land is replayed, not journaled again, and the activity did not run
    // again.
    assert_eq!(db.count_kind(key, KIND_ACTIVITY_COMPLETED), 1);
    assert_eq!(count(&format!("{key}/charge")), 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_without_the_waiter_noticing() {
    let db = TestDb::new();
    let key = "sf-busy";
    let fault = Arc::new(OneFault::default());
    fault.arm(
        When::Before,
        StoreError::Busy {
            operation: "commit",
        },
    );
    let engine = engine_with(&db, &fault).await;
    let handle = engine.start(checkout, key, key.to_string()).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 14);
    assert_eq!(fault.struck(), 1);
    assert_eq!(db.count_kind(key, KIND_ACTIVITY_COMPLETED), 1);
    // The completion was lost with the failed commit: the activity ran again (at least once).
    assert_eq!(count(&format!("{key}/charge")), 2);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_failure_reaches_the_waiter_and_the_run_still_completes_without_a_restart() {
    let db = TestDb::new();
    let key = "sf-disk-full";
    let fault = Arc::new(OneFault::default());
    fault.arm(
        When::Before,
        StoreError::DiskFull {
            operation: "commit",
        },
    );
    let engine = engine_with(&db, &fault).await;
    let handle = engine.start(checkout, key, key.to_string()).await.unwrap();
    let first = finish(&handle).await;
    assert!(
        matches!(&first, Err(Error::RunStopped { reason, .. }) if reason.contains("disk full")),
        "{first:?}"
    );
    // The engine revives the run by itself once the store accepts writes again.
    assert_eq!(finish(&handle).await.unwrap(), 14);
    assert_eq!(db.count_kind(key, KIND_ACTIVITY_COMPLETED), 1);
    assert_eq!(count(&format!("{key}/charge")), 2);
    stop(engine).await;
}
