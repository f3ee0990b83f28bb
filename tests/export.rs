//! Exported histories (`orchestrator::export`): a run exported as versioned JSON, parsed back with
//! bounds and validation, and imported into another store under its id or a new one.
//!
//! Checked here:
//! - round trip: a finished run (activity, timer, signal, published state) is exported, written
//!   as JSON, parsed and imported into another engine; the copy has the same record and events
//!   (bytes and order), its result, and the same timeline;
//! - payloads are rendered as JSON where the exporting engine knows their types, opaque where not
//!   (a store-level export, without an engine);
//! - an unfinished run with a pending signal is imported paused, with its signal; resumed, it
//!   completes on the importing engine;
//! - an id that exists is refused (nothing written); failed and terminated runs keep their outcome;
//! - hostile documents: unknown version, wrong format, bad hex, oversized, lying kinds;
//! - an unfinished run whose timer is past due is created paused (its pause and the pause's audit in
//!   the row's own write, looked at the moment `create_run` returns) and executes nothing until it
//!   is resumed, on SQLite and on PostgreSQL (`ORCHESTRATOR_TEST_POSTGRES_URL`; SKIPPED without it);
//!   a terminated run is held the same way until its termination is restored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::Error;
use orchestrator::export::{EXPORT_FORMAT_VERSION, ExportError, ImportOptions, RunExport};
use orchestrator::inspect::{BlockedOn, Rendered};
use orchestrator::prelude::*;
use orchestrator::store::{PauseInfo, RunState, SqliteStore, Store, StoreError};
use orchestrator_tests::TestDb;
use orchestrator_tests::pg_schema::PgSchema;
use orchestrator_tests::store_hooks::{HookedStore, StoreCall, StoreHook};

#[activity]
async fn quote(item: u32) -> Result<u64, ActivityError> {
    Ok(u64::from(item) * 100)
}

#[activity]
async fn refuse(item: u32) -> Result<u64, ActivityError> {
    Err(ActivityError::failure("refused", format!("item {item}")))
}

#[workflow]
async fn purchase(ctx: WorkflowContext, item: u32) -> Result<String, WorkflowError> {
    let price = ctx.call(quote, item).await?;
    ctx.set_state("price", &price)?;
    ctx.sleep(Duration::from_millis(5)).await?;
    let buyer: String = ctx.signal("buyer").await?;
    Ok(format!("{buyer} pays {price}"))
}

#[workflow]
async fn nap(ctx: WorkflowContext, ms: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(ms)).await?;
    ctx.call(quote, 7).await
}

#[workflow]
async fn refused(ctx: WorkflowContext, item: u32) -> Result<u64, WorkflowError> {
    ctx.call(refuse, item).await
}

async fn engine(db: &TestDb) -> Engine {
    db.builder()
        .register(purchase)
        .register(quote)
        .register(refused)
        .register(refuse)
        .register(nap)
        .signal_type::<_, String>(purchase, "buyer")
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_finished_run_round_trips_through_json() {
    let source_db = TestDb::new();
    let source = engine(&source_db).await;
    let run = source.start(purchase, "p-1", 3).await.unwrap();
    source
        .signal("p-1", "buyer", "ann".to_string())
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "ann pays 300");

    let export = source.export_run("p-1").await.unwrap();
    assert_eq!(export.format_version, EXPORT_FORMAT_VERSION);
    assert_eq!(export.run.status, RunState::Completed);
    assert_eq!(
        export.run.input_rendered,
        Some(Rendered::Json(serde_json::json!(3)))
    );
    assert_eq!(
        export.run.output_rendered,
        Some(Rendered::Json(serde_json::json!("ann pays 300")))
    );
    let completed = export
        .events
        .iter()
        .find(|event| event.kind_name == "ActivityCompleted")
        .unwrap();
    assert_eq!(
        completed.rendered.as_ref().unwrap()["ActivityCompleted"]["result"]["Ok"],
        serde_json::json!({"json": 300}),
        "{:#?}",
        completed.rendered
    );
    let received = export
        .events
        .iter()
        .find(|event| event.kind_name == "SignalReceived")
        .unwrap();
    assert_eq!(
        received.rendered.as_ref().unwrap()["SignalReceived"]["payload"],
        serde_json::json!({"json": "ann"})
    );

    let text = export.to_json_pretty().unwrap();
    let parsed = RunExport::from_json(text.as_bytes()).unwrap();
    assert_eq!(parsed, export);
    source.shutdown().await;

    let target_db = TestDb::new();
    let target = engine(&target_db).await;
    let id = target
        .import_run(parsed.clone(), ImportOptions::new())
        .await
        .unwrap();
    assert_eq!(id, "p-1");
    let copy = target.handle(purchase, "p-1").await.unwrap();
    assert_eq!(copy.result().await.unwrap(), "ann pays 300");
    let again = target.export_run("p-1").await.unwrap();
    assert_eq!(again.run.input, parsed.run.input);
    assert_eq!(again.run.output, parsed.run.output);
    let bytes = |export: &RunExport| {
        export
            .events
            .iter()
            .map(|event| (event.step, event.kind, event.payload.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bytes(&again), bytes(&parsed), "same events, same order");
    let timeline = target.describe("p-1").await.unwrap().timeline;
    assert_eq!(timeline.steps.len(), 4, "{timeline:#?}");
    assert_eq!(
        target.get_state::<u64>("p-1", "price").await.ok().flatten(),
        None,
        "published values are not part of an export"
    );

    // The id is taken now: refused, nothing written.
    let error = target
        .import_run(parsed.clone(), ImportOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::NotApplicable {
                action: "import",
                ..
            }
        ),
        "{error}"
    );
    // Under another id it is fine.
    let id = target
        .import_run(parsed, ImportOptions::new().new_id("p-1-copy"))
        .await
        .unwrap();
    assert_eq!(
        target
            .handle(purchase, id)
            .await
            .unwrap()
            .result()
            .await
            .unwrap(),
        "ann pays 300"
    );
    target.shutdown().await;
}

#[tokio::test]
async fn a_store_level_export_needs_no_engine() {
    let db = TestDb::new();
    let engine = engine(&db).await;
    engine.start(purchase, "p-2", 1).await.unwrap();
    engine.shutdown().await;
    let store = orchestrator::store::SqliteStore::open(db.path())
        .await
        .unwrap();
    let export = orchestrator::export::export_run(&store, "p-2")
        .await
        .unwrap();
    assert_eq!(export.run.workflow_name, "purchase");
    assert!(matches!(
        export.run.input_rendered,
        Some(Rendered::Opaque { .. })
    ));
    assert!(!export.events.is_empty());
    let missing = orchestrator::export::export_run(&store, "nope")
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
    store.close().await;
}

#[tokio::test]
async fn an_unfinished_run_is_imported_paused_with_its_signals() {
    let source_db = TestDb::new();
    let source = engine(&source_db).await;
    source.start(purchase, "p-3", 2).await.unwrap();
    orchestrator_tests::eventually("p-3 waits for its signal", || async {
        source
            .describe("p-3")
            .await
            .map(|d| d.blocked_on_text.contains("signal"))
            .unwrap_or(false)
    })
    .await;
    source.shutdown().await;
    // A signal sent while no engine drives the run stays pending in the inbox.
    let store = orchestrator::store::SqliteStore::open(source_db.path())
        .await
        .unwrap();
    let export = orchestrator::export::export_run(&store, "p-3")
        .await
        .unwrap();
    store.close().await;
    let source = engine(&source_db).await;
    source.pause("p-3", "test", "hold").await.unwrap();
    source
        .signal("p-3", "buyer", "bo".to_string())
        .await
        .unwrap();
    let export_with_signal = source.export_run("p-3").await.unwrap();
    source.shutdown().await;
    assert_eq!(export.run.status, RunState::Running);
    assert_eq!(export_with_signal.pending_signals.len(), 1);
    assert_eq!(
        export_with_signal.pending_signals[0].rendered,
        Some(Rendered::Json(serde_json::json!("bo")))
    );

    let target_db = TestDb::new();
    let target = engine(&target_db).await;
    target
        .import_run(export_with_signal, ImportOptions::new())
        .await
        .unwrap();
    let status = target.status("p-3").await.unwrap();
    assert!(
        matches!(status, RunStatus::Paused(ref pause) if pause.by == "import"),
        "{status:?}"
    );
    target.resume("p-3", "test").await.unwrap();
    let copy = target.handle(purchase, "p-3").await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), copy.result())
            .await
            .expect("the imported run completes once resumed")
            .unwrap(),
        "bo pays 200"
    );
    target.shutdown().await;
}

#[tokio::test]
async fn failed_and_terminated_runs_keep_their_outcome() {
    let source_db = TestDb::new();
    let source = engine(&source_db).await;
    let failed = source.start(refused, "r-1", 9).await.unwrap();
    assert!(failed.result().await.is_err());
    source.start(purchase, "t-1", 1).await.unwrap();
    source
        .terminate("t-1", "ops", "duplicate order")
        .await
        .unwrap();
    let failed = source.export_run("r-1").await.unwrap();
    let terminated = source.export_run("t-1").await.unwrap();
    source.shutdown().await;
    assert!(
        failed
            .run
            .error_message
            .as_deref()
            .unwrap()
            .contains("item 9")
    );

    let target_db = TestDb::new();
    let target = engine(&target_db).await;
    target
        .import_run(failed, ImportOptions::new())
        .await
        .unwrap();
    target
        .import_run(terminated, ImportOptions::new())
        .await
        .unwrap();
    let error = target
        .handle(refused, "r-1")
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert_eq!(error.failure_code(), Some("refused"), "{error}");
    let status = target.status("t-1").await.unwrap();
    assert!(
        matches!(status, RunStatus::Terminated(ref t) if t.actor == "ops" && t.reason == "duplicate order"),
        "{status:?}"
    );
    // Held from its creation until its termination (its signal wait never runs): the termination
    // cleared that hold, and only terminations are on the record.
    assert_eq!(
        target.store().run("t-1").await.unwrap().unwrap().paused,
        None
    );
    let actions: Vec<String> = target
        .describe("t-1")
        .await
        .unwrap()
        .operator_actions
        .iter()
        .map(|action| action.what.to_string())
        .collect();
    assert!(
        !actions.is_empty() && actions.iter().all(|what| what.contains("terminated")),
        "{actions:?}"
    );
    target.shutdown().await;
}

#[tokio::test]
async fn hostile_documents_are_refused() {
    let db = TestDb::new();
    let engine = engine(&db).await;
    engine.start(purchase, "p-4", 1).await.unwrap();
    let export = engine.export_run("p-4").await.unwrap();
    let good: serde_json::Value = serde_json::from_str(&export.to_json().unwrap()).unwrap();

    let mut newer = good.clone();
    newer["format_version"] = serde_json::json!(2);
    let error = RunExport::from_json(newer.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(
            error,
            ExportError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{error}"
    );

    let mut bad_hex = good.clone();
    bad_hex["events"][0]["payload"] = serde_json::json!("zz");
    assert!(matches!(
        RunExport::from_json(bad_hex.to_string().as_bytes()),
        Err(ExportError::Malformed { .. })
    ));

    let mut lying = good.clone();
    lying["events"][0]["kind"] = serde_json::json!(4);
    assert!(matches!(
        RunExport::from_json(lying.to_string().as_bytes()),
        Err(ExportError::Invalid { .. })
    ));

    let mut long_signal = good.clone();
    long_signal["pending_signals"] =
        serde_json::json!([{"id": 1, "name": "x".repeat(2_000), "payload": ""}]);
    assert!(matches!(
        RunExport::from_json(long_signal.to_string().as_bytes()),
        Err(ExportError::Invalid { .. })
    ));

    assert!(matches!(
        RunExport::from_json(b"\"just a string\""),
        Err(ExportError::NotAnExport { .. })
    ));

    // A hand-built invalid export is refused by import too, before anything is written.
    let mut invalid = export.clone();
    invalid.run.workflow_id = "y".repeat(5_000);
    let error = engine
        .import_run(invalid, ImportOptions::new().new_id("p-4-copy"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Export(ExportError::Invalid { .. })),
        "{error}"
    );
    assert!(matches!(
        engine.status("p-4-copy").await,
        Err(Error::NotFound { .. })
    ));
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// An imported unfinished run is paused from its creation.

/// The event kind of an operator event (`EventBody::Operator`).
const KIND_OPERATOR: u16 = 16;

/// What the store held for the imported run the moment its `create_run` returned, before the
/// import's next write.
#[derive(Debug, Clone)]
struct AtCreation {
    paused: Option<PauseInfo>,
    /// Whether `due_wakeups` (what an engine's wake-up service reads) offered the run.
    offered: bool,
    events: usize,
}

/// Looks at the store right after run `id` is created, and counts the engine's wake-up queries.
struct CreationProbe {
    inner: Arc<dyn Store>,
    id: String,
    seen: Mutex<Option<AtCreation>>,
    wakeup_queries: AtomicUsize,
}

impl StoreHook for CreationProbe {
    fn after_ok(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        match call {
            StoreCall::CreateRun(run) if run.workflow_id == self.id => {
                let (inner, id) = (self.inner.clone(), self.id.clone());
                // The import waits while the probe reads: nothing else of it is written meanwhile.
                let seen = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async move {
                        let record = inner.run(&id).await.unwrap().expect("the run just created");
                        let due = inner
                            .due_wakeups(orchestrator_tests::now_ms() + 1, 10_000)
                            .await
                            .unwrap();
                        AtCreation {
                            paused: record.paused,
                            offered: due.iter().any(|wakeup| wakeup.workflow_id == id),
                            events: inner.history(&id).await.unwrap().len(),
                        }
                    })
                });
                *self.seen.lock().unwrap() = Some(seen);
            }
            StoreCall::DueWakeups => {
                self.wakeup_queries.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        None
    }
}

/// Where the importing engines journal: a SQLite file, or a PostgreSQL schema (two nodes in turn).
enum Target {
    Sqlite(TestDb),
    Postgres(PgSchema),
}

impl Target {
    /// An engine on the target through a probe watching run `id`.
    async fn engine(&self, node: &str, id: &str) -> (Engine, Arc<CreationProbe>) {
        let (inner, builder): (Arc<dyn Store>, _) = match self {
            Target::Sqlite(db) => (
                Arc::new(SqliteStore::open(db.path()).await.unwrap()),
                Engine::builder(),
            ),
            Target::Postgres(schema) => (
                Arc::new(schema.store(4).await),
                Engine::builder()
                    .node_id(node)
                    .lease_duration(Duration::from_millis(1000)),
            ),
        };
        let probe = Arc::new(CreationProbe {
            inner: inner.clone(),
            id: id.to_string(),
            seen: Mutex::new(None),
            wakeup_queries: AtomicUsize::new(0),
        });
        let engine = builder
            .store(Arc::new(HookedStore::new(inner, probe.clone())))
            .shutdown_grace(Duration::from_secs(2))
            .register(nap)
            .register(quote)
            .start()
            .await
            .unwrap();
        (engine, probe)
    }

    /// Waits until `successor` has looked for work to pick up: on SQLite its wake-up service read
    /// the due wake-ups (at its start, so the imported run's past-due timer among them); on
    /// PostgreSQL its cluster loop claimed `control`, an unowned run (one claim pass takes every
    /// claimable run, so the imported one too had it been claimable).
    async fn wait_for_a_scan(&self, successor: &Engine, probe: &CreationProbe, control: &str) {
        match self {
            Target::Sqlite(_) => {
                orchestrator_tests::eventually("the successor reads the due wake-ups", || async {
                    probe.wakeup_queries.load(Ordering::SeqCst) > 0
                })
                .await;
            }
            Target::Postgres(_) => {
                let leases = successor.store().leases().expect("PostgreSQL has leases");
                orchestrator_tests::eventually("the successor claims the control run", || async {
                    matches!(
                        leases.lease_holder(control).await,
                        Ok(Some(holder)) if holder.node == "successor"
                    )
                })
                .await;
            }
        }
    }
}

/// An export of a `nap` run whose timer is pending, and when that timer is due.
async fn export_of_a_sleeping_run(id: &str, ms: u64) -> (RunExport, i64) {
    let source_db = TestDb::new();
    let source = engine(&source_db).await;
    source.start(nap, id, ms).await.unwrap();
    orchestrator_tests::eventually("the nap waits for its timer", || async {
        matches!(
            source.describe(id).await.map(|d| d.blocked_on),
            Ok(BlockedOn::Timer { .. })
        )
    })
    .await;
    let BlockedOn::Timer { fire_at_ms, .. } = source.describe(id).await.unwrap().blocked_on else {
        panic!("the nap left its timer before the source stopped");
    };
    source.shutdown().await;
    let store = SqliteStore::open(source_db.path()).await.unwrap();
    let export = orchestrator::export::export_run(&store, id).await.unwrap();
    store.close().await;
    assert_eq!(export.run.status, RunState::Running);
    assert_eq!(
        export.events.iter().filter(|event| event.step == 1).count(),
        1,
        "the export holds the timer's start, not its firing (the source stopped in time): {:?}",
        export.events
    );
    (export, fire_at_ms)
}

/// Imports a run whose timer is past due; checks it was paused by the very write that created it
/// and that nothing of it executes before an operator resumes it, on this and on a fresh engine.
async fn a_past_due_import_waits_for_its_resume(target: Target) {
    let id = "nap-1";
    let (export, fire_at_ms) = export_of_a_sleeping_run(id, 1_500).await;
    let imported = export.events.len();
    let wait = fire_at_ms + 50 - orchestrator_tests::now_ms();
    if let Ok(wait) = u64::try_from(wait) {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    assert!(
        orchestrator_tests::now_ms() > fire_at_ms,
        "the timer is past due"
    );

    let (importer, probe) = target.engine("importer", id).await;
    importer
        .import_run(export, ImportOptions::new())
        .await
        .unwrap();
    let seen = probe
        .seen
        .lock()
        .unwrap()
        .clone()
        .expect("the probe saw the run's creation");
    assert_eq!(
        seen.paused.as_ref().map(|pause| pause.by.as_str()),
        Some("import"),
        "the run is paused by the write that creates it: {seen:?}"
    );
    assert!(
        !seen.offered,
        "a just-created imported run is never offered as a due wake-up: {seen:?}"
    );
    assert_eq!(
        seen.events,
        imported + 1,
        "the pause's audit event is written with the run: {seen:?}"
    );
    let status = importer.status(id).await.unwrap();
    assert!(
        matches!(status, RunStatus::Paused(ref pause) if pause.by == "import"),
        "{status:?}"
    );
    // A run the next engine picks up (with leases: handed over when the importer stops).
    importer.start(nap, "nap-control", 3_600_000).await.unwrap();
    importer.shutdown().await;

    // A fresh engine (a restart, or the next node) reads the past-due wake-ups at its start and
    // recovers unfinished runs: the paused run stays as imported.
    let (successor, probe) = target.engine("successor", id).await;
    target
        .wait_for_a_scan(&successor, &probe, "nap-control")
        .await;
    assert_eq!(
        successor.store().history(id).await.unwrap().len(),
        imported + 1,
        "nothing executes before the resume"
    );
    successor.resume(id, "test").await.unwrap();
    let run = successor.handle(nap, id).await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), run.result())
            .await
            .expect("the resumed run completes")
            .unwrap(),
        700
    );
    // The journal: the imported events, the pause, the resume, and only then the run's new steps.
    let history = successor.store().history(id).await.unwrap();
    let operator = |n: usize| history[n].step == 0 && history[n].kind == KIND_OPERATOR;
    assert!(
        operator(imported) && operator(imported + 1),
        "the pause and the resume follow the imported events: {history:?}"
    );
    assert!(
        history.len() > imported + 2 && history[imported + 2..].iter().all(|e| e.step >= 1),
        "every new step comes after the resume: {history:?}"
    );
    let actions: Vec<String> = successor
        .describe(id)
        .await
        .unwrap()
        .operator_actions
        .iter()
        .map(|action| action.what.to_string())
        .collect();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert!(actions[0].contains("paused by import"), "{actions:?}");
    assert!(actions[1].contains("resumed by test"), "{actions:?}");
    successor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_past_due_executes_nothing_until_resumed_on_sqlite() {
    a_past_due_import_waits_for_its_resume(Target::Sqlite(TestDb::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_past_due_executes_nothing_until_resumed_on_postgres() {
    let Some(schema) = PgSchema::fresh("orch_import", "the PostgreSQL import test") else {
        return;
    };
    a_past_due_import_waits_for_its_resume(Target::Postgres(schema)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_run_is_held_from_its_creation_until_its_termination() {
    let id = "nap-ended";
    let source_db = TestDb::new();
    let source = engine(&source_db).await;
    source.start(nap, id, 3_600_000).await.unwrap();
    orchestrator_tests::eventually("the nap waits for its timer", || async {
        matches!(
            source.describe(id).await.map(|d| d.blocked_on),
            Ok(BlockedOn::Timer { .. })
        )
    })
    .await;
    source.terminate(id, "ops", "not needed").await.unwrap();
    let export = source.export_run(id).await.unwrap();
    source.shutdown().await;
    assert_eq!(export.run.status, RunState::Terminated);

    let target = Target::Sqlite(TestDb::new());
    let (engine, probe) = target.engine("importer", id).await;
    engine
        .import_run(export, ImportOptions::new())
        .await
        .unwrap();
    let seen = probe.seen.lock().unwrap().clone().unwrap();
    // Held by the write that created it (with its journal, pending timer included), so no engine
    // drives it before the termination lands.
    assert!(seen.paused.is_some() && !seen.offered, "{seen:?}");
    let record = engine.store().run(id).await.unwrap().unwrap();
    assert_eq!(record.state, RunState::Terminated);
    assert_eq!(record.paused, None, "the termination clears the hold");
    engine.shutdown().await;
}
