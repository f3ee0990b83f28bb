//! The child process of the crash campaign (`tests/crash_campaign.rs`): runs a mixed load of
//! workflows against an SQLite journal and is SIGKILLed — by the harness at random moments, or by
//! itself at a named fail point.
//!
//! Usage:
//!
//! - `campaign_worker describe`: prints one line `fail-point <name> <max hit>` per fail point, so the
//!   harness needs no copy of the list.
//! - `campaign_worker run <db> <run log> <cycles> [<fail point> <hit>]`: starts the engine on the journal
//!   (which resumes every unfinished run), prints `READY`, starts the workflows of each cycle in
//!   `<cycles>` (`-` for none, else comma-separated numbers and ranges `a..b`; starting is idempotent
//!   on the workflow id, so a cycle may be listed again), sends the signals every unfinished
//!   [`signal_flow`] waits for, waits until no run is running, prints `DONE` and shuts down. With a
//!   fail point, the `<hit>`-th time this process reaches it, it SIGKILLs itself.
//!
//! The workload of one cycle `c` (ids `<kind>-<c>`), each a pure function of its input:
//!
//! - [`sequential`]: four chained activities, then a flaky one that fails its first attempt with a
//!   retryable error (a journaled failed attempt and a durable backoff) and succeeds on the second.
//! - [`fan_out`]: five concurrent activities joined with `join_all`, then one more on their results.
//! - [`saga`]: three bookings, each registering a compensation, then a step that fails for good: the
//!   compensations run in reverse order and the run fails with the step's error.
//! - [`timers`]: activity, durable sleep, activity, durable sleep.
//! - [`signal_flow`]: activity, wait for signal `first`, activity, wait for signal `second`. Signal
//!   payloads depend only on the workflow id and the name, so a signal re-sent after a kill changes
//!   nothing; a copy left over stays unconsumed in the inbox.
//! - [`parent`]: two [`child`] workflows (`<parent id>/child-<i>`: activity, sleep, activity) started
//!   concurrently and joined, then an activity on their sum.
//!
//! The run log (one line per `write(2)` on an `O_APPEND` file, so a SIGKILL never leaves half a line)
//! holds `<what> <workflow id> <step> <label> <pid>` lines:
//!
//! - `start`/`end <id> <step> <activity>#<attempt>`: an activity attempt begins / has done its effect;
//! - `ack <id> 0 started`: `engine.start` returned `Ok` for the run; `ack - <c> cycle`: every run of
//!   cycle `c` is started;
//! - `finish <id> 0 <state>`: a commit recording the run's outcome is about to reach the store;
//!   `outcome <id> 0 <state>`: the store acknowledged it;
//! - `parked <id> 0 -`: a commit parking the run was acknowledged (the harness reports it);
//! - `fired - <hit> <fail point>`: the fail point fires (the process SIGKILLs itself right after).
//!
//! Fail points (`<when>_<boundary>`, the kill lands just before the store call or just after it
//! returned `Ok`): `create_run` (a run's creation, top-level or child), `commit` (any journal write),
//! `timer_fired` (a commit carrying a `TimerFired`), `signal_sent` (a signal into an inbox),
//! `signal_delivered` (a commit consuming a signal), `attempt_failed` (a journaled failed attempt),
//! `compensation_done` (a commit carrying a compensation's completion), `child_started` (a commit
//! carrying a `ChildStarted`), `outcome` (the commit finishing a run). Two more are inside activities:
//! `mid_activity` (after `start`, before the effect) and `activity_effect` (after the effect — the
//! `end` line — before the result reaches the journal).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use orchestrator::codec::{Codec, DEFAULT_PAYLOAD_LIMIT};
use orchestrator::journal::EventBody;
use orchestrator::prelude::*;
use orchestrator::store::{
    Commit, RunQuery, RunState, SqliteStore, StatusChange, Store, StoreError,
};
use orchestrator::{Activity, ParkReason};
use orchestrator_tests::store_hooks::{HookedStore, StoreCall, StoreHook};
use orchestrator_tests::{KIND_ATTEMPT_FAILED, KIND_CHILD_STARTED, KIND_TIMER_FIRED};

/// Activities [`sequential`] chains before its flaky step.
const CHAIN: u64 = 4;
/// Concurrent activities of [`fan_out`].
const FAN: u64 = 5;
/// Bookings (and so compensations) of [`saga`].
const BOOKINGS: u64 = 3;
/// Children of [`parent`].
const CHILDREN: u64 = 2;
/// Runs the engine keeps in memory: beyond that, runs waiting only on timers or signals leave memory
/// at once and are woken from the journal's wake-up index (so that path is crashed into too).
const RESIDENT_RUNS: usize = 8;

// ---------------------------------------------------------------------------------------------------
// The run log

/// The run log the activities and the fail-point hook append to (set once in `main`).
static RUN_LOG: OnceLock<PathBuf> = OnceLock::new();

/// Appends `<what> <workflow id> <step> <label> <pid>` to the run log with a single write call.
fn log_line(what: &str, workflow_id: &str, step: u32, label: &str) {
    let path = RUN_LOG.get().expect("the run log path is set in main");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the run log");
    let line = format!(
        "{what} {workflow_id} {step} {label} {}\n",
        std::process::id()
    );
    let written = file.write(line.as_bytes()).expect("append to the run log");
    assert_eq!(written, line.len(), "a run-log line was written partially");
}

// ---------------------------------------------------------------------------------------------------
// Fail points

/// A durable boundary a fail point can sit on, before or after the store call that crosses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    CreateRun,
    Commit,
    TimerFired,
    SignalSent,
    SignalDelivered,
    AttemptFailed,
    CompensationDone,
    ChildStarted,
    Outcome,
}

impl Boundary {
    const ALL: [Boundary; 9] = [
        Boundary::CreateRun,
        Boundary::Commit,
        Boundary::TimerFired,
        Boundary::SignalSent,
        Boundary::SignalDelivered,
        Boundary::AttemptFailed,
        Boundary::CompensationDone,
        Boundary::ChildStarted,
        Boundary::Outcome,
    ];

    fn name(self) -> &'static str {
        match self {
            Boundary::CreateRun => "create_run",
            Boundary::Commit => "commit",
            Boundary::TimerFired => "timer_fired",
            Boundary::SignalSent => "signal_sent",
            Boundary::SignalDelivered => "signal_delivered",
            Boundary::AttemptFailed => "attempt_failed",
            Boundary::CompensationDone => "compensation_done",
            Boundary::ChildStarted => "child_started",
            Boundary::Outcome => "outcome",
        }
    }

    /// How many times one incarnation surely reaches this boundary with the workflows of its own
    /// cycle alone (so a fail point armed for a hit up to this count always fires).
    fn sure_hits(self) -> u32 {
        match self {
            // Six top-level starts, two child creations.
            Boundary::CreateRun => 6,
            Boundary::Commit => 30,
            // Two sleeps in `timers`, one in each child.
            Boundary::TimerFired => 4,
            Boundary::SignalSent | Boundary::SignalDelivered => 2,
            Boundary::AttemptFailed => 1,
            Boundary::CompensationDone => 3,
            Boundary::ChildStarted => 2,
            // Six top-level runs, two children.
            Boundary::Outcome => 8,
        }
    }
}

/// Where the process kills itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailPoint {
    /// Just before the store call crossing the boundary.
    Before(Boundary),
    /// Just after that call returned `Ok`.
    After(Boundary),
    /// Inside an activity, after its `start` line, before its effect.
    MidActivity,
    /// Inside an activity, after its effect (the `end` line), before its result is journaled.
    ActivityEffect,
}

impl FailPoint {
    fn all() -> Vec<FailPoint> {
        let mut all: Vec<FailPoint> = Boundary::ALL
            .iter()
            .flat_map(|boundary| [FailPoint::Before(*boundary), FailPoint::After(*boundary)])
            .collect();
        all.extend([FailPoint::MidActivity, FailPoint::ActivityEffect]);
        all
    }

    fn name(self) -> String {
        match self {
            FailPoint::Before(boundary) => format!("before_{}", boundary.name()),
            FailPoint::After(boundary) => format!("after_{}", boundary.name()),
            FailPoint::MidActivity => "mid_activity".to_string(),
            FailPoint::ActivityEffect => "activity_effect".to_string(),
        }
    }

    /// The largest hit number that surely fires within one incarnation.
    fn sure_hits(self) -> u32 {
        match self {
            FailPoint::Before(boundary) | FailPoint::After(boundary) => boundary.sure_hits(),
            // Activity attempts of one cycle: 6 + 6 + 7 + 2 + 2 + 1 + 4.
            FailPoint::MidActivity | FailPoint::ActivityEffect => 20,
        }
    }

    fn parse(name: &str) -> Option<FailPoint> {
        FailPoint::all()
            .into_iter()
            .find(|point| point.name() == name)
    }
}

/// The fail point armed for this incarnation, and how often it was reached so far.
struct FailPlan {
    point: FailPoint,
    hit: u32,
    reached: AtomicU32,
}

static FAIL_PLAN: OnceLock<FailPlan> = OnceLock::new();

/// Notes that `point` was reached; SIGKILLs the process if it is the armed point's armed hit.
fn reach(point: FailPoint) {
    let Some(plan) = FAIL_PLAN.get() else {
        return;
    };
    if plan.point != point {
        return;
    }
    let reached = plan.reached.fetch_add(1, Ordering::AcqRel) + 1;
    if reached == plan.hit {
        log_line("fired", "-", reached, &point.name());
        kill_self();
    }
}

/// SIGKILLs this process: no destructor, no flush, no shutdown.
fn kill_self() -> ! {
    // SAFETY: `kill` and `getpid` have no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The boundaries a store call crosses.
fn boundaries(call: &StoreCall<'_>) -> Vec<Boundary> {
    match call {
        StoreCall::CreateRun(_) => vec![Boundary::CreateRun],
        StoreCall::SendSignal(..) => vec![Boundary::SignalSent],
        StoreCall::Commit(commit) => commit_boundaries(commit),
        _ => Vec::new(),
    }
}

/// The boundaries a commit crosses: always [`Boundary::Commit`], plus one per kind of fact it carries.
fn commit_boundaries(commit: &Commit) -> Vec<Boundary> {
    let mut crossed = vec![Boundary::Commit];
    let has_kind = |kind: u16| commit.events.iter().any(|event| event.kind == kind);
    if has_kind(KIND_TIMER_FIRED) {
        crossed.push(Boundary::TimerFired);
    }
    if commit.consume_signal.is_some() {
        crossed.push(Boundary::SignalDelivered);
    }
    if has_kind(KIND_ATTEMPT_FAILED) {
        crossed.push(Boundary::AttemptFailed);
    }
    if completes_a_compensation(commit) {
        crossed.push(Boundary::CompensationDone);
    }
    if has_kind(KIND_CHILD_STARTED) {
        crossed.push(Boundary::ChildStarted);
    }
    if outcome_state(commit).is_some() {
        crossed.push(Boundary::Outcome);
    }
    crossed
}

/// Whether the commit carries the completion of a compensation ([`release`]) step.
fn completes_a_compensation(commit: &Commit) -> bool {
    let framing = Codec::new(DEFAULT_PAYLOAD_LIMIT + 4096);
    commit.events.iter().any(|event| {
        matches!(
            framing.decode::<EventBody>(&event.payload),
            Ok(EventBody::ActivityCompleted { name, .. }) if name == <release as Activity>::NAME
        )
    })
}

/// The final state a commit records for its run, if it finishes the run.
fn outcome_state(commit: &Commit) -> Option<&'static str> {
    match commit.status.as_ref()? {
        StatusChange::Complete { .. } => Some("completed"),
        StatusChange::Fail { .. } => Some("failed"),
        StatusChange::Cancel { .. } => Some("cancelled"),
        StatusChange::CompensationFail { .. } => Some("compensation_failed"),
        _ => None,
    }
}

/// Logs `parked <id> 0 -` (the harness reports it: no run of this load may park) and prints why.
fn report_park(workflow_id: &str, reason: &[u8]) {
    log_line("parked", workflow_id, 0, "-");
    match Codec::default().decode::<ParkReason>(reason) {
        Ok(reason) => eprintln!("campaign_worker: run {workflow_id} parked: {reason}"),
        Err(error) => {
            eprintln!("campaign_worker: run {workflow_id} parked (undecodable reason: {error})")
        }
    }
}

/// The store hook: logs outcome commits (attempted, acknowledged) and fires the armed fail point.
struct FailPointHook;

impl StoreHook for FailPointHook {
    fn before(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        if let StoreCall::Commit(commit) = call
            && let Some(state) = outcome_state(commit)
        {
            log_line("finish", &commit.workflow_id, 0, state);
        }
        for boundary in boundaries(call) {
            reach(FailPoint::Before(boundary));
        }
        None
    }

    fn after_ok(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        if let StoreCall::Commit(commit) = call
            && let Some(state) = outcome_state(commit)
        {
            log_line("outcome", &commit.workflow_id, 0, state);
        }
        if let StoreCall::Commit(commit) = call
            && let Some(StatusChange::Park { reason }) = &commit.status
        {
            report_park(&commit.workflow_id, reason);
        }
        for boundary in boundaries(call) {
            reach(FailPoint::After(boundary));
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------------
// Activities

/// A pure mixing function: what every activity computes.
fn mix(acc: u64, salt: u64) -> u64 {
    (acc ^ salt)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        .wrapping_add(salt)
}

/// The body every activity shares: logs `start`, maybe dies mid-activity, waits 1–6 ms (a window for
/// the harness's kills), performs its effect (the `end` line), maybe dies right after it, returns.
async fn activity_body(ctx: &ActivityContext, name: &str) {
    let label = format!("{name}#{}", ctx.attempt());
    log_line("start", ctx.workflow_id(), ctx.step(), &label);
    reach(FailPoint::MidActivity);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=6))).await;
    log_line("end", ctx.workflow_id(), ctx.step(), &label);
    reach(FailPoint::ActivityEffect);
}

/// One step of work: `mix(acc, salt)`.
// Attempts cut short by a kill count toward the budget: a large one (see `flaky`).
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn mix_step(ctx: ActivityContext, acc: u64, salt: u64) -> Result<u64, ActivityError> {
    activity_body(&ctx, "mix_step").await;
    Ok(mix(acc, salt))
}

/// Fails its first attempt (retryable), then returns `mix(acc, 77)`.
// Attempts cut short by a kill count toward the budget (event format 3): a step may be killed
// several times in a campaign, hence the budget.
#[activity(retry(max_attempts = 1000, backoff = "5ms..5ms", jitter = 0.0))]
async fn flaky(ctx: ActivityContext, acc: u64) -> Result<u64, ActivityError> {
    activity_body(&ctx, "flaky").await;
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable("first attempts always fail"));
    }
    Ok(mix(acc, 77))
}

/// A saga booking.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn reserve(ctx: ActivityContext, seed: u64, i: u64) -> Result<u64, ActivityError> {
    activity_body(&ctx, "reserve").await;
    Ok(mix(seed, i))
}

/// The saga's compensation of booking `i`.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn release(ctx: ActivityContext, seed: u64, i: u64) -> Result<u64, ActivityError> {
    activity_body(&ctx, "release").await;
    Ok(mix(seed, 100 + i))
}

/// The saga step that fails for good.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn reserve_fails(ctx: ActivityContext, seed: u64) -> Result<u64, ActivityError> {
    activity_body(&ctx, "reserve_fails").await;
    Err(ActivityError::non_retryable(format!(
        "no room left for {seed}"
    )))
}

// ---------------------------------------------------------------------------------------------------
// Workflows

/// Four chained steps, then the flaky one.
#[workflow]
async fn sequential(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let mut acc = seed;
    for salt in 1..=CHAIN {
        acc = ctx.call(mix_step, (acc, salt)).await?;
    }
    ctx.call(flaky, acc).await
}

/// Five concurrent steps joined, then one on their combined results.
#[workflow]
async fn fan_out(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let results =
        orchestrator::join_all((1..=FAN).map(|salt| ctx.call(mix_step, (seed, salt)))).await;
    let mut acc = 0;
    for result in results {
        acc = mix(acc, result?);
    }
    ctx.call(mix_step, (acc, 99)).await
}

/// Three bookings with compensations, then a step that fails: the bookings are released in reverse.
#[workflow]
async fn saga(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let mut acc = seed;
    for i in 1..=BOOKINGS {
        acc = mix(acc, ctx.call(reserve, (seed, i)).await?);
        ctx.compensate_with(release, (seed, i));
    }
    ctx.call(reserve_fails, seed).await?;
    Ok(acc)
}

/// Step, sleep, step, sleep (10–30 ms each, from the input).
#[workflow]
async fn timers(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(mix_step, (seed, 1)).await?;
    ctx.sleep(Duration::from_millis(10 + seed % 21)).await?;
    let b = ctx.call(mix_step, (a, 2)).await?;
    ctx.sleep(Duration::from_millis(10 + a % 21)).await?;
    Ok(b)
}

/// Step, signal `first`, step, signal `second`.
#[workflow]
async fn signal_flow(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(mix_step, (seed, 1)).await?;
    let first: u64 = ctx.signal("first").await?;
    let b = ctx.call(mix_step, (a, first)).await?;
    let second: u64 = ctx.signal("second").await?;
    Ok(mix(b, second))
}

/// Step, sleep, step.
#[workflow]
async fn child(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(mix_step, (seed, 1)).await?;
    ctx.sleep(Duration::from_millis(5 + seed % 11)).await?;
    ctx.call(mix_step, (a, 2)).await
}

/// Two children started concurrently and joined, then a step on their sum.
#[workflow]
async fn parent(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let children = (1..=CHILDREN).map(|i| {
        let id = format!("{}/child-{i}", ctx.workflow_id());
        ctx.child(child, id, mix(seed, i))
    });
    let mut sum = 0u64;
    for result in orchestrator::join_all(children).await {
        sum = sum.wrapping_add(result?);
    }
    ctx.call(mix_step, (sum, 7)).await
}

/// The payload of signal `name` to `workflow_id`: the same every time it is sent.
fn signal_payload(workflow_id: &str, name: &str) -> u64 {
    // FNV-1a.
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in workflow_id.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01B3);
    }
    hash
}

// ---------------------------------------------------------------------------------------------------
// One incarnation

/// Parses `-`, or comma-separated cycle numbers and ranges `a..b`.
fn parse_cycles(spec: &str) -> BTreeSet<u64> {
    let mut cycles = BTreeSet::new();
    if spec == "-" {
        return cycles;
    }
    for token in spec.split(',') {
        match token.split_once("..") {
            Some((from, to)) => {
                let from: u64 = from.parse().expect("a cycle range start");
                let to: u64 = to.parse().expect("a cycle range end");
                cycles.extend(from..to);
            }
            None => {
                cycles.insert(token.parse().expect("a cycle number"));
            }
        }
    }
    cycles
}

fn engine_builder(store: Arc<dyn Store>) -> orchestrator::EngineBuilder {
    Engine::builder()
        .store(store)
        .shutdown_grace(Duration::from_secs(2))
        .max_resident_runs(RESIDENT_RUNS)
        .register(sequential)
        .register(fan_out)
        .register(saga)
        .register(timers)
        .register(signal_flow)
        .register(parent)
        .register(child)
        .register(mix_step)
        .register(flaky)
        .register(reserve)
        .register(release)
        .register(reserve_fails)
}

/// Logs `ack <id> 0 started` once `start` returned `Ok`.
async fn start_logged<W: Workflow>(engine: &Engine, workflow: W, id: String, input: W::Input) {
    engine
        .start(workflow, id.clone(), input)
        .await
        .unwrap_or_else(|error| panic!("start {id}: {error}"));
    log_line("ack", &id, 0, "started");
}

/// Starts (or finds) the six top-level runs of cycle `c`.
async fn start_cycle(engine: &Engine, c: u64) {
    let seed = |kind: u64| c * 16 + kind;
    start_logged(engine, sequential, format!("seq-{c}"), seed(1)).await;
    start_logged(engine, fan_out, format!("fan-{c}"), seed(2)).await;
    start_logged(engine, saga, format!("saga-{c}"), seed(3)).await;
    start_logged(engine, timers, format!("timer-{c}"), seed(4)).await;
    start_logged(engine, signal_flow, format!("signal-{c}"), seed(5)).await;
    start_logged(engine, parent, format!("parent-{c}"), seed(6)).await;
    log_line(
        "ack",
        "-",
        u32::try_from(c).expect("a cycle fits u32"),
        "cycle",
    );
}

/// Every run in `state`, by id.
async fn runs_in_state(
    engine: &Engine,
    workflow_name: Option<&str>,
    state: RunState,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut query = RunQuery::new().state(state).limit(1_000);
    if let Some(name) = workflow_name {
        query = query.workflow_name(name);
    }
    loop {
        let page = engine.list_runs(&query).await.expect("list runs");
        ids.extend(page.runs.into_iter().map(|run| run.workflow_id));
        match page.next {
            Some(next) => query = query.after(next),
            None => return ids,
        }
    }
}

/// Sends `first` and `second` to every running [`signal_flow`], each after a short random delay (so
/// some arrive while the run waits, some before). A copy of a signal that a killed incarnation already
/// sent stays unconsumed: the run waits for each name once.
async fn send_signals(engine: &Engine) {
    let waiting = runs_in_state(
        engine,
        Some(<signal_flow as Workflow>::NAME),
        RunState::Running,
    )
    .await;
    for id in waiting {
        let engine = engine.clone();
        tokio::spawn(async move {
            for name in ["first", "second"] {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=20))).await;
                match engine.signal(&id, name, signal_payload(&id, name)).await {
                    Ok(()) | Err(Error::RunFinished { .. }) => {}
                    Err(error) => {
                        // A panic would only end this task, and the run would wait forever.
                        eprintln!("campaign_worker: signal {name} to {id}: {error}");
                        std::process::exit(1);
                    }
                }
            }
        });
    }
}

/// Waits until no run is running (every one finished, or parked — which the harness reports).
async fn wait_until_idle(engine: &Engine) {
    loop {
        let page = engine
            .list_runs(&RunQuery::new().state(RunState::Running).limit(1))
            .await
            .expect("list running runs");
        if page.runs.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(db: PathBuf, cycles: BTreeSet<u64>) {
    let sqlite = SqliteStore::open(&db).await.expect("open the journal");
    let store = HookedStore::new(Arc::new(sqlite), FailPointHook);
    let engine = engine_builder(Arc::new(store))
        .start()
        .await
        .expect("start the engine");
    println!("READY");
    for c in cycles {
        start_cycle(&engine, c).await;
    }
    send_signals(&engine).await;
    wait_until_idle(&engine).await;
    println!("DONE");
    engine.shutdown().await;
}

fn describe() {
    for point in FailPoint::all() {
        println!("fail-point {} {}", point.name(), point.sure_hits());
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: campaign_worker describe\n       campaign_worker run <db> <run log> <cycles> [<fail point> <hit>]"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["describe"] => describe(),
        ["run", db, log, cycles, ref armed @ ..] => {
            RUN_LOG
                .set(PathBuf::from(log))
                .expect("the run log is set once");
            match armed {
                [] => {}
                [point, hit] => {
                    let point = FailPoint::parse(point).unwrap_or_else(|| usage());
                    let hit = hit.parse().unwrap_or_else(|_| usage());
                    let plan = FailPlan {
                        point,
                        hit,
                        reached: AtomicU32::new(0),
                    };
                    assert!(FAIL_PLAN.set(plan).is_ok(), "the fail plan is set once");
                }
                _ => usage(),
            }
            run(PathBuf::from(db), parse_cycles(cycles)).await;
        }
        _ => usage(),
    }
}
