//! Crash tests of the durable primitives: SIGKILL during a saga rollback, during child-workflow starts,
//! and while a `select` has two completed branches; each run is resumed to the right outcome.
//!
//! Each scenario runs its workflow in a child process (`primitives_worker <scenario> ..`), SIGKILLs it
//! at [`KILLS`] random moments (a fifth of them right after spawn, to hit start-up and recovery; the
//! others aimed, through the run log, at each compensation in turn, each child start, each round of
//! the select), restarts it each time, and finally lets it finish. Then:
//!
//! - **rollback**: the run failed with the original error (step 5's non-retryable error); every step,
//!   including each compensation, has exactly one `ActivityCompleted` (kind 1) in the journal; the
//!   compensations' completions are journaled in reverse order of registration (by `seq`).
//! - **children**: exactly one run row per child id (and no other rows); every child completed, with
//!   one completion per step; the parent's output is the sum of the children's; in the parent's journal
//!   each step has at most one `ChildStarted` (kind 9) and exactly one `RunFinished` (kind 10) carrying
//!   that child's output.
//! - **select**: the output equals the value recomputed from the journaled `SelectWinner` (kind 14)
//!   records, and its list of winners equals theirs; each round has exactly one winner record, the
//!   winner's completion is journaled once and the loser's never.
//!
//! In every scenario: the database passes `PRAGMA integrity_check`, and an activity ran again only
//! after a kill that *interrupted* it — the killed incarnation had logged its `start` and the journal
//! held no completion for its step once that incarnation was dead (the same rule as `tests/crash.rs`).
//! So `runs − 1 ≤ interrupting kills` for every (workflow id, step).
//!
//! Two deterministic sub-cases of the select, in process and without SIGKILL: both branches finish
//! together, then the engine restarts after the select and replay returns the journaled winner; and
//! both branches finish while the engine shuts down (so the shutdown drain journals both completions,
//! with no winner record), then the engine restarts and replay must pick one winner and go on.
//!
//! That last sub-case guards a former bug: the shutdown drain (`Driver::drain`) journals the outcome of
//! every activity still running, including both branches of an undecided select, and a restart then
//! parked the run with `NonDeterminism` when replay met the loser's completion for a step nobody waits
//! on. Replay now treats a completion of an abandoned step as discarded.
//!
//! Each scenario prints a summary line such as
//! `crash-primitives scenario=rollback kills=20 landed=20 mid_rollback=20 mid_compensation=17
//! interrupted=17 extra_runs=17 elapsed_ms=551`
//! (see them with `cargo test --test crash_primitives -- --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orchestrator::codec::{Codec, DEFAULT_PAYLOAD_LIMIT};
use orchestrator::journal::EventBody;
use orchestrator::prelude::*;
use orchestrator::{Either, Payload};
use orchestrator_tests::{
    ChildWorker, KIND_ACTIVITY_COMPLETED, TestDb, bump, count, eventually, finish, gate_wait,
    open_gate, stop,
};
use rusqlite::{Connection, OpenFlags};

/// Kills per scenario before the final, uninterrupted run.
const KILLS: usize = 20;
/// `runs.state` values.
const RUNNING: i64 = 0;
const COMPLETED: i64 = 1;
const FAILED: i64 = 2;
/// `events.kind` values beyond those the support crate names.
const KIND_CHILD_STARTED: i64 = 9;
const KIND_RUN_FINISHED: i64 = 10;
const KIND_SELECT_WINNER: i64 = 14;

/// The worker's constants (see `tests/bin/primitives_worker.rs`).
const BOOKINGS: u32 = 4;
const CHILDREN: u32 = 10;
const ROUNDS: u32 = 20;
const SEED: u64 = 11;

fn codec() -> Codec {
    Codec::new(DEFAULT_PAYLOAD_LIMIT)
}

/// Decodes a stored event payload (framed with a little headroom over the payload limit).
fn decode_event(payload: &[u8]) -> EventBody {
    Codec::new(DEFAULT_PAYLOAD_LIMIT + 4096)
        .decode(payload)
        .expect("decode an event")
}

// ---------------------------------------------------------------------------------------------------
// The worker process

/// Starts `primitives_worker` with a scenario on the journal.
fn spawn_worker(scenario: &str, db: &Path, log: &Path, workflow_id: &str) -> ChildWorker {
    let args: [&std::ffi::OsStr; 4] = [
        scenario.as_ref(),
        db.as_os_str(),
        log.as_os_str(),
        workflow_id.as_ref(),
    ];
    ChildWorker::spawn(env!("CARGO_BIN_EXE_primitives_worker"), args)
}

// ---------------------------------------------------------------------------------------------------
// The run log

/// A step of some run: (workflow id, step number).
type StepKey = (String, u32);

/// One run-log line: `start|end <workflow id> <step> <label> <pid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogLine {
    end: bool,
    key: StepKey,
    label: String,
}

fn parse_log(bytes: &[u8], pid: Option<u32>) -> Vec<LogLine> {
    let text = std::str::from_utf8(bytes).expect("the run log is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the run log ends with a partial line: {text:?}"
    );
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let [what, workflow_id, step, label, line_pid] = fields[..] else {
                panic!("malformed run-log line {line:?}");
            };
            let step: u32 = step.parse().expect("a step number");
            let line_pid: u32 = line_pid.parse().expect("a pid");
            if let Some(pid) = pid {
                assert_eq!(line_pid, pid, "run-log line {line:?} from another process");
            }
            let end = match what {
                "start" => false,
                "end" => true,
                _ => panic!("malformed run-log line {line:?}"),
            };
            LogLine {
                end,
                key: (workflow_id.to_string(), step),
                label: label.to_string(),
            }
        })
        .collect()
}

fn log_len(log: &Path) -> usize {
    std::fs::metadata(log).map_or(0, |meta| usize::try_from(meta.len()).expect("log size"))
}

// ---------------------------------------------------------------------------------------------------
// The journal, between incarnations

/// One row of `events`, undecoded.
#[derive(Debug, Clone)]
struct RawEvent {
    workflow_id: String,
    step: u32,
    kind: i64,
    completion: bool,
}

/// What the journal holds: every run's state and every event's header.
#[derive(Debug, Default, Clone)]
struct JournalView {
    states: BTreeMap<String, i64>,
    events: Vec<RawEvent>,
}

impl JournalView {
    fn completed(&self) -> BTreeSet<StepKey> {
        self.events
            .iter()
            .filter(|event| event.completion)
            .map(|event| (event.workflow_id.clone(), event.step))
            .collect()
    }

    fn count(&self, workflow_id: &str, kind: i64) -> usize {
        self.events
            .iter()
            .filter(|event| event.workflow_id == workflow_id && event.kind == kind)
            .count()
    }

    fn has(&self, workflow_id: &str, step: u32, kind: i64) -> bool {
        self.events.iter().any(|event| {
            event.workflow_id == workflow_id && event.step == step && event.kind == kind
        })
    }

    fn finished(&self, workflow_id: &str) -> bool {
        self.states
            .get(workflow_id)
            .is_some_and(|state| *state != RUNNING)
    }
}

/// Reads the journal between incarnations through a read-only connection, which neither checkpoints
/// nor removes the WAL: the next incarnation recovers exactly what the killed one left.
fn peek_journal(db: &Path) -> JournalView {
    if !db.exists() {
        return JournalView::default();
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the journal read-only");
    let has_events = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |row| row.get::<_, bool>(0),
    );
    let has_events = match has_events {
        Ok(has_events) => has_events,
        // The first incarnation was killed while it created the schema (before switching the file to
        // WAL): a read-only connection cannot roll back that hot journal, and nothing is committed.
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
                && db.with_extension("db-journal").exists() =>
        {
            false
        }
        Err(error) => panic!("cannot read the journal between incarnations: {error}"),
    };
    if !has_events {
        return JournalView::default();
    }
    let mut statement = conn
        .prepare("SELECT workflow_id, state FROM runs")
        .expect("prepare");
    let states = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("read runs")
        .collect::<Result<BTreeMap<String, i64>, _>>()
        .expect("read runs");
    let mut statement = conn
        .prepare("SELECT workflow_id, step, kind, completion FROM events ORDER BY seq")
        .expect("prepare");
    let events = statement
        .query_map([], |row| {
            Ok(RawEvent {
                workflow_id: row.get(0)?,
                step: row.get(1)?,
                kind: row.get(2)?,
                completion: row.get(3)?,
            })
        })
        .expect("read events")
        .collect::<Result<Vec<_>, _>>()
        .expect("read events");
    JournalView { states, events }
}

// ---------------------------------------------------------------------------------------------------
// The kill loop

/// What happened to one incarnation that was sent SIGKILL.
#[derive(Debug)]
struct KillRecord {
    /// Milliseconds from spawn to kill.
    after_ms: u128,
    /// The kill landed while the process was alive (rather than after it exited on its own).
    landed: bool,
    /// Activity steps this incarnation started whose completion was not journaled at its death.
    interrupted: Vec<StepKey>,
    /// This incarnation's run-log lines.
    segment: Vec<LogLine>,
    /// The journal right after its death.
    view: JournalView,
}

/// A scenario's journal, run log and kills, after the final run.
struct Outcome {
    _dir: tempfile::TempDir,
    db: PathBuf,
    log: Vec<LogLine>,
    kills: Vec<KillRecord>,
    result: String,
    started: Instant,
}

/// When to kill an incarnation (besides the random fifth killed right after spawn).
#[derive(Debug, Clone)]
enum Moment {
    /// `0..=jitter_ms` ms after `READY`.
    AfterReady { jitter_ms: u64 },
    /// `0..=jitter_ms` ms after this incarnation logged `start`/`end` (`end`) of activity `label`;
    /// if that line does not come within 500 ms, at once.
    AfterLog {
        end: bool,
        label: String,
        jitter_ms: u64,
    },
}

/// Waits until the log, from byte `from` on, has a line `<start|end> .. <label> <pid>`, or the worker
/// exits, or 500 ms pass. Returns whether the line came.
fn wait_for_log(worker: &mut ChildWorker, log: &Path, from: usize, end: bool, label: &str) -> bool {
    let deadline = Instant::now() + Duration::from_millis(500);
    let what = if end { "end " } else { "start " };
    let suffix = format!(" {label} {}", worker.id());
    while Instant::now() < deadline {
        let bytes = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes.get(from..).unwrap_or_default());
        if text
            .lines()
            .any(|line| line.starts_with(what) && line.ends_with(&suffix))
        {
            return true;
        }
        if worker.has_exited() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Runs `scenario` under [`KILLS`] SIGKILLs, then to completion.
///
/// A fifth of the kills, at random, land 0–10 ms after spawn (process start, opening the journal,
/// recovery). The others land at the moment `plan(n, journal)` picks for kill `n`: each scenario aims
/// its kills at the parts of the run it is about (each compensation in turn, each child start, each
/// round of the select), watching the run log for the activity that marks the spot.
fn run_with_kills(
    scenario: &str,
    workflow_id: &str,
    plan: impl Fn(usize, &JournalView) -> Moment,
) -> Outcome {
    let dir = tempfile::Builder::new()
        .prefix("orch-crash-primitives-")
        .tempdir()
        .expect("temp dir");
    let db = dir.path().join("journal.db");
    let log = dir.path().join("run.log");
    let started = Instant::now();
    let mut kills = Vec::with_capacity(KILLS);
    let mut view = JournalView::default();
    for n in 0..KILLS {
        let log_start = log_len(&log);
        let mut worker = spawn_worker(scenario, &db, &log, workflow_id);
        let pid = worker.id();
        let spawned = Instant::now();
        if fastrand::u8(..5) == 0 {
            // Early: hit process start, opening the journal and recovery.
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..=10)));
        } else {
            match plan(n, &view) {
                Moment::AfterReady { jitter_ms } => {
                    let _ = worker.wait_for("READY", Duration::from_secs(20));
                    std::thread::sleep(Duration::from_millis(fastrand::u64(0..=jitter_ms)));
                }
                Moment::AfterLog {
                    end,
                    label,
                    jitter_ms,
                } => {
                    if wait_for_log(&mut worker, &log, log_start, end, &label) {
                        std::thread::sleep(Duration::from_millis(fastrand::u64(0..=jitter_ms)));
                    }
                }
            }
        }
        let after_ms = spawned.elapsed().as_millis();
        let status = worker.kill();
        let landed = status.signal() == Some(libc::SIGKILL);
        assert!(
            landed || status.success(),
            "primitives_worker failed on its own: {status}"
        );
        let bytes = std::fs::read(&log).unwrap_or_default();
        let segment = parse_log(&bytes[log_start..], Some(pid));
        view = peek_journal(&db);
        let completed = view.completed();
        let interrupted: Vec<StepKey> = segment
            .iter()
            .filter(|line| !line.end && !completed.contains(&line.key))
            .map(|line| line.key.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !landed {
            // It exited on its own: only after the run finished (a select's loser may have started
            // and never be journaled; it is abandoned, never re-run).
            assert!(
                view.finished(workflow_id),
                "an incarnation exited on its own before the run finished"
            );
        }
        kills.push(KillRecord {
            after_ms,
            landed,
            interrupted,
            segment,
            view: view.clone(),
        });
    }

    let mut worker = spawn_worker(scenario, &db, &log, workflow_id);
    let result = worker
        .wait_for("RESULT ", Duration::from_secs(60))
        .expect("primitives_worker exited without printing its result");
    let status = worker.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "the final primitives_worker failed: {status}"
    );
    let log = parse_log(&std::fs::read(&log).expect("read the run log"), None);
    for (n, kill) in kills.iter().enumerate() {
        println!(
            "{scenario} kill {n:2}: after {:3} ms, landed={}, journaled completions={}, \
             interrupted={:?}",
            kill.after_ms,
            kill.landed,
            kill.view.completed().len(),
            kill.interrupted
        );
    }
    Outcome {
        _dir: dir,
        db,
        log,
        kills,
        result: result["RESULT ".len()..].to_string(),
        started,
    }
}

/// Checks the database's integrity and that every activity re-ran only after a kill interrupted it.
/// Returns (interrupting kills in total, extra runs in total).
fn check_reruns(outcome: &Outcome) -> (usize, usize) {
    let conn = Connection::open(&outcome.db).expect("open the journal");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    drop(conn);

    let mut starts: BTreeMap<StepKey, usize> = BTreeMap::new();
    for line in outcome.log.iter().filter(|line| !line.end) {
        *starts.entry(line.key.clone()).or_default() += 1;
    }
    let mut interrupted: BTreeMap<StepKey, usize> = BTreeMap::new();
    for kill in &outcome.kills {
        for key in &kill.interrupted {
            *interrupted.entry(key.clone()).or_default() += 1;
        }
    }
    let mut extra_runs = 0;
    for (key, ran) in &starts {
        let allowed = interrupted.get(key).copied().unwrap_or(0);
        assert!(
            ran - 1 <= allowed,
            "activity at {key:?} ran {ran} times but only {allowed} kill(s) interrupted it; kills: {:#?}",
            outcome
                .kills
                .iter()
                .map(|kill| (kill.after_ms, kill.landed, &kill.interrupted))
                .collect::<Vec<_>>()
        );
        extra_runs += ran - 1;
    }
    // Every attempt that ran had its start journaled first (kind 15, `ActivityAttemptStarted`):
    // at least as many starts as runs in the log (a kill between the commit and the attempt leaves
    // one more). `events` leaves these annotations out.
    let conn = Connection::open(&outcome.db).expect("open the journal");
    for (key, ran) in &starts {
        let journaled: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE workflow_id = ?1 AND step = ?2 AND kind = 15",
                rusqlite::params![key.0, key.1],
                |row| row.get(0),
            )
            .expect("count attempt starts");
        assert!(
            usize::try_from(journaled).unwrap_or(0) >= *ran,
            "activity at {key:?} ran {ran} time(s) but {journaled} start(s) are journaled"
        );
    }
    drop(conn);
    let final_view = peek_journal(&outcome.db);
    for key in final_view.completed() {
        let is_activity = final_view.events.iter().any(|event| {
            event.workflow_id == key.0
                && event.step == key.1
                && event.kind == i64::from(KIND_ACTIVITY_COMPLETED)
        });
        if is_activity {
            assert!(
                starts.contains_key(&key),
                "activity at {key:?} is journaled as completed but never ran"
            );
        }
    }
    (interrupted.values().sum(), extra_runs)
}

/// One decoded event.
#[derive(Debug, Clone)]
struct Row {
    seq: i64,
    step: u32,
    kind: i64,
    completion: bool,
    body: EventBody,
}

fn events(db: &Path, workflow_id: &str) -> Vec<Row> {
    let conn = Connection::open(db).expect("open the journal");
    let mut statement = conn
        .prepare(
            "SELECT seq, step, kind, completion, payload FROM events WHERE workflow_id = ?1 \
             AND kind <> 15 ORDER BY seq",
        )
        .expect("prepare");
    statement
        .query_map([workflow_id], |row| {
            Ok(Row {
                seq: row.get(0)?,
                step: row.get(1)?,
                kind: row.get(2)?,
                completion: row.get(3)?,
                body: decode_event(&row.get::<_, Vec<u8>>(4)?),
            })
        })
        .expect("read events")
        .collect::<Result<Vec<_>, _>>()
        .expect("read events")
}

/// A run's row: (workflow name, state, parent id, output, error).
type RunRow = (
    String,
    i64,
    Option<String>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

fn runs(db: &Path) -> BTreeMap<String, RunRow> {
    let conn = Connection::open(db).expect("open the journal");
    let mut statement = conn
        .prepare("SELECT workflow_id, workflow_name, state, parent_id, output, error FROM runs")
        .expect("prepare");
    statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                (
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ),
            ))
        })
        .expect("read runs")
        .collect::<Result<BTreeMap<_, _>, _>>()
        .expect("read runs")
}

/// The output an `ActivityCompleted` body carries, decoded.
fn activity_output<T: Payload>(row: &Row) -> (String, T) {
    let EventBody::ActivityCompleted { name, result, .. } = &row.body else {
        panic!(
            "step {}: not an ActivityCompleted: {:?}",
            row.step, row.body
        );
    };
    let bytes = result
        .clone()
        .unwrap_or_else(|error| panic!("step {} failed: {error}", row.step));
    (name.clone(), codec().decode(&bytes).expect("decode output"))
}

// ---------------------------------------------------------------------------------------------------
// rollback

#[test]
fn rollback_resumes_after_sigkills() {
    let id = "saga-run";
    // Steps: book 1..=4 at steps 1..=4, the failing step at 5, compensations at 6..=9.
    let comp_step = |i: u32| 2 * BOOKINGS + 2 - i;
    // Kills 0-4 aim at compensation 4, 5-9 at compensation 3, and so on: each lands 0-35 ms after the
    // compensation started (it takes 15-35 ms), so mostly mid-compensation, sometimes just after it.
    let outcome = run_with_kills("rollback", id, |n, view| {
        let target = BOOKINGS - u32::try_from(n * BOOKINGS as usize / KILLS).unwrap();
        if view.has(id, comp_step(target), i64::from(KIND_ACTIVITY_COMPLETED)) {
            // Done already: hit the start of the next compensation instead.
            Moment::AfterReady { jitter_ms: 10 }
        } else {
            Moment::AfterLog {
                end: false,
                label: format!("comp-{target}"),
                jitter_ms: 35,
            }
        }
    });
    let (interrupted, extra_runs) = check_reruns(&outcome);
    assert!(
        outcome.result.starts_with("failed "),
        "result line {:?}",
        outcome.result
    );

    // The run failed with the original error.
    let runs = runs(&outcome.db);
    assert_eq!(runs.len(), 1, "exactly one run: {:?}", runs.keys());
    let (name, state, _, _, error) = &runs[id];
    assert_eq!(name, "saga");
    assert_eq!(*state, FAILED, "the saga failed");
    let error: WorkflowError = codec()
        .decode(error.as_deref().expect("a failed run has its error"))
        .expect("decode the error");
    match &error {
        WorkflowError::ActivityFailed {
            activity,
            step,
            attempts,
            error,
        } => {
            assert_eq!(activity, "reserve_fail");
            assert_eq!(*step, BOOKINGS + 1);
            assert_eq!(*attempts, 1);
            assert_eq!(error, &ActivityError::non_retryable("no room left"));
        }
        other => panic!("the saga failed with {other:?}, not the original error"),
    }

    // One completion per step, the compensations' in reverse order.
    let events = events(&outcome.db, id);
    let mut completions: BTreeMap<u32, Vec<&Row>> = BTreeMap::new();
    for row in &events {
        assert!(
            row.completion && row.kind == i64::from(KIND_ACTIVITY_COMPLETED),
            "unexpected event in the saga's journal: {row:?}"
        );
        completions.entry(row.step).or_default().push(row);
    }
    assert_eq!(
        completions.keys().copied().collect::<Vec<_>>(),
        (1..=2 * BOOKINGS + 1).collect::<Vec<_>>(),
        "a completion for each forward step, the failing step and each compensation"
    );
    for (step, rows) in &completions {
        assert_eq!(rows.len(), 1, "step {step} is completed once: {rows:?}");
    }
    for i in 1..=BOOKINGS {
        let (name, value): (String, u32) = activity_output(completions[&i][0]);
        assert_eq!((name.as_str(), value), ("book", i));
    }
    let mut comp_order = Vec::new();
    let mut last_seq = completions[&(BOOKINGS + 1)][0].seq;
    for step in BOOKINGS + 2..=2 * BOOKINGS + 1 {
        let row = completions[&step][0];
        let (name, i): (String, u32) = activity_output(row);
        assert_eq!(name, "unbook", "step {step}");
        assert_eq!(step, comp_step(i), "compensation {i} is at step {step}");
        assert!(
            row.seq > last_seq,
            "compensation {i} was journaled out of order"
        );
        last_seq = row.seq;
        comp_order.push(i);
    }
    assert_eq!(
        comp_order,
        vec![4, 3, 2, 1],
        "compensations in reverse order"
    );

    // The compensations' log: `comp-<i>` end lines, re-runs bounded by interrupting kills.
    let mut comp_runs = BTreeMap::new();
    for line in outcome.log.iter().filter(|line| line.end) {
        if let Some(i) = line.label.strip_prefix("comp-") {
            *comp_runs.entry(i.to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(comp_runs.len(), BOOKINGS as usize, "{comp_runs:?}");

    let landed = outcome.kills.iter().filter(|kill| kill.landed).count();
    // Mid-rollback: the failing step was journaled and the run was not yet finished at the kill.
    let mid_rollback = outcome
        .kills
        .iter()
        .filter(|kill| {
            kill.landed
                && kill
                    .view
                    .has(id, BOOKINGS + 1, i64::from(KIND_ACTIVITY_COMPLETED))
                && !kill.view.finished(id)
        })
        .count();
    let mid_compensation = outcome
        .kills
        .iter()
        .filter(|kill| {
            kill.interrupted
                .iter()
                .any(|(_, step)| *step > BOOKINGS + 1)
        })
        .count();
    let mut comp_interrupts: BTreeMap<u32, usize> = BTreeMap::new();
    for kill in &outcome.kills {
        for (_, step) in &kill.interrupted {
            if *step > BOOKINGS + 1 {
                *comp_interrupts.entry(2 * BOOKINGS + 2 - step).or_default() += 1;
            }
        }
    }
    println!(
        "rollback: end lines per compensation {comp_runs:?}, interrupting kills per compensation \
         {comp_interrupts:?}"
    );
    println!(
        "crash-primitives scenario=rollback kills={KILLS} landed={landed} mid_rollback={mid_rollback} \
         mid_compensation={mid_compensation} interrupted={interrupted} extra_runs={extra_runs} \
         elapsed_ms={}",
        outcome.started.elapsed().as_millis()
    );
}

// ---------------------------------------------------------------------------------------------------
// children

#[test]
fn child_starts_resume_after_sigkills() {
    let parent = "fan-out";
    let child_id = |i: u32| format!("{parent}/child-{i}");
    // Kills 0-1 aim at child 1's start, 2-3 at child 2's, and so on: child i is started right after
    // child i-1's last activity ends (or right after a restart, if that activity is journaled).
    let outcome = run_with_kills("children", parent, |n, view| {
        let target = 1 + u32::try_from(n * CHILDREN as usize / KILLS).unwrap();
        let previous_done =
            target == 1 || view.has(&child_id(target - 1), 2, i64::from(KIND_ACTIVITY_COMPLETED));
        if previous_done {
            Moment::AfterReady { jitter_ms: 6 }
        } else {
            Moment::AfterLog {
                end: true,
                label: format!("child-{}-2", target - 1),
                jitter_ms: 6,
            }
        }
    });
    let (interrupted, extra_runs) = check_reruns(&outcome);
    let expected: u64 = (1..=CHILDREN).map(|i| 20 * u64::from(i) + 3).sum();
    assert_eq!(outcome.result, expected.to_string(), "the parent's output");

    // Runs: the parent and exactly one row per child, each completed once.
    let runs = runs(&outcome.db);
    let mut expected_ids: BTreeSet<String> = (1..=CHILDREN).map(child_id).collect();
    expected_ids.insert(parent.to_string());
    assert_eq!(
        runs.keys().cloned().collect::<BTreeSet<_>>(),
        expected_ids,
        "one run row per child id and nothing else"
    );
    let (name, state, parent_of_parent, output, _) = &runs[parent];
    assert_eq!((name.as_str(), *state), ("fan_out", COMPLETED));
    assert_eq!(*parent_of_parent, None);
    let sum: u64 = codec()
        .decode(output.as_deref().expect("the parent's output"))
        .expect("decode the parent's output");
    assert_eq!(sum, expected);
    for i in 1..=CHILDREN {
        let id = child_id(i);
        let (name, state, parent_id, output, _) = &runs[&id];
        assert_eq!((name.as_str(), *state), ("child_sum", COMPLETED), "{id}");
        assert_eq!(parent_id.as_deref(), Some(parent), "{id}'s parent");
        let value: u64 = codec()
            .decode(output.as_deref().expect("a child's output"))
            .expect("decode a child's output");
        assert_eq!(value, 20 * u64::from(i) + 3, "{id}'s output");
        // The child's own journal: one completion per activity step.
        let rows = events(&outcome.db, &id);
        assert_eq!(
            rows.iter().map(|row| row.step).collect::<Vec<_>>(),
            vec![1, 2],
            "{id}: one event per step: {rows:?}"
        );
        for (k, row) in (1u64..).zip(&rows) {
            let (name, value): (String, u64) = activity_output(row);
            assert_eq!(
                (name.as_str(), value),
                ("child_step", 10 * u64::from(i) + k)
            );
        }
    }

    // The parent's journal: per step, at most one ChildStarted and exactly one RunFinished.
    let rows = events(&outcome.db, parent);
    let mut started_per_step: BTreeMap<u32, usize> = BTreeMap::new();
    let mut finished_per_step: BTreeMap<u32, usize> = BTreeMap::new();
    for row in &rows {
        match &row.body {
            EventBody::ChildStarted {
                workflow_name,
                child_id: started,
            } => {
                assert_eq!(row.kind, KIND_CHILD_STARTED);
                assert_eq!(workflow_name, "child_sum");
                assert_eq!(*started, child_id(row.step), "step {}", row.step);
                *started_per_step.entry(row.step).or_default() += 1;
            }
            EventBody::RunFinished {
                workflow_id,
                result,
            } => {
                assert_eq!(row.kind, KIND_RUN_FINISHED);
                assert_eq!(*workflow_id, child_id(row.step), "step {}", row.step);
                let bytes = result.clone().expect("the child completed");
                let value: u64 = codec().decode(&bytes).expect("decode a child's output");
                assert_eq!(value, 20 * u64::from(row.step) + 3, "step {}", row.step);
                *finished_per_step.entry(row.step).or_default() += 1;
            }
            other => panic!("unexpected event in the parent's journal: {other:?}"),
        }
    }
    for i in 1..=CHILDREN {
        let started = started_per_step.get(&i).copied().unwrap_or(0);
        assert!(started <= 1, "step {i}: {started} ChildStarted records");
        assert_eq!(
            finished_per_step.get(&i).copied(),
            Some(1),
            "step {i}: one RunFinished"
        );
    }
    assert_eq!(
        finished_per_step.keys().copied().collect::<Vec<_>>(),
        (1..=CHILDREN).collect::<Vec<_>>()
    );

    let landed = outcome.kills.iter().filter(|kill| kill.landed).count();
    // Kills after which a child run existed that its parent had not journaled as started yet.
    let mid_start = outcome
        .kills
        .iter()
        .filter(|kill| {
            (1..=CHILDREN).any(|i| {
                kill.view.states.contains_key(&child_id(i))
                    && !kill.view.has(parent, i, KIND_CHILD_STARTED)
                    && !kill.view.has(parent, i, KIND_RUN_FINISHED)
            })
        })
        .count();
    // Kills while the parent waited on a started child.
    let mid_child = outcome
        .kills
        .iter()
        .filter(|kill| {
            kill.landed
                && !kill.view.finished(parent)
                && kill.view.count(parent, KIND_CHILD_STARTED)
                    > kill.view.count(parent, KIND_RUN_FINISHED)
        })
        .count();
    println!(
        "crash-primitives scenario=children kills={KILLS} landed={landed} mid_child={mid_child} \
         mid_start={mid_start} interrupted={interrupted} extra_runs={extra_runs} \
         child_started_records={} elapsed_ms={}",
        started_per_step.values().sum::<usize>(),
        outcome.started.elapsed().as_millis()
    );
}

// ---------------------------------------------------------------------------------------------------
// select

fn value_a(round: u32, acc: u64) -> u64 {
    acc.wrapping_mul(31).wrapping_add(u64::from(round))
}

fn value_b(round: u32, acc: u64) -> u64 {
    acc.wrapping_mul(37).wrapping_add(1000 + u64::from(round))
}

/// The accumulator after the rounds whose winners are `winners` (`0`/`1` each).
fn recompute(winners: &[u32]) -> Vec<u64> {
    let mut acc = SEED;
    (1..)
        .zip(winners)
        .map(|(round, winner)| {
            acc = if *winner == 0 {
                value_a(round, acc)
            } else {
                value_b(round, acc)
            };
            acc
        })
        .collect()
}

#[test]
fn select_with_two_completed_branches_resumes_after_sigkills() {
    let id = "racer-run";
    // Round r: the select at step 3r-2, branch a at 3r-1, branch b at 3r.
    let select_step = |round: u32| 3 * round - 2;
    // Kill n aims at round n: 0-10 ms after its branch a started (both branches take 2-6 ms, then
    // wait for each other), so mostly while both are completing. (Once a branch's completion is
    // journaled, the round is decided and replayed: then the kill lands just after `READY`.)
    let outcome = run_with_kills("select", id, |n, view| {
        let round = 1 + u32::try_from(n * ROUNDS as usize / KILLS).unwrap();
        let step = select_step(round);
        let decided = view.has(id, step, KIND_SELECT_WINNER)
            || view.completed().contains(&(id.to_string(), step + 1))
            || view.completed().contains(&(id.to_string(), step + 2));
        if decided {
            Moment::AfterReady { jitter_ms: 10 }
        } else {
            Moment::AfterLog {
                end: false,
                label: format!("a-{round}"),
                jitter_ms: 10,
            }
        }
    });
    let (interrupted, extra_runs) = check_reruns(&outcome);

    let runs = runs(&outcome.db);
    assert_eq!(runs.len(), 1);
    let (name, state, _, output, _) = &runs[id];
    assert_eq!((name.as_str(), *state), ("racer", COMPLETED));
    let (acc, winners): (u64, String) = codec()
        .decode(output.as_deref().expect("the racer's output"))
        .expect("decode the racer's output");
    assert_eq!(
        outcome.result,
        format!("{acc} {winners}"),
        "the RESULT line"
    );

    let rows = events(&outcome.db, id);
    let mut journaled_winners = Vec::new();
    for round in 1..=ROUNDS {
        let step = select_step(round);
        let records: Vec<u32> = rows
            .iter()
            .filter(|row| row.step == step)
            .map(|row| match row.body {
                EventBody::SelectWinner { winner } => {
                    assert_eq!(row.kind, KIND_SELECT_WINNER);
                    assert!(!row.completion);
                    winner
                }
                ref other => panic!("round {round}: step {step} holds {other:?}"),
            })
            .collect();
        assert_eq!(records.len(), 1, "round {round}: one winner record");
        let winner = records[0];
        assert!(winner <= 1, "round {round}: winner {winner}");
        let completions = |step: u32| {
            rows.iter()
                .filter(|row| row.step == step && row.completion)
                .collect::<Vec<_>>()
        };
        let won = completions(step + 1 + winner);
        let lost = completions(step + 2 - winner);
        assert_eq!(won.len(), 1, "round {round}: the winner's completion");
        assert!(
            lost.is_empty(),
            "round {round}: the loser's completion is journaled: {lost:?}"
        );
        assert!(
            won[0].seq < rows.iter().find(|row| row.step == step).unwrap().seq,
            "round {round}: the winner record follows the winner's completion"
        );
        journaled_winners.push(winner);
    }
    let expected = recompute(&journaled_winners);
    for (index, row) in journaled_winners.iter().enumerate() {
        let round = u32::try_from(index).unwrap() + 1;
        let step = select_step(round) + 1 + row;
        let completion = rows
            .iter()
            .find(|row| row.step == step && row.completion)
            .unwrap();
        let (name, value): (String, u64) = activity_output(completion);
        assert_eq!(name, if *row == 0 { "branch_a" } else { "branch_b" });
        assert_eq!(value, expected[index], "round {round}'s winning value");
    }
    let winners_text: String = journaled_winners
        .iter()
        .map(|winner| if *winner == 0 { '0' } else { '1' })
        .collect();
    assert_eq!(
        winners, winners_text,
        "the output's winners are the journal's"
    );
    assert_eq!(
        Some(&acc),
        expected.last(),
        "the output recomputed from the journal"
    );
    assert_eq!(
        rows.len(),
        2 * ROUNDS as usize,
        "one winner record and one completion per round"
    );

    let landed = outcome.kills.iter().filter(|kill| kill.landed).count();
    // Kills while both branches of a round had ended (in the killed incarnation) and the journal had
    // no winner record for it yet.
    let two_done = outcome
        .kills
        .iter()
        .filter(|kill| {
            (1..=ROUNDS).any(|round| {
                let step = select_step(round);
                let ended = |branch: u32| {
                    kill.segment
                        .iter()
                        .any(|line| line.end && line.key == (id.to_string(), step + branch))
                };
                ended(1) && ended(2) && !kill.view.has(id, step, KIND_SELECT_WINNER)
            })
        })
        .count();
    let both_running = outcome
        .kills
        .iter()
        .filter(|kill| kill.interrupted.len() >= 2)
        .count();
    let ones = winners.chars().filter(|c| *c == '1').count();
    println!(
        "crash-primitives scenario=select kills={KILLS} landed={landed} two_done={two_done} \
         both_interrupted={both_running} interrupted={interrupted} extra_runs={extra_runs} \
         winners={winners} (b won {ones}/{ROUNDS}) elapsed_ms={}",
        outcome.started.elapsed().as_millis()
    );
}

// ---------------------------------------------------------------------------------------------------
// select, deterministic sub-cases (in process, no SIGKILL)

/// A select branch: counts its runs under `<key>/<branch>`, waits for the gate of that name.
#[activity]
async fn gated(key: String, branch: String) -> Result<String, ActivityError> {
    bump(&format!("{key}/{branch}"));
    gate_wait(&format!("{key}/{branch}")).await;
    Ok(format!("{branch}-done"))
}

/// Select between `gated(a)` (step 2) and `gated(b)` (step 3) at step 1, then wait for signal
/// `finish` (step 4). Returns the winner's index and value, and the signal.
#[workflow]
async fn pick(ctx: WorkflowContext, key: String) -> Result<(u32, String, String), WorkflowError> {
    let a = ctx.call(gated, (key.clone(), "a".to_string()));
    let b = ctx.call(gated, (key, "b".to_string()));
    let (winner, value) = match ctx.select2(a, b).await {
        Either::Left(value) => (0, value?),
        Either::Right(value) => (1, value?),
    };
    let finish: String = ctx.signal("finish").await?;
    Ok((winner, value, finish))
}

fn journaled_winners(db: &TestDb, id: &str) -> Vec<u32> {
    db.events(id)
        .into_iter()
        .filter_map(|row| match row.body {
            EventBody::SelectWinner { winner } => Some(winner),
            _ => None,
        })
        .collect()
}

fn completed_steps(db: &TestDb, id: &str) -> Vec<u32> {
    db.events(id)
        .into_iter()
        .filter(|row| row.completion)
        .map(|row| row.step)
        .collect()
}

/// Both branches finish at once (both gates open together, so both activities return before the
/// select is polled again); the engine restarts while the run waits after the select; replay returns
/// the journaled winner, and neither branch runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_replay_returns_the_journaled_winner_when_both_branches_finished() {
    let db = TestDb::new();
    let key = "pick-both-done";
    let id = "pick-both-done-1";
    let engine = db
        .builder()
        .register(pick)
        .register(gated)
        .start()
        .await
        .unwrap();
    engine.start(pick, id, key.to_string()).await.unwrap();
    eventually("both branches started", || async {
        count(&format!("{key}/a")) == 1 && count(&format!("{key}/b")) == 1
    })
    .await;
    open_gate(&format!("{key}/a"));
    open_gate(&format!("{key}/b"));
    eventually("the winner is journaled", || async {
        journaled_winners(&db, id).len() == 1
    })
    .await;
    // Let the loser's (discarded) completion arrive, then restart while the run waits for `finish`.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let winner = journaled_winners(&db, id)[0];
    assert_eq!(
        completed_steps(&db, id),
        vec![2 + winner],
        "only the winner's completion is journaled"
    );
    stop(engine).await;

    for restart in 0..2 {
        let engine = db
            .builder()
            .register(pick)
            .register(gated)
            .start()
            .await
            .unwrap();
        if restart == 1 {
            engine.signal(id, "finish", "ok".to_string()).await.unwrap();
            let handle = engine.handle(pick, id).await.unwrap();
            let (won, value, finished) = finish(&handle).await.unwrap();
            let expected_value = if winner == 0 { "a-done" } else { "b-done" };
            assert_eq!(
                (won, value.as_str(), finished.as_str()),
                (winner, expected_value, "ok"),
                "replay returns the journaled winner"
            );
        } else {
            // Replayed up to the signal wait: still the same winner, nothing re-run.
            eventually("the replayed run waits for its signal", || async {
                matches!(engine.status(id).await, Ok(RunStatus::Running))
            })
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop(engine).await;
    }
    assert_eq!(
        journaled_winners(&db, id),
        vec![winner],
        "one winner record"
    );
    assert_eq!(completed_steps(&db, id), vec![2 + winner, 4]);
    assert_eq!(count(&format!("{key}/a")), 1, "branch a never re-ran");
    assert_eq!(count(&format!("{key}/b")), 1, "branch b never re-ran");
    println!("select-replay both-done winner={winner}");
}

/// Both branches finish while the engine shuts down: the shutdown drain journals both completions (b's
/// first) and the select never sees them, so the journal holds two completions and no winner record.
/// After a restart, replay must pick one winner, journal it and go on (not park); a second restart
/// must replay that winner; the run completes with the winner's value, and neither branch re-runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_with_both_branches_journaled_by_a_shutdown_resumes() {
    let db = TestDb::new();
    let key = "pick-drained";
    let id = "pick-drained-1";
    let engine = db
        .builder()
        .register(pick)
        .register(gated)
        .start()
        .await
        .unwrap();
    engine.start(pick, id, key.to_string()).await.unwrap();
    eventually("both branches started", || async {
        count(&format!("{key}/a")) == 1 && count(&format!("{key}/b")) == 1
    })
    .await;
    let stopping = tokio::spawn({
        let engine = engine.clone();
        async move { engine.shutdown().await }
    });
    // The driver sees the shutdown and drains: it journals the attempts still running.
    tokio::time::sleep(Duration::from_millis(100)).await;
    open_gate(&format!("{key}/b"));
    eventually("b's completion is journaled", || async {
        completed_steps(&db, id) == vec![3]
    })
    .await;
    open_gate(&format!("{key}/a"));
    eventually("a's completion is journaled", || async {
        completed_steps(&db, id) == vec![3, 2]
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown finished")
        .unwrap();
    drop(engine);
    assert!(
        journaled_winners(&db, id).is_empty(),
        "the select never saw its branches"
    );

    // Restart 1 replays the select (and journals its winner); restart 2 replays it again, now with a
    // winner record beside the two completions, and finishes the run.
    for restart in 1..=2 {
        let engine = db
            .builder()
            .register(pick)
            .register(gated)
            .start()
            .await
            .unwrap();
        eventually(
            "the select's winner is journaled, or the run parked",
            || async {
                journaled_winners(&db, id).len() == 1
                    || matches!(engine.status(id).await, Ok(RunStatus::Parked(_)))
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = engine.status(id).await.unwrap();
        assert!(
            matches!(status, RunStatus::Running),
            "restart {restart}: the run is {status:?}; journal (seq, step, kind): {:?}",
            db.events(id)
                .iter()
                .map(|row| (row.seq, row.step, row.kind))
                .collect::<Vec<_>>()
        );
        if restart == 2 {
            engine.signal(id, "finish", "ok".to_string()).await.unwrap();
            let handle = engine.handle(pick, id).await.unwrap();
            let (won, value, finished) = finish(&handle).await.unwrap();
            // Either branch may win (b's completion came first in the journal, a is polled first);
            // what matters is one winner, journaled, and its own value.
            let expected_value = if won == 0 { "a-done" } else { "b-done" };
            assert_eq!((value.as_str(), finished.as_str()), (expected_value, "ok"));
            assert_eq!(
                journaled_winners(&db, id),
                vec![won],
                "the winner is journaled"
            );
            println!("select-replay drained winner={won}");
        }
        stop(engine).await;
    }
    assert_eq!(count(&format!("{key}/a")), 1, "branch a never re-ran");
    assert_eq!(count(&format!("{key}/b")), 1, "branch b never re-ran");
}
