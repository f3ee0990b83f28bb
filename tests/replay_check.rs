//! The replay checker: stored and exported histories replayed on changed code, executing nothing.
//!
//! The committed fixtures in `tests/fixtures/replay/` are exports (the CLI's `export` format) of runs
//! of `checkout` as first written (`checkout_v1` below): `checkout-completed.json` (finished) and
//! `checkout-waiting.json` (waiting in its one-hour sleep). They were written with the test engine
//! by `write_the_fixtures` (ignored; run it by hand only if the fixtures must change: they stand for
//! histories recorded by earlier code).
//!
//! Checked here:
//! - unchanged code replays every fixture;
//! - a renamed activity, a reordered step and a changed input are each reported as nondeterminism,
//!   naming the step, the recorded call and the new call;
//! - a change guarded by `ctx.patched` passes, and the report says which runs take which branch;
//! - an unknown workflow type and a tampered payload are reported, not fatal;
//! - hostile fixture directories (bad JSON, unknown format version) fail with the file named;
//! - the engine's own store, a journal file of 10,000 runs (timed) and PostgreSQL are sources too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator::Registrable;
use orchestrator::export::{ImportOptions, RunExport};
use orchestrator::prelude::*;
use orchestrator::replay::{PatchBranch, ReplayOutcome, ReplayReport, ReplaySource};
use orchestrator::store::{
    Commit, NewEvent, NewRun, RunQuery, SqliteOptions, SqliteStore, StatusChange, Store,
};
use orchestrator::testing::{HistorySource, ReplayCheckError, TestEngine, replay_check};
use orchestrator_tests::pg_schema::PgSchema;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/replay"))
}

#[activity]
async fn price(item: u32) -> Result<u32, ActivityError> {
    Ok(item * 10)
}

#[activity]
async fn price_v2(item: u32) -> Result<u32, ActivityError> {
    Ok(item * 10)
}

#[activity]
async fn reserve(item: u32) -> Result<bool, ActivityError> {
    Ok(item > 0)
}

#[activity]
async fn audit(item: u32) -> Result<(), ActivityError> {
    let _ = item;
    Ok(())
}

/// The code the fixtures were recorded with.
#[workflow(name = "checkout")]
async fn checkout_v1(ctx: WorkflowContext, item: u32) -> Result<u32, WorkflowError> {
    let cost = ctx.call(price, item).await?;
    ctx.call(reserve, item).await?;
    ctx.sleep(Duration::from_secs(3_600)).await?;
    Ok(cost)
}

/// Step 1's activity renamed.
#[workflow(name = "checkout")]
async fn checkout_renamed(ctx: WorkflowContext, item: u32) -> Result<u32, WorkflowError> {
    let cost = ctx.call(price_v2, item).await?;
    ctx.call(reserve, item).await?;
    ctx.sleep(Duration::from_secs(3_600)).await?;
    Ok(cost)
}

/// Steps 1 and 2 swapped.
#[workflow(name = "checkout")]
async fn checkout_reordered(ctx: WorkflowContext, item: u32) -> Result<u32, WorkflowError> {
    ctx.call(reserve, item).await?;
    let cost = ctx.call(price, item).await?;
    ctx.sleep(Duration::from_secs(3_600)).await?;
    Ok(cost)
}

/// Step 2's input changed.
#[workflow(name = "checkout")]
async fn checkout_new_input(ctx: WorkflowContext, item: u32) -> Result<u32, WorkflowError> {
    let cost = ctx.call(price, item).await?;
    ctx.call(reserve, item + 1).await?;
    ctx.sleep(Duration::from_secs(3_600)).await?;
    Ok(cost)
}

/// A new step after step 2, guarded by `patched`.
#[workflow(name = "checkout")]
async fn checkout_patched(ctx: WorkflowContext, item: u32) -> Result<u32, WorkflowError> {
    let cost = ctx.call(price, item).await?;
    ctx.call(reserve, item).await?;
    if ctx.patched("audit-before-wait") {
        ctx.call(audit, item).await?;
    }
    ctx.sleep(Duration::from_secs(3_600)).await?;
    Ok(cost)
}

async fn engine_with(workflow: impl Registrable) -> Engine {
    Engine::builder()
        .in_memory()
        .register(workflow)
        .register(price)
        .register(price_v2)
        .register(reserve)
        .register(audit)
        .start()
        .await
        .unwrap()
}

async fn check_fixtures(workflow: impl Registrable) -> ReplayReport {
    let engine = engine_with(workflow).await;
    let report = replay_check(&engine, HistorySource::FixtureDir(fixtures()))
        .await
        .unwrap();
    engine.shutdown().await;
    assert_eq!(report.runs.len(), 2, "{report}");
    report
}

fn nondeterminism(report: &ReplayReport, id: &str) -> (u32, String, String) {
    let run = report
        .runs
        .iter()
        .find(|run| run.workflow_id == id)
        .unwrap_or_else(|| panic!("no run `{id}` in {report}"));
    match &run.outcome {
        ReplayOutcome::NonDeterminism {
            step,
            recorded,
            new_call,
        } => (*step, recorded.clone(), new_call.clone()),
        other => panic!("`{id}` replayed as {other:?}, expected nondeterminism\n{report}"),
    }
}

#[tokio::test]
async fn unchanged_code_replays_the_fixtures() {
    let report = check_fixtures(checkout_v1).await;
    assert!(report.is_ok(), "{report}");
    let outcomes: Vec<_> = report.runs.iter().map(|run| run.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            ReplayOutcome::Ok { finished: true },
            ReplayOutcome::Ok { finished: false }
        ],
        "completed, then waiting (file name order)"
    );
    assert!(report.to_string().contains("2 ok, 0 failing"), "{report}");
}

#[tokio::test]
async fn a_renamed_activity_is_caught_at_its_step() {
    let report = check_fixtures(checkout_renamed).await;
    assert_eq!(report.nondeterministic().count(), 2, "{report}");
    let (step, recorded, new_call) = nondeterminism(&report, "checkout-completed");
    assert_eq!(step, 1);
    assert!(recorded.contains("`price`"), "{recorded}");
    assert!(new_call.contains("`price_v2`"), "{new_call}");
    let text = report.to_string();
    assert!(
        text.contains("checkout-completed (checkout): nondeterminism at step 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reordered_step_is_caught_at_its_step() {
    let report = check_fixtures(checkout_reordered).await;
    assert_eq!(report.nondeterministic().count(), 2, "{report}");
    let (step, recorded, new_call) = nondeterminism(&report, "checkout-waiting");
    assert_eq!(step, 1);
    assert!(recorded.contains("`price`"), "{recorded}");
    assert!(new_call.contains("`reserve`"), "{new_call}");
}

#[tokio::test]
async fn a_changed_input_is_caught_at_its_step() {
    let report = check_fixtures(checkout_new_input).await;
    assert_eq!(report.nondeterministic().count(), 2, "{report}");
    let (step, recorded, new_call) = nondeterminism(&report, "checkout-completed");
    assert_eq!(step, 2);
    assert!(recorded.contains("`reserve`"), "{recorded}");
    assert!(new_call.contains("`reserve`"), "{new_call}");
    assert_ne!(recorded, new_call, "the inputs' fingerprints differ");
}

#[tokio::test]
async fn a_change_guarded_by_patched_passes() {
    let report = check_fixtures(checkout_patched).await;
    assert!(report.is_ok(), "{report}");
    for run in &report.runs {
        assert_eq!(run.patches.len(), 1, "{run:?}");
        assert_eq!(run.patches[0].change_id, "audit-before-wait");
        assert_eq!(run.patches[0].step, 3);
        assert_eq!(run.patches[0].branch, PatchBranch::Old, "{run:?}");
    }
    assert_eq!(report.taking_patch("audit-before-wait").count(), 0);

    // A run recorded on the patched code replays down the new branch.
    let test = TestEngine::builder()
        .register(checkout_patched)
        .register(price)
        .register(reserve)
        .register(audit)
        .start()
        .await
        .unwrap();
    test.start(checkout_patched, "patched-1", 3)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let mut exports = orchestrator::testing::read_fixtures(&fixtures()).unwrap();
    exports.push(test.export_run("patched-1").await.unwrap());
    let report = test
        .replay_check(ReplaySource::Exports(exports))
        .await
        .unwrap();
    assert!(report.is_ok(), "{report}");
    let taking: Vec<&str> = report
        .taking_patch("audit-before-wait")
        .map(|run| run.workflow_id.as_str())
        .collect();
    assert_eq!(taking, vec!["patched-1"]);
    assert_eq!(
        report.runs[2].patches[0].branch,
        PatchBranch::Recorded,
        "{report:?}"
    );
    test.shutdown().await;
}

#[tokio::test]
async fn unknown_types_and_tampered_payloads_are_reported() {
    let engine = engine_with(checkout_v1).await;
    let mut exports = orchestrator::testing::read_fixtures(&fixtures()).unwrap();
    // An unregistered workflow type.
    let mut unknown = exports[0].clone();
    unknown.run.workflow_name = "gone".to_string();
    unknown.run.workflow_id = "gone-1".to_string();
    // A completion whose recorded output no longer decodes as the activity's output type.
    let mut tampered = exports[0].clone();
    tampered.run.workflow_id = "tampered-1".to_string();
    let first = tampered
        .events
        .iter()
        .position(|event| event.kind == 1)
        .unwrap();
    let body = orchestrator::journal::decode_event_body(&tampered.events[first].payload).unwrap();
    let orchestrator::journal::EventBody::ActivityCompleted {
        name,
        input_fingerprint,
        attempts,
        ..
    } = body
    else {
        panic!("kind 1 is an activity completion");
    };
    let bad = orchestrator::journal::EventBody::ActivityCompleted {
        name,
        input_fingerprint,
        attempts,
        result: Ok(vec![0xff; 3]),
    };
    tampered.events[first].payload = orchestrator::journal::encode_event_body(&bad).unwrap();
    exports.push(unknown);
    exports.push(tampered);
    let report = engine
        .replay_check(ReplaySource::Exports(exports))
        .await
        .unwrap();
    assert_eq!(report.failures().count(), 2, "{report}");
    assert_eq!(
        report.runs[2].outcome,
        ReplayOutcome::UnknownWorkflowType {
            name: "gone".to_string()
        }
    );
    assert!(
        matches!(&report.runs[3].outcome, ReplayOutcome::Undecodable { message } if message.contains("step 1")),
        "{report:?}"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn hostile_fixture_directories_name_the_file() {
    let engine = engine_with(checkout_v1).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("checkout-completed.json"),
        dir.path().join("a.json"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        b"{\"format\": \"orchestrator-run-export\", \"format_version\": 99}",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a fixture").unwrap();
    let error = replay_check(&engine, HistorySource::FixtureDir(dir.path().into()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ReplayCheckError::Fixture { ref path, .. } if path.ends_with("b.json")),
        "{error}"
    );
    assert!(error.to_string().contains("version 99"), "{error}");

    std::fs::write(
        dir.path().join("b.json"),
        b"{\"format\": \"orchestrator-run-export\", \"format_version\": 1, \"run\": 7}",
    )
    .unwrap();
    let error = replay_check(&engine, HistorySource::FixtureDir(dir.path().into()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("malformed"), "{error}");

    let missing = replay_check(&engine, HistorySource::FixtureDir(dir.path().join("none")))
        .await
        .unwrap_err();
    assert!(matches!(missing, ReplayCheckError::Io { .. }), "{missing}");
    engine.shutdown().await;
}

#[tokio::test]
async fn the_engines_own_store_is_a_source() {
    let engine = engine_with(checkout_v1).await;
    for export in orchestrator::testing::read_fixtures(&fixtures()).unwrap() {
        engine
            .import_run(export, ImportOptions::new())
            .await
            .unwrap();
    }
    let report = engine
        .replay_check(ReplaySource::EngineStore(RunQuery::new()))
        .await
        .unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.runs.len(), 2);
    let only_waiting = engine
        .replay_check(ReplaySource::EngineStore(
            RunQuery::new().id_prefix("checkout-wait"),
        ))
        .await
        .unwrap();
    assert_eq!(only_waiting.runs.len(), 1);
    let by_reference = engine
        .replay_check_store(engine.store().as_ref(), RunQuery::new())
        .await
        .unwrap();
    assert_eq!(by_reference.runs, report.runs);
    engine.shutdown().await;
}

/// Fills a journal file with `runs` copies of the completed fixture, straight through the store.
async fn journal_of(path: &std::path::Path, runs: usize) {
    let template = orchestrator::testing::read_fixtures(&fixtures())
        .unwrap()
        .into_iter()
        .find(|export| export.run.workflow_id == "checkout-completed")
        .unwrap();
    let events: Vec<NewEvent> = template
        .events
        .iter()
        .map(|event| {
            let body = orchestrator::journal::decode_event_body(&event.payload).unwrap();
            NewEvent {
                step: event.step,
                kind: event.kind,
                completion: body.is_completion(),
                payload: event.payload.clone(),
                wake_at_ms: None,
            }
        })
        .collect();
    let mut options = SqliteOptions::default();
    options.path = Some(path.to_path_buf());
    options.durability = orchestrator::Durability::Normal;
    let store = SqliteStore::open_with(options).await.unwrap();
    for n in 0..runs {
        let id = format!("checkout-{n:05}");
        store
            .create_run(NewRun {
                workflow_id: id.clone(),
                workflow_name: "checkout".to_string(),
                input: template.run.input.clone(),
                parent_id: None,
                deadline_ms: None,
                execution_timeout_ms: None,
                owner: None,
                events: events.clone(),
                paused: None,
            })
            .await
            .unwrap();
        let mut commit = Commit::events(&id, Vec::new());
        commit.status = Some(StatusChange::Complete {
            output: template.run.output.clone().unwrap(),
        });
        store.commit(commit).await.unwrap();
    }
    store.close().await;
}

#[tokio::test]
async fn ten_thousand_stored_runs_are_checked_in_seconds() {
    const RUNS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let filled = Instant::now();
    journal_of(&path, RUNS).await;
    eprintln!("wrote {RUNS} runs in {:?}", filled.elapsed());

    let engine = engine_with(checkout_v1).await;
    let report = replay_check(&engine, HistorySource::JournalFile(path.clone()))
        .await
        .unwrap();
    assert_eq!(report.runs.len(), RUNS);
    assert!(
        report.is_ok(),
        "{}",
        report
            .failures()
            .next()
            .map(|run| format!("{run:?}"))
            .unwrap_or_default()
    );
    eprintln!(
        "replay-checked {RUNS} runs (unchanged code) in {:?}",
        report.elapsed
    );
    engine.shutdown().await;

    let engine = engine_with(checkout_reordered).await;
    let report = replay_check(&engine, HistorySource::JournalFile(path))
        .await
        .unwrap();
    assert_eq!(report.nondeterministic().count(), RUNS);
    eprintln!(
        "replay-checked {RUNS} runs (reordered code) in {:?}",
        report.elapsed
    );
    assert!(
        report.elapsed < Duration::from_secs(60),
        "10,000 runs took {:?}",
        report.elapsed
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_postgres_journal_is_a_source() {
    let Some(schema) = PgSchema::fresh("replay_check", "replay_check against PostgreSQL") else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(schema.store(2).await);
    let source = Engine::builder()
        .store(store.clone())
        .register(checkout_v1)
        .register(price)
        .register(reserve)
        .start()
        .await
        .unwrap();
    for export in orchestrator::testing::read_fixtures(&fixtures()).unwrap() {
        source
            .import_run(export, ImportOptions::new())
            .await
            .unwrap();
    }
    source.shutdown().await;

    let engine = engine_with(checkout_renamed).await;
    let report = replay_check(&engine, HistorySource::Store(store))
        .await
        .unwrap();
    assert_eq!(report.nondeterministic().count(), 2, "{report}");
    engine.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_postgres_url_is_an_error() {
    let engine = engine_with(checkout_v1).await;
    let error = replay_check(
        &engine,
        HistorySource::Postgres("postgres://nobody@127.0.0.1:1/none?connect_timeout=2".to_string()),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ReplayCheckError::Engine(_)), "{error}");
    engine.shutdown().await;
}

/// Writes the committed fixtures (run by hand: `cargo test -p orchestrator-tests --test
/// replay_check -- --ignored write_the_fixtures`).
#[tokio::test]
#[ignore = "rewrites tests/fixtures/replay/: the fixtures stand for histories of earlier code"]
async fn write_the_fixtures() {
    let test = TestEngine::builder()
        .register(checkout_v1)
        .register(price)
        .register(reserve)
        .seed(1)
        .start()
        .await
        .unwrap();
    test.start(checkout_v1, "checkout-completed", 4)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    test.start(checkout_v1, "checkout-waiting", 7)
        .await
        .unwrap();
    test.run_until_blocked().await;
    for id in ["checkout-completed", "checkout-waiting"] {
        let export: RunExport = test.export_run(id).await.unwrap();
        std::fs::write(
            fixtures().join(format!("{id}.json")),
            export.to_json_pretty().unwrap() + "\n",
        )
        .unwrap();
    }
    test.shutdown().await;
}
