//! The rows a [`Store`](super::Store) reads and writes.

/// The lifecycle state of a run as stored (serialized in snake_case: `"running"`, `"completed"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunState {
    /// Started and not finished.
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped and waiting for an operator: `Engine::retry` drives it again at once (the engine
    /// also retries it at its next start).
    Parked,
    /// Cancelled; its compensations ran.
    Cancelled,
    /// Failed, and a compensation failed too: the rollback is incomplete.
    CompensationFailed,
    /// Ended at once by an operator, without compensations (see `Engine::terminate`).
    Terminated,
}

impl RunState {
    /// The integer stored in the `state` column.
    pub fn code(self) -> i64 {
        match self {
            RunState::Running => 0,
            RunState::Completed => 1,
            RunState::Failed => 2,
            RunState::Parked => 3,
            RunState::Cancelled => 4,
            RunState::CompensationFailed => 5,
            RunState::Terminated => 6,
        }
    }

    /// The state for a stored integer.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(RunState::Running),
            1 => Some(RunState::Completed),
            2 => Some(RunState::Failed),
            3 => Some(RunState::Parked),
            4 => Some(RunState::Cancelled),
            5 => Some(RunState::CompensationFailed),
            6 => Some(RunState::Terminated),
            _ => None,
        }
    }

    /// Whether the run has finished for good (completed, failed, cancelled, compensation failed,
    /// terminated).
    pub fn is_finished(self) -> bool {
        !matches!(self, RunState::Running | RunState::Parked)
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The caller-chosen, unique workflow id.
    pub workflow_id: String,
    /// The workflow type's name.
    pub workflow_name: String,
    /// The encoded input.
    pub input: Vec<u8>,
    /// The parent run, for child workflows.
    pub parent_id: Option<String>,
    /// When the run times out (ms since the Unix epoch), if it has an execution timeout.
    pub deadline_ms: Option<i64>,
    /// The execution timeout that deadline came from, in milliseconds.
    pub execution_timeout_ms: Option<i64>,
    /// For stores with leases: the node creating the run owns it (lease epoch 1) from the start.
    pub owner: Option<Lease>,
    /// The run's first journal events (the engine's: what its first poll recorded and the starts of
    /// the attempts it asked for), written in the same transaction as the row, with their wake-ups,
    /// so a new run costs one commit. Nothing is written if the run exists already. (A
    /// [`ForkRun`](super::ForkRun) writes them too, before its own events; forks leave them empty.)
    pub events: Vec<NewEvent>,
    /// Created paused: the run's pause columns are set in the same transaction as its row, so no
    /// engine ever sees it unpaused (an imported unfinished run, `Engine::import_run`). Its
    /// wake-ups are hidden and it is never claimed until an operator resumes it, exactly as after
    /// [`OperatorChange::Pause`]. The audit event of the pause, if any, goes in
    /// [`NewRun::events`]. `None` for every ordinary start.
    pub paused: Option<PauseInfo>,
}

/// Who may write a run's journal: a node, under a lease epoch. Every takeover of a run increments its
/// epoch, so a node that lost its lease (it paused past the lease, or was partitioned) can no longer
/// write: its commits carry the old epoch and are rejected with [`StoreError::StaleLease`](super::StoreError).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The owning node's id.
    pub node: String,
    /// The lease epoch (fencing token).
    pub epoch: i64,
    /// How long the lease lasts without renewal, in milliseconds.
    pub duration_ms: i64,
}

/// Who holds a run's lease, as read for inspection (see
/// [`LeaseStore::lease_holder`](super::LeaseStore::lease_holder)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct LeaseHolder {
    /// The owning node's id.
    pub node: String,
    /// The lease epoch.
    pub epoch: i64,
    /// When the lease runs out without renewal (ms since the Unix epoch); `None` if never set.
    pub expires_at_ms: Option<i64>,
}

impl LeaseHolder {
    /// A holder record (for [`LeaseStore`](super::LeaseStore) implementations).
    pub fn new(node: impl Into<String>, epoch: i64, expires_at_ms: Option<i64>) -> Self {
        LeaseHolder {
            node: node.into(),
            epoch,
            expires_at_ms,
        }
    }
}

/// A run claimed (or still held) by a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The run.
    pub workflow_id: String,
    /// The lease epoch the node now holds for it.
    pub epoch: i64,
}

/// What [`Store::create_run`](super::Store::create_run) found.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    /// The run was created.
    Created,
    /// A run with this workflow id already existed; nothing was written.
    Existing(Box<RunRecord>),
}

/// A stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The workflow id.
    pub workflow_id: String,
    /// The workflow type's name.
    pub workflow_name: String,
    /// The lifecycle state.
    pub state: RunState,
    /// The encoded input.
    pub input: Vec<u8>,
    /// The encoded output, once completed.
    pub output: Option<Vec<u8>>,
    /// The encoded error (failed, cancelled) or park reason (parked).
    pub error: Option<Vec<u8>>,
    /// How many times the workflow id continued as new before this run (0 for the first run).
    pub run_no: i64,
    /// The parent run, for child workflows.
    pub parent_id: Option<String>,
    /// The reason of a requested cancellation, once requested.
    pub cancel_reason: Option<String>,
    /// When the run times out (ms since the Unix epoch), if it has an execution timeout.
    pub deadline_ms: Option<i64>,
    /// The execution timeout that deadline came from, in milliseconds.
    pub execution_timeout_ms: Option<i64>,
    /// When the run was created (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When the run's row last changed (ms since the Unix epoch).
    pub updated_at_ms: i64,
    /// Set while an operator has the run paused (see `Engine::pause`).
    pub paused: Option<PauseInfo>,
}

/// Who paused a run, why and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseInfo {
    /// The operator (as given to `Engine::pause`).
    pub by: String,
    /// Why.
    pub reason: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

/// An operator action on a run, applied by [`Store::operate`](super::Store::operate) in one
/// transaction together with its audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorWrite {
    /// The run.
    pub workflow_id: String,
    /// What changes on the run's row.
    pub change: OperatorChange,
    /// The encoded audit event (an `Operator` event at step 0) appended to the run's history.
    pub audit: NewEvent,
}

/// What an operator action changes on a run's row.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OperatorChange {
    /// Marks an unfinished run paused (nothing is written if it is paused already).
    Pause(PauseInfo),
    /// Clears the pause of a paused, unfinished run.
    Resume,
    /// Ends an unfinished run (running or parked, paused or not) in [`RunState::Terminated`] with
    /// this encoded termination as its error: its wake-ups are removed, its pause cleared and, with
    /// leases, its owner too (so the old holder's later writes are rejected as stale).
    Terminate {
        /// The encoded termination (who and why).
        error: Vec<u8>,
        /// Its searchable text (stored like [`Commit::error_text`]).
        text: String,
    },
}

/// What [`Store::operate`](super::Store::operate) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperatorOutcome {
    /// The change and its audit event are written.
    Applied,
    /// No run has this workflow id; nothing was written.
    NoSuchRun,
    /// The run has finished; nothing was written.
    RunFinished,
    /// Pause of a run that is paused already; nothing was written.
    AlreadyPaused,
    /// Resume of a run that is not paused; nothing was written.
    NotPaused,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The step it belongs to (1-based).
    pub step: u32,
    /// The event's numeric kind.
    pub kind: u16,
    /// Whether it completes its step (at most one completion per step).
    pub completion: bool,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// When the run must be woken for this step (a timer's fire time, a signal wait's deadline), in
    /// ms since the Unix epoch. The store keeps it in its timer index until the step completes, so an
    /// engine can wake runs that are not in memory (see [`Store::due_wakeups`](super::Store::due_wakeups)).
    pub wake_at_ms: Option<i64>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its position in the store's commit order.
    pub seq: i64,
    /// The step it belongs to.
    pub step: u32,
    /// The event's numeric kind.
    pub kind: u16,
    /// The encoded event.
    pub payload: Vec<u8>,
    /// When it was committed (ms since the Unix epoch, the store's clock).
    pub recorded_at_ms: i64,
}

/// A change of a run's status, applied with a [`Commit`].
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// A parked run is being retried.
    Resume,
    /// The run completed with this encoded output.
    Complete {
        /// The encoded output.
        output: Vec<u8>,
    },
    /// The run failed with this encoded error.
    Fail {
        /// The encoded error.
        error: Vec<u8>,
    },
    /// The run is parked for this encoded reason.
    Park {
        /// The encoded park reason.
        reason: Vec<u8>,
    },
    /// The run was cancelled and ended with this encoded error.
    Cancel {
        /// The encoded error.
        error: Vec<u8>,
    },
    /// A compensation failed; this is the encoded error.
    CompensationFail {
        /// The encoded error.
        error: Vec<u8>,
    },
    /// The run ends and a fresh run of the same workflow id starts with `input` and an empty journal.
    /// The ended run is archived; only the newest `keep_runs` archived runs are kept.
    ContinueAsNew {
        /// The encoded input of the next run.
        input: Vec<u8>,
        /// How many archived runs to keep for this workflow id.
        keep_runs: u32,
    },
}

/// One atomic write to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The run written to.
    pub workflow_id: String,
    /// Events to append, in order.
    pub events: Vec<NewEvent>,
    /// A signal (by inbox id) consumed by this commit.
    pub consume_signal: Option<i64>,
    /// A status change.
    pub status: Option<StatusChange>,
    /// Published values (key, encoded value) to upsert.
    pub values: Vec<(String, Vec<u8>)>,
    /// If set, the commit applies only while the run is still this run of its workflow id (it has not
    /// continued as new since); otherwise it fails with [`StoreError::Conflict`](super::StoreError).
    pub run_no: Option<i64>,
    /// For stores with leases: the commit applies only while `(node, epoch)` still holds the run's
    /// lease; otherwise it fails with [`StoreError::StaleLease`](super::StoreError) and writes nothing.
    pub fence: Option<(String, i64)>,
    /// The human-readable text of the error (or park reason) `status` records, stored searchable
    /// with it (see [`RunQuery::error_contains`]); cleared by a status change without one.
    pub error_text: Option<String>,
}

impl Commit {
    /// A commit that only appends `events`.
    pub fn events(workflow_id: &str, events: Vec<NewEvent>) -> Self {
        Commit {
            workflow_id: workflow_id.to_string(),
            events,
            consume_signal: None,
            status: None,
            values: Vec::new(),
            run_no: None,
            fence: None,
            error_text: None,
        }
    }
}

/// A signal in a run's inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRecord {
    /// The inbox id: signals to one run are delivered in increasing id order.
    pub id: i64,
    /// The signal's name.
    pub name: String,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

/// A run that must be woken at a time: its earliest pending timer, signal deadline or execution
/// deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wakeup {
    /// The run.
    pub workflow_id: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

/// What [`Store::request_cancel`](super::Store::request_cancel) did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The request is recorded (or an earlier one was).
    Requested,
    /// No run has this workflow id.
    NoSuchRun,
    /// The run has finished.
    RunFinished,
}

/// A run that ended by continuing as new, kept for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedRun {
    /// The workflow id.
    pub workflow_id: String,
    /// Which run of the workflow id it was (0 for the first).
    pub run_no: i64,
    /// The workflow type's name.
    pub workflow_name: String,
    /// Its encoded input.
    pub input: Vec<u8>,
    /// How many events its journal held.
    pub event_count: i64,
    /// When it started and ended (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When it continued as new.
    pub ended_at_ms: i64,
}

/// What [`Store::send_signal`](super::Store::send_signal) did.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalOutcome {
    /// The signal is in the inbox.
    Queued(SignalRecord),
    /// No run has this workflow id.
    NoSuchRun,
    /// The run has finished.
    RunFinished,
}

/// Which runs [`Store::list_runs`](super::Store::list_runs) returns: filters and a page.
///
/// ```
/// use orchestrator::store::{RunQuery, RunState};
///
/// let query = RunQuery::new().workflow_name("checkout").state(RunState::Failed).limit(50);
/// assert_eq!(query.limit, 50);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunQuery {
    /// Only runs of this workflow type.
    pub workflow_name: Option<String>,
    /// Only runs in one of these states (all states when empty).
    pub states: Vec<RunState>,
    /// Only runs whose workflow id starts with this prefix.
    pub id_prefix: Option<String>,
    /// Only paused (`true`) or only not paused (`false`) runs.
    pub paused: Option<bool>,
    /// Only child runs of this parent.
    pub parent_id: Option<String>,
    /// Only runs created at or after this time (ms since the Unix epoch).
    pub created_from_ms: Option<i64>,
    /// Only runs created before this time (ms since the Unix epoch).
    pub created_until_ms: Option<i64>,
    /// Only runs whose row last changed at or after this time (ms since the Unix epoch).
    pub updated_from_ms: Option<i64>,
    /// Only runs whose row last changed before this time (ms since the Unix epoch).
    pub updated_until_ms: Option<i64>,
    /// Only runs whose error (or park reason, or termination) text contains this, ignoring ASCII
    /// case.
    pub error_contains: Option<String>,
    /// The page starts after this workflow id (the previous page's `next`).
    pub after: Option<String>,
    /// The most runs in one page (1 to 1,000).
    pub limit: usize,
}

impl Default for RunQuery {
    fn default() -> Self {
        RunQuery {
            workflow_name: None,
            states: Vec::new(),
            id_prefix: None,
            paused: None,
            parent_id: None,
            created_from_ms: None,
            created_until_ms: None,
            updated_from_ms: None,
            updated_until_ms: None,
            error_contains: None,
            after: None,
            limit: 100,
        }
    }
}

impl RunQuery {
    /// All runs, 100 per page.
    pub fn new() -> Self {
        RunQuery::default()
    }

    /// Only runs of workflow type `name`.
    pub fn workflow_name(mut self, name: impl Into<String>) -> Self {
        self.workflow_name = Some(name.into());
        self
    }

    /// Also accept runs in `state` (call several times for several states).
    pub fn state(mut self, state: RunState) -> Self {
        self.states.push(state);
        self
    }

    /// Only runs whose id starts with `prefix`.
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// Only paused runs (`true`) or only runs that are not paused (`false`).
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = Some(paused);
        self
    }

    /// Only child runs of `parent`.
    pub fn parent_id(mut self, parent: impl Into<String>) -> Self {
        self.parent_id = Some(parent.into());
        self
    }

    /// Only runs created in `[from_ms, until_ms)` (ms since the Unix epoch; `None` leaves that end
    /// open).
    pub fn created_between(mut self, from_ms: Option<i64>, until_ms: Option<i64>) -> Self {
        self.created_from_ms = from_ms;
        self.created_until_ms = until_ms;
        self
    }

    /// Only runs whose row last changed in `[from_ms, until_ms)` (ms since the Unix epoch; `None`
    /// leaves that end open).
    pub fn updated_between(mut self, from_ms: Option<i64>, until_ms: Option<i64>) -> Self {
        self.updated_from_ms = from_ms;
        self.updated_until_ms = until_ms;
        self
    }

    /// Only runs whose error, park reason or termination text contains `text` (ignoring ASCII
    /// case): the message of the decoded error, as its `Display` shows it.
    pub fn error_contains(mut self, text: impl Into<String>) -> Self {
        self.error_contains = Some(text.into());
        self
    }

    /// Continue after the workflow id `cursor` (a previous page's `next`).
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }

    /// At most `limit` runs per page (clamped to 1..=1,000).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, 1_000);
        self
    }
}

/// One page of [`Store::list_runs`](super::Store::list_runs), ordered by workflow id.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs (their inputs and outputs included).
    pub runs: Vec<RunRecord>,
    /// The cursor of the next page, if there may be one.
    pub next: Option<String>,
}

/// How many runs match a [`RunQuery`]'s filters, by state (see
/// [`Store::count_runs`](super::Store::count_runs)). Serializes with the states' snake_case names.
///
/// ```
/// use orchestrator::store::{RunState, StatusCounts};
///
/// let mut counts = StatusCounts::default();
/// counts.add(RunState::Failed, 2);
/// counts.add(RunState::Running, 3);
/// assert_eq!(counts.get(RunState::Failed), 2);
/// assert_eq!(counts.total, 5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct StatusCounts {
    /// Running (waiting on timers, signals or children included; paused ones too).
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Parked, waiting for an operator.
    pub parked: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Failed with a failed compensation.
    pub compensation_failed: u64,
    /// Terminated by an operator.
    pub terminated: u64,
    /// Of all the runs counted, those an operator paused (whatever their state).
    pub paused: u64,
    /// Every run counted (the sum of the states).
    pub total: u64,
}

impl StatusCounts {
    /// The count of one state.
    pub fn get(&self, state: RunState) -> u64 {
        match state {
            RunState::Running => self.running,
            RunState::Completed => self.completed,
            RunState::Failed => self.failed,
            RunState::Parked => self.parked,
            RunState::Cancelled => self.cancelled,
            RunState::CompensationFailed => self.compensation_failed,
            RunState::Terminated => self.terminated,
        }
    }

    /// Counts `count` more runs in `state` (and in the total).
    pub fn add(&mut self, state: RunState, count: u64) {
        let slot = match state {
            RunState::Running => &mut self.running,
            RunState::Completed => &mut self.completed,
            RunState::Failed => &mut self.failed,
            RunState::Parked => &mut self.parked,
            RunState::Cancelled => &mut self.cancelled,
            RunState::CompensationFailed => &mut self.compensation_failed,
            RunState::Terminated => &mut self.terminated,
        };
        *slot = slot.saturating_add(count);
        self.total = self.total.saturating_add(count);
    }
}
