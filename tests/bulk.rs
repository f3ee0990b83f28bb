//! Bulk operator actions (issue 12 §2): `Engine::bulk` pauses, then resumes, 10,000 runs on a real
//! SQLite file (and 500 on PostgreSQL when `ORCHESTRATOR_TEST_POSTGRES_URL` is set), with a dry run
//! first; every run is paused (none completes although its signal arrived), then every run completes.
//! A run that no longer fits the action (finished) is reported as skipped, not fatal. The time each
//! bulk action took is printed:
//! `bulk store=sqlite runs=10000 pause_ms=… resume_ms=… complete_ms=…`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use orchestrator::store::{PostgresOptions, PostgresStore, RunQuery, RunState};
use orchestrator::{BulkAction, BulkOptions};
use orchestrator_tests::{TestDb, stop};

/// Waits for the signal `go` and returns its payload.
#[workflow]
async fn waits_for_go(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("go").await
}

/// Returns at once.
#[workflow]
async fn done_at_once(_ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    Ok(0)
}

/// How many runs with ids starting with `prefix` are in `state` (paged through `list_runs`).
async fn count_runs(engine: &Engine, query: RunQuery) -> usize {
    let mut query = query.limit(1_000);
    let mut total = 0;
    loop {
        let page = engine.list_runs(&query).await.unwrap();
        total += page.runs.len();
        match page.next {
            Some(next) => query = query.after(next),
            None => return total,
        }
    }
}

/// The scenario, on any store: `runs` runs named `{prefix}{n}` plus one finished run.
async fn pause_then_resume_in_bulk(engine: &Engine, store: &str, prefix: &str, runs: usize) {
    // One finished run matches the query too: it is skipped, not fatal.
    let finished = format!("{prefix}done");
    engine
        .start(done_at_once, finished.as_str(), ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let ids: Vec<String> = (0..runs).map(|n| format!("{prefix}{n:05}")).collect();
    let began = Instant::now();
    for chunk in ids.chunks(500) {
        let starts = chunk
            .iter()
            .map(|id| engine.start(waits_for_go, id.as_str(), ()));
        orchestrator::try_join_all(starts).await.unwrap();
    }
    let start_ms = began.elapsed().as_millis();
    let query = RunQuery::new().id_prefix(prefix);

    // Dry run: counts and lists, changes nothing.
    let dry = engine
        .bulk(
            &query,
            BulkAction::Pause {
                reason: "dry".into(),
            },
            BulkOptions::new("ops").dry_run(true),
        )
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.applied), (runs as u64 + 1, 0));
    assert_eq!(dry.first_ids.len(), 20);
    assert_eq!(dry.first_ids[0], format!("{prefix}00000"));
    assert_eq!(count_runs(engine, query.clone().paused(true)).await, 0);

    // Pause them all.
    let pages = Arc::new(AtomicU64::new(0));
    let seen = pages.clone();
    let pause = engine
        .bulk(
            &query,
            BulkAction::Pause {
                reason: "maintenance".into(),
            },
            BulkOptions::new("ops").progress(move |_| {
                seen.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .await
        .unwrap();
    assert_eq!(pause.matched, runs as u64 + 1);
    assert_eq!(
        (pause.applied, pause.skipped, pause.failed),
        (runs as u64, 1, 0),
        "{pause:?}"
    );
    assert_eq!(pause.problems.len(), 1);
    assert_eq!(pause.problems[0].workflow_id, finished);
    assert!(matches!(pause.problems[0].error, Error::RunFinished { .. }));
    assert!(pages.load(Ordering::Relaxed) >= 1, "progress was reported");
    assert_eq!(count_runs(engine, query.clone().paused(true)).await, runs);

    // Signals are accepted while paused, but nothing completes.
    for chunk in ids.chunks(500) {
        let signals = chunk.iter().map(|id| engine.signal(id, "go", 1_u32));
        futures::future::try_join_all(signals).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let completed = RunQuery::new().id_prefix(prefix).state(RunState::Completed);
    assert_eq!(
        count_runs(engine, completed.clone()).await,
        1,
        "a paused run completed"
    );

    // Resume them all (the finished run is not paused: not matched).
    let resume = engine
        .bulk(
            &query.clone().paused(true),
            BulkAction::Resume,
            BulkOptions::new("ops"),
        )
        .await
        .unwrap();
    assert_eq!(
        (resume.matched, resume.applied, resume.failed),
        (runs as u64, runs as u64, 0)
    );
    let resumed = Instant::now();
    let deadline = resumed + Duration::from_secs(600);
    loop {
        let done = count_runs(engine, completed.clone()).await;
        if done == runs + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {runs} runs completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let complete_ms = resumed.elapsed().as_millis();
    let line = format!(
        "bulk store={store} runs={runs} start_ms={start_ms} pause_ms={} resume_ms={} complete_ms={complete_ms}",
        pause.elapsed.as_millis(),
        resume.elapsed.as_millis(),
    );
    let _ = writeln!(std::io::stderr(), "{line}");
    assert_eq!(count_runs(engine, query.paused(true)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_runs_are_paused_then_resumed_in_bulk_on_sqlite() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(waits_for_go)
        .register(done_at_once)
        .start()
        .await
        .unwrap();
    pause_then_resume_in_bulk(&engine, "sqlite", "bulk-", 10_000).await;
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_paused_then_resumed_in_bulk_on_postgres() {
    let Ok(url) = std::env::var("ORCHESTRATOR_TEST_POSTGRES_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: ORCHESTRATOR_TEST_POSTGRES_URL is not set (PostgreSQL bulk test did not run)"
        );
        return;
    };
    let schema = format!("orch_bulk_{:016x}", fastrand::u64(..));
    let store =
        PostgresStore::connect_with(PostgresOptions::new(url.clone()).schema(schema.clone()))
            .await
            .unwrap();
    let engine = Engine::builder()
        .store(Arc::new(store))
        .node_id("bulk-node")
        .register(waits_for_go)
        .register(done_at_once)
        .start()
        .await
        .unwrap();
    pause_then_resume_in_bulk(&engine, "postgres", "pgbulk-", 500).await;
    stop(engine).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
