//! Crash test: a 20-step workflow runs in a child process (`crash_worker`) that is SIGKILLed at 30
//! random moments and restarted each time; then it runs to completion.
//!
//! Asserted at the end: the workflow completes with the right output; every step's completion is
//! journaled exactly once (and the journal holds nothing else); the database passes
//! `PRAGMA integrity_check`; each activity ran at least once, and at most once more per kill that
//! interrupted it.
//!
//! A kill *interrupted* step `i` when the killed incarnation had started activity `i` (its run log has
//! `start i`) and the journal held no completion for step `i` once that incarnation was dead. That is
//! either a kill mid-activity (`start i` without `end i`) or a kill after the activity returned but
//! before its completion was committed; both lose the activity's result, so both allow a re-run. A
//! re-run of an activity whose completion was already journaled is never allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orchestrator::codec::{Codec, DEFAULT_PAYLOAD_LIMIT};
use orchestrator::journal::EventBody;
use orchestrator_tests::ChildWorker;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// Activity calls made by the worker's workflow.
const STEPS: u32 = 20;
/// Kills before the final, uninterrupted run.
const KILLS: usize = 30;
/// The workflow input the worker passes.
const SEED: u64 = 7;
/// The workflow id used by every incarnation.
const WORKFLOW_ID: &str = "crash-run";
/// `runs.state` of a completed run.
const COMPLETED: i64 = 1;
/// `events.kind` of `ActivityCompleted`.
const ACTIVITY_COMPLETED: i64 = 1;

/// What step `i`'s activity returns, and so what the journal must hold for it.
fn step_output(i: u32, acc: u64) -> u64 {
    acc.wrapping_mul(31).wrapping_add(u64::from(i))
}

/// The outputs of steps 1..=20, in order; the last one is the workflow's output.
fn expected_outputs() -> Vec<u64> {
    let mut acc = SEED;
    (1..=STEPS)
        .map(|i| {
            acc = step_output(i, acc);
            acc
        })
        .collect()
}

/// The longest wait after `READY` before a kill, given the steps journaled so far and the kills left:
/// about 60 ms per step still to go per kill left, so that the run is mostly unfinished until the
/// last kills (a step takes ~25 ms: 5–40 ms of activity plus a journal commit).
fn kill_window_ms(journaled: usize, kills_left: usize) -> u64 {
    let steps_left = (STEPS as usize).saturating_sub(journaled + 1) as u64;
    let kills_left = kills_left.max(1) as u64;
    (15 + 60 * steps_left / kills_left).min(150)
}

/// One line of the run log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogLine {
    Start(u32),
    End(u32),
}

/// Parses run-log lines `start <i> <pid>` / `end <i> <pid>`, checking they come from `pid` if given.
fn parse_log(bytes: &[u8], pid: Option<u32>) -> Vec<LogLine> {
    let text = std::str::from_utf8(bytes).expect("the run log is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the run log ends with a partial line: {text:?}"
    );
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [what, step, line_pid] = fields[..] else {
                panic!("malformed run-log line {line:?}");
            };
            let step: u32 = step.parse().expect("a step number");
            let line_pid: u32 = line_pid.parse().expect("a pid");
            assert!((1..=STEPS).contains(&step), "run-log line for step {step}");
            if let Some(pid) = pid {
                assert_eq!(line_pid, pid, "run-log line {line:?} from another process");
            }
            match what {
                "start" => LogLine::Start(step),
                "end" => LogLine::End(step),
                _ => panic!("malformed run-log line {line:?}"),
            }
        })
        .collect()
}

/// What the journal holds for the run: its state (if created) and the steps with a completion.
#[derive(Debug, Default)]
struct JournalView {
    state: Option<i64>,
    completed_steps: BTreeSet<u32>,
}

/// Reads the journal between incarnations through a read-only connection, which neither checkpoints
/// nor removes the WAL: the next incarnation recovers exactly what the killed one left.
fn peek_journal(db: &Path) -> JournalView {
    if !db.exists() {
        return JournalView::default();
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the journal read-only");
    let has_runs = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
        [],
        |row| row.get::<_, bool>(0),
    );
    let has_runs = match has_runs {
        Ok(has_runs) => has_runs,
        // The first incarnation was killed while it created the schema (before switching the file
        // to WAL): a read-only connection cannot roll back that hot journal, and nothing is
        // committed yet. The next incarnation rolls it back.
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
                && db.with_extension("db-journal").exists() =>
        {
            false
        }
        Err(error) => panic!("cannot read the journal between incarnations: {error}"),
    };
    if !has_runs {
        return JournalView::default();
    }
    let state = conn
        .query_row(
            "SELECT state FROM runs WHERE workflow_id = ?1",
            [WORKFLOW_ID],
            |row| row.get(0),
        )
        .optional()
        .expect("read the run");
    let mut statement = conn
        .prepare("SELECT step FROM events WHERE workflow_id = ?1 AND completion = 1")
        .expect("prepare");
    let completed_steps = statement
        .query_map([WORKFLOW_ID], |row| row.get::<_, u32>(0))
        .expect("read completions")
        .collect::<Result<BTreeSet<_>, _>>()
        .expect("read completions");
    JournalView {
        state,
        completed_steps,
    }
}

fn log_len(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |meta| usize::try_from(meta.len()).expect("log size"))
}

/// What happened to one incarnation that was sent SIGKILL.
#[derive(Debug)]
struct KillRecord {
    /// Milliseconds from spawn to kill.
    after_ms: u128,
    /// The kill landed while the process was alive (rather than after it exited on its own).
    landed: bool,
    /// The run was unfinished in the journal when the incarnation died.
    mid_run: bool,
    /// Steps whose activity this incarnation started and whose completion was not journaled.
    interrupted: Vec<u32>,
    /// Of those, the ones killed between `start` and `end` (inside the activity body).
    mid_activity: Vec<u32>,
}

/// Starts `crash_worker` on the journal.
fn spawn_worker(db: &Path, log: &Path) -> ChildWorker {
    let args: [&std::ffi::OsStr; 3] = [db.as_os_str(), log.as_os_str(), WORKFLOW_ID.as_ref()];
    ChildWorker::spawn(env!("CARGO_BIN_EXE_crash_worker"), args)
}

#[test]
fn survives_30_sigkills() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db: PathBuf = dir.path().join("journal.db");
    let log: PathBuf = dir.path().join("run.log");
    let expected = expected_outputs();
    let test_started = Instant::now();

    let mut kills: Vec<KillRecord> = Vec::with_capacity(KILLS);
    let mut journaled = 0;
    for n in 0..KILLS {
        let log_start = log_len(&log);
        let mut worker = spawn_worker(&db, &log);
        let pid = worker.id();
        let spawned = Instant::now();
        if fastrand::u8(..5) == 0 {
            // Early: hit process start, opening the journal and recovery.
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..=10)));
        } else {
            // Once the run is going (started or resumed): land somewhere in the next step or so.
            // A step takes ~25 ms; the window adapts so that the kills spread over all the steps.
            let _ = worker.wait_for("READY", Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(fastrand::u64(
                0..=kill_window_ms(journaled, KILLS - n),
            )));
        }
        let after_ms = spawned.elapsed().as_millis();
        let status = worker.kill();
        let landed = status.signal() == Some(libc::SIGKILL);
        assert!(
            landed || status.success(),
            "crash_worker failed on its own: {status}"
        );

        let bytes = std::fs::read(&log).unwrap_or_default();
        let segment = parse_log(&bytes[log_start..], Some(pid));
        let journal = peek_journal(&db);
        journaled = journal.completed_steps.len();
        let started: BTreeSet<u32> = segment
            .iter()
            .filter_map(|line| match line {
                LogLine::Start(i) => Some(*i),
                LogLine::End(_) => None,
            })
            .collect();
        let interrupted: Vec<u32> = started
            .iter()
            .copied()
            .filter(|i| !journal.completed_steps.contains(i))
            .collect();
        let mid_activity = interrupted
            .iter()
            .copied()
            .filter(|i| !segment.contains(&LogLine::End(*i)))
            .collect();
        if !landed {
            assert!(
                interrupted.is_empty(),
                "an incarnation exited on its own with step(s) {interrupted:?} started but not journaled"
            );
        }
        kills.push(KillRecord {
            after_ms,
            landed,
            mid_run: landed && journal.state != Some(COMPLETED),
            interrupted,
            mid_activity,
        });
    }

    // The final, uninterrupted run.
    let mut worker = spawn_worker(&db, &log);
    let result = worker
        .wait_for("RESULT ", Duration::from_secs(60))
        .expect("crash_worker exited without printing its result");
    let status = worker.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "the final crash_worker failed: {status}");
    let output: u64 = result["RESULT ".len()..].parse().expect("a numeric result");
    assert_eq!(Some(&output), expected.last(), "the workflow's output");

    // The journal: integrity, the run's outcome, one completion per step and nothing else.
    let conn = Connection::open(&db).expect("open the journal");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let runs: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .expect("count runs");
    assert_eq!(runs, 1, "exactly one run");
    let (state, stored_output): (i64, Option<Vec<u8>>) = conn
        .query_row(
            "SELECT state, output FROM runs WHERE workflow_id = ?1",
            [WORKFLOW_ID],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("read the run");
    assert_eq!(state, COMPLETED, "the run is completed");
    let codec = Codec::new(DEFAULT_PAYLOAD_LIMIT);
    let stored_output: u64 = codec
        .decode(&stored_output.expect("a completed run has an output"))
        .expect("decode the run's output");
    assert_eq!(Some(&stored_output), expected.last(), "the stored output");

    let mut statement = conn
        .prepare(
            "SELECT step, kind, completion, payload FROM events WHERE workflow_id = ?1 AND kind <> 15 ORDER BY seq",
        )
        .expect("prepare");
    let events = statement
        .query_map([WORKFLOW_ID], |row| {
            Ok((
                row.get::<_, u32>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, Vec<u8>>(3)?,
            ))
        })
        .expect("read events")
        .collect::<Result<Vec<_>, _>>()
        .expect("read events");
    let steps: Vec<u32> = events.iter().map(|(step, ..)| *step).collect();
    assert_eq!(
        steps,
        (1..=STEPS).collect::<Vec<_>>(),
        "the journal holds one event per step, in order"
    );
    let framing = Codec::new(DEFAULT_PAYLOAD_LIMIT + 4096);
    for (step, kind, completion, payload) in &events {
        assert!(*completion, "step {step}: the event is a completion");
        assert_eq!(*kind, ACTIVITY_COMPLETED, "step {step}: ActivityCompleted");
        let body: EventBody = framing.decode(payload).expect("decode an event");
        let EventBody::ActivityCompleted { name, result, .. } = body else {
            panic!("step {step}: not an ActivityCompleted event: {body:?}");
        };
        assert_eq!(name, "step_activity");
        let bytes = result.unwrap_or_else(|error| panic!("step {step} failed: {error}"));
        let value: u64 = codec.decode(&bytes).expect("decode a step's output");
        assert_eq!(
            Some(&value),
            expected.get(*step as usize - 1),
            "step {step}'s output"
        );
    }
    // Every attempt that ran (a `start` line in the run log) had its start journaled first (kind 15,
    // `ActivityAttemptStarted`); a journaled start whose attempt never logged is a kill in between.
    let all_lines = parse_log(&std::fs::read(&log).unwrap_or_default(), None);
    for step in 1..=STEPS {
        let logged = all_lines
            .iter()
            .filter(|line| **line == LogLine::Start(step))
            .count() as i64;
        let journaled: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE workflow_id = ?1 AND step = ?2 AND kind = 15",
                rusqlite::params![WORKFLOW_ID, step],
                |row| row.get(0),
            )
            .expect("count attempt starts");
        assert!(
            journaled >= logged && logged >= 1,
            "step {step}: {logged} attempt(s) ran but {journaled} start(s) were journaled"
        );
    }
    let signals: i64 = conn
        .query_row("SELECT count(*) FROM signals", [], |row| row.get(0))
        .expect("count signals");
    assert_eq!(signals, 0, "no signals");
    drop(statement);
    drop(conn);

    // The run log: every activity ran, and re-ran only after a kill that interrupted it.
    let all = parse_log(&std::fs::read(&log).expect("read the run log"), None);
    let mut starts: BTreeMap<u32, usize> = BTreeMap::new();
    for line in &all {
        if let LogLine::Start(i) = line {
            *starts.entry(*i).or_default() += 1;
        }
    }
    let mut interrupted_by_step: BTreeMap<u32, usize> = BTreeMap::new();
    for kill in &kills {
        assert!(
            kill.interrupted.len() <= 1,
            "a sequential workflow had several activities in flight: {kill:?}"
        );
        for i in &kill.interrupted {
            *interrupted_by_step.entry(*i).or_default() += 1;
        }
    }
    let mut extra_runs = 0;
    for i in 1..=STEPS {
        let ran = starts.get(&i).copied().unwrap_or(0);
        let interrupted = interrupted_by_step.get(&i).copied().unwrap_or(0);
        assert!(ran >= 1, "activity {i} never ran");
        assert!(
            ran - 1 <= interrupted,
            "activity {i} ran {ran} times but only {interrupted} kill(s) interrupted it; kills: {kills:#?}"
        );
        extra_runs += ran - 1;
    }
    let landed = kills.iter().filter(|kill| kill.landed).count();
    let mid_run = kills.iter().filter(|kill| kill.mid_run).count();
    let interrupted: usize = kills.iter().map(|kill| kill.interrupted.len()).sum();
    let mid_activity: usize = kills.iter().map(|kill| kill.mid_activity.len()).sum();
    assert!(
        extra_runs <= landed,
        "{extra_runs} extra runs for {landed} kills"
    );

    for (n, kill) in kills.iter().enumerate() {
        println!(
            "kill {n:2}: after {:3} ms, landed={}, mid_run={}, interrupted={:?} (mid-activity {:?})",
            kill.after_ms, kill.landed, kill.mid_run, kill.interrupted, kill.mid_activity
        );
    }
    println!(
        "crash-test kills={KILLS} landed={landed} mid_run={mid_run} interrupted={interrupted} \
         mid_activity={mid_activity} extra_activity_runs={extra_runs} elapsed_ms={}",
        test_started.elapsed().as_millis()
    );
}
