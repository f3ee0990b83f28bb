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
//! - hostile documents: unknown version, wrong format, bad hex, oversized, lying kinds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator::Error;
use orchestrator::export::{EXPORT_FORMAT_VERSION, ExportError, ImportOptions, RunExport};
use orchestrator::inspect::Rendered;
use orchestrator::prelude::*;
use orchestrator::store::RunState;
use orchestrator_tests::TestDb;

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
async fn refused(ctx: WorkflowContext, item: u32) -> Result<u64, WorkflowError> {
    ctx.call(refuse, item).await
}

async fn engine(db: &TestDb) -> Engine {
    db.builder()
        .register(purchase)
        .register(quote)
        .register(refused)
        .register(refuse)
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
