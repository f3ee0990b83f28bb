//! Deterministic simulation: the real engine over the real SQLite store, with a virtual clock, a seeded
//! workload, seeded storage faults and seeded crashes — one seed, one exact execution.
//!
//! How it is deterministic:
//! - everything runs on one thread: a current-thread tokio runtime with paused time (timers, retry
//!   backoffs and activity durations advance virtually, as soon as nothing else can run), and the
//!   SQLite store in [`SqliteExecution::Inline`] mode (statements run on the calling task, no threads);
//! - the workload (workflow types, inputs, activity durations and transient failures, signal times),
//!   the faults (which store call fails and how) and the crashes (the virtual moment each life of the
//!   process ends) all come from the seed; the engine's own randomness (retry jitter, UUIDs) comes from
//!   the thread's `fastrand` generator, seeded too; the engine polls its `select!`s in a fixed order.
//!
//! A crash drops the runtime in the middle of whatever it was doing — every task, every in-flight
//! activity, the engine — with no shutdown; the next life opens the journal file again, as a restarted
//! process would. Its virtual clock continues where the last one stopped. After the last life (no
//! faults, no crash) the invariants are checked on the file: every workflow finished with the result
//! its input implies (no workflow lost, none finished twice), no step has two completions, every
//! journaled activity result was produced by a real execution, nothing is parked, and
//! `PRAGMA integrity_check` is ok.
//!
//! `ORCHESTRATOR_SIM_SEEDS=N` runs seeds 1..=N (default 24); `ORCHESTRATOR_SIM_SEED=S` runs seed S
//! alone. A failing seed is printed with the command that replays it exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::store::{Durability, SqliteExecution, SqliteOptions, SqliteStore, Store};
use orchestrator_tests::faults::FaultInjector;
use orchestrator_tests::store_hooks::HookedStore;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------------
// The simulated world: what activities did, shared by every life of one simulation.

/// What the activities of one simulation did, across its lives (the "outside world").
#[derive(Default)]
struct World {
    /// Executions per activity step key (`workflow/step-name`).
    executions: Mutex<HashMap<String, u32>>,
}

impl World {
    /// Records an execution of `key`'s activity; returns how many there have been.
    fn execute(&self, key: &str) -> u32 {
        let mut executions = self.executions.lock().unwrap();
        let count = executions.entry(key.to_string()).or_insert(0);
        *count += 1;
        *count
    }
}

fn worlds() -> &'static Mutex<HashMap<u64, Arc<World>>> {
    static WORLDS: OnceLock<Mutex<HashMap<u64, Arc<World>>>> = OnceLock::new();
    WORLDS.get_or_init(Mutex::default)
}

fn world(id: u64) -> Arc<World> {
    worlds().lock().unwrap().entry(id).or_default().clone()
}

/// Identifies the worlds of simulations running in parallel in this process.
static NEXT_WORLD: AtomicU64 = AtomicU64::new(1);

// ---------------------------------------------------------------------------------------------------
// Workload: activities and workflows

/// One activity execution's instructions.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    world: u64,
    key: String,
    /// Virtual milliseconds the activity takes.
    millis: u64,
    /// How many executions fail (retryably) before one succeeds.
    failures: u32,
}

/// The value a task's activity returns (a pure function of its key, so results can be predicted).
fn task_value(key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish() % 1_000_003
}

#[activity(retry(max_attempts = 6, backoff = "10ms..200ms"))]
async fn work(task: Task) -> Result<u64, ActivityError> {
    let execution = world(task.world).execute(&task.key);
    tokio::time::sleep(Duration::from_millis(task.millis)).await;
    if execution <= task.failures {
        return Err(ActivityError::retryable(format!(
            "{} fails its execution {execution}",
            task.key
        )));
    }
    Ok(task_value(&task.key))
}

#[activity(retry(max_attempts = 6, backoff = "10ms..200ms"))]
async fn undo(task: Task) -> Result<(), ActivityError> {
    world(task.world).execute(&task.key);
    tokio::time::sleep(Duration::from_millis(task.millis)).await;
    Ok(())
}

#[activity]
async fn refuse(task: Task) -> Result<u64, ActivityError> {
    world(task.world).execute(&task.key);
    Err(ActivityError::non_retryable(format!(
        "{} is refused",
        task.key
    )))
}

/// What one workflow does.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    tasks: Vec<Task>,
    /// A timer before the signal wait, in virtual milliseconds.
    sleep_ms: u64,
    /// For a parent: its child's job.
    child: Option<(String, Box<Job>)>,
}

fn fold(acc: u64, value: u64) -> u64 {
    acc.wrapping_mul(31).wrapping_add(value) % 1_000_000_007
}

/// Activities one after the other.
#[workflow]
async fn sequence(ctx: WorkflowContext, job: Job) -> Result<u64, WorkflowError> {
    let mut acc = 7;
    for task in job.tasks {
        acc = fold(acc, ctx.call(work, task).await?);
    }
    Ok(acc)
}

/// All activities at once, joined (their completion order is up to the seeded durations).
#[workflow]
async fn fan_out(ctx: WorkflowContext, job: Job) -> Result<u64, WorkflowError> {
    let calls = job.tasks.into_iter().map(|task| ctx.call(work, task));
    let values = futures::future::join_all(calls).await;
    let mut acc = 7;
    for value in values {
        acc = fold(acc, value?);
    }
    Ok(acc)
}

/// A timer, a signal, an activity.
#[workflow]
async fn timer_and_signal(ctx: WorkflowContext, job: Job) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(job.sleep_ms)).await?;
    let go: u64 = ctx
        .signal("go")
        .timeout(Duration::from_secs(30 * 86_400))
        .await?;
    let mut acc = fold(7, go);
    for task in job.tasks {
        acc = fold(acc, ctx.call(work, task).await?);
    }
    Ok(acc)
}

/// Steps with compensations, then a refused step: rolls back and fails.
#[workflow]
async fn saga(ctx: WorkflowContext, job: Job) -> Result<u64, WorkflowError> {
    let mut tasks = job.tasks;
    let last = tasks.pop().expect("a saga job has tasks");
    for task in tasks {
        ctx.call(work, task.clone()).await?;
        let mut compensation = task;
        compensation.key.push_str("/undo");
        ctx.compensate_with(undo, compensation);
    }
    ctx.call(refuse, last).await?;
    Ok(0)
}

/// A child workflow (a `sequence`), then an activity of its own.
#[workflow]
async fn parent(ctx: WorkflowContext, job: Job) -> Result<u64, WorkflowError> {
    let (child_id, child_job) = job.child.expect("a parent job has a child");
    let from_child = ctx.child(sequence, child_id, *child_job).await?;
    let mut acc = fold(7, from_child);
    for task in job.tasks {
        acc = fold(acc, ctx.call(work, task).await?);
    }
    Ok(acc)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Sequence,
    FanOut,
    TimerAndSignal,
    Saga,
    Parent,
}

/// One workflow of a simulation, with the outcome its input implies.
#[derive(Debug, Clone)]
struct Planned {
    id: String,
    kind: Kind,
    job: Job,
    /// `Some(output)` for a completed run, `None` for a failed one.
    expected: Option<u64>,
    /// The payload of its "go" signal and the virtual delay before it is sent.
    signal: Option<(u64, u64)>,
}

fn sequence_value(tasks: &[Task]) -> u64 {
    tasks
        .iter()
        .fold(7, |acc, task| fold(acc, task_value(&task.key)))
}

fn plan(seed: u64, world: u64, rng: &mut fastrand::Rng) -> Vec<Planned> {
    let tasks = |rng: &mut fastrand::Rng, id: &str, count: usize| -> Vec<Task> {
        (0..count)
            .map(|i| Task {
                world,
                key: format!("{id}/t{i}"),
                millis: rng.u64(0..40),
                failures: if rng.u8(..) < 40 { rng.u32(1..3) } else { 0 },
            })
            .collect()
    };
    let count = rng.usize(6..=12);
    (0..count)
        .map(|i| {
            let id = format!("sim-{seed}-{i}");
            let kind = match rng.u8(0..5) {
                0 => Kind::Sequence,
                1 => Kind::FanOut,
                2 => Kind::TimerAndSignal,
                3 => Kind::Saga,
                _ => Kind::Parent,
            };
            let n = rng.usize(1..=5);
            let mut job = Job {
                tasks: tasks(rng, &id, n),
                sleep_ms: rng.u64(0..500),
                child: None,
            };
            let mut signal = None;
            let expected = match kind {
                Kind::Sequence | Kind::FanOut => Some(sequence_value(&job.tasks)),
                Kind::TimerAndSignal => {
                    let payload = rng.u64(..1_000);
                    signal = Some((payload, rng.u64(0..800)));
                    Some(job.tasks.iter().fold(fold(7, payload), |acc, task| {
                        fold(acc, task_value(&task.key))
                    }))
                }
                Kind::Saga => {
                    job.tasks.push(Task {
                        world,
                        key: format!("{id}/refused"),
                        millis: 0,
                        failures: 0,
                    });
                    None
                }
                Kind::Parent => {
                    let child_id = format!("{id}-child");
                    let child_steps = rng.usize(1..=3);
                    let child_tasks = tasks(rng, &child_id, child_steps);
                    let from_child = sequence_value(&child_tasks);
                    job.child = Some((
                        child_id,
                        Box::new(Job {
                            tasks: child_tasks,
                            sleep_ms: 0,
                            child: None,
                        }),
                    ));
                    Some(job.tasks.iter().fold(fold(7, from_child), |acc, task| {
                        fold(acc, task_value(&task.key))
                    }))
                }
            };
            Planned {
                id,
                kind,
                job,
                expected,
                signal,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// Lives of the simulated process

/// How one life of the process ended.
enum LifeEnd {
    /// Killed at the virtual moment its crash was scheduled.
    Crashed,
    /// Everything finished (the last life).
    Finished,
    /// The last life's virtual deadline passed with these workflows unfinished.
    Stuck(Vec<String>),
}

struct Life<'a> {
    path: &'a Path,
    plan: &'a [Planned],
    /// Seeds the engine's own randomness and the faults of this life.
    seed: u64,
    fault_per_mille: u32,
    /// The virtual time after which the process is killed (`None`: the last life).
    crash_after: Option<Duration>,
    evict_after: Duration,
}

async fn open_engine(life: &Life<'_>, faults: Arc<FaultInjector>) -> Result<Engine, Error> {
    let mut options = SqliteOptions::default();
    options.path = Some(life.path.to_path_buf());
    options.durability = Durability::Normal;
    options.execution = SqliteExecution::Inline;
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open_with(options).await?);
    Engine::builder()
        .store(Arc::new(HookedStore::new(sqlite, faults)))
        .register(sequence)
        .register(fan_out)
        .register(timer_and_signal)
        .register(saga)
        .register(parent)
        .register(work)
        .register(undo)
        .register(refuse)
        .evict_after(life.evict_after)
        .shutdown_grace(Duration::from_secs(1))
        .start()
        .await
}

/// Whether an outcome is final (the run finished or was parked), rather than a fault to retry.
fn is_final<T>(result: &Result<T, Error>) -> bool {
    matches!(
        result,
        Ok(_) | Err(Error::WorkflowFailed { .. }) | Err(Error::RunParked { .. })
    )
}

/// Starts (idempotently) every workflow, sends the signals, and waits for every outcome, retrying
/// whatever a fault made fail.
async fn drive_workload(engine: &Engine, plan: &[Planned]) {
    let retry = Duration::from_millis(25);
    let mut waits = Vec::new();
    for planned in plan {
        loop {
            let started = match planned.kind {
                Kind::Sequence => engine
                    .start(sequence, &planned.id, planned.job.clone())
                    .await
                    .map(|_| ()),
                Kind::FanOut => engine
                    .start(fan_out, &planned.id, planned.job.clone())
                    .await
                    .map(|_| ()),
                Kind::TimerAndSignal => engine
                    .start(timer_and_signal, &planned.id, planned.job.clone())
                    .await
                    .map(|_| ()),
                Kind::Saga => engine
                    .start(saga, &planned.id, planned.job.clone())
                    .await
                    .map(|_| ()),
                Kind::Parent => engine
                    .start(parent, &planned.id, planned.job.clone())
                    .await
                    .map(|_| ()),
            };
            if started.is_ok() {
                break;
            }
            tokio::time::sleep(retry).await;
        }
        let engine = engine.clone();
        let planned = planned.clone();
        waits.push(async move {
            if let Some((payload, delay)) = planned.signal {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                loop {
                    match engine.signal(&planned.id, "go", payload).await {
                        Ok(()) | Err(Error::RunFinished { .. }) => break,
                        Err(_) => tokio::time::sleep(retry).await,
                    }
                }
            }
            loop {
                if is_final(&outcome(&engine, &planned).await) {
                    break;
                }
                tokio::time::sleep(retry).await;
            }
        });
    }
    futures::future::join_all(waits).await;
}

/// Waits for a workflow's outcome.
async fn outcome(engine: &Engine, planned: &Planned) -> Result<u64, Error> {
    let id = planned.id.as_str();
    match planned.kind {
        Kind::Sequence => engine.handle(sequence, id).await?.result().await,
        Kind::FanOut => engine.handle(fan_out, id).await?.result().await,
        Kind::TimerAndSignal => engine.handle(timer_and_signal, id).await?.result().await,
        Kind::Saga => engine.handle(saga, id).await?.result().await,
        Kind::Parent => engine.handle(parent, id).await?.result().await,
    }
}

/// The virtual time between two lives (a restart takes a minute). It also keeps each life's virtual
/// start a fixed distance from the first one's, whatever real time passed in between.
const RESTART_GAP: Duration = Duration::from_secs(60);

/// Runs one life of the process on a fresh current-thread runtime with paused time whose clock starts
/// at `start` (the first life's start plus the virtual time of the lives before and the restart gaps);
/// returns how it ended and how much virtual time it took.
fn run_life(
    life: &Life<'_>,
    start: &mut Option<std::time::Instant>,
    offset: Duration,
) -> (LifeEnd, Duration, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    fastrand::seed(life.seed);
    // Busy, I/O error, disk full (before a call) or a write reported failed after it took effect.
    let faults = Arc::new(
        FaultInjector::new(life.seed ^ 0x5eed)
            .rate(f64::from(life.fault_per_mille) / 1_000.0)
            .enabled(life.fault_per_mille > 0),
    );
    let end = runtime.block_on(async {
        let now = tokio::time::Instant::now().into_std();
        let first = *start.get_or_insert(now);
        let target = first + offset;
        let behind = target
            .checked_duration_since(now)
            .expect("real time between two lives outran the virtual restart gap");
        tokio::time::advance(behind).await;
        let began = tokio::time::Instant::now();
        let engine = loop {
            match open_engine(life, faults.clone()).await {
                Ok(engine) => break engine,
                // A fault during recovery fails the start, as it would for a real process: retry.
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        };
        let end = match life.crash_after {
            Some(crash_after) => {
                tokio::select! {
                    biased;
                    _ = drive_workload(&engine, life.plan) => LifeEnd::Finished,
                    _ = tokio::time::sleep(crash_after) => LifeEnd::Crashed,
                }
            }
            None => {
                let deadline = Duration::from_secs(3_600);
                match tokio::time::timeout(deadline, drive_workload(&engine, life.plan)).await {
                    Ok(()) => {
                        engine.shutdown().await;
                        LifeEnd::Finished
                    }
                    Err(_) => LifeEnd::Stuck(unfinished(&engine, life.plan).await),
                }
            }
        };
        (end, began.elapsed())
    });
    // A crash: the runtime is dropped with every task in it, mid-flight, and no shutdown.
    drop(runtime);
    let injected = faults.total_injected();
    (end.0, end.1, injected)
}

async fn unfinished(engine: &Engine, plan: &[Planned]) -> Vec<String> {
    let mut stuck = Vec::new();
    for planned in plan {
        match engine.status(&planned.id).await {
            Ok(RunStatus::Running) | Err(_) => stuck.push(planned.id.clone()),
            _ => {}
        }
    }
    stuck
}

// ---------------------------------------------------------------------------------------------------
// One seed

/// What a seed did.
#[derive(Debug, Default, Clone, PartialEq)]
struct SimReport {
    workflows: usize,
    crashes: u32,
    faults: u64,
    /// A fingerprint of the final journal (event order and outcomes).
    digest: u64,
}

fn simulate(seed: u64) -> Result<SimReport, String> {
    let dir = tempfile::Builder::new()
        .prefix("orch-sim-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("journal.db");
    let world_id = NEXT_WORLD.fetch_add(1, Ordering::Relaxed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let plan = plan(seed, world_id, &mut rng);
    let crashes = rng.u32(0..=4);
    let fault_per_mille = if rng.bool() { rng.u32(5..60) } else { 0 };
    let evict_after = Duration::from_millis(rng.u64(1..300));
    let mut offset = Duration::ZERO;
    let mut start = None;
    let mut report = SimReport {
        workflows: plan.len(),
        ..SimReport::default()
    };
    for life_no in 0..=crashes {
        let last = life_no == crashes;
        let life = Life {
            path: &path,
            plan: &plan,
            seed: seed.wrapping_mul(1_000).wrapping_add(u64::from(life_no)),
            fault_per_mille: if last { 0 } else { fault_per_mille },
            crash_after: (!last).then(|| Duration::from_millis(rng.u64(1..1_500))),
            evict_after,
        };
        let (end, took, injected) = run_life(&life, &mut start, offset);
        offset += took + RESTART_GAP;
        report.faults += injected;
        match end {
            LifeEnd::Crashed => report.crashes += 1,
            LifeEnd::Finished => {}
            LifeEnd::Stuck(ids) => {
                return Err(format!(
                    "workflows unfinished an hour (virtual) into the last life: {ids:?}"
                ));
            }
        }
    }
    report.digest = check_journal(&path, &plan, &world(world_id))?;
    worlds().lock().unwrap().remove(&world_id);
    Ok(report)
}

/// Checks the invariants on the journal file; returns its fingerprint.
fn check_journal(path: &Path, plan: &[Planned], world: &World) -> Result<u64, String> {
    let conn = rusqlite::Connection::open(path).map_err(|error| error.to_string())?;
    let mut violations = Vec::new();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|error| error.to_string())?;
    if integrity != "ok" {
        violations.push(format!("integrity_check: {integrity}"));
    }
    let codec = orchestrator::codec::Codec::new(orchestrator::codec::DEFAULT_PAYLOAD_LIMIT);
    for planned in plan {
        let row: Option<(i64, Option<Vec<u8>>)> = conn
            .query_row(
                "SELECT state, output FROM runs WHERE workflow_id = ?1",
                [&planned.id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .ok();
        let Some((state, output)) = row else {
            violations.push(format!("{}: lost (no run row)", planned.id));
            continue;
        };
        let wanted_state = if planned.expected.is_some() { 1 } else { 2 };
        if state != wanted_state {
            violations.push(format!(
                "{}: state {state}, expected {wanted_state}",
                planned.id
            ));
            continue;
        }
        if let Some(expected) = planned.expected {
            let output: u64 = codec
                .decode(output.as_deref().unwrap_or_default())
                .map_err(|error| error.to_string())?;
            if output != expected {
                violations.push(format!(
                    "{}: output {output}, expected {expected}",
                    planned.id
                ));
            }
        }
    }
    let mut duplicates = conn
        .prepare(
            "SELECT workflow_id, step, COUNT(*) FROM events WHERE completion = 1 \
             GROUP BY workflow_id, step HAVING COUNT(*) > 1",
        )
        .unwrap();
    let duplicated: Vec<(String, i64, i64)> = duplicates
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, step, count) in duplicated {
        violations.push(format!("{id}: step {step} has {count} completions"));
    }
    let parked: i64 = conn
        .query_row("SELECT COUNT(*) FROM runs WHERE state = 3", [], |row| {
            row.get(0)
        })
        .unwrap();
    if parked != 0 {
        violations.push(format!("{parked} runs parked"));
    }
    // Every journaled activity result came from a real execution of that step.
    let executions = world.executions.lock().unwrap().clone();
    for planned in plan {
        for task in &planned.job.tasks {
            let finished_with_it = planned.expected.is_some() || task.key.ends_with("/refused");
            if finished_with_it && executions.get(&task.key).copied().unwrap_or(0) == 0 {
                violations.push(format!("{}: never executed", task.key));
            }
        }
    }
    if !violations.is_empty() {
        return Err(violations.join("; "));
    }
    // The fingerprint: every event's run, step, kind and completion flag in journal order, and every
    // run's state and output.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut events = conn
        .prepare("SELECT workflow_id, step, kind, completion FROM events ORDER BY seq")
        .unwrap();
    let shape: Vec<(String, i64, i64, i64)> = events
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    shape.hash(&mut hasher);
    let mut runs = conn
        .prepare("SELECT workflow_id, state, output FROM runs ORDER BY workflow_id")
        .unwrap();
    let outcomes: BTreeMap<String, (i64, Option<Vec<u8>>)> = runs
        .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    outcomes.hash(&mut hasher);
    Ok(hasher.finish())
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("ORCHESTRATOR_SIM_SEED") {
        return vec![seed.parse().expect("ORCHESTRATOR_SIM_SEED is a number")];
    }
    let count: u64 = std::env::var("ORCHESTRATOR_SIM_SEEDS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(24);
    (1..=count).collect()
}

#[test]
fn seeded_simulations_keep_every_invariant() {
    let started = std::time::Instant::now();
    let mut totals = SimReport::default();
    let mut failed = Vec::new();
    let seeds = seeds();
    for &seed in &seeds {
        match simulate(seed) {
            Ok(report) => {
                if seeds.len() == 1 {
                    println!("simulation seed={seed} {report:?}");
                }
                totals.workflows += report.workflows;
                totals.crashes += report.crashes;
                totals.faults += report.faults;
            }
            Err(violation) => {
                eprintln!(
                    "simulation seed={seed} FAILED: {violation}\n  reproduce: ORCHESTRATOR_SIM_SEED={seed} cargo test -p orchestrator-tests --test simulation -- --nocapture"
                );
                failed.push(seed);
            }
        }
    }
    println!(
        "simulation seeds={} workflows={} crashes={} faults={} failed_seeds={:?} ({:.1} s)",
        seeds.len(),
        totals.workflows,
        totals.crashes,
        totals.faults,
        failed,
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
    if seeds.len() >= 10 {
        assert!(totals.crashes > 0 && totals.faults > 0, "{totals:?}");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let mut eventful = 0;
    for seed in 1..=8 {
        let first = simulate(seed).unwrap();
        let second = simulate(seed).unwrap();
        assert_eq!(
            (first.crashes, first.faults, first.digest),
            (second.crashes, second.faults, second.digest),
            "seed {seed} ran differently twice"
        );
        if first.crashes > 0 && first.faults > 0 {
            eventful += 1;
        }
    }
    assert!(eventful > 0, "no seed had both crashes and faults");
}
