//! Generates the journal fixture of `tests/versioning.rs`: `tests/fixtures/loan_review_schema2.db`.
//!
//! It runs the *old* code of the `loan_review` workflow (below: activity `old_check`, then a wait for
//! the signal `go`) until the run waits for its signal, shuts the engine down, and writes the journal
//! as one self-contained SQLite file (WAL checkpointed, `journal_mode = DELETE`, vacuumed), so no
//! `-wal`/`-shm` file is needed.
//!
//! Regenerate with
//! `cargo run -p orchestrator-tests --bin make_versioning_fixture [-- <output path>]`
//! — but only on purpose: the fixture stands for a journal written by an *earlier* release (schema
//! version 2, journal format version 2). When the schema changes, keep the old file (that it still
//! opens is part of the test) and, if wanted, add a new fixture next to it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use orchestrator::prelude::*;

/// The workflow id of the run in the fixture.
const WORKFLOW_ID: &str = "loan-1";
/// The score `old_check` returns when the fixture is made (the test's own `old_check` returns another
/// value, so that a result carrying this one proves it came from the journal).
const OLD_SCORE: u32 = 700;

/// The old credit check.
#[activity]
async fn old_check(applicant: String, amount: u64) -> Result<u32, ActivityError> {
    let _ = (applicant, amount);
    Ok(OLD_SCORE)
}

/// The old code of `loan_review`: `old_check`, then the signal `go`.
#[workflow(name = "loan_review")]
async fn loan_review(
    ctx: WorkflowContext,
    application: (String, u64),
) -> Result<String, WorkflowError> {
    let (applicant, amount) = application;
    let score = ctx.call(old_check, (applicant.clone(), amount)).await?;
    let decision: String = ctx.signal("go").await?;
    Ok(format!(
        "{applicant} {amount}: old score {score}, {decision}"
    ))
}

fn count_events(db: &std::path::Path) -> i64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row(
        "SELECT count(*) FROM events WHERE workflow_id = ?1",
        [WORKFLOW_ID],
        |row| row.get(0),
    )
    .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let output = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/loan_review_schema2.db"),
        PathBuf::from,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("journal.db");

    let engine = Engine::builder()
        .sqlite(&db)
        .register(loan_review)
        .register(old_check)
        .start()
        .await
        .expect("start the engine");
    engine
        .start(loan_review, WORKFLOW_ID, ("Ada".to_string(), 25_000))
        .await
        .expect("start the run");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_events(&db) < 1 {
        assert!(Instant::now() < deadline, "old_check was never journaled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The run now waits for `go` (a wait without timeout journals nothing): stop here.
    tokio::time::sleep(Duration::from_millis(50)).await;
    engine.shutdown().await;
    drop(engine);
    // The store's connection closes on its own thread once the engine is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;

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
    let (user_version, events): (i64, i64) = (
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("user_version"),
        conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .expect("count events"),
    );
    drop(conn);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = db.clone().into_os_string();
        side.push(suffix);
        assert!(
            !PathBuf::from(side).exists(),
            "{suffix} file left next to the journal"
        );
    }
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).expect("create the fixtures directory");
    }
    std::fs::copy(&db, &output).expect("copy the fixture");
    let size = std::fs::metadata(&output).expect("fixture written").len();
    println!(
        "wrote {} ({size} bytes, schema version {user_version}, {events} event(s))",
        output.display()
    );
}
