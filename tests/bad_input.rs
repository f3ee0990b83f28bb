//! Brief §8: bad input gets a clear, typed error and nothing is lost — unknown workflow types,
//! undecodable or corrupted journal rows, foreign or newer database files, payloads over the limit,
//! hostile ids and names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use orchestrator::codec::CodecError;
use orchestrator::prelude::*;
use orchestrator::store::StoreError;
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
    assert_eq!(db.events(id).len(), 1);
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
    for id in ids {
        engine
            .start(parked_candidate, id, format!("payload of {id}"))
            .await
            .unwrap();
        eventually("the first step is journaled", || async {
            db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 1
        })
        .await;
    }
    stop(engine).await;

    {
        let conn = db.conn();
        let payload: Vec<u8> = conn
            .query_row(
                "SELECT payload FROM events WHERE workflow_id = ?1",
                [ids[0]],
                |row| row.get(0),
            )
            .unwrap();
        let flipped: Vec<u8> = payload.iter().map(|byte| byte ^ 0xFF).collect();
        let changed = conn
            .execute(
                "UPDATE events SET payload = ?1 WHERE workflow_id = ?2",
                rusqlite::params![flipped, ids[0]],
            )
            .unwrap();
        assert_eq!(changed, 1);
        conn.execute(
            "UPDATE events SET payload = substr(payload, 1, 3) WHERE workflow_id = ?1",
            [ids[1]],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET kind = 4 WHERE workflow_id = ?1",
            [ids[2]],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET step = 0 WHERE workflow_id = ?1",
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
        "é".repeat(32 * 1024),
        "L".repeat(64 * 1024),
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
    assert_eq!(events, i64::try_from(strings.len() * 2).unwrap());
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
