//! The crash campaign: a mixed load of workflows runs in a child process (`campaign_worker`) that is
//! SIGKILLed once per cycle — at a random moment, or at a named fail point on a durable boundary — and
//! restarted; a last, uninterrupted incarnation finishes everything. Then the journal is checked
//! against the run log and against a crash-free reference run of the same workflows.
//!
//! ```sh
//! cargo test -p orchestrator-tests --test crash_campaign -- --nocapture            # 30 cycles
//! ORCHESTRATOR_CRASH_CYCLES=1000 cargo test --release -p orchestrator-tests --test crash_campaign -- --nocapture
//! ORCHESTRATOR_CRASH_SEED=<seed> ...                                               # replay a campaign's choices
//! ```
//!
//! **Cycles.** Cycle `c`'s incarnation resumes every unfinished run (the engine does that at start),
//! starts the six top-level workflows of cycle `c` (sequential steps with a retried step, a `join_all`
//! fan-out, a saga whose last step fails so that its compensations run, durable timers, signal waits,
//! two child workflows; see `tests/bin/campaign_worker.rs`) plus those of any earlier cycle whose starts
//! were not all acknowledged, sends the signals the signal workflows wait for, and works until every
//! run has finished or it dies. Each cycle's kill is drawn from a seeded generator (the base seed is
//! printed; `ORCHESTRATOR_CRASH_SEED` replays it):
//!
//! - every fourth cycle a **random kill** by the harness: a quarter of them 0–10 ms after spawn (process
//!   start, opening the journal, recovery), the others 0–200 ms after the worker printed `READY`;
//! - the other cycles arm a **fail point** in the worker with a hit number `k`: the worker SIGKILLs itself
//!   the `k`-th time it reaches it. The point is the one that has fired least so far (ties drawn at
//!   random) and `k` is drawn up to the number of times the cycle's own new workflows surely reach it,
//!   so every point fires at least once in 30 cycles (asserted). The points sit before and after the
//!   store call that creates a run, commits anything, fires a timer, sends a signal, delivers a signal,
//!   journals a failed attempt, journals a compensation's completion, journals a child's start, and
//!   records a run's outcome; and inside an activity, mid-way and after its effect but before its result
//!   is journaled.
//!
//! **Between incarnations** the harness reads the journal read-only (which neither checkpoints nor
//! removes the WAL) and the incarnation's part of the run log. It records which activity attempts the
//! kill *interrupted* — the incarnation logged their `start` and the journal held neither their step's
//! completion nor their failed-attempt record once it was dead (the rule of `tests/crash.rs`, per
//! attempt) — and checks that every run whose start was acknowledged exists, that no finished run's
//! row (state, output, error, update time) ever changes again, and that no run was parked (the worker
//! logs every park it commits, and prints why).
//!
//! **At the end:**
//!
//! - `lost`: acknowledged runs missing from the journal after some kill, or not finished at the end
//!   (parked counts as lost), plus runs of the reference missing from the journal;
//! - `duplicate_outcomes`: runs whose outcome was written again after a store had acknowledged one
//!   (from the worker's `finish`/`outcome` lines), plus finished rows that changed afterwards;
//! - `duplicate_steps`: events beyond the first per (run, step, kind) — per attempt for failed attempts
//!   — plus signals consumed by other than exactly one `SignalReceived`;
//! - `extra_activity_runs`: activity attempts run more than once; each extra run must be covered by a
//!   kill that interrupted that attempt, every journaled attempt ran at least once and every attempt
//!   that ran is journaled;
//! - `PRAGMA integrity_check` is `ok`;
//! - every run's workflow type, parent, state, output, error and journal (each event normalised: no
//!   times, no signal inbox ids) equal those of a crash-free reference run of the same cycles, made by
//!   the same worker on another file.
//!
//! It prints the fail points' firing counts, then ends with the line
//! `crash-campaign cycles=N workflows=M lost=0 duplicate_outcomes=0 duplicate_steps=0
//! extra_activity_runs=K integrity=ok`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use orchestrator::WorkflowError;
use orchestrator::codec::{Codec, DEFAULT_PAYLOAD_LIMIT};
use orchestrator::journal::{EventBody, decode_event_body, decode_run_error};
use orchestrator_tests::{ChildWorker, KIND_ATTEMPT_FAILED, KIND_SIGNAL_RECEIVED};
use rusqlite::{Connection, OpenFlags};

/// Cycles when `ORCHESTRATOR_CRASH_CYCLES` is not set (what CI runs).
const DEFAULT_CYCLES: u64 = 30;
/// Fewest cycles in which every fail point must fire.
const COVERAGE_CYCLES: u64 = 30;
/// The worker binary.
const WORKER: &str = env!("CARGO_BIN_EXE_campaign_worker");
/// The longest an incarnation may take to finish its work (or die at its fail point).
const INCARNATION_LIMIT: Duration = Duration::from_secs(120);
/// `runs.state`: running, parked.
const RUNNING: i64 = 0;
const PARKED: i64 = 3;

fn framing() -> Codec {
    Codec::new(DEFAULT_PAYLOAD_LIMIT + 4096)
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

// ---------------------------------------------------------------------------------------------------
// Kill plans

/// A fail point the worker offers, and how many hits one cycle's workflows surely reach.
#[derive(Debug, Clone)]
struct FailPointSpec {
    name: String,
    sure_hits: u32,
}

/// Asks the worker for its fail points (`campaign_worker describe`).
fn describe_fail_points() -> Vec<FailPointSpec> {
    let output = std::process::Command::new(WORKER)
        .arg("describe")
        .output()
        .expect("run campaign_worker describe");
    assert!(output.status.success(), "campaign_worker describe failed");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let points: Vec<FailPointSpec> = text
        .lines()
        .map(|line| match line.split(' ').collect::<Vec<_>>()[..] {
            ["fail-point", name, hits] => FailPointSpec {
                name: name.to_string(),
                sure_hits: hits.parse().expect("a hit count"),
            },
            _ => panic!("unexpected describe line {line:?}"),
        })
        .collect();
    assert!(!points.is_empty(), "the worker has no fail points");
    points
}

/// How one cycle's incarnation dies.
#[derive(Debug, Clone)]
enum KillPlan {
    /// The harness kills it this long after spawning it.
    Early { after_ms: u64 },
    /// The harness kills it this long after it printed `READY`.
    AfterReady { after_ms: u64 },
    /// It kills itself the `hit`-th time it reaches the fail point.
    FailPoint { name: String, hit: u32 },
}

impl std::fmt::Display for KillPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KillPlan::Early { after_ms } => write!(f, "kill {after_ms} ms after spawn"),
            KillPlan::AfterReady { after_ms } => write!(f, "kill {after_ms} ms after READY"),
            KillPlan::FailPoint { name, hit } => write!(f, "fail point {name} hit {hit}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The run log

/// What a run-log line records (see `tests/bin/campaign_worker.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Start,
    End,
    Ack,
    Finish,
    Outcome,
    Parked,
    Fired,
}

/// One run-log line: `<what> <workflow id> <step> <label> <pid>`.
#[derive(Debug, Clone)]
struct LogLine {
    what: What,
    workflow_id: String,
    step: u32,
    label: String,
}

/// An activity attempt: (workflow id, step, attempt).
type AttemptKey = (String, u32, u32);

impl LogLine {
    /// The attempt a `start`/`end` line is about (its label is `<activity>#<attempt>`).
    fn attempt(&self) -> AttemptKey {
        let (_, attempt) = self
            .label
            .rsplit_once('#')
            .unwrap_or_else(|| panic!("activity label without attempt: {self:?}"));
        let attempt = attempt.parse().expect("an attempt number");
        (self.workflow_id.clone(), self.step, attempt)
    }
}

/// Parses run-log lines, checking they all come from `pid` if given.
fn parse_log(bytes: &[u8], pid: Option<u32>) -> Vec<LogLine> {
    let text = std::str::from_utf8(bytes).expect("the run log is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the run log ends with a partial line"
    );
    text.lines()
        .map(|line| {
            let [what, workflow_id, step, label, line_pid] =
                line.split(' ').collect::<Vec<_>>()[..]
            else {
                panic!("malformed run-log line {line:?}");
            };
            let what = match what {
                "start" => What::Start,
                "end" => What::End,
                "ack" => What::Ack,
                "finish" => What::Finish,
                "outcome" => What::Outcome,
                "parked" => What::Parked,
                "fired" => What::Fired,
                _ => panic!("malformed run-log line {line:?}"),
            };
            if let Some(pid) = pid {
                let line_pid: u32 = line_pid.parse().expect("a pid");
                assert_eq!(line_pid, pid, "run-log line {line:?} from another process");
            }
            LogLine {
                what,
                workflow_id: workflow_id.to_string(),
                step: step.parse().expect("a step number"),
                label: label.to_string(),
            }
        })
        .collect()
}

/// The run log's bytes from `offset` on.
fn read_log_from(log: &Path, offset: u64) -> Vec<u8> {
    let Ok(mut file) = std::fs::File::open(log) else {
        return Vec::new();
    };
    file.seek(SeekFrom::Start(offset))
        .expect("seek the run log");
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).expect("read the run log");
    bytes
}

// ---------------------------------------------------------------------------------------------------
// The journal between incarnations

/// A run's row as far as its outcome goes: (state, output, error, updated_at_ms).
type RunRow = (i64, Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// What the harness knows of the journal, read incrementally between incarnations.
#[derive(Debug, Default)]
struct JournalView {
    /// Events up to this `seq` have been read (events are append-only, `seq` increases).
    last_seq: i64,
    /// Steps with a completion: (workflow id, step).
    completed: HashSet<(String, u32)>,
    /// Journaled failed attempts.
    failed_attempts: HashSet<AttemptKey>,
    /// Every run's row.
    runs: HashMap<String, RunRow>,
}

impl JournalView {
    /// Whether an attempt's fate is journaled: its step completed, or it is a recorded failed attempt.
    fn settled(&self, (workflow_id, step, attempt): &AttemptKey) -> bool {
        self.completed.contains(&(workflow_id.clone(), *step))
            || self
                .failed_attempts
                .contains(&(workflow_id.clone(), *step, *attempt))
    }

    fn unfinished(&self) -> usize {
        self.runs
            .values()
            .filter(|row| matches!(row.0, RUNNING | PARKED))
            .count()
    }

    /// Reads what was committed since the last refresh, through a read-only connection.
    fn refresh(&mut self, db: &Path) {
        let Some(conn) = open_journal_read_only(db) else {
            return;
        };
        let mut statement = conn
            .prepare(
                "SELECT seq, workflow_id, step, kind, completion, payload FROM events \
                 WHERE seq > ?1 ORDER BY seq",
            )
            .expect("prepare");
        let mut rows = statement.query([self.last_seq]).expect("read events");
        while let Some(row) = rows.next().expect("read an event") {
            let seq: i64 = row.get(0).unwrap();
            let workflow_id: String = row.get(1).unwrap();
            let step: u32 = row.get(2).unwrap();
            let kind: u16 = row.get(3).unwrap();
            let completion: bool = row.get(4).unwrap();
            self.last_seq = seq;
            if completion {
                self.completed.insert((workflow_id.clone(), step));
            }
            if kind == KIND_ATTEMPT_FAILED {
                let payload: Vec<u8> = row.get(5).unwrap();
                let EventBody::ActivityAttemptFailed { attempt, .. } =
                    framing().decode(&payload).expect("decode an event")
                else {
                    panic!("a kind-2 event that is no failed attempt");
                };
                self.failed_attempts.insert((workflow_id, step, attempt));
            }
        }
        let mut statement = conn
            .prepare("SELECT workflow_id, state, output, error, updated_at_ms FROM runs")
            .expect("prepare");
        self.runs = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?),
                ))
            })
            .expect("read runs")
            .collect::<Result<_, _>>()
            .expect("read runs");
    }
}

/// A read-only connection to the journal, if it has its tables yet. Read-only: it neither checkpoints
/// nor removes the WAL, so the next incarnation recovers exactly what the killed one left.
fn open_journal_read_only(db: &Path) -> Option<Connection> {
    if !db.exists() {
        return None;
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the journal read-only");
    let has_tables = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |row| row.get::<_, bool>(0),
    );
    match has_tables {
        Ok(true) => Some(conn),
        Ok(false) => None,
        // Killed while creating the schema (before the switch to WAL): a read-only connection cannot
        // roll that hot journal back, and nothing is committed yet.
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK =>
        {
            None
        }
        Err(error) => panic!("cannot read the journal between incarnations: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Incarnations

/// Starts `campaign_worker run` on `db`, starting `cycles`, with a fail point armed if given.
fn spawn_worker(
    db: &Path,
    log: &Path,
    cycles: &str,
    fail_point: Option<(&str, u32)>,
) -> ChildWorker {
    let mut args = vec![
        "run".to_string(),
        db.display().to_string(),
        log.display().to_string(),
        cycles.to_string(),
    ];
    if let Some((name, hit)) = fail_point {
        args.extend([name.to_string(), hit.to_string()]);
    }
    ChildWorker::spawn(WORKER, args)
}

/// Waits for the worker to exit on its own, within [`INCARNATION_LIMIT`].
fn wait_for_exit(worker: &mut ChildWorker, what: &str) -> ExitStatus {
    let deadline = Instant::now() + INCARNATION_LIMIT;
    while !worker.has_exited() {
        assert!(
            Instant::now() < deadline,
            "{what}: the worker neither finished nor died within {INCARNATION_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    worker.wait_exit(Duration::from_secs(1))
}

/// Renders a set of cycles for the worker's command line (`-` for none).
fn cycles_arg(cycles: &BTreeSet<u64>) -> String {
    if cycles.is_empty() {
        return "-".to_string();
    }
    cycles
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything the campaign accumulates over its cycles.
struct Campaign {
    _dir: tempfile::TempDir,
    db: PathBuf,
    log: PathBuf,
    rng: fastrand::Rng,
    fail_points: Vec<FailPointSpec>,
    fired: BTreeMap<String, usize>,
    armed_unfired: usize,
    random_kills: usize,
    landed_kills: usize,
    log_offset: u64,
    journal: JournalView,
    /// Cycles whose six starts were all acknowledged.
    started_cycles: BTreeSet<u64>,
    /// Runs whose `engine.start` returned `Ok`.
    acknowledged: BTreeSet<String>,
    /// How often a kill interrupted each attempt.
    interruptions: HashMap<AttemptKey, usize>,
    /// The first finished row seen of each run.
    finished_rows: HashMap<String, RunRow>,
    lost: BTreeSet<String>,
    changed_outcomes: BTreeSet<String>,
    violations: Vec<String>,
    max_backlog: usize,
}

impl Campaign {
    fn new(seed: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orch-crash-campaign-")
            .tempdir()
            .expect("temp dir");
        let fail_points = describe_fail_points();
        Campaign {
            db: dir.path().join("journal.db"),
            log: dir.path().join("run.log"),
            _dir: dir,
            rng: fastrand::Rng::with_seed(seed),
            fired: fail_points.iter().map(|p| (p.name.clone(), 0)).collect(),
            fail_points,
            armed_unfired: 0,
            random_kills: 0,
            landed_kills: 0,
            log_offset: 0,
            journal: JournalView::default(),
            started_cycles: BTreeSet::new(),
            acknowledged: BTreeSet::new(),
            interruptions: HashMap::new(),
            finished_rows: HashMap::new(),
            lost: BTreeSet::new(),
            changed_outcomes: BTreeSet::new(),
            violations: Vec::new(),
            max_backlog: 0,
        }
    }

    /// Every fourth cycle a random kill; otherwise the least-fired fail point, at a hit the cycle's
    /// own workflows surely reach.
    fn plan(&mut self, cycle: u64) -> KillPlan {
        if cycle % 4 == 3 {
            return if self.rng.u8(..4) == 0 {
                KillPlan::Early {
                    after_ms: self.rng.u64(0..=10),
                }
            } else {
                KillPlan::AfterReady {
                    after_ms: self.rng.u64(0..=200),
                }
            };
        }
        let fewest = self.fired.values().copied().min().unwrap_or(0);
        let candidates: Vec<&FailPointSpec> = self
            .fail_points
            .iter()
            .filter(|point| self.fired[&point.name] == fewest)
            .collect();
        let point = candidates[self.rng.usize(..candidates.len())];
        KillPlan::FailPoint {
            name: point.name.clone(),
            hit: self.rng.u32(1..=point.sure_hits),
        }
    }

    /// Cycles to start in this incarnation: `cycle` and every earlier one not fully acknowledged.
    fn cycles_to_start(&self, upto: u64) -> BTreeSet<u64> {
        (0..upto)
            .filter(|c| !self.started_cycles.contains(c))
            .collect()
    }

    /// Runs one killed incarnation; returns a one-line description.
    fn run_cycle(&mut self, cycle: u64) -> String {
        let plan = self.plan(cycle);
        let cycles = cycles_arg(&self.cycles_to_start(cycle + 1));
        let began = Instant::now();
        let fail_point = match &plan {
            KillPlan::FailPoint { name, hit } => Some((name.as_str(), *hit)),
            _ => None,
        };
        let mut worker = spawn_worker(&self.db, &self.log, &cycles, fail_point);
        let pid = worker.id();
        let status = match &plan {
            KillPlan::Early { after_ms } => {
                std::thread::sleep(Duration::from_millis(*after_ms));
                worker.kill()
            }
            KillPlan::AfterReady { after_ms } => {
                let _ = worker.wait_for("READY", INCARNATION_LIMIT);
                std::thread::sleep(Duration::from_millis(*after_ms));
                worker.kill()
            }
            KillPlan::FailPoint { .. } => wait_for_exit(&mut worker, &format!("cycle {cycle}")),
        };
        let elapsed = began.elapsed();
        let interrupted = self.after_incarnation(cycle, &plan, status, pid);
        format!(
            "cycle {cycle:4}: {plan:<40} {:>5} ms, {}, interrupted {interrupted}, unfinished runs {}",
            elapsed.as_millis(),
            if status.signal() == Some(libc::SIGKILL) {
                "killed"
            } else {
                "finished"
            },
            self.journal.unfinished()
        )
    }

    /// Reads what the dead incarnation left (run log, journal) and checks it; returns how many activity
    /// attempts its death interrupted.
    fn after_incarnation(
        &mut self,
        cycle: u64,
        plan: &KillPlan,
        status: ExitStatus,
        pid: u32,
    ) -> usize {
        let landed = status.signal() == Some(libc::SIGKILL);
        if !landed && !status.success() {
            self.violations.push(format!(
                "cycle {cycle}: the worker failed on its own: {status}"
            ));
        }
        let bytes = read_log_from(&self.log, self.log_offset);
        self.log_offset += bytes.len() as u64;
        let segment = parse_log(&bytes, Some(pid));
        self.journal.refresh(&self.db);
        self.note_fail_point(cycle, plan, landed, &segment);
        self.note_acknowledgements(&segment);
        self.note_parked_runs(cycle, &segment);
        self.check_nothing_lost(cycle);
        self.check_finished_rows_stay(cycle);
        self.max_backlog = self.max_backlog.max(self.journal.unfinished());
        let interrupted = self.note_interrupted_attempts(&segment);
        if !landed && interrupted > 0 {
            self.violations.push(format!(
                "cycle {cycle}: the worker exited on its own with {interrupted} activity attempt(s) not journaled"
            ));
        }
        if landed {
            self.landed_kills += 1;
        }
        interrupted
    }

    fn note_fail_point(&mut self, cycle: u64, plan: &KillPlan, landed: bool, segment: &[LogLine]) {
        let fired: Vec<&LogLine> = segment
            .iter()
            .filter(|line| line.what == What::Fired)
            .collect();
        match plan {
            KillPlan::FailPoint { name, hit } => match fired[..] {
                [] => {
                    assert!(!landed, "cycle {cycle}: SIGKILLed, but no fail point fired");
                    self.armed_unfired += 1;
                }
                [line] => {
                    assert_eq!(
                        (&line.label, line.step),
                        (name, *hit),
                        "cycle {cycle}: another fail point fired"
                    );
                    assert!(
                        landed,
                        "cycle {cycle}: fail point {name} fired but the worker lived on"
                    );
                    *self.fired.get_mut(name).unwrap() += 1;
                }
                _ => panic!("cycle {cycle}: several fail points fired"),
            },
            KillPlan::Early { .. } | KillPlan::AfterReady { .. } => {
                self.random_kills += 1;
                assert!(
                    fired.is_empty(),
                    "cycle {cycle}: a fail point fired unarmed"
                );
            }
        }
    }

    fn note_acknowledgements(&mut self, segment: &[LogLine]) {
        for line in segment.iter().filter(|line| line.what == What::Ack) {
            if line.label == "cycle" {
                self.started_cycles.insert(u64::from(line.step));
            } else {
                self.acknowledged.insert(line.workflow_id.clone());
            }
        }
    }

    /// No run of this load may be parked (the worker prints why on stderr).
    fn note_parked_runs(&mut self, cycle: u64, segment: &[LogLine]) {
        for line in segment.iter().filter(|line| line.what == What::Parked) {
            self.violations.push(format!(
                "cycle {cycle}: run {} was parked",
                line.workflow_id
            ));
        }
    }

    /// Every run whose start was acknowledged is in the journal.
    fn check_nothing_lost(&mut self, cycle: u64) {
        for id in &self.acknowledged {
            if !self.journal.runs.contains_key(id) && self.lost.insert(id.clone()) {
                self.violations.push(format!(
                    "cycle {cycle}: run {id} was acknowledged but is missing from the journal"
                ));
            }
        }
    }

    /// A finished run's row never changes again.
    fn check_finished_rows_stay(&mut self, cycle: u64) {
        for (id, row) in &self.journal.runs {
            if matches!(row.0, RUNNING | PARKED) {
                continue;
            }
            match self.finished_rows.get(id) {
                None => {
                    self.finished_rows.insert(id.clone(), row.clone());
                }
                Some(first) if first != row => {
                    if self.changed_outcomes.insert(id.clone()) {
                        self.violations.push(format!(
                            "cycle {cycle}: finished run {id} changed from {first:?} to {row:?}"
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Records the attempts this incarnation started whose fate was not journaled when it died.
    fn note_interrupted_attempts(&mut self, segment: &[LogLine]) -> usize {
        let started: BTreeSet<AttemptKey> = segment
            .iter()
            .filter(|line| line.what == What::Start)
            .map(LogLine::attempt)
            .collect();
        let mut interrupted = 0;
        for key in started {
            if !self.journal.settled(&key) {
                *self.interruptions.entry(key).or_default() += 1;
                interrupted += 1;
            }
        }
        interrupted
    }

    /// The last incarnation: no kill; it starts what was never acknowledged and finishes everything.
    fn run_final(&mut self, cycles: u64) {
        let to_start = cycles_arg(&self.cycles_to_start(cycles));
        let mut worker = spawn_worker(&self.db, &self.log, &to_start, None);
        let pid = worker.id();
        let status = wait_for_exit(&mut worker, "the final incarnation");
        assert!(status.success(), "the final incarnation failed: {status}");
        let bytes = read_log_from(&self.log, self.log_offset);
        self.log_offset += bytes.len() as u64;
        let segment = parse_log(&bytes, Some(pid));
        self.journal.refresh(&self.db);
        self.note_acknowledgements(&segment);
        self.note_parked_runs(cycles, &segment);
        self.check_nothing_lost(cycles);
        self.check_finished_rows_stay(cycles);
        assert!(
            (0..cycles).all(|c| self.started_cycles.contains(&c)),
            "the final incarnation started every cycle"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// The final journal

/// One run as the final journal holds it.
#[derive(Debug, Clone, PartialEq)]
struct FinalRun {
    workflow_name: String,
    parent_id: Option<String>,
    state: i64,
    output: Option<Vec<u8>>,
    /// Its `error` column, decoded and normalised.
    error: Option<String>,
    /// Its events as (step, kind, normalised body), sorted.
    events: Vec<(u32, u16, String)>,
}

/// A workflow error without its attempt counts: attempts cut short by a kill count (event format
/// 3), so a killed run may record more attempts than the reference; the outcome must match.
fn normalise_error(error: &WorkflowError) -> WorkflowError {
    match error.clone() {
        WorkflowError::ActivityFailed {
            activity,
            step,
            error,
            ..
        } => WorkflowError::ActivityFailed {
            activity,
            step,
            attempts: 0,
            error,
        },
        WorkflowError::ChildFailed { workflow_id, error } => WorkflowError::ChildFailed {
            workflow_id,
            error: Box::new(normalise_error(&error)),
        },
        WorkflowError::CompensationFailed {
            original,
            compensation,
        } => WorkflowError::CompensationFailed {
            original: Box::new(normalise_error(&original)),
            compensation: Box::new(normalise_error(&compensation)),
        },
        other => other,
    }
}

/// A run's `error` column, decoded and normalised (see [`normalise_error`]).
fn normalise_error_column(state: i64, bytes: Option<Vec<u8>>) -> Option<String> {
    let bytes = bytes?;
    Some(match decode_run_error(&bytes) {
        Ok(error) if state != 3 => format!("{:?}", normalise_error(&error)),
        _ => format!("{bytes:?}"),
    })
}

/// An event body without what legitimately differs between runs of the same workflow: times (timer
/// fire times, failed attempts' retry times), signal inbox ids, and attempt counts (attempts cut
/// short by a kill count since event format 3).
fn normalise(body: &EventBody) -> String {
    match body {
        EventBody::ActivityCompleted {
            name,
            input_fingerprint,
            result,
            ..
        } => format!("completed {name} {input_fingerprint:x}: {result:?}"),
        EventBody::RunFinished {
            workflow_id,
            result: Err(error),
        } => format!("{workflow_id} failed: {:?}", normalise_error(error)),
        EventBody::ActivityAttemptFailed {
            name,
            input_fingerprint,
            attempt,
            error,
            ..
        } => format!("{name} {input_fingerprint:x} attempt {attempt}: {error:?}"),
        EventBody::TimerStarted { .. } => "timer started".to_string(),
        EventBody::SignalWaitStarted { name, .. } => format!("wait for {name}"),
        EventBody::SignalReceived { name, payload, .. } => format!("{name} {payload:?}"),
        other => format!("{other:?}"),
    }
}

/// Every run with its normalised journal.
fn read_final_runs(conn: &Connection) -> BTreeMap<String, FinalRun> {
    let mut statement = conn
        .prepare("SELECT workflow_id, workflow_name, parent_id, state, output, error FROM runs")
        .expect("prepare");
    let mut runs: BTreeMap<String, FinalRun> = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                FinalRun {
                    workflow_name: row.get(1)?,
                    parent_id: row.get(2)?,
                    state: row.get(3)?,
                    output: row.get(4)?,
                    error: normalise_error_column(row.get(3)?, row.get(5)?),
                    events: Vec::new(),
                },
            ))
        })
        .expect("read runs")
        .collect::<Result<_, _>>()
        .expect("read runs");
    for (workflow_id, step, kind, body) in read_events(conn) {
        // Which attempts failed depends on the kills since event format 3: an attempt cut short
        // counts, so the next one has a higher number (e.g. `flaky` fails only its first attempt; if
        // a kill cut attempt 1 short, attempt 2 succeeds and no failure is journaled). Compared: the
        // outcomes. Failed attempts are checked for duplicates by `count_duplicate_steps`.
        // Attempt starts (annotations) likewise: one per attempt that ran.
        if matches!(body, EventBody::ActivityAttemptFailed { .. }) || body.is_annotation() {
            continue;
        }
        let run = runs
            .get_mut(&workflow_id)
            .unwrap_or_else(|| panic!("events of a run that does not exist: {workflow_id}"));
        run.events.push((step, kind, normalise(&body)));
    }
    for run in runs.values_mut() {
        run.events.sort();
    }
    runs
}

/// Every event, decoded: (workflow id, step, kind, body), in commit order.
fn read_events(conn: &Connection) -> Vec<(String, u32, u16, EventBody)> {
    let mut statement = conn
        .prepare("SELECT workflow_id, step, kind, payload FROM events ORDER BY seq")
        .expect("prepare");
    statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, u16>(2)?,
                row.get::<_, Vec<u8>>(3)?,
            ))
        })
        .expect("read events")
        .map(|row| {
            let (workflow_id, step, kind, payload) = row.expect("read an event");
            let body = decode_event_body(&payload).expect("decode an event");
            assert_eq!(body.kind(), kind, "{workflow_id} step {step}: kind column");
            (workflow_id, step, kind, body)
        })
        .collect()
}

/// Events beyond the first per (run, step, kind) — per attempt for failed attempts.
fn count_duplicate_steps(
    events: &[(String, u32, u16, EventBody)],
    report: &mut Vec<String>,
) -> usize {
    let mut seen: HashMap<(&str, u32, u16, u32), usize> = HashMap::new();
    for (workflow_id, step, kind, body) in events {
        let attempt = match body {
            EventBody::ActivityAttemptFailed { attempt, .. }
            | EventBody::ActivityAttemptStarted { attempt, .. } => *attempt,
            _ => 0,
        };
        *seen
            .entry((workflow_id.as_str(), *step, *kind, attempt))
            .or_default() += 1;
    }
    let mut duplicates = 0;
    for ((workflow_id, step, kind, attempt), count) in seen {
        if count > 1 {
            report.push(format!(
                "{workflow_id} step {step}: {count} events of kind {kind} (attempt {attempt})"
            ));
            duplicates += count - 1;
        }
    }
    duplicates
}

/// Signals consumed by other than exactly one `SignalReceived` of the consuming step.
fn count_signal_mismatches(
    conn: &Connection,
    events: &[(String, u32, u16, EventBody)],
    report: &mut Vec<String>,
) -> usize {
    let mut receipts: HashMap<i64, Vec<(&str, u32)>> = HashMap::new();
    for (workflow_id, step, kind, body) in events {
        if *kind == KIND_SIGNAL_RECEIVED {
            let EventBody::SignalReceived { signal_id, .. } = body else {
                unreachable!("kind 6 is SignalReceived");
            };
            receipts
                .entry(*signal_id)
                .or_default()
                .push((workflow_id.as_str(), *step));
        }
    }
    let mut statement = conn
        .prepare("SELECT id, workflow_id, consumed_by_step FROM signals WHERE consumed_by_step IS NOT NULL")
        .expect("prepare");
    let consumed: Vec<(i64, String, u32)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("read signals")
        .collect::<Result<_, _>>()
        .expect("read signals");
    let mut mismatches = 0;
    for (id, workflow_id, step) in &consumed {
        let expected = vec![(workflow_id.as_str(), *step)];
        if receipts.remove(id).as_ref() != Some(&expected) {
            report.push(format!(
                "signal #{id} of {workflow_id} consumed by step {step}: receipts differ"
            ));
            mismatches += 1;
        }
    }
    for (id, receipts) in receipts {
        report.push(format!(
            "signal #{id} received {receipts:?} but not consumed"
        ));
        mismatches += 1;
    }
    mismatches
}

/// Runs whose outcome was written after a store had acknowledged one (from the whole run log).
fn count_duplicate_outcomes(log: &[LogLine], report: &mut Vec<String>) -> usize {
    let mut recorded: HashSet<&str> = HashSet::new();
    let mut duplicated: BTreeSet<&str> = BTreeSet::new();
    for line in log {
        match line.what {
            What::Finish | What::Outcome => {
                if recorded.contains(line.workflow_id.as_str()) {
                    duplicated.insert(&line.workflow_id);
                }
                if line.what == What::Outcome {
                    recorded.insert(&line.workflow_id);
                }
            }
            _ => {}
        }
    }
    for id in &duplicated {
        report.push(format!(
            "{id}: its outcome was written again after being recorded"
        ));
    }
    duplicated.len()
}

/// The activity attempts the journal records, as (run, step, attempt): those with an outcome (every
/// completion and failed attempt), and those started (with an outcome or not: since event format 3
/// every attempt's start is journaled before it runs).
fn journaled_attempts(
    events: &[(String, u32, u16, EventBody)],
) -> (BTreeSet<AttemptKey>, BTreeSet<AttemptKey>) {
    let mut outcomes = BTreeSet::new();
    let mut started = BTreeSet::new();
    for (workflow_id, step, _, body) in events {
        match body {
            EventBody::ActivityCompleted { attempts, .. } => {
                outcomes.insert((workflow_id.clone(), *step, *attempts));
            }
            EventBody::ActivityAttemptFailed { attempt, .. } => {
                outcomes.insert((workflow_id.clone(), *step, *attempt));
            }
            EventBody::ActivityAttemptStarted { attempt, .. } => {
                started.insert((workflow_id.clone(), *step, *attempt));
            }
            _ => {}
        }
    }
    (outcomes, started)
}

/// Compares the run log's activity starts with the journal and the kills; returns the extra runs.
fn count_extra_activity_runs(
    log: &[LogLine],
    (journaled, started): &(BTreeSet<AttemptKey>, BTreeSet<AttemptKey>),
    interruptions: &HashMap<AttemptKey, usize>,
    report: &mut Vec<String>,
) -> usize {
    let mut runs: BTreeMap<AttemptKey, usize> = BTreeMap::new();
    for line in log.iter().filter(|line| line.what == What::Start) {
        *runs.entry(line.attempt()).or_default() += 1;
    }
    for key in journaled {
        if !runs.contains_key(key) {
            report.push(format!("attempt {key:?} is journaled but never ran"));
        }
    }
    let mut extra = 0;
    for (key, count) in &runs {
        if !journaled.contains(key) && !started.contains(key) {
            report.push(format!(
                "attempt {key:?} ran {count} time(s) but is not journaled"
            ));
        }
        if !started.contains(key) {
            report.push(format!(
                "attempt {key:?} ran {count} time(s) without its start journaled first"
            ));
        }
        let allowed = interruptions.get(key).copied().unwrap_or(0);
        if count - 1 > allowed {
            report.push(format!(
                "attempt {key:?} ran {count} times but kills interrupted it only {allowed} time(s)"
            ));
        }
        extra += count - 1;
    }
    extra
}

/// Compares the journal's runs with the reference's: returns the ids missing from the journal and
/// how many runs differ (or exist only in the journal).
fn compare_with_reference(
    runs: &BTreeMap<String, FinalRun>,
    reference: &BTreeMap<String, FinalRun>,
    report: &mut Vec<String>,
) -> (BTreeSet<String>, usize) {
    let mut missing = BTreeSet::new();
    let mut differing = 0;
    for (id, expected) in reference {
        match runs.get(id) {
            None => {
                report.push(format!(
                    "{id}: in the reference run, missing from the journal"
                ));
                missing.insert(id.clone());
            }
            Some(run) if run != expected => {
                report.push(format!(
                    "{id}: differs from the reference run:\n  journal:   {run:?}\n  reference: {expected:?}"
                ));
                differing += 1;
            }
            Some(_) => {}
        }
    }
    for id in runs.keys().filter(|id| !reference.contains_key(*id)) {
        report.push(format!("{id}: in the journal, not in the reference run"));
        differing += 1;
    }
    (missing, differing)
}

/// Runs the same cycles once, uninterrupted, on a fresh journal.
fn reference_runs(cycles: u64) -> BTreeMap<String, FinalRun> {
    let dir = tempfile::Builder::new()
        .prefix("orch-crash-reference-")
        .tempdir()
        .expect("temp dir");
    let db = dir.path().join("reference.db");
    let mut worker = spawn_worker(
        &db,
        &dir.path().join("run.log"),
        &format!("0..{cycles}"),
        None,
    );
    let status = wait_for_exit(&mut worker, "the reference run");
    assert!(status.success(), "the reference run failed: {status}");
    let conn = Connection::open(&db).expect("open the reference journal");
    read_final_runs(&conn)
}

fn integrity_check(conn: &Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check")
}

/// The campaign's findings, from the final journal, the whole run log and the reference run.
struct Verdict {
    cycles: u64,
    workflows: usize,
    lost: usize,
    duplicate_outcomes: usize,
    duplicate_steps: usize,
    extra_activity_runs: usize,
    integrity: String,
    differing: usize,
    problems: Vec<String>,
}

impl std::fmt::Display for Verdict {
    /// The campaign's last line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "crash-campaign cycles={} workflows={} lost={} duplicate_outcomes={} duplicate_steps={} \
             extra_activity_runs={} integrity={}",
            self.cycles,
            self.workflows,
            self.lost,
            self.duplicate_outcomes,
            self.duplicate_steps,
            self.extra_activity_runs,
            self.integrity
        )
    }
}

/// Checks the final journal (after the last incarnation) against the run log, the kills and a
/// crash-free reference run of the same cycles.
fn judge(campaign: &mut Campaign, cycles: u64) -> Verdict {
    let conn = Connection::open(&campaign.db).expect("open the journal");
    let integrity = integrity_check(&conn);
    let runs = read_final_runs(&conn);
    let events = read_events(&conn);
    let log = parse_log(
        &std::fs::read(&campaign.log).expect("read the run log"),
        None,
    );
    let mut problems: Vec<String> = std::mem::take(&mut campaign.violations);
    for (id, run) in &runs {
        if matches!(run.state, RUNNING | PARKED) && campaign.lost.insert(id.clone()) {
            problems.push(format!("{id}: unfinished at the end (state {})", run.state));
        }
    }
    let reference = reference_runs(cycles);
    let (missing, differing) = compare_with_reference(&runs, &reference, &mut problems);
    campaign.lost.extend(missing);
    let duplicate_outcomes =
        count_duplicate_outcomes(&log, &mut problems) + campaign.changed_outcomes.len();
    let duplicate_steps = count_duplicate_steps(&events, &mut problems)
        + count_signal_mismatches(&conn, &events, &mut problems);
    let extra_activity_runs = count_extra_activity_runs(
        &log,
        &journaled_attempts(&events),
        &campaign.interruptions,
        &mut problems,
    );
    Verdict {
        cycles,
        workflows: runs.len(),
        lost: campaign.lost.len(),
        duplicate_outcomes,
        duplicate_steps,
        extra_activity_runs,
        integrity,
        differing,
        problems,
    }
}

/// Prints how often each fail point fired and what the kills did.
fn print_kill_statistics(campaign: &Campaign) {
    let fired: Vec<String> = campaign
        .fired
        .iter()
        .map(|(name, count)| format!("{name}={count}"))
        .collect();
    println!("fail-points fired: {}", fired.join(" "));
    println!(
        "kills: random={} fail-point={} (armed but not reached: {}) landed={}; max unfinished runs={}",
        campaign.random_kills,
        campaign.fired.values().sum::<usize>(),
        campaign.armed_unfired,
        campaign.landed_kills,
        campaign.max_backlog,
    );
}

#[test]
fn crash_campaign() {
    let cycles = env_u64("ORCHESTRATOR_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES);
    let seed = env_u64("ORCHESTRATOR_CRASH_SEED").unwrap_or_else(|| fastrand::u64(..));
    println!(
        "crash-campaign seed={seed} cycles={cycles} (ORCHESTRATOR_CRASH_SEED={seed} replays these choices)"
    );
    let began = Instant::now();
    let mut campaign = Campaign::new(seed);
    for cycle in 0..cycles {
        let line = campaign.run_cycle(cycle);
        println!("{line}");
    }
    campaign.run_final(cycles);
    let campaign_time = began.elapsed();
    let verdict = judge(&mut campaign, cycles);

    print_kill_statistics(&campaign);
    println!(
        "differing from the reference run: {}; campaign {:.1} s, with checks and reference {:.1} s; seed={seed}",
        verdict.differing,
        campaign_time.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    for problem in verdict.problems.iter().take(50) {
        println!("PROBLEM {problem}");
    }
    println!("{verdict}");

    assert_eq!(verdict.integrity, "ok", "PRAGMA integrity_check");
    assert!(
        verdict.problems.is_empty(),
        "{} problem(s) (seed {seed}), first: {}",
        verdict.problems.len(),
        verdict.problems[0]
    );
    assert_eq!(
        (
            verdict.lost,
            verdict.duplicate_outcomes,
            verdict.duplicate_steps
        ),
        (0, 0, 0)
    );
    if cycles >= COVERAGE_CYCLES {
        let unfired: Vec<&String> = campaign
            .fired
            .iter()
            .filter(|(_, count)| **count == 0)
            .map(|(name, _)| name)
            .collect();
        assert!(
            unfired.is_empty(),
            "fail points that never fired: {unfired:?}"
        );
    }
}
