//! Helpers shared by the integration tests.
//!
//! - [`TestDb`]: a journal file in its own temporary directory, engine builders pointed at it, and raw
//!   `rusqlite` access to its tables (to read the journal or to damage it on purpose).
//! - [`stop`]: a graceful restart step (shutdown, then drop).
//! - Counters, recorders and gates keyed by strings, so `#[activity]` functions (which are plain
//!   statics) can report what they did and be steered by the test that owns the key.
//! - [`eventually`] and [`finish`]: waiting with a deadline, so a broken engine fails a test instead of
//!   hanging it.
//! - [`SlowStore`]: the SQLite store with injected delays, to open race windows deterministically.
//! - [`gate_or_cancelled`]: an activity body that waits for a gate but honours cancellation.
//! - [`store_hooks::HookedStore`]: any store passed through, with a hook consulted before and after
//!   every call (to fail it, or report it failed after it took effect, or kill the process there).
//! - [`faults::FaultInjector`]: a seeded hook injecting busy, I/O, disk-full and lost-after-commit faults.
//! - [`lease_probe::ProbedStore`]: a store with leases (PostgreSQL) passed through, counting the writes
//!   it rejected as stale, and able to delay renewals or commits or simulate an outage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod child_worker;
pub mod cli_workflows;
pub mod faults;
pub mod format2_journal;
pub mod lease_probe;
pub mod pg_schema;
pub mod store_hooks;

pub use child_worker::ChildWorker;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orchestrator::codec::Codec;
use orchestrator::journal::EventBody;
use orchestrator::store::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, NewRun, OperatorOutcome, OperatorWrite,
    RunRecord, SignalOutcome, SignalRecord, SqliteStore, Store, StoreError, StoredEvent,
};
use orchestrator::{ActivityContext, Engine, EngineBuilder, Error, Payload, RunHandle, RunStatus};
use tempfile::TempDir;
use tokio::sync::Notify;

/// How long a test waits for something that should happen quickly before declaring it broken.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The `kind` column of an `ActivityCompleted` event.
pub const KIND_ACTIVITY_COMPLETED: u16 = 1;
/// The `kind` column of an `ActivityAttemptFailed` event.
pub const KIND_ATTEMPT_FAILED: u16 = 2;
/// The `kind` column of a `TimerStarted` event.
pub const KIND_TIMER_STARTED: u16 = 3;
/// The `kind` column of a `TimerFired` event.
pub const KIND_TIMER_FIRED: u16 = 4;
/// The `kind` column of a `SignalReceived` event.
pub const KIND_SIGNAL_RECEIVED: u16 = 6;
/// The `kind` column of a `SignalWaitStarted` event.
pub const KIND_SIGNAL_WAIT_STARTED: u16 = 5;
/// The `kind` column of a `SignalTimedOut` event.
pub const KIND_SIGNAL_TIMED_OUT: u16 = 7;
/// The `kind` column of a `SideEffect` event.
pub const KIND_SIDE_EFFECT: u16 = 8;
/// The `kind` column of a `ChildStarted` event.
pub const KIND_CHILD_STARTED: u16 = 9;
/// The `kind` column of a `RunFinished` event (the outcome of an awaited run).
pub const KIND_RUN_FINISHED: u16 = 10;
/// The `kind` column of an `Interrupted` event (cancellation or execution timeout, at step 0).
pub const KIND_INTERRUPTED: u16 = 11;
/// The `kind` column of a `StatePublished` event.
pub const KIND_STATE_PUBLISHED: u16 = 12;
/// The `kind` column of a `PatchMarker` event.
pub const KIND_PATCH_MARKER: u16 = 13;
/// The `kind` column of a `SelectWinner` event.
pub const KIND_SELECT_WINNER: u16 = 14;
/// The `kind` column of an `ActivityAttemptStarted` event (format 3).
pub const KIND_ATTEMPT_STARTED: u16 = 15;

/// A journal file (`journal.db`) inside its own temporary directory, deleted when dropped.
#[derive(Debug)]
pub struct TestDb {
    _dir: TempDir,
    path: PathBuf,
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDb {
    /// A fresh directory; the journal file does not exist yet.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orch-test-")
            .tempdir()
            .expect("create a temporary directory");
        let path = dir.path().join("journal.db");
        TestDb { _dir: dir, path }
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An engine builder journaling to this file, with a short shutdown grace (2 s).
    pub fn builder(&self) -> EngineBuilder {
        Engine::builder()
            .sqlite(&self.path)
            .shutdown_grace(Duration::from_secs(2))
    }

    /// A raw connection to the file (it must exist), waiting up to 5 s for locks.
    pub fn conn(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.path).expect("open the journal with rusqlite");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("set the busy timeout");
        conn
    }

    /// Every event of a run, in journal order, decoded.
    pub fn events(&self, workflow_id: &str) -> Vec<JournalRow> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT seq, step, kind, completion, payload FROM events \
                 WHERE workflow_id = ?1 ORDER BY seq",
            )
            .expect("prepare the events query");
        let rows = statement
            .query_map([workflow_id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, u16>(2)?,
                    row.get::<_, bool>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                ))
            })
            .expect("query the events");
        rows.map(|row| {
            let (seq, step, kind, completion, payload) = row.expect("read an event row");
            let body = Codec::default()
                .decode::<EventBody>(&payload)
                .expect("decode an event payload");
            JournalRow {
                seq,
                step,
                kind,
                completion,
                body,
            }
        })
        .collect()
    }

    /// The events of a run with the given `kind` column.
    pub fn events_of_kind(&self, workflow_id: &str, kind: u16) -> Vec<JournalRow> {
        self.events(workflow_id)
            .into_iter()
            .filter(|row| row.kind == kind)
            .collect()
    }

    /// How many events of a run have the given `kind` column (read without decoding payloads).
    pub fn count_kind(&self, workflow_id: &str, kind: u16) -> usize {
        let conn = self.conn();
        let count: i64 = conn
            .query_row(
                "SELECT count(*) FROM events WHERE workflow_id = ?1 AND kind = ?2",
                rusqlite::params![workflow_id, kind],
                |row| row.get(0),
            )
            .expect("count events");
        usize::try_from(count).expect("a count is not negative")
    }

    /// The first column of the first row of `sql` as an integer (e.g. a `count(*)`).
    pub fn scalar(&self, sql: &str, params: impl rusqlite::Params) -> i64 {
        self.conn()
            .query_row(sql, params, |row| row.get(0))
            .unwrap_or_else(|error| panic!("query `{sql}` failed: {error}"))
    }

    /// The activity completions of a run as `(step, activity name)`, in journal order.
    pub fn completed_activities(&self, workflow_id: &str) -> Vec<(u32, String)> {
        self.events(workflow_id)
            .into_iter()
            .filter_map(|row| match row.body {
                EventBody::ActivityCompleted { name, .. } => Some((row.step, name)),
                _ => None,
            })
            .collect()
    }

    /// The run's `state` column (0 running, 1 completed, 2 failed, 3 parked, 4 cancelled,
    /// 5 compensation failed), if the run exists.
    pub fn run_state(&self, workflow_id: &str) -> Option<i64> {
        let conn = self.conn();
        conn.query_row(
            "SELECT state FROM runs WHERE workflow_id = ?1",
            [workflow_id],
            |row| row.get(0),
        )
        .ok()
    }
}

/// One decoded row of the `events` table.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRow {
    /// The commit-order sequence number.
    pub seq: i64,
    /// The step the event belongs to.
    pub step: u32,
    /// The numeric kind column.
    pub kind: u16,
    /// Whether the event completes its step.
    pub completion: bool,
    /// The decoded event.
    pub body: EventBody,
}

/// Shuts an engine down gracefully and drops it, as a restart does before the next engine starts.
pub async fn stop(engine: Engine) {
    tokio::time::timeout(PATIENCE, engine.shutdown())
        .await
        .expect("engine shutdown took too long");
    drop(engine);
}

/// Waits for a run's result, failing the test if it takes longer than [`PATIENCE`].
pub async fn finish<T: Payload>(handle: &RunHandle<T>) -> Result<T, Error> {
    match tokio::time::timeout(PATIENCE, handle.result()).await {
        Ok(result) => result,
        Err(_) => panic!(
            "run `{}` did not finish within {PATIENCE:?}",
            handle.workflow_id().escape_debug()
        ),
    }
}

/// Polls `check` every 5 ms until it returns `true`; panics naming `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the run's status satisfies `accept`, then returns that status.
pub async fn wait_status(
    engine: &Engine,
    workflow_id: &str,
    accept: impl Fn(&RunStatus) -> bool,
) -> RunStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = engine.status(workflow_id).await;
        if let Ok(status) = &status
            && accept(status)
        {
            return status.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the status of `{}`; last seen {status:?}",
            workflow_id.escape_debug()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the run's status every 5 ms for up to `within`; returns the first status `accept` takes, else
/// the last one seen (so the caller's assertion shows it), without panicking.
pub async fn status_within(
    engine: &Engine,
    workflow_id: &str,
    within: Duration,
    accept: impl Fn(&RunStatus) -> bool,
) -> RunStatus {
    let deadline = Instant::now() + within;
    loop {
        let status = engine
            .status(workflow_id)
            .await
            .expect("read a run's status");
        if accept(&status) || Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Milliseconds since the Unix epoch (the journal's unit of time).
pub fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("the time fits in an i64")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn counters() -> &'static Mutex<HashMap<String, usize>> {
    static COUNTERS: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    COUNTERS.get_or_init(Mutex::default)
}

/// Adds one to the counter `key` and returns its new value (1 on the first call).
pub fn bump(key: &str) -> usize {
    let mut counters = lock(counters());
    let counter = counters.entry(key.to_string()).or_insert(0);
    *counter += 1;
    *counter
}

/// The value of the counter `key` (0 if never bumped).
pub fn count(key: &str) -> usize {
    lock(counters()).get(key).copied().unwrap_or(0)
}

fn records() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static RECORDS: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    RECORDS.get_or_init(Mutex::default)
}

/// Appends `value` to the list `key`.
pub fn record(key: &str, value: impl ToString) {
    lock(records())
        .entry(key.to_string())
        .or_default()
        .push(value.to_string());
}

/// The values appended to the list `key`, in order.
pub fn recorded(key: &str) -> Vec<String> {
    lock(records()).get(key).cloned().unwrap_or_default()
}

type GateState = Arc<(AtomicBool, Notify)>;

fn gate(key: &str) -> GateState {
    static GATES: OnceLock<Mutex<HashMap<String, GateState>>> = OnceLock::new();
    lock(GATES.get_or_init(Mutex::default))
        .entry(key.to_string())
        .or_default()
        .clone()
}

/// Waits until the gate `key` is opened by [`open_gate`] (returns at once if it already is).
pub async fn gate_wait(key: &str) {
    let gate = gate(key);
    loop {
        let notified = gate.1.notified();
        if gate.0.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// Opens the gate `key`, releasing every current and future [`gate_wait`] on it.
pub fn open_gate(key: &str) {
    let gate = gate(key);
    gate.0.store(true, Ordering::Release);
    gate.1.notify_waiters();
}

/// Waits until the gate `key` opens (`false`) or the activity's step is abandoned (`true`), for
/// activities that block until the test lets them go but must honour cancellation.
pub async fn gate_or_cancelled(key: &str, ctx: &ActivityContext) -> bool {
    tokio::select! {
        () = gate_wait(key) => false,
        () = ctx.cancelled() => true,
    }
}

/// The SQLite store with delays injected at chosen points, as a stalled disk or a lock held by another
/// process would cause. Every other call goes straight through.
///
/// - `before_create`: `create_run` waits this long before writing the row.
/// - `after_create`: `create_run` waits this long after the row is committed, before it returns.
/// - [`SlowStore::delay_reads_of`]: `run(id)` for that id reads the row, then waits before returning
///   it (so the caller acts on a row that may be stale by then). Armed once; later reads are prompt.
/// - [`SlowStore::delay_history_of`]: `history(id)` for that id waits before reading (as when the
///   engine loads a journal at start). Armed once.
/// - [`SlowStore::delay_due_wakeups`]: `due_wakeups` reads its page, then waits before returning it.
///   Armed once.
#[derive(Debug)]
pub struct SlowStore {
    inner: SqliteStore,
    before_create: Duration,
    after_create: Duration,
    slow_read: Mutex<Option<(String, Duration)>>,
    slow_read_done: AtomicBool,
    slow_history: Mutex<Option<(String, Duration)>>,
    slow_wakeups: Mutex<Option<Duration>>,
}

impl SlowStore {
    /// Opens the journal at `path` with no delays.
    pub async fn open(path: &Path) -> Self {
        SlowStore {
            inner: SqliteStore::open(path)
                .await
                .expect("open the SQLite store"),
            before_create: Duration::ZERO,
            after_create: Duration::ZERO,
            slow_read: Mutex::new(None),
            slow_read_done: AtomicBool::new(false),
            slow_history: Mutex::new(None),
            slow_wakeups: Mutex::new(None),
        }
    }

    /// Makes `create_run` wait `delay` before writing the row.
    pub fn delay_creates(mut self, delay: Duration) -> Self {
        self.before_create = delay;
        self
    }

    /// Makes `create_run` return `delay` after its row is committed (as on a stalled disk).
    pub fn delay_create_replies(mut self, delay: Duration) -> Self {
        self.after_create = delay;
        self
    }

    /// Makes the next `run(workflow_id)` return its row `delay` after reading it.
    pub fn delay_reads_of(&self, workflow_id: &str, delay: Duration) {
        self.slow_read_done.store(false, Ordering::Release);
        *lock(&self.slow_read) = Some((workflow_id.to_string(), delay));
    }

    /// Makes the next `history(workflow_id)` wait `delay` before reading the journal.
    pub fn delay_history_of(&self, workflow_id: &str, delay: Duration) {
        *lock(&self.slow_history) = Some((workflow_id.to_string(), delay));
    }

    /// Makes the next `due_wakeups` return its page `delay` after reading it (a slow page query on
    /// a large journal: its snapshot predates what is committed meanwhile).
    pub fn delay_due_wakeups(&self, delay: Duration) {
        *lock(&self.slow_wakeups) = Some(delay);
    }

    /// Whether the delayed read has read its row (and is now waiting before returning it).
    pub fn delayed_read_taken(&self) -> bool {
        self.slow_read_done.load(Ordering::Acquire)
    }
}

#[async_trait::async_trait]
impl Store for SlowStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        tokio::time::sleep(self.before_create).await;
        let outcome = self.inner.create_run(run).await?;
        tokio::time::sleep(self.after_create).await;
        Ok(outcome)
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.inner.commit(commit).await
    }

    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = self.inner.run(workflow_id).await;
        let delay = {
            let mut slow = lock(&self.slow_read);
            match slow.as_ref() {
                Some((id, delay)) if id == workflow_id => {
                    let delay = *delay;
                    *slow = None;
                    Some(delay)
                }
                _ => None,
            }
        };
        if let Some(delay) = delay {
            self.slow_read_done.store(true, Ordering::Release);
            tokio::time::sleep(delay).await;
        }
        row
    }

    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let delay = {
            let mut slow = lock(&self.slow_history);
            match slow.as_ref() {
                Some((id, delay)) if id == workflow_id => {
                    let delay = *delay;
                    *slow = None;
                    Some(delay)
                }
                _ => None,
            }
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.inner.history(workflow_id).await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.unfinished_runs().await
    }

    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        self.inner.send_signal(workflow_id, name, payload).await
    }

    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.inner.pending_signals(workflow_id).await
    }

    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        self.inner.request_cancel(workflow_id, reason).await
    }

    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
        self.inner.operate(write).await
    }

    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.value(workflow_id, key).await
    }

    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        self.inner.archived_runs(workflow_id).await
    }

    async fn due_wakeups(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<orchestrator::store::Wakeup>, StoreError> {
        let page = self.inner.due_wakeups(before_ms, limit).await;
        let delay = lock(&self.slow_wakeups).take();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        page
    }
    async fn list_runs(
        &self,
        query: &orchestrator::store::RunQuery,
    ) -> Result<orchestrator::store::RunPage, StoreError> {
        self.inner.list_runs(query).await
    }
}
