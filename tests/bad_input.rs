//! Brief §8: bad input gets a clear, typed error and nothing is lost — unknown workflow types,
//! undecodable or corrupted journal rows (bytes, column types, sizes, run rows, inbox, published
//! values, state codes), damaged or truncated files, foreign or newer database files (also opened
//! read-only), payload types changed between versions, payloads over the limit, hostile ids, names,
//! signal names, state keys and listing filters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use orchestrator::codec::{CodecError, MAX_PAYLOAD_LIMIT};
use orchestrator::limits::{IdentifierKind, MAX_NAME_BYTES, MAX_WORKFLOW_ID_BYTES};
use orchestrator::prelude::*;
use orchestrator::store::{
    AccessProblem, IntegrityCheck, RunQuery, SqliteStore, Store, StoreError,
};
use orchestrator::{Engine, ParkReason};
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, TestDb, bump, count, eventually, finish, stop, wait_status,
};

#[activity]
async fn echo(text: String) -> Result<String, ActivityError> {
    Ok(text)
}

/// Echoes its input through an activity, then waits for `go`.
#[workflow]
async fn parked_candidate(ctx: WorkflowContext, text: String) -> Result<String, WorkflowError> {
    let echoed = ctx.call(echo, text).await?;
    let suffix: String = ctx.signal("go").await?;
    Ok(format!("{echoed}{suffix}"))
}

/// Starts a [`parked_candidate`] run for each id (with `"payload of {id}"`) and waits until each has
/// journaled its first step (it then waits for a signal).
async fn start_candidates(engine: &Engine, db: &TestDb, ids: &[&str]) {
    for &id in ids {
        engine
            .start(parked_candidate, id, format!("payload of {id}"))
            .await
            .unwrap();
        eventually("the first step is journaled", || async {
            db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
        })
        .await;
    }
}

/// Completes at once with its input.
#[workflow]
async fn plain(ctx: WorkflowContext, text: String) -> Result<String, WorkflowError> {
    ctx.call(echo, text).await
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_workflow_type_parks_the_run_until_it_is_registered_again() {
    let db = TestDb::new();
    let id = "bad-unknown-1";
    let engine = db
        .builder()
        .register(parked_candidate)
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    engine
        .start(parked_candidate, id, "kept".to_string())
        .await
        .unwrap();
    eventually("the first step is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    stop(engine).await;

    // A deploy that forgot to register the workflow.
    let engine = db
        .builder()
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
    assert_eq!(
        status,
        RunStatus::Parked(ParkReason::UnknownWorkflowType {
            name: "parked_candidate".to_string()
        })
    );
    let other = engine
        .start(plain, "bad-unknown-other", "fine".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "fine");
    // Signals to the parked run are kept for later.
    engine.signal(id, "go", "!".to_string()).await.unwrap();
    stop(engine).await;

    // The journal is intact: registering the workflow again resumes it.
    // The activity's start and its completion.
    assert_eq!(db.events(id).len(), 2);
    let engine = db
        .builder()
        .register(parked_candidate)
        .register(echo)
        .start()
        .await
        .unwrap();
    let handle = engine.handle(parked_candidate, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "kept!");
    assert_eq!(engine.status(id).await.unwrap(), RunStatus::Completed);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[activity(name = "produce")]
async fn produce_text(key: String) -> Result<String, ActivityError> {
    bump(&format!("{key}/text"));
    Ok("hello".to_string())
}

#[activity(name = "produce")]
async fn produce_number(key: String) -> Result<u64, ActivityError> {
    bump(&format!("{key}/number"));
    Ok(5)
}

#[workflow(name = "decoder")]
async fn decoder_v1(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let text = ctx.call(produce_text, key).await?;
    let _: () = ctx.signal("go").await?;
    Ok(text)
}

#[workflow(name = "decoder")]
async fn decoder_v2(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let number = ctx.call(produce_number, key).await?;
    let _: () = ctx.signal("go").await?;
    Ok(number.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_activity_output_type_parks_with_undecodable_payload() {
    let db = TestDb::new();
    let key = "bad-decode";
    let id = "bad-decode-1";
    let engine = db
        .builder()
        .register(decoder_v1)
        .register(produce_text)
        .start()
        .await
        .unwrap();
    engine.start(decoder_v1, id, key.to_string()).await.unwrap();
    eventually("the text is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    stop(engine).await;

    let engine = db
        .builder()
        .register(decoder_v2)
        .register(produce_number)
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
    match &status {
        RunStatus::Parked(ParkReason::UndecodablePayload {
            step, type_name, ..
        }) => {
            assert_eq!(*step, 1);
            assert!(type_name.contains("u64"), "{type_name}");
        }
        other => panic!("expected an undecodable payload, got {other:?}"),
    }
    let handle = engine.handle(decoder_v2, id).await.unwrap();
    assert!(matches!(
        finish(&handle).await,
        Err(Error::RunParked {
            reason: ParkReason::UndecodablePayload { .. },
            ..
        })
    ));
    assert_eq!(
        count(&format!("{key}/number")),
        0,
        "the journaled step ran again"
    );
    let other = engine
        .start(plain, "bad-decode-other", "ok".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "ok");
    stop(engine).await;
}

#[workflow(name = "typed_input")]
async fn typed_input_v1(ctx: WorkflowContext, text: String) -> Result<String, WorkflowError> {
    let _: () = ctx.signal("go").await?;
    Ok(text)
}

#[workflow(name = "typed_input")]
async fn typed_input_v2(ctx: WorkflowContext, n: (u64, u64, u64)) -> Result<String, WorkflowError> {
    let _: () = ctx.signal("go").await?;
    Ok(format!("{n:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_workflow_input_type_parks_with_undecodable_payload_at_step_0() {
    let db = TestDb::new();
    let id = "bad-input-type-1";
    let engine = db.builder().register(typed_input_v1).start().await.unwrap();
    engine
        .start(typed_input_v1, id, "x".to_string())
        .await
        .unwrap();
    stop(engine).await;
    let engine = db.builder().register(typed_input_v2).start().await.unwrap();
    let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
    assert!(
        matches!(
            &status,
            RunStatus::Parked(ParkReason::UndecodablePayload { step: 0, .. })
        ),
        "{status:?}"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_journal_rows_park_their_runs_with_corrupt_journal() {
    let db = TestDb::new();
    let ids = [
        "bad-corrupt-flip",
        "bad-corrupt-truncate",
        "bad-corrupt-kind",
        "bad-corrupt-step",
    ];
    let build = || {
        db.builder()
            .register(parked_candidate)
            .register(plain)
            .register(echo)
    };
    let engine = build().start().await.unwrap();
    start_candidates(&engine, &db, &ids).await;
    stop(engine).await;

    {
        let conn = db.conn();
        let payload: Vec<u8> = conn
            .query_row(
                "SELECT payload FROM events WHERE workflow_id = ?1 AND kind = 1",
                [ids[0]],
                |row| row.get(0),
            )
            .unwrap();
        let flipped: Vec<u8> = payload.iter().map(|byte| byte ^ 0xFF).collect();
        let changed = conn
            .execute(
                "UPDATE events SET payload = ?1 WHERE workflow_id = ?2 AND kind = 1",
                rusqlite::params![flipped, ids[0]],
            )
            .unwrap();
        assert_eq!(changed, 1);
        conn.execute(
            "UPDATE events SET payload = substr(payload, 1, 3) WHERE workflow_id = ?1 AND kind = 1",
            [ids[1]],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET kind = 4 WHERE workflow_id = ?1 AND kind = 1",
            [ids[2]],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET step = 0 WHERE workflow_id = ?1 AND kind = 1",
            [ids[3]],
        )
        .unwrap();
    }

    let engine = build().start().await.unwrap();
    for id in ids {
        let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
        assert!(
            matches!(&status, RunStatus::Parked(ParkReason::CorruptJournal { message }) if !message.is_empty()),
            "{id}: {status:?}"
        );
        let handle = engine.handle(parked_candidate, id).await.unwrap();
        assert!(matches!(
            finish(&handle).await,
            Err(Error::RunParked {
                reason: ParkReason::CorruptJournal { .. },
                ..
            })
        ));
    }
    let other = engine
        .start(plain, "bad-corrupt-other", "ok".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "ok");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_database_is_refused_untouched() {
    let db = TestDb::new();
    let garbage: Vec<u8> = "this is certainly not an SQLite database, just some text.\n"
        .repeat(80)
        .into_bytes()[..4096]
        .to_vec();
    std::fs::write(db.path(), &garbage).unwrap();
    let error = Engine::builder()
        .sqlite(db.path())
        .register(plain)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Store(StoreError::NotADatabase { path }) if path.contains("journal.db")),
        "{error:?}"
    );
    assert_eq!(
        std::fs::read(db.path()).unwrap(),
        garbage,
        "the file was modified"
    );

    // A short file too.
    std::fs::write(db.path(), b"not a db\n").unwrap();
    let error = Engine::builder()
        .sqlite(db.path())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Store(StoreError::NotADatabase { .. })),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_applications_database_is_refused_untouched() {
    let db = TestDb::new();
    {
        let conn = rusqlite::Connection::open(db.path()).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO customers (name) VALUES ('Ada');",
        )
        .unwrap();
    }
    let error = Engine::builder()
        .sqlite(db.path())
        .register(plain)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Store(StoreError::ForeignDatabase { application_id: 0, tables: 1, path })
                if path.contains("journal.db")
        ),
        "{error:?}"
    );
    let conn = db.conn();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, vec!["customers"]);
    let (app, version): (i64, i64) = (
        conn.query_row("PRAGMA application_id", [], |row| row.get(0))
            .unwrap(),
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap(),
    );
    assert_eq!((app, version), (0, 0));

    // A database with no tables but another application's id.
    let other = TestDb::new();
    {
        let conn = rusqlite::Connection::open(other.path()).unwrap();
        conn.execute_batch("PRAGMA application_id = 1234;").unwrap();
    }
    let error = Engine::builder()
        .sqlite(other.path())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Store(StoreError::ForeignDatabase {
                application_id: 1234,
                tables: 0,
                ..
            })
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_from_a_newer_schema_is_refused_and_nothing_is_lost() {
    let db = TestDb::new();
    let id = "bad-schema-1";
    let build = || db.builder().register(parked_candidate).register(echo);
    let engine = build().start().await.unwrap();
    engine
        .start(parked_candidate, id, "survivor".to_string())
        .await
        .unwrap();
    eventually("the first step is journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    stop(engine).await;
    let original: i64 = db
        .conn()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    db.conn()
        .execute_batch("PRAGMA user_version = 999;")
        .unwrap();

    let error = build().start().await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Store(StoreError::SchemaTooNew { found: 999, supported }) if *supported == original
        ),
        "{error:?}"
    );
    let version: i64 = db
        .conn()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 999, "the refused journal was modified");

    // Back to the version this build knows: the run is still there and completes.
    db.conn()
        .execute_batch(&format!("PRAGMA user_version = {original};"))
        .unwrap();
    let engine = build().start().await.unwrap();
    engine.signal(id, "go", "!".to_string()).await.unwrap();
    let handle = engine.handle(parked_candidate, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "survivor!");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_input_over_the_payload_limit_is_refused_and_creates_nothing() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .payload_limit(1024)
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    let error = engine
        .start(plain, "bad-big-input", "x".repeat(4096))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Codec(CodecError::PayloadTooLarge { size, limit: 1024, .. }) if *size > 4096
        ),
        "{error:?}"
    );
    assert!(matches!(
        engine.status("bad-big-input").await,
        Err(Error::NotFound { .. })
    ));
    // Just under the limit is fine.
    let ok = engine
        .start(plain, "bad-big-input-ok", "x".repeat(1000))
        .await
        .unwrap();
    assert_eq!(finish(&ok).await.unwrap().len(), 1000);
    stop(engine).await;
}

#[activity(retry(max_attempts = 3, backoff = "5ms..5ms"))]
async fn bloated(key: String) -> Result<String, ActivityError> {
    bump(&key);
    Ok("y".repeat(4096))
}

#[workflow]
async fn bloated_workflow(ctx: WorkflowContext, key: String) -> Result<usize, WorkflowError> {
    Ok(ctx.call(bloated, key).await?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_output_over_the_limit_fails_the_step_with_a_payload_error() {
    let db = TestDb::new();
    let key = "bad-big-output";
    let engine = db
        .builder()
        .payload_limit(1024)
        .register(bloated_workflow)
        .register(bloated)
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(bloated_workflow, "bad-big-output-1", key.to_string())
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::ActivityFailed {
                    activity,
                    attempts: 1,
                    error: ActivityError::Payload { .. },
                    ..
                },
                ..
            } if activity == "bloated"
        ),
        "{error:?}"
    );
    assert_eq!(count(key), 1, "a payload error is not retryable");
    let other = engine
        .start(plain, "bad-big-output-other", "ok".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "ok");
    stop(engine).await;
}

#[workflow]
async fn sends_too_much(ctx: WorkflowContext, size: usize) -> Result<String, WorkflowError> {
    ctx.call(counted_echo, "i".repeat(size)).await
}

#[activity]
async fn counted_echo(text: String) -> Result<String, ActivityError> {
    bump("bad-big-activity-input");
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_input_over_the_limit_fails_the_workflow_without_running_it() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .payload_limit(1024)
        .register(sends_too_much)
        .register(counted_echo)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(sends_too_much, "bad-big-activity-input-1", 4096)
        .await
        .unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::Payload { step: 1, .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(count("bad-big-activity-input"), 0);
    stop(engine).await;
}

#[activity(retry(max_attempts = 1))]
async fn verbose_failure(size: usize) -> Result<String, ActivityError> {
    Err(ActivityError::non_retryable("e".repeat(size)))
}

#[workflow]
async fn verbose_workflow(ctx: WorkflowContext, size: usize) -> Result<String, WorkflowError> {
    ctx.call(verbose_failure, size).await
}

/// An activity whose error message is larger than the payload limit must still end its step (and
/// here the workflow) with a recorded failure — not leave the run stuck, re-running the activity at
/// every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_error_over_the_limit_still_fails_the_workflow() {
    let db = TestDb::new();
    let id = "bad-big-error-1";
    let engine = db
        .builder()
        .payload_limit(1024)
        .register(verbose_workflow)
        .register(verbose_failure)
        .start()
        .await
        .unwrap();
    let handle = engine.start(verbose_workflow, id, 16 * 1024).await.unwrap();
    let result = finish(&handle).await;
    assert!(
        matches!(
            &result,
            Err(Error::WorkflowFailed {
                error: WorkflowError::ActivityFailed { attempts: 1, .. },
                ..
            })
        ),
        "{:?}",
        result
            .as_ref()
            .map_err(|error| error.to_string().chars().take(300).collect::<String>())
    );
    assert!(matches!(
        engine.status(id).await.unwrap(),
        RunStatus::Failed(_)
    ));
    stop(engine).await;
}

#[workflow]
async fn big_output(ctx: WorkflowContext, size: usize) -> Result<String, WorkflowError> {
    let _: () = ctx.signal("go").await?;
    Ok("z".repeat(size))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_and_workflow_output_over_the_limit_are_clear_errors() {
    let db = TestDb::new();
    let id = "bad-big-signal-1";
    let engine = db
        .builder()
        .payload_limit(1024)
        .register(big_output)
        .start()
        .await
        .unwrap();
    let handle = engine.start(big_output, id, 4096).await.unwrap();
    let error = engine.signal(id, "go", "s".repeat(4096)).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Codec(CodecError::PayloadTooLarge { limit: 1024, .. })
        ),
        "{error:?}"
    );
    engine.signal(id, "go", ()).await.unwrap();
    let error = finish(&handle).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::Payload { .. },
                ..
            }
        ),
        "{error:?}"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Echoes its input through an activity, then waits for a signal named by its input.
#[workflow]
async fn hostile(ctx: WorkflowContext, name: String) -> Result<(String, String), WorkflowError> {
    let echoed = ctx.call(echo, name.clone()).await?;
    let payload: String = ctx.signal(&name).await?;
    Ok((echoed, payload))
}

fn hostile_strings() -> Vec<String> {
    vec![
        "'; DROP TABLE runs; --".to_string(),
        "robert'); DELETE FROM events WHERE 1=1; --".to_string(),
        "\" OR \"\"=\"".to_string(),
        "nul\0inside".to_string(),
        "\0".to_string(),
        "%_*?[]".to_string(),
        "line\nbreak\ttab\r".to_string(),
        "工作流-🚀-ñ-\u{202e}rtl-\u{feff}".to_string(),
        // At the limits (orchestrator::limits): 1 KiB of two-byte and of one-byte characters.
        "é".repeat(MAX_WORKFLOW_ID_BYTES / 2),
        "L".repeat(MAX_WORKFLOW_ID_BYTES),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_signal_names_work_and_survive_a_restart() {
    let db = TestDb::new();
    let build = || db.builder().register(hostile).register(echo);
    let strings = hostile_strings();
    let engine = build().start().await.unwrap();
    for text in &strings {
        engine
            .start(hostile, text.clone(), text.clone())
            .await
            .unwrap();
    }
    for text in &strings {
        eventually("the echo is journaled", || async {
            db.count_kind(text, KIND_ACTIVITY_COMPLETED) == 1
        })
        .await;
    }
    stop(engine).await;

    let engine = build().start().await.unwrap();
    for (i, text) in strings.iter().enumerate() {
        assert_eq!(engine.status(text).await.unwrap(), RunStatus::Running);
        engine
            .signal(text, text, format!("payload {i}"))
            .await
            .unwrap();
    }
    for (i, text) in strings.iter().enumerate() {
        let handle = engine.handle(hostile, text.clone()).await.unwrap();
        assert_eq!(handle.workflow_id(), text);
        let (echoed, payload) = finish(&handle).await.unwrap();
        assert!(echoed == *text, "run {i} echoed another string");
        assert_eq!(payload, format!("payload {i}"));
    }
    // The tables are intact and hold exactly these runs.
    let conn = db.conn();
    let runs: i64 = conn
        .query_row("SELECT count(*) FROM runs WHERE state = 1", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(runs, i64::try_from(strings.len()).unwrap());
    let events: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    // Per run: the activity's start (kind 15), its completion, the signal's receipt.
    assert_eq!(events, i64::try_from(strings.len() * 3).unwrap());
    stop(engine).await;
}

/// Asserts `result` is the typed refusal of an identifier of `kind` and `len` bytes, with a short message.
fn assert_too_long<T: std::fmt::Debug>(result: Result<T, Error>, kind: IdentifierKind, len: usize) {
    match result {
        Err(error @ Error::InvalidIdentifier { .. }) => {
            let Error::InvalidIdentifier {
                kind: got_kind,
                len: got_len,
                ..
            } = &error
            else {
                unreachable!()
            };
            assert_eq!((*got_kind, *got_len), (kind, len));
            let message = error.to_string();
            assert!(
                message.len() < 300,
                "the message embeds the whole id: {}",
                message.len()
            );
            assert!(message.contains(&format!("{len} bytes")), "{message}");
        }
        other => panic!("expected InvalidIdentifier({kind}, {len}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_signal_names_and_state_keys_over_their_limits_are_refused_before_the_store() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(hostile)
        .register(echo)
        .start()
        .await
        .unwrap();
    let huge = "L".repeat(64 * 1024);
    let over = "é".repeat(MAX_WORKFLOW_ID_BYTES / 2 + 1);
    for id in [&huge, &over] {
        let id_kind = IdentifierKind::WorkflowId;
        assert_too_long(
            engine.start(hostile, id.clone(), String::new()).await,
            id_kind,
            id.len(),
        );
        assert_too_long(engine.handle(hostile, id.clone()).await, id_kind, id.len());
        assert_too_long(engine.signal(id, "go", 1u8).await, id_kind, id.len());
        assert_too_long(engine.cancel(id, "why").await, id_kind, id.len());
        assert_too_long(engine.get_state::<u8>(id, "k").await, id_kind, id.len());
        assert_too_long(engine.wait_state::<u8>(id, "k").await, id_kind, id.len());
        assert_too_long(engine.status(id).await, id_kind, id.len());
        assert_too_long(engine.archived_runs(id).await, id_kind, id.len());
    }
    // A run exists: names over the limit are refused all the same, and nothing reaches its inbox.
    let id = "limits-run";
    engine.start(hostile, id, "go".to_string()).await.unwrap();
    let name = "n".repeat(MAX_NAME_BYTES + 1);
    assert_too_long(
        engine.signal(id, &name, 1u8).await,
        IdentifierKind::SignalName,
        name.len(),
    );
    assert_too_long(
        engine.get_state::<u8>(id, &name).await,
        IdentifierKind::StateKey,
        name.len(),
    );
    assert_too_long(
        engine.wait_state::<u8>(id, &name).await,
        IdentifierKind::StateKey,
        name.len(),
    );
    let runs: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(runs, 1, "no run was created for a refused id");
    let signals: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM signals", [], |row| row.get(0))
        .unwrap();
    assert_eq!(signals, 0, "no signal was queued under a refused name");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_limit_above_the_decode_ceiling_is_refused_at_build_time() {
    let db = TestDb::new();
    let refused = db
        .builder()
        .payload_limit(MAX_PAYLOAD_LIMIT + 1)
        .start()
        .await;
    match refused {
        Err(Error::Config { message }) => assert!(message.contains("payload_limit"), "{message}"),
        other => panic!("expected a Config error, got {:?}", other.map(|_| ())),
    }
    let engine = db
        .builder()
        .payload_limit(MAX_PAYLOAD_LIMIT)
        .start()
        .await
        .unwrap();
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_differ_only_after_a_nul_byte_are_different_runs() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    let ids = ["nul", "nul\0a", "nul\0b", "nul\0"];
    let mut handles = Vec::new();
    for id in ids {
        handles.push(
            engine
                .start(plain, id, format!("output of {id:?}"))
                .await
                .unwrap(),
        );
    }
    for (id, handle) in ids.iter().zip(&handles) {
        assert_eq!(finish(handle).await.unwrap(), format!("output of {id:?}"));
    }
    let runs: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(runs, 4);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Hostile strings everywhere else they reach the journal: listing (filters and cursors), published
// state keys, workflow and activity names, Unicode that normalization would merge.

/// More strings: Unicode that a normalizing or case-folding store would merge, and empty ones.
fn more_hostile_strings() -> Vec<String> {
    vec![
        "\u{e9}".to_string(),   // é, precomposed
        "e\u{301}".to_string(), // é, e + combining acute: another id
        "E\u{301}".to_string(), // case differs
        "Z\u{364}\u{317}a\u{308}\u{356}l\u{36e}g\u{31b}o\u{327}".to_string(),
        "שלום-سلام-\u{200f}".to_string(),
        "👩\u{200d}👩\u{200d}👧 family".to_string(),
        "\u{fffd}\u{ffff}".to_string(),
        "".to_string(),
    ]
}

/// Publishes `(key, key)` for every key, then completes.
#[workflow]
async fn publisher(ctx: WorkflowContext, keys: Vec<String>) -> Result<usize, WorkflowError> {
    for key in &keys {
        ctx.set_state(key, &format!("value of {key:?}"))?;
    }
    Ok(keys.len())
}

/// SQL, a NUL, an emoji and right-to-left override in a workflow type's and an activity's name.
#[workflow(name = "wf'; DROP TABLE runs; --\0🚀\u{202e}x")]
async fn hostile_named(ctx: WorkflowContext, text: String) -> Result<String, WorkflowError> {
    ctx.call(hostile_named_activity, text).await
}

#[activity(name = "act\" OR 1=1; --\0é")]
async fn hostile_named_activity(text: String) -> Result<String, ActivityError> {
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_round_trip_through_list_runs_filters_and_cursors() {
    let db = TestDb::new();
    let build = || {
        db.builder()
            .register(plain)
            .register(echo)
            .register(hostile_named)
            .register(hostile_named_activity)
    };
    let mut ids: Vec<String> = hostile_strings();
    ids.extend(more_hostile_strings());
    ids.extend(["nul", "nul\0a", "nul\0b", "%", "%a", "_a"].map(String::from));
    let engine = build().start().await.unwrap();
    for id in &ids {
        let handle = engine.start(plain, id.clone(), id.clone()).await.unwrap();
        assert!(
            finish(&handle).await.unwrap() == *id,
            "{:?}",
            id.escape_debug()
        );
    }
    let named = "named-run";
    let handle = engine
        .start(hostile_named, named, "through hostile names".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&handle).await.unwrap(), "through hostile names");
    stop(engine).await;

    // After a restart, the listing returns exactly these ids, byte for byte, in byte order.
    let engine = build().start().await.unwrap();
    let mut expected = ids.clone();
    expected.sort();
    let listed: Vec<String> = engine
        .list_runs(&RunQuery::new().workflow_name("plain").limit(1000))
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|run| run.workflow_id)
        .collect();
    assert!(listed == expected, "the listing differs from the ids");

    // Page by page, the cursors (NULs, 1 KiB, empty) lose and repeat nothing.
    let mut paged = Vec::new();
    let mut query = RunQuery::new().workflow_name("plain").limit(3);
    loop {
        let page = engine.list_runs(&query).await.unwrap();
        paged.extend(page.runs.into_iter().map(|run| run.workflow_id));
        match page.next {
            Some(cursor) => query = query.after(cursor),
            None => break,
        }
        assert!(paged.len() <= ids.len(), "paging does not end");
    }
    assert!(paged == expected, "paging lost or repeated runs");

    // Every id as a prefix: exactly the ids that start with its bytes (no LIKE wildcards, NULs count).
    for prefix in &ids {
        let mut want: Vec<&String> = ids
            .iter()
            .filter(|id| id.starts_with(prefix.as_str()))
            .collect();
        want.sort();
        let got: Vec<String> = engine
            .list_runs(
                &RunQuery::new()
                    .workflow_name("plain")
                    .id_prefix(prefix.clone())
                    .limit(1000),
            )
            .await
            .unwrap()
            .runs
            .into_iter()
            .map(|run| run.workflow_id)
            .collect();
        assert!(
            got.iter().eq(want.iter().copied()),
            "prefix \"{}\": got {} runs, want {}",
            prefix.chars().take(40).collect::<String>().escape_debug(),
            got.len(),
            want.len()
        );
    }

    // The hostile workflow name is stored and filtered on exactly.
    let by_name = engine
        .list_runs(&RunQuery::new().workflow_name("wf'; DROP TABLE runs; --\0🚀\u{202e}x"))
        .await
        .unwrap();
    assert_eq!(by_name.runs.len(), 1);
    assert_eq!(by_name.runs[0].workflow_id, named);
    assert!(
        engine
            .list_runs(&RunQuery::new().workflow_name("wf'; DROP TABLE runs; --"))
            .await
            .unwrap()
            .runs
            .is_empty(),
        "a name cut at its NUL matched"
    );
    assert_eq!(engine.status(named).await.unwrap(), RunStatus::Completed);
    let activities = db.completed_activities(named);
    assert_eq!(activities, vec![(1, "act\" OR 1=1; --\0é".to_string())]);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_state_keys_are_distinct_and_round_trip() {
    let db = TestDb::new();
    let engine = db.builder().register(publisher).start().await.unwrap();
    let mut keys = hostile_strings();
    keys.extend(more_hostile_strings());
    keys.extend(["k", "k\0", "k\0x"].map(String::from));
    let id = "bad-hostile-keys";
    let handle = engine.start(publisher, id, keys.clone()).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), keys.len());
    for key in &keys {
        let value: Option<String> = engine.get_state(id, key).await.unwrap();
        assert!(
            value.as_deref() == Some(format!("value of {key:?}").as_str()),
            "key \"{}\" read back another value",
            key.chars().take(40).collect::<String>().escape_debug()
        );
    }
    let none: Option<String> = engine.get_state(id, "k\0y").await.unwrap();
    assert_eq!(none, None);
    let stored = db.scalar(
        "SELECT count(*) FROM run_values WHERE workflow_id = ?1",
        [id],
    );
    assert_eq!(stored, i64::try_from(keys.len()).unwrap());
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Damaged rows the first corruption test does not reach: column types and ranges, oversized blobs,
// the run row's input, the signal inbox, published values, an unknown state code.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_with_wrong_column_types_or_sizes_park_only_their_runs() {
    let db = TestDb::new();
    let ids = [
        "bad-col-negative-step",
        "bad-col-kind-out-of-range",
        "bad-col-payload-as-text",
        "bad-col-payload-huge",
        "bad-col-input-flipped",
    ];
    let build = || {
        db.builder()
            .payload_limit(64 * 1024)
            .register(parked_candidate)
            .register(plain)
            .register(echo)
    };
    let engine = build().start().await.unwrap();
    start_candidates(&engine, &db, &ids).await;
    stop(engine).await;
    {
        let conn = db.conn();
        conn.execute(
            "UPDATE events SET step = -1 WHERE workflow_id = ?1",
            [ids[0]],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET kind = 70000 WHERE workflow_id = ?1",
            [ids[1]],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET payload = 'not a blob' WHERE workflow_id = ?1",
            [ids[2]],
        )
        .unwrap();
        // 8 MiB: far over the payload limit; decoding must refuse it, not allocate for it.
        conn.execute(
            "UPDATE events SET payload = zeroblob(8 * 1024 * 1024) WHERE workflow_id = ?1",
            [ids[3]],
        )
        .unwrap();
        let input: Vec<u8> = conn
            .query_row(
                "SELECT input FROM runs WHERE workflow_id = ?1",
                [ids[4]],
                |row| row.get(0),
            )
            .unwrap();
        let flipped: Vec<u8> = input.iter().map(|byte| byte ^ 0xA5).collect();
        conn.execute(
            "UPDATE runs SET input = ?1 WHERE workflow_id = ?2",
            rusqlite::params![flipped, ids[4]],
        )
        .unwrap();
    }

    let engine = build().start().await.unwrap();
    for id in ids {
        let status = wait_status(&engine, id, |s| matches!(s, RunStatus::Parked(_))).await;
        assert!(
            matches!(
                &status,
                RunStatus::Parked(
                    ParkReason::CorruptJournal { .. } | ParkReason::UndecodablePayload { .. }
                )
            ),
            "{id}: {status:?}"
        );
        println!("{id}: {status:?}");
    }
    let other = engine
        .start(plain, "bad-col-other", "ok".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "ok");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_signal_payload_or_state_code_is_a_typed_error_for_that_run_only() {
    let db = TestDb::new();
    let build = || {
        db.builder()
            .register(parked_candidate)
            .register(publisher)
            .register(plain)
            .register(echo)
    };
    let engine = build().start().await.unwrap();
    let signalled = "bad-damaged-signal";
    engine
        .start(parked_candidate, signalled, "kept".to_string())
        .await
        .unwrap();
    let published = "bad-damaged-value";
    let handle = engine
        .start(publisher, published, vec!["k".to_string()])
        .await
        .unwrap();
    finish(&handle).await.unwrap();
    let unknown_state = "bad-unknown-state";
    let handle = engine
        .start(plain, unknown_state, "x".to_string())
        .await
        .unwrap();
    finish(&handle).await.unwrap();
    eventually("the first step is journaled", || async {
        db.count_kind(signalled, KIND_ACTIVITY_COMPLETED) == 1
    })
    .await;
    stop(engine).await;

    {
        let conn = db.conn();
        // A signal whose payload lost its tail, waiting in the inbox.
        conn.execute(
            "INSERT INTO signals (workflow_id, name, payload, sent_at_ms) VALUES (?1, 'go', x'0b', 0)",
            [signalled],
        )
        .unwrap();
        conn.execute(
            "UPDATE run_values SET value = x'ffffffffffffffffff' WHERE workflow_id = ?1",
            [published],
        )
        .unwrap();
        conn.execute(
            "UPDATE runs SET state = 99 WHERE workflow_id = ?1",
            [unknown_state],
        )
        .unwrap();
    }

    let engine = build().start().await.unwrap();
    let status = wait_status(&engine, signalled, |s| !matches!(s, RunStatus::Running)).await;
    println!("damaged signal: {status:?}");
    assert!(
        matches!(
            &status,
            RunStatus::Parked(
                ParkReason::CorruptJournal { .. } | ParkReason::UndecodablePayload { .. }
            ) | RunStatus::Failed(WorkflowError::Payload { .. })
        ),
        "{status:?}"
    );
    let error = engine
        .get_state::<String>(published, "k")
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Codec(_)), "{error:?}");
    let error = engine.status(unknown_state).await.unwrap_err();
    assert!(
        matches!(&error, Error::Store(StoreError::MalformedRow { message, .. }) if message.contains(unknown_state)),
        "{error:?}"
    );
    // A listing that reaches the damaged row says which run it is (rather than skipping it).
    let error = engine.list_runs(&RunQuery::new()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Store(StoreError::MalformedRow { message, .. }) if message.contains(unknown_state)),
        "{error:?}"
    );
    // The others are untouched.
    assert_eq!(
        engine.status(published).await.unwrap(),
        RunStatus::Completed
    );
    let other = engine
        .start(plain, "bad-damaged-other", "ok".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&other).await.unwrap(), "ok");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Payload types that changed between versions, beyond activity outputs and workflow inputs.

#[workflow(name = "signal_typed")]
async fn signal_typed_v1(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let text: String = ctx.signal("go").await?;
    Ok(text)
}

#[workflow(name = "signal_typed")]
async fn signal_typed_v2(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    let n: (u64, u64, u64, u64) = ctx.signal("go").await?;
    Ok(format!("{n:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_as_one_type_and_awaited_as_another_is_a_typed_error() {
    let db = TestDb::new();
    let id = "bad-signal-type-1";
    let engine = db
        .builder()
        .register(signal_typed_v1)
        .start()
        .await
        .unwrap();
    engine.start(signal_typed_v1, id, ()).await.unwrap();
    stop(engine).await;
    // Sent as the old type while the new code is being deployed (no engine is running the run).
    {
        let store = SqliteStore::open(db.path()).await.unwrap();
        let payload = orchestrator::codec::Codec::default()
            .encode(&"text".to_string())
            .unwrap();
        store.send_signal(id, "go", payload).await.unwrap();
    }

    let engine = db
        .builder()
        .register(signal_typed_v2)
        .register(publisher)
        .start()
        .await
        .unwrap();
    let status = wait_status(&engine, id, |s| !matches!(s, RunStatus::Running)).await;
    println!("signal type changed: {status:?}");
    assert!(
        matches!(
            &status,
            RunStatus::Parked(ParkReason::UndecodablePayload { .. })
                | RunStatus::Failed(WorkflowError::Payload { .. })
        ),
        "{status:?}"
    );
    // A published value read as another type.
    let handle = engine
        .start(publisher, "bad-state-type", vec!["k".to_string()])
        .await
        .unwrap();
    finish(&handle).await.unwrap();
    let error = engine
        .get_state::<(u64, u64, u64, u64)>("bad-state-type", "k")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Codec(CodecError::Decode { .. })),
        "{error:?}"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Damage below the rows: pages of the file itself, a truncated file; and the read-only opening.

/// A journal file with `runs` completed runs, checkpointed into the main file and closed.
async fn closed_journal(db: &TestDb, runs: usize) {
    let engine = db
        .builder()
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    for i in 0..runs {
        let handle = engine
            .start(plain, format!("bad-file-{i:03}"), "x".repeat(200))
            .await
            .unwrap();
        finish(&handle).await.unwrap();
    }
    stop(engine).await;
    db.conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
}

/// Starts an engine on a damaged file and reads every run: each outcome is a value or a typed error,
/// within a deadline.
async fn survey_damaged(db: &TestDb, what: &str) {
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let engine = match db.builder().register(plain).register(echo).start().await {
            Ok(engine) => engine,
            Err(error) => {
                println!("{what}: the engine refused to start: {error}");
                assert!(
                    matches!(
                        &error,
                        Error::Store(
                            StoreError::Corrupt { .. }
                                | StoreError::NotADatabase { .. }
                                | StoreError::MalformedRow { .. }
                        )
                    ),
                    "{what}: {error:?}"
                );
                return;
            }
        };
        let mut typed = 0;
        for i in 0..40 {
            match engine.status(&format!("bad-file-{i:03}")).await {
                Ok(_) => {}
                Err(Error::Store(_) | Error::NotFound { .. } | Error::Codec(_)) => typed += 1,
                Err(other) => panic!("{what}: {other:?}"),
            }
        }
        match engine.list_runs(&RunQuery::new().limit(1000)).await {
            Ok(_) => {}
            Err(Error::Store(_)) => typed += 1,
            Err(other) => panic!("{what}: {other:?}"),
        }
        println!("{what}: the engine started; {typed} reads failed with typed errors");
        stop(engine).await;
    })
    .await;
    assert!(outcome.is_ok(), "{what}: hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_pages_and_truncated_files_give_typed_errors_without_hanging() {
    // Bytes flipped across the pages after the header page (b-tree pages of the tables and indexes).
    let db = TestDb::new();
    closed_journal(&db, 40).await;
    let mut bytes = std::fs::read(db.path()).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() > 3 * page, "the journal is too small to damage");
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..64 {
        let at = rng.usize(page..bytes.len());
        bytes[at] ^= 0xFF;
    }
    std::fs::write(db.path(), &bytes).unwrap();
    survey_damaged(&db, "flipped page bytes").await;

    // The file cut in half (a copy that stopped midway).
    let db = TestDb::new();
    closed_journal(&db, 40).await;
    let bytes = std::fs::read(db.path()).unwrap();
    std::fs::write(db.path(), &bytes[..bytes.len() / 2]).unwrap();
    survey_damaged(&db, "truncated to half").await;

    // Only the header left.
    let db = TestDb::new();
    closed_journal(&db, 40).await;
    let bytes = std::fs::read(db.path()).unwrap();
    std::fs::write(db.path(), &bytes[..100]).unwrap();
    survey_damaged(&db, "header only").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_opening_refuses_bad_files_with_the_same_typed_errors() {
    let db = TestDb::new();
    std::fs::write(db.path(), "not an SQLite database\n".repeat(300)).unwrap();
    let error = SqliteStore::open_read_only(db.path()).await.unwrap_err();
    assert!(
        matches!(error, StoreError::NotADatabase { .. }),
        "{error:?}"
    );

    let db = TestDb::new();
    closed_journal(&db, 1).await;
    db.conn()
        .execute_batch("PRAGMA user_version = 999;")
        .unwrap();
    let error = SqliteStore::open_read_only(db.path()).await.unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found: 999, .. }),
        "{error:?}"
    );

    let db = TestDb::new();
    let error = SqliteStore::open_read_only(db.path()).await.unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert!(!db.path().exists());

    // A hostile id read through a read-only store.
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    let id = "ro'; DROP TABLE runs; --\0🚀";
    let handle = engine.start(plain, id, "x".to_string()).await.unwrap();
    finish(&handle).await.unwrap();
    let reader = SqliteStore::open_read_only(db.path()).await.unwrap();
    assert_eq!(reader.run(id).await.unwrap().unwrap().workflow_id, id);
    // The activity's start and its completion.
    assert_eq!(reader.history(id).await.unwrap().len(), 2);
    assert!(
        reader
            .run("ro'; DROP TABLE runs; --")
            .await
            .unwrap()
            .is_none()
    );
    let error = reader.request_cancel(id, "no").await.unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly { .. }), "{error:?}");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// A journal path that cannot be opened: typed, not retryable, naming the path.

/// Opens `path` and checks the error: `Inaccessible` with `problem`, not retryable, its message
/// holding each of `needles`.
async fn assert_inaccessible(path: &std::path::Path, problem: AccessProblem, needles: &[&str]) {
    let error = SqliteStore::open(path).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Inaccessible { problem: found, .. } if *found == problem),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let message = error.to_string();
    for needle in needles {
        assert!(message.contains(needle), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_is_a_typed_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("journal.db");
    assert_inaccessible(
        &path,
        AccessProblem::MissingDirectory,
        &["no-such-dir", "does not exist"],
    )
    .await;
    // Through the engine's builder as well.
    let built = Engine::builder().sqlite(&path).start().await;
    assert!(
        matches!(built, Err(Error::Store(StoreError::Inaccessible { .. }))),
        "{:?}",
        built.map(|_| ())
    );
    assert!(!path.parent().unwrap().exists(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_denied_path_is_a_typed_error_naming_the_path() {
    // sysfs refuses to create files even for root, which `chmod` cannot do in CI containers.
    let path = std::path::Path::new("/sys/orchestrator-journal.db");
    if !std::path::Path::new("/sys").is_dir() {
        eprintln!("SKIPPED: no /sys on this system");
        return;
    }
    assert_inaccessible(
        path,
        AccessProblem::PermissionDenied,
        &["permission denied", "/sys/orchestrator-journal.db"],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------------
// A journal damaged in its middle pages is refused at open, not on a later read.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_damaged_in_its_middle_pages_is_refused_at_open() {
    use std::io::{Seek, SeekFrom, Write};

    let db = TestDb::new();
    let engine = db
        .builder()
        .register(plain)
        .register(echo)
        .start()
        .await
        .unwrap();
    for i in 0..300 {
        let handle = engine
            .start(plain, format!("pages-{i}"), "p".repeat(1000))
            .await
            .unwrap();
        finish(&handle).await.unwrap();
    }
    stop(engine).await;
    db.conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let len = std::fs::metadata(db.path()).unwrap().len();
    assert!(
        len > 100 * 4096,
        "the journal spans many pages: {len} bytes"
    );
    // Overwrite the middle fifth of the file (whole pages, far from the header page).
    let start = (len * 2 / 5) / 4096 * 4096;
    let end = (len * 3 / 5) / 4096 * 4096;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(db.path())
        .unwrap();
    file.seek(SeekFrom::Start(start)).unwrap();
    file.write_all(&vec![0xA5; usize::try_from(end - start).unwrap()])
        .unwrap();
    file.sync_all().unwrap();
    drop(file);

    match SqliteStore::open(db.path()).await {
        Err(StoreError::Corrupt { operation, message }) => {
            assert!(operation.contains("integrity"), "{operation}: {message}");
        }
        other => panic!(
            "expected a corrupt-journal error at open, got {:?}",
            other.map(|_| ())
        ),
    }
    let started = db.builder().register(plain).register(echo).start().await;
    assert!(
        matches!(started, Err(Error::Store(StoreError::Corrupt { .. }))),
        "{:?}",
        started.map(|_| ())
    );
    // Without the check the damage goes unnoticed at open (what the check is for).
    let unchecked = db
        .builder()
        .integrity_check(IntegrityCheck::Off)
        .register(plain)
        .start()
        .await;
    if let Ok(engine) = unchecked {
        stop(engine).await;
    }
}

/// The `<name>.owner` lock files in `dir`.
fn owner_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".owner"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_files_get_no_owner_file_beside_them() {
    use orchestrator::store::{SqliteExecution, SqliteOptions};

    let dir = tempfile::TempDir::new().unwrap();
    let directory = dir.path().join("a-directory");
    std::fs::create_dir(&directory).unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, "not an SQLite database\n".repeat(200)).unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY);")
        .unwrap();

    for path in [&directory, &garbage, &foreign] {
        for execution in [SqliteExecution::Threads, SqliteExecution::Inline] {
            let mut options = SqliteOptions::default();
            options.path = Some(path.clone());
            options.execution = execution;
            let refused = SqliteStore::open_with(options).await;
            assert!(refused.is_err(), "{} was opened", path.display());
            assert_eq!(
                owner_files(dir.path()),
                Vec::<String>::new(),
                "{execution:?} open of {}",
                path.display()
            );
        }
        let refused = Engine::builder().sqlite(path).start().await;
        assert!(refused.is_err(), "{} was opened", path.display());
        assert_eq!(owner_files(dir.path()), Vec::<String>::new());
    }

    // A journal that opens keeps its lock file (it is how the next process learns who owns it).
    let journal = dir.path().join("journal.db");
    let engine = Engine::builder().sqlite(&journal).start().await.unwrap();
    assert_eq!(
        owner_files(dir.path()),
        vec!["journal.db.owner".to_string()]
    );
    engine.shutdown().await;
}
