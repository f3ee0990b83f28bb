//! One process per SQLite journal: a second process gets a typed error, never a shared journal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use orchestrator::store::{SqliteStore, StoreError};
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
