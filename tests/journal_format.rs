//! A journal written by the code of event format 2 (schema 4) opens, replays and finishes on the
//! current code (format 3).
//!
//! The fixture `tests/fixtures/journal/format2_schema4.db` was written by `tests/bin/make_format2_fixture.rs`
//! running on `main` at `cfca751` (the last commit of format 2; the steps are in that file), with the
//! workflows of `tests/support/format2_journal.rs`. Its runs (see `format2_journal::RUNS`) are left
//! mid-flight: after a completed activity with published state and a signal wait, with a failed
//! attempt whose retry is pending, with side effects and an armed timer, with a child started; and
//! finished: completed, failed with a coded activity failure, cancelled. Tests copy it to a temporary
//! directory and never touch the committed file.
//!
//! Checked here: the file is what it claims to be; every event decodes; the finished runs' outcomes
//! (the `error` column) decode to the errors format 2 recorded; the unfinished runs replay (journaled
//! activities do not run again), then finish with exactly the outputs a fresh run of the same
//! workflow produces on the current code; the `meta` format version is raised to 3 on open, on SQLite
//! and PostgreSQL, and a newer one is refused (`StoreError::FormatTooNew`) and left alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::time::Duration;

use orchestrator::journal::{FORMAT_VERSION, decode_event_body};
use orchestrator::prelude::*;
use orchestrator::store::{PostgresOptions, PostgresStore, SqliteStore, StoreError};
use orchestrator_tests::format2_journal::{
    self, GO, RUNS, f2_fail, f2_parent, f2_retry, f2_timer, f2_wait_signal,
};
use orchestrator_tests::{TestDb, count, finish, stop};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/journal/format2_schema4.db"
);

fn fixture_copy() -> TestDb {
    let db = TestDb::new();
    std::fs::copy(FIXTURE, db.path()).expect("copy the fixture");
    db
}

fn format_version(db: &TestDb) -> String {
    db.conn()
        .query_row(
            "SELECT value FROM meta WHERE key = 'format_version'",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

#[test]
fn the_fixture_is_a_format_2_schema_4_journal_whose_events_all_decode() {
    let db = fixture_copy();
    assert_eq!(db.scalar("PRAGMA user_version", []), 4);
    assert_eq!(format_version(&db), "2");
    let conn = db.conn();
    let mut statement = conn
        .prepare("SELECT workflow_id, kind, payload FROM events ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, u16, Vec<u8>)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 20);
    for (id, kind, payload) in rows {
        let body = decode_event_body(&payload).unwrap_or_else(|error| panic!("{id}: {error}"));
        assert_eq!(body.kind(), kind, "{id}: {body:?}");
        assert!(kind <= 14, "format 2 has kinds 1–14");
    }
    let runs = db.scalar("SELECT count(*) FROM runs", []);
    assert_eq!(
        runs,
        RUNS.len() as i64 + 1,
        "the runs of RUNS and the child"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_2_runs_replay_and_finish_on_the_current_code() {
    let db = fixture_copy();
    let engine = format2_journal::register(db.builder())
        .start()
        .await
        .unwrap();
    assert_eq!(
        format_version(&db),
        FORMAT_VERSION.to_string(),
        "the meta row carries the current format once opened"
    );

    // Finished runs: outcomes recorded by format 2 decode.
    assert_eq!(
        finish(&engine.handle(f2_wait_signal, "f2-done").await.unwrap())
            .await
            .unwrap(),
        "15 doubled is 30, then done"
    );
    let failed = engine.status("f2-failed").await.unwrap();
    let expected_failure = WorkflowError::ActivityFailed {
        activity: "f2_decline".into(),
        step: 1,
        attempts: 1,
        error: ActivityError::failure("declined", "amount 16 declined").with_details(&16_u64),
    };
    assert_eq!(failed, RunStatus::Failed(expected_failure));
    assert_eq!(
        engine.status("f2-cancelled").await.unwrap(),
        RunStatus::Cancelled(WorkflowError::Cancelled {
            reason: "operator said stop".into()
        })
    );

    // Unfinished runs: drive them to completion.
    engine
        .signal("f2-signal", GO, "go!".to_string())
        .await
        .unwrap();
    engine
        .signal("f2-parent/child", GO, "child go!".to_string())
        .await
        .unwrap();
    let replayed = [
        (
            "f2-signal",
            finish(&engine.handle(f2_wait_signal, "f2-signal").await.unwrap()).await,
        ),
        (
            "f2-retry",
            finish(&engine.handle(f2_retry, "f2-retry").await.unwrap()).await,
        ),
        (
            "f2-timer",
            finish(&engine.handle(f2_timer, "f2-timer").await.unwrap()).await,
        ),
        (
            "f2-parent",
            finish(&engine.handle(f2_parent, "f2-parent").await.unwrap()).await,
        ),
    ];
    // Journaled activities did not run again; the pending ones ran once (the retry: attempt 2 only).
    assert_eq!(
        count("f2_double/11"),
        0,
        "f2-signal's activity is journaled"
    );
    assert_eq!(
        count("f2_double/14"),
        0,
        "the child's activity is journaled"
    );
    assert_eq!(count("f2_flaky/12"), 1, "only the pending retry ran");
    assert_eq!(
        count("f2_double/13"),
        1,
        "the timer run's activity ran after the timer"
    );

    // The same workflows, fresh on the current code, give identical outputs.
    let fresh_signal = engine
        .start(f2_wait_signal, "fresh-signal", 11)
        .await
        .unwrap();
    let fresh_retry = engine.start(f2_retry, "fresh-retry", 12).await.unwrap();
    let fresh_timer = engine.start(f2_timer, "fresh-timer", 13).await.unwrap();
    let fresh_parent = engine.start(f2_parent, "fresh-parent", 14).await.unwrap();
    let _: u64 = engine.wait_state("fresh-signal", "doubled").await.unwrap();
    engine
        .signal("fresh-signal", GO, "go!".to_string())
        .await
        .unwrap();
    let mut child_ready = false;
    for _ in 0..500 {
        if engine
            .wait_state::<u64>("fresh-parent/child", "doubled")
            .await
            .is_ok()
        {
            child_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(child_ready, "the fresh child published its state");
    engine
        .signal("fresh-parent/child", GO, "child go!".to_string())
        .await
        .unwrap();
    let fresh = [
        finish(&fresh_signal).await,
        tokio::time::timeout(Duration::from_secs(30), fresh_retry.result())
            .await
            .unwrap(),
        finish(&fresh_timer).await,
        finish(&fresh_parent).await,
    ];
    for ((id, replayed), fresh) in replayed.into_iter().zip(fresh) {
        assert_eq!(replayed.unwrap(), fresh.unwrap(), "{id}");
    }
    let fresh_failed = engine
        .start(f2_fail, "fresh-failed", 16)
        .await
        .unwrap()
        .result()
        .await;
    assert!(matches!(fresh_failed, Err(Error::WorkflowFailed { .. })));
    assert_eq!(
        engine.status("fresh-failed").await.unwrap(),
        engine.status("f2-failed").await.unwrap()
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_raises_an_older_format_version_and_refuses_a_newer_one() {
    let db = TestDb::new();
    drop(SqliteStore::open(db.path()).await.unwrap());
    assert_eq!(format_version(&db), FORMAT_VERSION.to_string());
    let set = |value: &str| {
        db.conn()
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'format_version'",
                [value],
            )
            .unwrap();
    };
    set("2");
    drop(SqliteStore::open(db.path()).await.unwrap());
    assert_eq!(format_version(&db), FORMAT_VERSION.to_string(), "raised");
    let newer = FORMAT_VERSION + 1;
    set(&newer.to_string());
    match SqliteStore::open(db.path()).await {
        Err(StoreError::FormatTooNew { found, supported }) => {
            assert_eq!((found, supported), (newer, FORMAT_VERSION));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(format_version(&db), newer.to_string(), "never lowered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_raises_an_older_format_version_and_refuses_a_newer_one() {
    const URL_VAR: &str = "ORCHESTRATOR_TEST_POSTGRES_URL";
    let url = match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: {URL_VAR} is not set (the PostgreSQL format-version test did not run)"
            );
            return;
        }
    };
    let schema = format!("orch_test_{:016x}", fastrand::u64(..));
    let options = || PostgresOptions::new(url.clone()).schema(schema.clone());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let read = || async {
        client
            .query_one(
                &format!(
                    "SELECT value FROM \"{schema}\".orchestrator_meta WHERE key = 'format_version'"
                ),
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let set = |value: String| {
        let sql = format!(
            "UPDATE \"{schema}\".orchestrator_meta SET value = $1 WHERE key = 'format_version'"
        );
        let client = &client;
        async move {
            client.execute(&sql, &[&value]).await.unwrap();
        }
    };
    drop(PostgresStore::connect_with(options()).await.unwrap());
    assert_eq!(read().await, FORMAT_VERSION.to_string());
    set("2".to_string()).await;
    drop(PostgresStore::connect_with(options()).await.unwrap());
    assert_eq!(read().await, FORMAT_VERSION.to_string(), "raised");
    let newer = FORMAT_VERSION + 1;
    set(newer.to_string()).await;
    match PostgresStore::connect_with(options()).await {
        Err(StoreError::FormatTooNew { found, supported }) => {
            assert_eq!((found, supported), (newer, FORMAT_VERSION));
        }
        other => panic!("{:?}", other.map(|_| "a store")),
    }
    assert_eq!(read().await, newer.to_string(), "never lowered");
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
