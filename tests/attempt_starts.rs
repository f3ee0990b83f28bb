//! Every activity attempt's start is journaled (`ActivityAttemptStarted`, kind 15) before it runs, so
//! an attempt cut short by a crash leaves a trace, `ActivityContext::attempt()` counts it on the
//! re-run, and it counts toward the retry budget. The process is SIGKILLed for real while the attempt
//! runs (`tests/bin/attempt_worker.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator::journal::{EventBody, decode_event_body};
use orchestrator_tests::ChildWorker;

const KIND_ATTEMPT_STARTED: i64 = 15;

fn spawn(db: &Path, id: &str, mode: &str) -> ChildWorker {
    let args = [db.display().to_string(), id.to_string(), mode.to_string()];
    ChildWorker::spawn(env!("CARGO_BIN_EXE_attempt_worker"), args)
}

fn hang_file(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}.hang", db.display()))
}

/// Starts a worker, waits until attempt `attempt` runs (and hangs), and SIGKILLs it.
fn kill_during_attempt(db: &Path, id: &str, mode: &str, attempt: u32) {
    let mut worker = spawn(db, id, mode);
    let line = worker.wait_for("ATTEMPT ", Duration::from_secs(30));
    assert_eq!(line.as_deref(), Some(format!("ATTEMPT {attempt}").as_str()));
    let status = worker.kill();
    assert!(!status.success(), "the worker was killed: {status}");
}

/// The attempt numbers of the journaled starts of `id`'s step 1.
fn journaled_starts(db: &Path, id: &str) -> Vec<u32> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn
        .prepare("SELECT payload FROM events WHERE workflow_id = ?1 AND kind = ?2 ORDER BY seq")
        .unwrap();
    statement
        .query_map(rusqlite::params![id, KIND_ATTEMPT_STARTED], |row| {
            row.get::<_, Vec<u8>>(0)
        })
        .unwrap()
        .map(
            |payload| match decode_event_body(&payload.unwrap()).unwrap() {
                EventBody::ActivityAttemptStarted { attempt, name, .. } => {
                    assert!(name.starts_with("effect_"), "{name}");
                    attempt
                }
                other => panic!("not an attempt start: {other:?}"),
            },
        )
        .collect()
}

#[test]
fn an_attempt_cut_short_by_sigkill_is_counted_on_the_re_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    std::fs::write(hang_file(&db), b"").unwrap();
    kill_during_attempt(&db, "once-1", "once", 1);
    assert_eq!(
        journaled_starts(&db, "once-1"),
        vec![1],
        "the killed attempt left its start"
    );

    std::fs::remove_file(hang_file(&db)).unwrap();
    let mut worker = spawn(&db, "once-1", "once");
    assert_eq!(
        worker
            .wait_for("ATTEMPT ", Duration::from_secs(30))
            .as_deref(),
        Some("ATTEMPT 2"),
        "the re-run is attempt 2, not attempt 1 again"
    );
    assert_eq!(
        worker
            .wait_for("RESULT ", Duration::from_secs(30))
            .as_deref(),
        Some("RESULT 2")
    );
    assert!(worker.wait_exit(Duration::from_secs(30)).success());
    assert_eq!(journaled_starts(&db, "once-1"), vec![1, 2]);
}

#[test]
fn attempts_cut_short_count_toward_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    std::fs::write(hang_file(&db), b"").unwrap();
    kill_during_attempt(&db, "limited-1", "limited", 1);
    kill_during_attempt(&db, "limited-1", "limited", 2);
    assert_eq!(journaled_starts(&db, "limited-1"), vec![1, 2]);

    // Both attempts of the budget were used (and cut short): the step fails without a third.
    std::fs::remove_file(hang_file(&db)).unwrap();
    let mut worker = spawn(&db, "limited-1", "limited");
    let outcome = worker
        .wait_for("FAILED ", Duration::from_secs(30))
        .expect("the run fails");
    assert!(
        outcome.contains("after 2 attempt(s)") && outcome.contains("cut short"),
        "{outcome}"
    );
    assert!(worker.wait_exit(Duration::from_secs(30)).success());
    assert_eq!(
        journaled_starts(&db, "limited-1"),
        vec![1, 2],
        "no third attempt ran"
    );
}
