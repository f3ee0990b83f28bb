//! One process per SQLite journal: a second process gets a typed error, never a shared journal; one
//! engine per journal in a process; and shutdown frees the journal at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::store::{SqliteStore, Store, StoreError};
use orchestrator::{Engine, Error};
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_refused_until_the_owner_dies() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("journal.db");
    let log = dir.path().join("runs.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_worker"))
        .arg(&db)
        .arg(&log)
        .arg("owned-elsewhere")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("READY") {
        line.clear();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "the worker exited early"
        );
    }

    match SqliteStore::open(&db).await {
        Err(StoreError::AlreadyOpen { owner, .. }) => {
            assert_eq!(owner, format!("pid {}", child.id()));
        }
        other => panic!("expected AlreadyOpen, got {other:?}"),
    }
    let refused = Engine::builder().sqlite(&db).start().await.unwrap_err();
    assert!(
        matches!(refused, Error::Store(StoreError::AlreadyOpen { .. })),
        "{refused}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    // The lock died with its process.
    let store = SqliteStore::open(&db).await.unwrap();
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_of_one_process_share_the_journal() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("journal.db");
    let first = SqliteStore::open(&db).await.unwrap();
    let second = SqliteStore::open(&db).await.unwrap();
    drop(first);
    drop(second);
    SqliteStore::open(&db).await.unwrap();
}

/// How often each step key's activity ran, in this process.
fn executions(key: &str) -> usize {
    orchestrator_tests::count(key)
}

#[activity]
async fn tally(key: String) -> Result<u32, ActivityError> {
    orchestrator_tests::bump(&key);
    Ok(1)
}

/// Two activity steps around a timer: long enough for a second engine to resume it in between.
#[workflow]
async fn tally_twice(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    let first = ctx.call(tally, format!("{key}/1")).await?;
    ctx.sleep(Duration::from_millis(1_500)).await?;
    let second = ctx.call(tally, format!("{key}/2")).await?;
    Ok(first + second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_journal_in_one_process_is_refused_and_nothing_runs_twice() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("journal.db");
    let builder = || {
        Engine::builder()
            .sqlite(&db)
            .register(tally_twice)
            .register(tally)
    };
    let first = builder().start().await.unwrap();
    let keys: Vec<String> = (0..5).map(|i| format!("second-engine-{i}")).collect();
    let mut runs = Vec::new();
    for key in &keys {
        runs.push(first.start(tally_twice, key, key.clone()).await.unwrap());
    }
    orchestrator_tests::eventually("every run took its first step", || async {
        keys.iter().all(|key| executions(&format!("{key}/1")) == 1)
    })
    .await;

    // Built on the path, or on a store of the path: refused, before it resumes anything.
    let refused = builder().start().await.unwrap_err();
    assert!(
        matches!(refused, Error::Store(StoreError::EngineRunning { .. })),
        "{refused}"
    );
    let store = Arc::new(SqliteStore::open(&db).await.unwrap());
    let refused = Engine::builder()
        .store(store.clone())
        .register(tally_twice)
        .register(tally)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::Store(StoreError::EngineRunning { .. })),
        "{refused}"
    );
    // Plain and read-only stores still open beside the engine.
    assert_eq!(store.unfinished_runs().await.unwrap().len(), 5);
    let reader = SqliteStore::open_read_only(&db).await.unwrap();
    assert_eq!(reader.unfinished_runs().await.unwrap().len(), 5);

    for run in runs {
        assert_eq!(run.result().await.unwrap(), 2);
    }
    for key in &keys {
        assert_eq!(executions(&format!("{key}/1")), 1, "{key}/1 ran twice");
        assert_eq!(executions(&format!("{key}/2")), 1, "{key}/2 ran twice");
    }

    // Once the first engine has shut down (even while its value lives on), another may drive it.
    first.shutdown().await;
    let next = builder().start().await.unwrap();
    assert!(next.store().unfinished_runs().await.unwrap().is_empty());
    next.shutdown().await;
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_frees_the_journal_for_another_process_at_once() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("journal.db");
    let log = dir.path().join("runs.log");
    for round in 0..5 {
        let engine = Engine::builder()
            .sqlite(&db)
            .register(tally_twice)
            .register(tally)
            .start()
            .await
            .unwrap();
        engine
            .start(
                tally_twice,
                format!("free-{round}"),
                format!("free-{round}"),
            )
            .await
            .unwrap();
        engine.shutdown().await;
        // The engine value is still alive: shutdown alone must have released the file.
        let mut child = orchestrator_tests::ChildWorker::spawn(
            env!("CARGO_BIN_EXE_crash_worker"),
            [
                db.as_os_str(),
                log.as_os_str(),
                std::ffi::OsStr::new(&format!("child-{round}")),
            ],
        );
        assert!(
            child.wait_for("READY", Duration::from_secs(60)).is_some(),
            "round {round}: the next process could not open the journal after shutdown"
        );
        child.kill();
        // The child's lock died with it; the next round's engine opens the file again.
        drop(engine);
    }
}
