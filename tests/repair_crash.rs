//! Retry and fork survive SIGKILL at any point: each is one transaction.
//!
//! A `repair_worker` process fails 8 runs at step 2 (`prepare`); another retries and forks them one
//! after the other (`repair`) and is SIGKILLed after a random delay, several times over fresh
//! journals. After each kill, the journal must show every run either untouched or completely
//! repaired — never a failing step dropped without the run being running again and audited, never a
//! fork without its copied prefix and both annotations — and a third process (`fixed`) must drive
//! every run and fork to completion. Across all processes step 1 runs once per source run and never
//! in a fork (it is copied).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use orchestrator::codec::Codec;
use orchestrator::journal::{EventBody, OperatorAction};
use orchestrator_tests::ChildWorker;

const RUNS: usize = 8;
const ROUNDS: usize = 6;

fn worker(db: &Path, log: &Path, mode: &str) -> ChildWorker {
    let runs = RUNS.to_string();
    let args: [&std::ffi::OsStr; 4] = [
        db.as_os_str(),
        log.as_os_str(),
        mode.as_ref(),
        runs.as_ref(),
    ];
    ChildWorker::spawn(env!("CARGO_BIN_EXE_repair_worker"), args)
}

/// A run's state and decoded events (step, body), or `None` if it does not exist.
fn read_run(conn: &rusqlite::Connection, id: &str) -> Option<(i64, Vec<(u32, EventBody)>)> {
    let state: i64 = conn
        .query_row(
            "SELECT state FROM runs WHERE workflow_id = ?1",
            [id],
            |row| row.get(0),
        )
        .ok()?;
    let mut statement = conn
        .prepare("SELECT step, payload FROM events WHERE workflow_id = ?1 ORDER BY seq")
        .unwrap();
    let events = statement
        .query_map([id], |row| {
            Ok((row.get::<_, u32>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .unwrap()
        .map(|row| {
            let (step, payload) = row.unwrap();
            (
                step,
                Codec::default().decode::<EventBody>(&payload).unwrap(),
            )
        })
        .collect();
    Some((state, events))
}

fn operator_actions(events: &[(u32, EventBody)]) -> Vec<OperatorAction> {
    events
        .iter()
        .filter_map(|(_, body)| match body {
            EventBody::Operator { action, .. } => Some(action.clone()),
            _ => None,
        })
        .collect()
}

fn completion_at(events: &[(u32, EventBody)], step: u32) -> bool {
    events
        .iter()
        .any(|(at, body)| *at == step && body.is_completion())
}

/// The journal after a kill: every run untouched or completely repaired.
fn check_consistent(db: &Path) -> (usize, usize) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let (mut retried, mut forked) = (0, 0);
    for i in 0..RUNS {
        let (state, events) = read_run(&conn, &format!("run-{i}")).expect("the source exists");
        let actions = operator_actions(&events);
        let retries = actions
            .iter()
            .filter(|action| matches!(action, OperatorAction::Retried { step: 2 }))
            .count();
        let superseded = actions
            .iter()
            .filter(|action| matches!(action, OperatorAction::RetrySuperseded { .. }))
            .count();
        assert_eq!(retries, superseded, "run-{i}: {actions:?}");
        assert!(retries <= 1, "run-{i} was retried once: {actions:?}");
        assert!(completion_at(&events, 1), "run-{i} keeps step 1");
        match state {
            // Failed: its failing step is in the journal (the original, or the retried one's).
            2 => assert!(
                completion_at(&events, 2),
                "run-{i} failed without its step 2"
            ),
            // Running again: only through an audited retry.
            0 => assert_eq!(
                retries, 1,
                "run-{i} is running without a retry: {actions:?}"
            ),
            other => panic!("run-{i} is in state {other}"),
        }
        retried += retries;
        let forked_to = actions
            .iter()
            .filter(|action| matches!(action, OperatorAction::ForkedTo { .. }))
            .count();
        match read_run(&conn, &format!("fork-{i}")) {
            None => assert_eq!(forked_to, 0, "run-{i} names a fork that does not exist"),
            Some((_, fork_events)) => {
                forked += 1;
                assert_eq!(forked_to, 1, "run-{i}: {actions:?}");
                assert_eq!(
                    operator_actions(&fork_events),
                    [OperatorAction::ForkedFrom {
                        source_id: format!("run-{i}"),
                        from_step: 2
                    }]
                );
                assert!(
                    completion_at(&fork_events, 1),
                    "fork-{i} has its copied step 1"
                );
            }
        }
    }
    (retried, forked)
}

#[test]
fn retry_and_fork_survive_sigkill_at_any_point() {
    let mut interrupted = 0;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("journal.db");
        let log = dir.path().join("activities.log");
        let mut prepare = worker(&db, &log, "prepare");
        prepare
            .wait_for("PREPARED", Duration::from_secs(30))
            .expect("prepared");
        prepare.wait_exit(Duration::from_secs(10));

        let mut repair = worker(&db, &log, "repair");
        repair
            .wait_for("READY", Duration::from_secs(30))
            .expect("ready");
        // Rounds kill ever later, from right at the start to after the last repair.
        std::thread::sleep(Duration::from_millis(
            fastrand::u64(0..=8) + 6 * round as u64,
        ));
        repair.kill();
        let (retried, forked) = check_consistent(&db);
        if retried < RUNS || forked < RUNS {
            interrupted += 1;
        }

        let mut fixed = worker(&db, &log, "fixed");
        let finished = fixed
            .wait_for("FINISHED", Duration::from_secs(60))
            .expect("finished");
        assert_eq!(
            finished,
            format!("FINISHED {}", RUNS + forked),
            "round {round}"
        );
        fixed.wait_exit(Duration::from_secs(10));

        let log = std::fs::read_to_string(&log).unwrap();
        for i in 0..RUNS {
            let first = log
                .lines()
                .filter(|line| *line == format!("first run-{i}"))
                .count();
            assert_eq!(
                first, 1,
                "round {round}: step 1 of run-{i} ran {first} times"
            );
        }
        assert!(
            !log.lines().any(|line| line.starts_with("first fork-")),
            "round {round}: a fork ran its copied step 1"
        );
        println!("round {round}: retried {retried}/{RUNS}, forked {forked}/{RUNS} before the kill");
    }
    assert!(
        interrupted > 0,
        "no kill landed before the repairs were done"
    );
}
