//! Fault campaign (issue 6, item 2; brief "Semantics" 1, 2 and 8): the engine runs a mixed workload on
//! a SQLite journal behind a [`FaultInjector`] that fails a fraction of store calls with `Busy`, I/O
//! errors, a full disk, or "committed but reported as failed". The engine must retry what is transient,
//! surface the rest as typed errors, and — once the faults stop — complete every workflow exactly once.
//!
//! The campaign:
//!
//! 1. **Faults on.** `W` workflows (default 200) of six shapes — sequential activities, an activity that
//!    fails once then succeeds on retry, durable timers, a signal wait, a saga whose last step fails so
//!    its compensations run, and a `join!` of two activities — are started in waves while every store
//!    call (creates, commits, reads, signal sends, the engine's own scans) fails with probability `rate`
//!    (default 7%); for the last 700 ms, while the last waves are started, every one of them fails
//!    (an outage), so runs are left stopped in the engine's revival backoff when the faults stop.
//!    User-side calls (`start`, `signal`, `result`) retry on errors (a failed start may have created
//!    the run: starting the same id again returns it), and each error they see must be one of the
//!    typed errors a fault explains (`Error::Store(Busy | Io | DiskFull)`, `Error::RunStopped`); they
//!    are counted by call and kind. Runs waiting only on timers or signals leave memory after 20 ms,
//!    so faults also hit waking them from the store.
//! 2. **Faults off.** Every workflow must then finish within a deadline (a stuck run is a violation,
//!    not a hang).
//! 3. **Restart.** The engine is stopped and reopened on the plain SQLite store: nothing may be left to
//!    resume, no activity may run again, and every run's status must be the expected one.
//!
//! The checks (each violation is printed with its check's name and the run it concerns):
//!
//! - `user-result`: each workflow's result, as its caller saw it, is the one computed from its input
//!   (the saga's is its failing step's error); `unexpected-error`: no other error reached a caller;
//!   `transient-hidden`: no waiter saw a run stop because the database was busy (the engine retries
//!   that invisibly; a stop for a full disk or an I/O error may be reported, as `Error::RunStopped`).
//! - `stuck`: every workflow finished within the deadline after the faults stopped.
//! - `run-row`: the run's row holds the expected final state and output (decoded raw), and after the
//!   restart `engine.status` agrees; `left-behind`: no run is unfinished or parked, the wake-up index
//!   is empty, the restarted engine drives nothing and runs no activity; `run-count`: exactly `W` runs.
//! - `one-completion`: at most one completion event per (run, step), and none at step 0;
//!   `expected-steps`: each expected step's completion is present with the right kind and activity
//!   name, and no other step completed; `records`: at most one `TimerStarted` per step, failed attempts
//!   only for the flaky step, at most one per attempt, and no event kind the workload cannot produce.
//! - `signal-once`: a signal run's inbox has exactly one consumed signal, consumed by the wait's step,
//!   whose id and payload the `SignalReceived` event names (copies sent again after an ambiguous
//!   failure stay unconsumed); other runs have no signals.
//! - `activity-effects`: every activity execution belongs to an expected step of its run (by its
//!   `ActivityContext::step`), and each expected activity step ran at least once (re-runs, allowed by
//!   at-least-once, are counted and reported).
//! - `compensation-order`: a saga's compensations ran in reverse order of registration (consecutive
//!   re-runs of one compensation aside).
//! - `integrity`: `PRAGMA integrity_check` is `ok`.
//! - `panics`: a panic hook counts panics in any thread (engine tasks included); there must be none.
//!
//! It prints `fault-campaign faults=N panics=P violations=V` and a line of counts per kind, and fails
//! unless `P` and `V` are 0, faults of every kind were injected, and at least [`MIN_FAULTS`] of them
//! outside the outage.
//!
//! Reproduce a seed with `ORCHESTRATOR_FAULT_SEED=<seed>`; `ORCHESTRATOR_FAULT_WORKFLOWS`,
//! `ORCHESTRATOR_FAULT_RATE` and `ORCHESTRATOR_FAULT_PHASE_MS` change the size, the fault rate and how
//! long faults stay on (default 2500 ms):
//! `cargo test -p orchestrator-tests --test fault_campaign -- --nocapture`. The `injector` tests at the
//! end check the injector itself (seeding, the on/off switch, eligibility, lost-after-commit writes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::codec::Codec;
use orchestrator::journal::EventBody;
use orchestrator::prelude::*;
use orchestrator::store::{SqliteStore, Store, StoreError};
use orchestrator_tests::faults::{FaultInjector, FaultKind, seed_from_env};
use orchestrator_tests::store_hooks::HookedStore;
use orchestrator_tests::{
    KIND_ACTIVITY_COMPLETED, KIND_ATTEMPT_FAILED, KIND_ATTEMPT_STARTED, KIND_SIGNAL_RECEIVED,
    KIND_TIMER_FIRED, KIND_TIMER_STARTED, TestDb, bump, record, recorded, stop,
};

/// The campaign fails if fewer faults than this were injected outside the outage (so it cannot pass by
/// injecting none).
const MIN_FAULTS: u64 = 40;
/// How long faults stay on (the workload is started during the first part of it).
const FAULT_PHASE: Duration = Duration::from_millis(2500);
/// For this long before faults stop, every eligible call fails (rate 1.0): an outage, with the last
/// waves of workflows in flight.
const OUTAGE: Duration = Duration::from_millis(700);
/// How long, once faults are off, every workflow has to finish.
const FINISH_DEADLINE: Duration = Duration::from_secs(30);
/// Runs waiting only on timers or signals leave memory this soon, so faults also hit waking them.
const EVICT_AFTER: Duration = Duration::from_millis(20);
/// Workflows started per wave; the waves are spread evenly over the fault phase.
const WAVE: usize = 20;

// ---------------------------------------------------------------------------------------------------
// Activities. Each records its execution as `<step>:<name>` under `<workflow id>/exec`.

/// The value every computing activity derives from its input.
fn mix(x: u64) -> u64 {
    (x * 3 + 1) % 1_000_003
}

fn executed(ctx: &ActivityContext) {
    record(
        &format!("{}/exec", ctx.workflow_id()),
        format!("{}:{}", ctx.step(), ctx.activity_name()),
    );
}

/// Returns `mix(x)`.
// Attempts cut short count toward the retry budget (event format 3), and a lost commit cuts the
// attempt it carried short: under injected faults a step may lose many. Hence the large budgets.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn compute(ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    executed(&ctx);
    Ok(mix(x))
}

/// Fails its first execution for a run (retryable), then returns `x + 100`.
#[activity(retry(max_attempts = 1000, backoff = "5ms..20ms", jitter = 0.0))]
async fn flaky_once(ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    executed(&ctx);
    if bump(&format!("{}/flaky", ctx.workflow_id())) == 1 {
        return Err(ActivityError::retryable("the first call always fails"));
    }
    Ok(x + 100)
}

/// A saga's forward step: returns its input.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn reserve(ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    executed(&ctx);
    Ok(x)
}

/// A saga's compensation: records `x` under `<workflow id>/undo`.
#[activity(retry(max_attempts = 1000, backoff = "5ms..20ms", jitter = 0.0))]
async fn release(ctx: ActivityContext, x: u64) -> Result<(), ActivityError> {
    executed(&ctx);
    record(&format!("{}/undo", ctx.workflow_id()), x);
    Ok(())
}

const REFUSAL: &str = "out of stock";

/// A saga's failing step (non-retryable).
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn refuse(ctx: ActivityContext, _x: u64) -> Result<(), ActivityError> {
    executed(&ctx);
    Err(ActivityError::non_retryable(REFUSAL))
}

// ---------------------------------------------------------------------------------------------------
// Workflows: all take a `u64` and return a `u64`, computed from the input alone.

/// Steps 1–3: `compute` three times in a row.
#[workflow]
async fn sequence_wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(compute, n).await?;
    let b = ctx.call(compute, a).await?;
    ctx.call(compute, b).await
}

/// Step 1: `flaky_once` (one failed attempt, retried); step 2: `compute`.
#[workflow]
async fn flaky_wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(flaky_once, n).await?;
    ctx.call(compute, a).await
}

/// Step 1: a timer of 10–49 ms; step 2: `compute`; step 3: a 5 ms timer.
#[workflow]
async fn timers_wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(10 + n % 40)).await?;
    let a = ctx.call(compute, n).await?;
    ctx.sleep(Duration::from_millis(5)).await?;
    Ok(a)
}

/// Step 1: `compute`; step 2: waits for the signal `go` (the caller sends `7 n`); step 3: `compute`.
#[workflow]
async fn signal_wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(compute, n).await?;
    let go: u64 = ctx.signal("go").await?;
    ctx.call(compute, a + go).await
}

/// Steps 1–2: `reserve` with a compensation each; step 3: `refuse` fails, so the compensations run as
/// steps 4 (`release(n + 1)`) and 5 (`release(n)`).
#[workflow]
async fn saga_wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(reserve, n).await?;
    ctx.compensate_with(release, a);
    let b = ctx.call(reserve, n + 1).await?;
    ctx.compensate_with(release, b);
    ctx.call(refuse, n).await?;
    Ok(a + b)
}

/// Steps 1–2: two `compute` calls joined; step 3: `compute` of their sum.
#[workflow]
async fn parallel_wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let (a, b) = futures::join!(ctx.call(compute, n), ctx.call(compute, n + 1));
    ctx.call(compute, a? + b?).await
}

// ---------------------------------------------------------------------------------------------------
// The workload's shapes and what each must end with.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Sequence,
    Flaky,
    Timers,
    Signal,
    Saga,
    Parallel,
}

const SHAPES: [Shape; 6] = [
    Shape::Sequence,
    Shape::Flaky,
    Shape::Timers,
    Shape::Signal,
    Shape::Saga,
    Shape::Parallel,
];

/// What completes a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Activity(&'static str),
    Timer,
    Signal,
}

/// How a run ends.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Output(u64),
    Failed(WorkflowError),
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Sequence => "sequence",
            Shape::Flaky => "flaky",
            Shape::Timers => "timers",
            Shape::Signal => "signal",
            Shape::Saga => "saga",
            Shape::Parallel => "parallel",
        }
    }

    /// The signal payload a signal run is sent.
    fn signal_payload(n: u64) -> u64 {
        7 * n
    }

    /// The outcome expected from input `n` (`None` for the saga: see [`saga_error_matches`]).
    fn expected(self, n: u64) -> Option<u64> {
        match self {
            Shape::Sequence => Some(mix(mix(mix(n)))),
            Shape::Flaky => Some(mix(n + 100)),
            Shape::Timers => Some(mix(n)),
            Shape::Signal => Some(mix(mix(n) + Self::signal_payload(n))),
            Shape::Saga => None,
            Shape::Parallel => Some(mix(mix(n) + mix(n + 1))),
        }
    }

    /// Every step the run must complete, by number.
    fn steps(self) -> Vec<(u32, Step)> {
        use Step::{Activity, Signal, Timer};
        match self {
            Shape::Sequence => vec![
                (1, Activity("compute")),
                (2, Activity("compute")),
                (3, Activity("compute")),
            ],
            Shape::Flaky => vec![(1, Activity("flaky_once")), (2, Activity("compute"))],
            Shape::Timers => vec![(1, Timer), (2, Activity("compute")), (3, Timer)],
            Shape::Signal => vec![
                (1, Activity("compute")),
                (2, Signal),
                (3, Activity("compute")),
            ],
            Shape::Saga => vec![
                (1, Activity("reserve")),
                (2, Activity("reserve")),
                (3, Activity("refuse")),
                (4, Activity("release")),
                (5, Activity("release")),
            ],
            Shape::Parallel => vec![
                (1, Activity("compute")),
                (2, Activity("compute")),
                (3, Activity("compute")),
            ],
        }
    }

    fn outcome_matches(self, n: u64, outcome: &Outcome) -> bool {
        match (self.expected(n), outcome) {
            (Some(expected), Outcome::Output(value)) => *value == expected,
            (None, Outcome::Failed(error)) => saga_error_matches(error),
            _ => false,
        }
    }
}

/// The saga fails with its third step's error.
fn saga_error_matches(error: &WorkflowError) -> bool {
    matches!(
        error,
        WorkflowError::ActivityFailed { activity, step: 3, error, .. }
            if activity == "refuse" && *error == ActivityError::non_retryable(REFUSAL)
    )
}

/// One workflow of the workload.
#[derive(Debug, Clone)]
struct Job {
    id: String,
    shape: Shape,
    n: u64,
}

// ---------------------------------------------------------------------------------------------------
// The caller's side: retry on the errors a fault explains, count them, report anything else.

/// Errors callers saw, by `call/kind`.
#[derive(Debug, Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn note(&self, call: &str, kind: &str) {
        *self
            .0
            .lock()
            .unwrap()
            .entry(format!("{call}/{kind}"))
            .or_insert(0) += 1;
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

/// The kind of an error a store fault explains, or `None` for any other error. A stopped run's kind
/// names the journal error that stopped it (`RunStopped(disk full)`).
fn fault_error_kind(error: &Error) -> Option<String> {
    match error {
        Error::Store(StoreError::Busy { .. }) => Some("Store(Busy)".to_string()),
        Error::Store(StoreError::Io { .. }) => Some("Store(Io)".to_string()),
        Error::Store(StoreError::DiskFull { .. }) => Some("Store(DiskFull)".to_string()),
        Error::RunStopped { reason, .. } => {
            let cause = reason.split(" during").next().unwrap_or_default();
            Some(format!("RunStopped({cause})"))
        }
        _ => None,
    }
}

/// Retry pauses: 5 ms doubling up to 200 ms.
struct Pause(Duration);

impl Pause {
    fn new() -> Self {
        Pause(Duration::from_millis(5))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_millis(200));
    }
}

/// Starts a run, retrying on fault errors (a failed start may have created the run: starting the id
/// again returns it).
async fn start_retrying<W>(
    engine: &Engine,
    workflow: W,
    job: &Job,
    tally: &Tally,
) -> Result<RunHandle<u64>, String>
where
    W: Workflow<Input = u64, Output = u64> + Copy,
{
    let mut pause = Pause::new();
    loop {
        match engine.start(workflow, job.id.clone(), job.n).await {
            Ok(handle) => return Ok(handle),
            Err(error) => match fault_error_kind(&error) {
                Some(kind) => tally.note("start", &kind),
                None => return Err(format!("[unexpected-error] start: {error:?}")),
            },
        }
        pause.wait().await;
    }
}

/// Runs one job as a caller would: start, signal if it waits for one, await its result.
async fn drive(engine: Engine, job: Job, tally: Arc<Tally>) -> Result<Outcome, String> {
    let handle = match job.shape {
        Shape::Sequence => start_retrying(&engine, sequence_wf, &job, &tally).await,
        Shape::Flaky => start_retrying(&engine, flaky_wf, &job, &tally).await,
        Shape::Timers => start_retrying(&engine, timers_wf, &job, &tally).await,
        Shape::Signal => start_retrying(&engine, signal_wf, &job, &tally).await,
        Shape::Saga => start_retrying(&engine, saga_wf, &job, &tally).await,
        Shape::Parallel => start_retrying(&engine, parallel_wf, &job, &tally).await,
    }?;
    if job.shape == Shape::Signal {
        let mut pause = Pause::new();
        let mut ambiguous = false;
        loop {
            match engine
                .signal(&job.id, "go", Shape::signal_payload(job.n))
                .await
            {
                Ok(()) => break,
                // An earlier send that reported a failure took effect and the run went on to finish.
                Err(Error::RunFinished { .. }) if ambiguous => break,
                Err(error) => match fault_error_kind(&error) {
                    Some(kind) => {
                        tally.note("signal", &kind);
                        ambiguous = true;
                    }
                    None => return Err(format!("[unexpected-error] signal: {error:?}")),
                },
            }
            pause.wait().await;
        }
    }
    let mut pause = Pause::new();
    loop {
        match handle.result().await {
            Ok(value) => return Ok(Outcome::Output(value)),
            Err(Error::WorkflowFailed { error, .. }) => return Ok(Outcome::Failed(error)),
            Err(error) => match fault_error_kind(&error) {
                Some(kind) => tally.note("result", &kind),
                None => return Err(format!("[unexpected-error] result: {error:?}")),
            },
        }
        pause.wait().await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Panics in any thread.

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
}

// ---------------------------------------------------------------------------------------------------
// The journal checks.

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} does not parse")),
        Err(_) => default,
    }
}

fn register(builder: orchestrator::EngineBuilder) -> orchestrator::EngineBuilder {
    builder
        .register(sequence_wf)
        .register(flaky_wf)
        .register(timers_wf)
        .register(signal_wf)
        .register(saga_wf)
        .register(parallel_wf)
        .register(compute)
        .register(flaky_once)
        .register(reserve)
        .register(release)
        .register(refuse)
}

/// Total activity executions recorded for the workload.
fn executions(jobs: &[Job]) -> usize {
    jobs.iter()
        .map(|job| recorded(&format!("{}/exec", job.id)).len())
        .sum()
}

/// The per-run journal checks; returns how many activity executions were re-runs.
fn check_journal(db: &TestDb, job: &Job, violations: &mut Vec<String>) -> usize {
    let id = &job.id;
    let mut violate = |check: &str, detail: String| {
        violations.push(format!("[{check}] {id} ({}): {detail}", job.shape.name()));
    };
    let events = db.events(id);
    let expected = job.shape.steps();

    // Completions: at most one per step, none at step 0, exactly the expected ones.
    let mut completions: BTreeMap<u32, Vec<&EventBody>> = BTreeMap::new();
    for event in events.iter().filter(|event| event.completion) {
        completions.entry(event.step).or_default().push(&event.body);
    }
    for (step, bodies) in &completions {
        if bodies.len() > 1 {
            violate(
                "one-completion",
                format!("step {step} completed {} times: {bodies:?}", bodies.len()),
            );
        }
        if *step == 0 {
            violate("one-completion", format!("interrupted: {bodies:?}"));
        }
    }
    for (step, kind) in &expected {
        let Some(body) = completions.get(step).and_then(|bodies| bodies.first()) else {
            violate(
                "expected-steps",
                format!("step {step} ({kind:?}) never completed"),
            );
            continue;
        };
        let fits = match (kind, body) {
            (Step::Activity(name), EventBody::ActivityCompleted { name: got, .. }) => got == name,
            (Step::Timer, EventBody::TimerFired)
            | (Step::Signal, EventBody::SignalReceived { .. }) => true,
            _ => false,
        };
        if !fits {
            violate(
                "expected-steps",
                format!("step {step} should be {kind:?}, journal has {body:?}"),
            );
        }
    }
    for step in completions.keys() {
        if !expected
            .iter()
            .any(|(expected_step, _)| expected_step == step)
        {
            violate(
                "expected-steps",
                format!("unexpected completed step {step}: {:?}", completions[step]),
            );
        }
    }

    // Records: timers started once, failed attempts only where the workload fails one, no strays.
    let mut timer_starts: BTreeMap<u32, usize> = BTreeMap::new();
    let mut attempts: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for event in &events {
        match &event.body {
            EventBody::TimerStarted { .. } => *timer_starts.entry(event.step).or_insert(0) += 1,
            EventBody::ActivityAttemptFailed { attempt, name, .. } => {
                *attempts.entry((event.step, *attempt)).or_insert(0) += 1;
                if !(job.shape == Shape::Flaky && event.step == 1 && name == "flaky_once") {
                    violate(
                        "records",
                        format!("failed attempt of `{name}` at step {}", event.step),
                    );
                }
            }
            _ => {}
        }
        let allowed = [
            KIND_ACTIVITY_COMPLETED,
            KIND_ATTEMPT_FAILED,
            KIND_ATTEMPT_STARTED,
            KIND_TIMER_STARTED,
            KIND_TIMER_FIRED,
            KIND_SIGNAL_RECEIVED,
        ];
        if !allowed.contains(&event.kind) {
            violate(
                "records",
                format!("unexpected event at step {}: {:?}", event.step, event.body),
            );
        }
    }
    for (step, starts) in timer_starts {
        if starts > 1 {
            violate(
                "records",
                format!("timer at step {step} started {starts} times"),
            );
        }
        if !expected.contains(&(step, Step::Timer)) {
            violate("records", format!("a timer started at step {step}"));
        }
    }
    for ((step, attempt), times) in &attempts {
        if *times > 1 {
            violate(
                "records",
                format!("attempt {attempt} of step {step} failed {times} times in the journal"),
            );
        }
    }
    if attempts.len() > 1 {
        violate(
            "records",
            format!(
                "{} failed attempts, at most 1 possible: {attempts:?}",
                attempts.len()
            ),
        );
    }

    // Signals: one consumed, by the wait's step, the one the event names, with the payload sent.
    let inbox: Vec<(i64, Option<u32>)> = {
        let conn = db.conn();
        let mut statement = conn
            .prepare("SELECT id, consumed_by_step FROM signals WHERE workflow_id = ?1 ORDER BY id")
            .unwrap();
        statement
            .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    if job.shape == Shape::Signal {
        let consumed: Vec<&(i64, Option<u32>)> =
            inbox.iter().filter(|(_, step)| step.is_some()).collect();
        let received: Vec<&EventBody> = events
            .iter()
            .filter(|event| event.kind == KIND_SIGNAL_RECEIVED)
            .map(|event| &event.body)
            .collect();
        match (consumed.as_slice(), received.as_slice()) {
            (
                [(signal, Some(2))],
                [
                    EventBody::SignalReceived {
                        signal_id, payload, ..
                    },
                ],
            ) => {
                if signal_id != signal {
                    violate(
                        "signal-once",
                        format!("event names signal {signal_id}, inbox consumed {signal}"),
                    );
                }
                let value: u64 = Codec::default().decode(payload).unwrap();
                if value != Shape::signal_payload(job.n) {
                    violate("signal-once", format!("received payload {value}"));
                }
            }
            _ => violate(
                "signal-once",
                format!("inbox {inbox:?}, received events {received:?}"),
            ),
        }
    } else if !inbox.is_empty() {
        violate(
            "signal-once",
            format!("a run without signals has {inbox:?}"),
        );
    }

    // Activity executions: each at an expected step of its name; each expected one ran.
    let runs = recorded(&format!("{id}/exec"));
    let expected_activities: BTreeSet<String> = expected
        .iter()
        .filter_map(|(step, kind)| match kind {
            Step::Activity(name) => Some(format!("{step}:{name}")),
            _ => None,
        })
        .collect();
    let ran: BTreeSet<String> = runs.iter().cloned().collect();
    for stray in ran.difference(&expected_activities) {
        violate("activity-effects", format!("an activity ran as {stray}"));
    }
    for missing in expected_activities.difference(&ran) {
        violate("activity-effects", format!("{missing} never ran"));
    }
    let reruns = runs.len() - ran.len();
    // The flaky activity's first failure is a retry, not a re-run.
    let reruns = if job.shape == Shape::Flaky {
        reruns.saturating_sub(1)
    } else {
        reruns
    };

    // Compensations: in reverse order of registration.
    let mut undone = recorded(&format!("{id}/undo"));
    undone.dedup();
    let expected_undo = if job.shape == Shape::Saga {
        vec![(job.n + 1).to_string(), job.n.to_string()]
    } else {
        Vec::new()
    };
    if undone != expected_undo {
        violate(
            "compensation-order",
            format!(
                "compensations ran as {:?}, expected {expected_undo:?}",
                recorded(&format!("{id}/undo"))
            ),
        );
    }
    reruns
}

/// The run row's final state and output, read raw.
fn check_row(db: &TestDb, job: &Job, violations: &mut Vec<String>) {
    let row: Option<(i64, Option<Vec<u8>>)> = db
        .conn()
        .query_row(
            "SELECT state, output FROM runs WHERE workflow_id = ?1",
            [&job.id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ok();
    let ok = match (job.shape.expected(job.n), &row) {
        (Some(expected), Some((1, Some(output)))) => {
            Codec::default().decode::<u64>(output).ok() == Some(expected)
        }
        (None, Some((2, _))) => true,
        _ => false,
    };
    if !ok {
        violations.push(format!(
            "[run-row] {} ({}): row (state, output) = {row:?}, expected output {:?}",
            job.id,
            job.shape.name(),
            job.shape.expected(job.n)
        ));
    }
}

/// A stuck run's state, for the report: its row's state and its journal as `step:event` (no payloads).
fn describe_stuck(db: &TestDb, id: &str) -> String {
    let state = db.run_state(id);
    let events: Vec<String> = db
        .events(id)
        .iter()
        .map(|event| {
            let body = format!("{:?}", event.body);
            let name = body.split([' ', '{', '(']).next().unwrap_or_default();
            format!("{}:{name}", event.step)
        })
        .collect();
    format!("row state {state:?}, journal [{}]", events.join(", "))
}

// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_faults_are_retried_or_typed_and_every_workflow_completes_once() {
    count_panics();
    let began = Instant::now();
    let seed = seed_from_env();
    let workflows: usize = env_or("ORCHESTRATOR_FAULT_WORKFLOWS", 200);
    let rate: f64 = env_or("ORCHESTRATOR_FAULT_RATE", 0.07);
    let fault_phase_length = Duration::from_millis(env_or(
        "ORCHESTRATOR_FAULT_PHASE_MS",
        u64::try_from(FAULT_PHASE.as_millis()).unwrap(),
    ));
    println!(
        "fault-campaign seed={seed} workflows={workflows} rate={rate} \
         (reproduce: ORCHESTRATOR_FAULT_SEED={seed})"
    );

    let mut inputs = fastrand::Rng::with_seed(seed ^ 0x5EED_F00D);
    let jobs: Vec<Job> = (0..workflows)
        .map(|index| {
            let shape = SHAPES[index % SHAPES.len()];
            Job {
                id: format!("fc-{}-{index:04}", shape.name()),
                shape,
                n: inputs.u64(0..1_000_000),
            }
        })
        .collect();

    let db = TestDb::new();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let store = Arc::new(HookedStore::new(
        sqlite,
        FaultInjector::new(seed).rate(rate),
    ));
    let faults = || store.hook();
    let engine = register(
        Engine::builder()
            .store(store.clone())
            .shutdown_grace(Duration::from_secs(2))
            .evict_after(EVICT_AFTER),
    )
    .start()
    .await
    .unwrap();

    // Phase 1: faults on while the workload is started in waves, ending with an outage.
    let tally = Arc::new(Tally::default());
    faults().set_enabled(true);
    let fault_phase = Instant::now();
    let outage = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(fault_phase_length.saturating_sub(OUTAGE)).await;
            let before = store.hook().total_injected();
            store.hook().set_rate(1.0);
            before
        })
    };
    let waves = u32::try_from(workflows.div_ceil(WAVE)).unwrap().max(1);
    let wave_pause = fault_phase_length / waves;
    let mut tasks = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        if index > 0 && index % WAVE == 0 {
            tokio::time::sleep(wave_pause).await;
        }
        tasks.push(tokio::spawn(drive(
            engine.clone(),
            job.clone(),
            tally.clone(),
        )));
    }
    let remaining = fault_phase_length.saturating_sub(fault_phase.elapsed());
    tokio::time::sleep(remaining).await;
    faults().set_enabled(false);
    let outage_faults = if outage.is_finished() {
        faults().total_injected() - outage.await.unwrap()
    } else {
        outage.abort();
        0
    };
    let faults_off = Instant::now();
    let finished_under_faults = tasks.iter().filter(|task| task.is_finished()).count();

    // Phase 2: every workflow finishes within the deadline.
    let mut violations: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + FINISH_DEADLINE;
    for (job, task) in jobs.iter().zip(tasks) {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(outcome))) => {
                if !job.shape.outcome_matches(job.n, &outcome) {
                    violations.push(format!(
                        "[user-result] {} ({}): got {outcome:?}, expected {:?}",
                        job.id,
                        job.shape.name(),
                        job.shape.expected(job.n).map_or_else(
                            || "the saga's refusal at step 3".to_string(),
                            |value| value.to_string()
                        )
                    ));
                }
            }
            Ok(Ok(Err(error))) => violations.push(format!("{error} ({})", job.id)),
            Ok(Err(join_error)) => violations.push(format!(
                "[panics] {}: its caller task failed: {join_error}",
                job.id
            )),
            Err(_) => {
                abort.abort();
                violations.push(format!(
                    "[stuck] {} ({}): not finished {FINISH_DEADLINE:?} after faults stopped; {}",
                    job.id,
                    job.shape.name(),
                    describe_stuck(&db, &job.id)
                ));
            }
        }
    }
    let settle = faults_off.elapsed();
    let injected = faults().injected();
    let by_call = faults().injected_by_call();
    let consulted = faults().consulted();

    // Phase 3: restart on the plain store; nothing is left to do.
    stop(engine).await;
    drop(store);
    let unfinished = db.scalar("SELECT count(*) FROM runs WHERE state IN (0, 3)", []);
    if unfinished != 0 {
        violations.push(format!(
            "[left-behind] {unfinished} runs unfinished or parked after all callers finished"
        ));
    }
    let before_restart = executions(&jobs);
    let engine = register(db.builder()).start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    if engine.resident_runs() != 0 {
        violations.push(format!(
            "[left-behind] the restarted engine drives {} runs",
            engine.resident_runs()
        ));
    }
    for job in &jobs {
        let status = engine.status(&job.id).await;
        let fits = match (&status, job.shape) {
            (Ok(RunStatus::Failed(error)), Shape::Saga) => saga_error_matches(error),
            (Ok(RunStatus::Completed), shape) => shape != Shape::Saga,
            _ => false,
        };
        if !fits {
            violations.push(format!(
                "[run-row] {} ({}): status after restart {status:?}",
                job.id,
                job.shape.name()
            ));
        }
    }
    stop(engine).await;
    let after_restart = executions(&jobs);
    if after_restart != before_restart {
        violations.push(format!(
            "[left-behind] {} activity executions after the restart",
            after_restart - before_restart
        ));
    }

    // A transient error (busy) is retried by the engine without a waiter seeing the run stop.
    for (key, times) in tally.snapshot() {
        if key.contains("RunStopped(database busy") {
            violations.push(format!(
                "[transient-hidden] callers saw {key} {times} times"
            ));
        }
    }

    // The journal, raw.
    let runs = db.scalar("SELECT count(*) FROM runs", []);
    if runs != i64::try_from(workflows).unwrap() {
        violations.push(format!("[run-count] {runs} runs for {workflows} workflows"));
    }
    let wakeups = db.scalar("SELECT count(*) FROM wakeups", []);
    if wakeups != 0 {
        violations.push(format!("[left-behind] {wakeups} wake-ups of finished runs"));
    }
    let mut reruns = 0;
    for job in &jobs {
        reruns += check_journal(&db, job, &mut violations);
        check_row(&db, job, &mut violations);
    }
    let integrity: String = db
        .conn()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    if integrity != "ok" {
        violations.push(format!("[integrity] {integrity}"));
    }

    // Report.
    let panics = PANICS.load(Ordering::SeqCst);
    for violation in &violations {
        println!("violation: {violation}");
    }
    println!(
        "fault-campaign faults={} panics={panics} violations={}",
        injected.total(),
        violations.len()
    );
    println!(
        "fault-kinds {injected} | {outage_faults} in the outage | by call {by_call:?} | \
         {consulted} eligible calls under faults | \
         caller errors {:?} | {finished_under_faults}/{workflows} done under faults, rest settled in \
         {settle:.1?} | {reruns} activity re-runs | seed={seed} | {:.1?}",
        tally.snapshot(),
        began.elapsed()
    );
    assert_eq!(panics, 0, "panics during the campaign (seed {seed})");
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed}); the first: {}",
        violations.len(),
        violations[0]
    );
    assert!(
        injected.total() - outage_faults >= MIN_FAULTS,
        "only {} faults injected outside the outage (seed {seed}); the campaign tests too little",
        injected.total() - outage_faults
    );
    for kind in FaultKind::ALL {
        assert!(
            injected.get(kind) > 0,
            "no `{}` fault injected (seed {seed})",
            kind.name()
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// The injector itself.

mod injector {
    use std::sync::Arc;

    use orchestrator::store::{SqliteStore, Store, StoreError};
    use orchestrator_tests::faults::{FaultInjector, FaultKind, LOST_AFTER_COMMIT_MESSAGE};
    use orchestrator_tests::store_hooks::{HookedStore, StoreCall, StoreHook};

    /// The decisions for `calls` reads of one run id, as the kinds injected (`None`: no fault).
    fn decisions(injector: &FaultInjector, calls: usize) -> Vec<Option<String>> {
        (0..calls)
            .map(|_| {
                injector
                    .before(&StoreCall::Run("x"))
                    .map(|error| format!("{error:?}"))
            })
            .collect()
    }

    #[test]
    fn a_seed_fixes_the_decisions_and_off_means_no_faults() {
        let off = FaultInjector::new(7).rate(0.5);
        assert!(decisions(&off, 100).iter().all(Option::is_none));
        assert_eq!(off.total_injected(), 0);

        let first = FaultInjector::new(7).rate(0.5).enabled(true);
        let second = FaultInjector::new(7).rate(0.5).enabled(true);
        let a = decisions(&first, 200);
        assert_eq!(a, decisions(&second, 200));
        let failed = a.iter().flatten().count();
        assert!((50..150).contains(&failed), "{failed} of 200 at rate 0.5");
        assert_eq!(first.total_injected(), u64::try_from(failed).unwrap());
        // A read is never "lost after commit".
        assert_eq!(first.injected().lost_after_commit, 0);
        assert_eq!(first.consulted(), 200);
        assert_eq!(
            first.injected_by_call().get("run").copied(),
            Some(u64::try_from(failed).unwrap())
        );
    }

    #[test]
    fn only_eligible_calls_and_enabled_kinds_fail() {
        let injector = FaultInjector::new(1)
            .rate(1.0)
            .calls(&["commit"])
            .kinds(&[FaultKind::DiskFull])
            .enabled(true);
        assert!(injector.before(&StoreCall::Run("x")).is_none());
        assert!(injector.before(&StoreCall::History("x")).is_none());
        assert!(matches!(
            injector.before(&StoreCall::Commit(&orchestrator::store::Commit::events(
                "x",
                Vec::new()
            ))),
            Some(StoreError::DiskFull {
                operation: "commit"
            })
        ));
        injector.set_enabled(false);
        assert!(!injector.is_enabled());
        assert!(
            injector
                .before(&StoreCall::Commit(&orchestrator::store::Commit::events(
                    "x",
                    Vec::new()
                )))
                .is_none()
        );
        assert_eq!(injector.injected().disk_full, 1);
        assert_eq!(injector.total_injected(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_after_commit_reports_a_write_that_took_effect() {
        let db = orchestrator_tests::TestDb::new();
        let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(db.path()).await.unwrap());
        let store = HookedStore::new(
            sqlite,
            FaultInjector::new(3)
                .rate(1.0)
                .kinds(&[FaultKind::LostAfterCommit])
                .enabled(true),
        );
        let run = orchestrator::store::NewRun {
            workflow_id: "lost-1".to_string(),
            workflow_name: "wf".to_string(),
            input: Vec::new(),
            parent_id: None,
            deadline_ms: None,
            execution_timeout_ms: None,
            owner: None,
            events: Vec::new(),
            paused: None,
        };
        let error = store.create_run(run).await.unwrap_err();
        let expected = StoreError::Io {
            operation: "create_run",
            message: LOST_AFTER_COMMIT_MESSAGE.to_string(),
        };
        assert_eq!(error, expected);
        // The write took effect, and reads are not faulted by this kind: the row is there.
        assert!(store.run("lost-1").await.unwrap().is_some());
        assert_eq!(store.hook().injected().lost_after_commit, 1);
        assert_eq!(store.hook().total_injected(), 1);
    }
}
