//! Journal storage: the [`Store`] trait the engine writes through, and its SQLite implementation.
//!
//! A store keeps three things: runs (one row per workflow id with its status, input and outcome), the
//! append-only events of each run, and each run's signal inbox. Every [`Commit`] is one atomic
//! transaction. Stores see only bytes: encoding is the journal's job.

mod error;
mod record;
pub mod sqlite;

pub use error::StoreError;
pub use record::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, NewEvent, NewRun, RunPage, RunQuery,
    RunRecord, RunState, SignalOutcome, SignalRecord, StatusChange, StoredEvent, Wakeup,
};
pub use sqlite::{Durability, SqliteOptions, SqliteStore};

/// A durable journal backend.
///
/// The engine relies on these guarantees: every [`Store::commit`] is atomic and durable once it returns
/// `Ok`; a step has at most one completion event (a second one is a [`StoreError::Conflict`] and
/// nothing of that commit is written); events come back in the order they were committed; a signal is
/// consumed at most once; a finished run cannot be finished again.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a run unless one with this workflow id exists, in which case that one is returned.
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError>;

    /// Atomically appends events, consumes a signal and changes the run's status, as asked.
    async fn commit(&self, commit: Commit) -> Result<(), StoreError>;

    /// The run with this workflow id.
    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError>;

    /// All events of a run, in commit order.
    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError>;

    /// Runs that are running or parked: the engine resumes them at start.
    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError>;

    /// Adds a signal to a run's inbox, unless the run does not exist or has finished.
    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError>;

    /// The run's signals not yet consumed, oldest first.
    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError>;

    /// Records a cancellation request (the first reason wins), unless the run does not exist or has
    /// finished.
    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError>;

    /// The value a run published under `key`.
    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The runs of a workflow id that ended by continuing as new and are still kept, oldest first.
    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError>;

    /// Unfinished runs with a wake-up (pending timer or signal deadline from events' `wake_at_ms`, or
    /// an execution deadline) at or before `before_ms`: each run once, at its earliest time, earliest
    /// first, at most `limit` of them.
    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError>;

    /// Runs matching `query`, ordered by workflow id, one page at a time.
    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError>;
}
