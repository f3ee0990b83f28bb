//! Generates the format-2 fixture journal of `tests/journal_format.rs`:
//! `tests/fixtures/journal/format2_schema4.db`.
//!
//! It must be run with the code of a release that writes schema 4 / event format 2 (the `main` commit
//! `cfca751`, just before event format 3), *not* with the current code: the file stands for a journal
//! an older release left behind. How it was made:
//!
//! ```text
//! git worktree add --detach /tmp/old cfca751
//! cp tests/bin/make_format2_fixture.rs /tmp/old/tests/bin/
//! cp tests/support/format2_journal.rs /tmp/old/tests/support/
//! # in /tmp/old: `pub mod format2_journal;` in tests/support/lib.rs, and a [[bin]] entry
//! # `make_format2_fixture` in tests/Cargo.toml
//! cd /tmp/old && cargo run --release -p orchestrator-tests --bin make_format2_fixture -- \
//!     /work/wt/journal/tests/fixtures/journal/format2_schema4.db
//! ```
//!
//! It runs the workflows of `tests/support/format2_journal.rs` until each run of
//! [`format2_journal::RUNS`] is where that table says, shuts the engine down (as a process would stop),
//! and writes the journal as one self-contained SQLite file (WAL checkpointed, `journal_mode =
//! DELETE`, vacuumed). Never regenerate it with newer code: add a fixture for the new format instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use orchestrator_tests::format2_journal::{
    self, GO, f2_fail, f2_parent, f2_retry, f2_timer, f2_wait_signal,
};

fn count_kind(db: &Path, workflow_id: &str, kind: i64) -> i64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row(
        "SELECT count(*) FROM events WHERE workflow_id = ?1 AND kind = ?2",
        rusqlite::params![workflow_id, kind],
        |row| row.get(0),
    )
    .unwrap_or(0)
}

async fn until_kind(db: &Path, workflow_id: &str, kind: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_kind(db, workflow_id, kind) < 1 {
        assert!(
            Instant::now() < deadline,
            "{workflow_id}: no kind {kind} event"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() {
    let output = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/journal/format2_schema4.db"),
        PathBuf::from,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("journal.db");
    let engine = format2_journal::register(Engine::builder().sqlite(&db))
        .start()
        .await
        .expect("start the engine");

    // Finished runs: completed, failed, cancelled.
    let done = engine.start(f2_wait_signal, "f2-done", 15).await.unwrap();
    let _: u64 = engine.wait_state("f2-done", "doubled").await.unwrap();
    engine
        .signal("f2-done", GO, "done".to_string())
        .await
        .unwrap();
    println!("f2-done: {:?}", done.result().await);
    let failed = engine.start(f2_fail, "f2-failed", 16).await.unwrap();
    println!("f2-failed: {:?}", failed.result().await);
    let cancelled = engine
        .start(f2_wait_signal, "f2-cancelled", 17)
        .await
        .unwrap();
    let _: u64 = engine.wait_state("f2-cancelled", "doubled").await.unwrap();
    engine
        .cancel("f2-cancelled", "operator said stop")
        .await
        .unwrap();
    println!("f2-cancelled: {:?}", cancelled.result().await);

    // Runs left mid-flight.
    engine.start(f2_wait_signal, "f2-signal", 11).await.unwrap();
    let _: u64 = engine.wait_state("f2-signal", "doubled").await.unwrap();
    engine.start(f2_parent, "f2-parent", 14).await.unwrap();
    // The child's row appears once the parent's driver created it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine
        .wait_state::<u64>("f2-parent/child", "doubled")
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the child never published its state"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    engine.start(f2_retry, "f2-retry", 12).await.unwrap();
    engine.start(f2_timer, "f2-timer", 13).await.unwrap();
    until_kind(&db, "f2-retry", 2).await; // ActivityAttemptFailed
    until_kind(&db, "f2-timer", 3).await; // TimerStarted
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine.shutdown().await;
    // Handles hold the engine (and so the store): drop them all.
    drop((done, failed, cancelled));
    drop(engine);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count_kind(&db, "f2-retry", 1),
        0,
        "the retry ran before the shutdown"
    );
    assert_eq!(
        count_kind(&db, "f2-timer", 4),
        0,
        "the timer fired before the shutdown"
    );

    let conn = rusqlite::Connection::open(&db).expect("open the journal");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint the WAL");
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
        .expect("leave WAL mode");
    assert_eq!(mode, "delete");
    conn.execute_batch("VACUUM").expect("vacuum");
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    let format: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'format_version'",
            [],
            |row| {
                row.get::<_, rusqlite::types::Value>(0)
                    .map(|value| format!("{value:?}"))
            },
        )
        .expect("format version");
    let mut statement = conn
        .prepare("SELECT workflow_id, step, kind FROM events ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, i64, i64)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(statement);
    drop(conn);
    for (id, step, kind) in &rows {
        println!("event {id} step {step} kind {kind}");
    }
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).expect("create the fixtures directory");
    }
    std::fs::copy(&db, &output).expect("copy the fixture");
    println!(
        "wrote {} (schema version {user_version}, format version {format}, {} events)",
        output.display(),
        rows.len()
    );
}
