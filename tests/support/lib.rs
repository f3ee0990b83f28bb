//! Helpers shared by the integration tests.
//!
//! - [`TestDb`]: a journal file in its own temporary directory, engine builders pointed at it, and raw
//!   `rusqlite` access to its tables (to read the journal or to damage it on purpose).
//! - [`stop`]: a graceful restart step (shutdown, then drop).
//! - Counters, recorders and gates keyed by strings, so `#[activity]` functions (which are plain
//!   statics) can report what they did and be steered by the test that owns the key.
//! - [`eventually`] and [`finish`]: waiting with a deadline, so a broken engine fails a test instead of
//!   hanging it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orchestrator::codec::Codec;
use orchestrator::journal::EventBody;
use orchestrator::{Engine, EngineBuilder, Error, Payload, RunHandle, RunStatus};
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
/// The `kind` column of a `SideEffect` event.
pub const KIND_SIDE_EFFECT: u16 = 8;

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

    /// The run's `state` column (0 running, 1 completed, 2 failed, 3 parked), if the run exists.
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
        if let Ok(status) = &status {
            if accept(status) {
                return status.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the status of `{}`; last seen {status:?}",
            workflow_id.escape_debug()
        );
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
