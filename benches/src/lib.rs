//! Shared workloads of the orchestrator benchmark suite.
//!
//! Both benches (`benches/suite.rs`, the one-run suite, and `benches/micro.rs`, the criterion
//! micro-benches) build their engines and workflows from here:
//!
//! - [`engine_builder`]: an engine on a SQLite file with every bench workflow and activity registered,
//!   at a chosen [`Mode`] of durability (`Durability::Full` or `Normal`);
//! - the workflows ([`seq_steps`], [`three_steps`], [`ten_steps`], [`steps_then_gate`], [`parked`]) and
//!   the activities they call ([`noop`], [`stamp`], [`gate`]);
//! - the replay journal: [`build_replay_journal`] writes a run of N completed activity steps that is
//!   stopped just before its end, [`replay_once`] restarts an engine on it and times the replay;
//! - small helpers: [`within`] (every await gets a deadline, so a hang fails loudly), [`percentile_us`],
//!   [`count_events`], [`rss_kb`], [`cpu_time`].
//!
//! Bench code, not library code: the activities report through process-global state (an activity is a
//! plain static function), which is fine because one bench process runs one workload at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use orchestrator::{Activity, Durability, EngineBuilder};

/// The error type of bench code: anything, with a message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `kind` column of an `ActivityCompleted` event (see `docs/journal.md`).
pub const KIND_ACTIVITY_COMPLETED: i64 = 1;
/// The `kind` column of a `TimerStarted` event.
pub const KIND_TIMER_STARTED: i64 = 3;

/// How long `Engine::shutdown` may wait for running activities in the benches (they are no-ops).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The workflow id of the replay journal's one run.
pub const REPLAY_ID: &str = "replay";

// ---------------------------------------------------------------------------------------------------
// Durability

/// The durability an engine journals with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// fsync on every commit (`synchronous = FULL`): a step is on disk when it returns.
    Full,
    /// No fsync per commit (`synchronous = NORMAL` in WAL): survives a process crash, not a power cut.
    Normal,
}

impl Mode {
    /// The suffix of this mode's JSON keys: `""` for Full, `"_normal"` for Normal.
    pub fn suffix(self) -> &'static str {
        match self {
            Mode::Full => "",
            Mode::Normal => "_normal",
        }
    }

    /// The engine's setting for this mode.
    pub fn durability(self) -> Durability {
        match self {
            Mode::Full => Durability::Full,
            Mode::Normal => Durability::Normal,
        }
    }

    /// A human label.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Full => "Full",
            Mode::Normal => "Normal",
        }
    }
}

/// An engine builder journaling to the SQLite file at `path` with durability `mode`, with every bench
/// workflow and activity registered and a short shutdown grace.
pub fn engine_builder(path: &Path, mode: Mode) -> EngineBuilder {
    let builder = Engine::builder()
        .sqlite(path)
        .shutdown_grace(SHUTDOWN_GRACE)
        .register(seq_steps)
        .register(three_steps)
        .register(ten_steps)
        .register(steps_then_gate)
        .register(parked)
        .register(poison_pill)
        .register(noop)
        .register(stamp)
        .register(gate);
    builder.durability(mode.durability())
}

// ---------------------------------------------------------------------------------------------------
// Activities

/// Does nothing: returns its input.
#[activity]
pub async fn noop(n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

/// Records the instant it runs in [`take_stamps`]'s list, then returns its input.
#[activity]
pub async fn stamp(n: u32) -> Result<u32, ActivityError> {
    stamps().push(Instant::now());
    Ok(n)
}

/// The last step of the replay journal. While the gate is closed it never finishes (so the journal is
/// left one step short of its end); once [`open_gate`] was called it records when it ran (the end of
/// replay, see [`gate_reached`]) and returns.
#[activity]
pub async fn gate(n: u32) -> Result<u32, ActivityError> {
    *lock(&GATE_REACHED) = Some(Instant::now());
    if !GATE_OPEN.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
    Ok(n)
}

/// The name [`noop`] is journaled under.
pub fn noop_name() -> &'static str {
    <noop as Activity>::NAME
}

static STAMPS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static GATE_REACHED: Mutex<Option<Instant>> = Mutex::new(None);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn stamps() -> MutexGuard<'static, Vec<Instant>> {
    lock(&STAMPS)
}

/// Takes (and clears) the instants recorded by [`stamp`].
pub fn take_stamps() -> Vec<Instant> {
    std::mem::take(&mut *stamps())
}

/// Closes the gate: [`gate`] blocks from now on. Forgets when it was last reached.
pub fn close_gate() {
    GATE_OPEN.store(false, Ordering::Release);
    *lock(&GATE_REACHED) = None;
}

/// Opens the gate: [`gate`] returns from now on. Forgets when it was last reached.
pub fn open_gate() {
    GATE_OPEN.store(true, Ordering::Release);
    *lock(&GATE_REACHED) = None;
}

/// Waits (up to `limit`) until [`gate`] has run since the last [`open_gate`]/[`close_gate`], and
/// returns the instant it ran.
pub async fn gate_reached(limit: Duration) -> Result<Instant, BoxError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(reached) = *lock(&GATE_REACHED) {
            return Ok(reached);
        }
        if Instant::now() > deadline {
            return Err(format!("the replay gate was not reached within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Workflows

/// `n` [`stamp`] activities back to back (the sequential-step workload).
#[workflow]
pub async fn seq_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut last = 0;
    for i in 0..n {
        last = ctx.call(stamp, i).await?;
    }
    Ok(last)
}

/// Three no-op activities.
#[workflow]
pub async fn three_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = ctx.call(noop, n).await?;
    let b = ctx.call(noop, a).await?;
    ctx.call(noop, b).await
}

/// Ten no-op activities.
#[workflow]
pub async fn ten_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut last = n;
    for _ in 0..10 {
        last = ctx.call(noop, last).await?;
    }
    Ok(last)
}

/// `n` no-op activities, then [`gate`] (the replay journal).
#[workflow]
pub async fn steps_then_gate(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    for i in 0..n {
        ctx.call(noop, i).await?;
    }
    ctx.call(gate, n).await
}

/// One no-op activity, then a panic: a poison run (replayed after every panic until parked).
#[workflow]
pub async fn poison_pill(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let n = ctx.call(noop, n).await?;
    panic!("{POISON_MESSAGE} {n}");
}

/// The start of the panic message of [`poison_pill`] (the bench's panic hook keeps it off stderr).
pub const POISON_MESSAGE: &str = "poison pill";

/// Sleeps `secs` seconds on a durable timer.
#[workflow]
pub async fn parked(ctx: WorkflowContext, secs: u64) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The replay journal

/// Writes, at `path` (which must not exist), a journal whose one run ([`REPLAY_ID`], workflow
/// [`steps_then_gate`]) has completed `steps` no-op activities and is stopped in its last step.
/// The file is checkpointed (self-contained, no `-wal` needed), so it can be copied. Returns the
/// number of events in the journal.
pub async fn build_replay_journal(path: &Path, steps: u32, mode: Mode) -> Result<u64, BoxError> {
    close_gate();
    let engine = within(
        Duration::from_secs(30),
        "starting the engine to build the replay journal",
        engine_builder(path, mode)
            .shutdown_grace(Duration::from_millis(100))
            .start(),
    )
    .await??;
    within(
        Duration::from_secs(30),
        "starting the replay run",
        engine
            .start(steps_then_gate, REPLAY_ID, steps)
            .into_future(),
    )
    .await??;
    // Generous: a step costs well under 10 ms even with an fsync on a slow disk.
    let limit = Duration::from_secs(60) + Duration::from_millis(10) * steps;
    gate_reached(limit)
        .await
        .map_err(|error| format!("building a {steps}-step replay journal: {error}"))?;
    within(
        Duration::from_secs(30),
        "shutting the build engine down",
        engine.shutdown(),
    )
    .await?;
    drop(engine);
    // Since event format 3 each step also journals its attempt's start (an annotation): `steps`
    // completions, and every event counts toward the replay rate.
    let completions = count_events(path, REPLAY_ID, Some(KIND_ACTIVITY_COMPLETED))?;
    if completions != u64::from(steps) {
        return Err(
            format!("the replay journal has {completions} completions, expected {steps}").into(),
        );
    }
    let events = count_events(path, REPLAY_ID, None)?;
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(events)
}

/// Starts an engine on a replay journal (see [`build_replay_journal`]) and returns how long it took
/// from `EngineBuilder::start` until the run had replayed its journal and asked for its last step;
/// then lets the run finish (untimed) and shuts the engine down.
pub async fn replay_once(path: &Path, mode: Mode) -> Result<Duration, BoxError> {
    open_gate();
    let started = Instant::now();
    let engine = within(
        Duration::from_secs(120),
        "starting the engine on the replay journal",
        engine_builder(path, mode).start(),
    )
    .await??;
    let reached = gate_reached(Duration::from_secs(300))
        .await
        .map_err(|error| format!("replaying the journal: {error}"))?;
    let elapsed = reached.saturating_duration_since(started);
    let run = within(
        Duration::from_secs(10),
        "getting the replay run's handle",
        engine.handle(steps_then_gate, REPLAY_ID),
    )
    .await??;
    within(
        Duration::from_secs(60),
        "waiting for the replayed run's result",
        run.result(),
    )
    .await??;
    within(Duration::from_secs(30), "shutting down", engine.shutdown()).await?;
    Ok(elapsed)
}

/// Copies a checkpointed SQLite file (no `-wal` content) to `to`.
pub fn copy_journal(from: &Path, to: &Path) -> Result<(), BoxError> {
    std::fs::copy(from, to)
        .map_err(|error| format!("copying {} to {}: {error}", from.display(), to.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/// Awaits `future`, failing with a message naming `what` if it takes longer than `limit`.
pub async fn within<F: Future>(
    limit: Duration,
    what: &str,
    future: F,
) -> Result<F::Output, BoxError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| format!("timed out after {limit:?}: {what}").into())
}

/// The `p`-th percentile (0..=100, nearest rank) of `samples`, in microseconds. Sorts `samples`.
pub fn percentile_us(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    let index = rank.clamp(1, samples.len()) - 1;
    samples[index].as_secs_f64() * 1e6
}

/// The number of events of `workflow_id` (or of every run, for `"*"`) in the journal at `path`,
/// optionally only of one `kind`. Reads with a separate connection.
pub fn count_events(path: &Path, workflow_id: &str, kind: Option<i64>) -> Result<u64, BoxError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let all = workflow_id == "*";
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM events WHERE (?1 OR workflow_id = ?2) AND (?3 IS NULL OR kind = ?3)",
        rusqlite::params![all, workflow_id, kind],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The average payload size, in bytes, of the `ActivityCompleted` events in the journal at `path`.
pub fn average_completion_payload(path: &Path) -> Result<f64, BoxError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let average: Option<f64> = conn.query_row(
        "SELECT avg(length(payload)) FROM events WHERE kind = ?1",
        [KIND_ACTIVITY_COMPLETED],
        |row| row.get(0),
    )?;
    Ok(average.unwrap_or(f64::NAN))
}

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kb() -> Result<u64, BoxError> {
    proc_status_kb("VmRSS:")
}

/// This process's peak resident set size in KiB (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_kb() -> Result<u64, BoxError> {
    proc_status_kb("VmHWM:")
}

fn proc_status_kb(field: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|error| format!("reading /proc/self/status: {error}"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .ok_or_else(|| format!("no {field} line in /proc/self/status"))?;
    let kb = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .map_err(|error| format!("parsing `{line}`: {error}"))?;
    Ok(kb)
}

/// The CPU time (user + system) this process has used so far, all threads included.
pub fn cpu_time() -> Result<Duration, BoxError> {
    // SAFETY: `rusage` is plain old data, for which all-zero bytes is a valid value, and `getrusage`
    // only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if status != 0 {
        return Err(format!("getrusage failed: {}", std::io::Error::last_os_error()).into());
    }
    let micros = |time: libc::timeval| {
        Duration::from_secs(u64::try_from(time.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(time.tv_usec).unwrap_or(0))
    };
    Ok(micros(usage.ru_utime) + micros(usage.ru_stime))
}
