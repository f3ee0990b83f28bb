//! Journal storage: the [`Store`] trait the engine writes through, and its SQLite implementation.
//!
//! A store keeps three things: runs (one row per workflow id with its status, input and outcome), the
//! append-only events of each run, and each run's signal inbox. Every [`Commit`] is one atomic
//! transaction. Stores see only bytes: encoding is the journal's job.

mod error;
#[cfg(feature = "postgres")]
pub mod postgres;
mod record;
mod repair;
pub mod sqlite;
#[cfg(feature = "store-testkit")]
pub mod testkit;

pub use error::{AccessProblem, StoreError};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use record::{
    ArchivedRun, CancelOutcome, Claim, Commit, CreateOutcome, Lease, LeaseHolder, NewEvent, NewRun,
    OperatorChange, OperatorOutcome, OperatorWrite, PauseInfo, RunPage, RunQuery, RunRecord,
    RunState, SignalOutcome, SignalRecord, StatusChange, StatusCounts, StoredEvent, Wakeup,
};
pub use repair::{ForkRun, Rewind, RewindOutcome};
pub use sqlite::{Durability, IntegrityCheck, SqliteExecution, SqliteOptions, SqliteStore};

/// A durable journal backend.
///
/// The engine relies on these guarantees: every [`Store::commit`] is atomic and durable once it returns
/// `Ok`; a step has at most one completion event (a second one is a [`StoreError::Conflict`] and
/// nothing of that commit is written); events come back in the order they were committed; a signal is
/// consumed at most once; a finished run cannot be finished again.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a run unless one with this workflow id exists, in which case that one is returned.
    /// The run's row and its [`NewRun::events`] are written atomically: all or nothing. A run with
    /// [`NewRun::paused`] is paused in that same write: no reader ever sees it unpaused.
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

    /// Applies an operator action (pause, resume, terminate) to a run and appends its audit event, in
    /// one transaction, unless the action does not apply (see [`OperatorOutcome`]): then nothing is
    /// written.
    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError>;

    /// The value a run published under `key`.
    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The runs of a workflow id that ended by continuing as new and are still kept, oldest first.
    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError>;

    /// Running runs (not parked, not finished) with a wake-up (pending timer or signal deadline from
    /// events' `wake_at_ms`, or an execution deadline) at or before `before_ms`: each run once, at its
    /// earliest time, earliest first, at most `limit` of them.
    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError>;

    /// Runs matching `query`, ordered by workflow id, one page at a time.
    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError>;

    /// How many runs match `query`'s filters, by state (its `after` cursor and `limit` are
    /// ignored: every matching run counts). Stores answer with one grouped query; the default
    /// pages through [`Store::list_runs`], which reads every matching row.
    async fn count_runs(&self, query: &RunQuery) -> Result<StatusCounts, StoreError> {
        let mut page_query = query.clone();
        page_query.after = None;
        page_query.limit = 1_000;
        let mut counts = StatusCounts::default();
        loop {
            let page = self.list_runs(&page_query).await?;
            for run in &page.runs {
                counts.add(run.state, 1);
                if run.paused.is_some() {
                    counts.paused += 1;
                }
            }
            match page.next {
                Some(next) if !page.runs.is_empty() => page_query.after = Some(next),
                _ => return Ok(counts),
            }
        }
    }

    /// Rewinds a finished or parked run so it is driven again (`Engine::retry`), in one transaction:
    /// see [`Rewind`]. The default refuses: a store without it does not support operator retries.
    async fn rewind(&self, rewind: Rewind) -> Result<RewindOutcome, StoreError> {
        let _ = rewind;
        Err(StoreError::Backend {
            operation: "rewinding a run",
            message: "this store does not support operator retries".to_string(),
        })
    }

    /// Creates a run from another run's journal prefix (`Engine::fork`), in one transaction: see
    /// [`ForkRun`]. [`CreateOutcome::Existing`] (nothing written) if the new id is taken; a
    /// [`StoreError::Conflict`] if the source run does not exist. The default refuses: a store
    /// without it does not support forks.
    async fn fork_run(&self, fork: ForkRun) -> Result<CreateOutcome, StoreError> {
        let _ = fork;
        Err(StoreError::Backend {
            operation: "forking a run",
            message: "this store does not support forks".to_string(),
        })
    }

    /// Reserves the store for the engine about to drive it, until the returned claim is dropped; a
    /// second engine of this process claiming the same journal meanwhile gets
    /// [`StoreError::EngineRunning`]. `None` (the default) means the store needs no claim (each
    /// value is its own journal, or several engines share it under [leases](Store::leases)).
    ///
    /// [`SqliteStore`] claims its file: engines on the same path in one process would both resume
    /// and execute the same runs.
    fn claim_engine(&self) -> Result<Option<EngineClaim>, StoreError> {
        Ok(None)
    }

    /// Lease-based ownership, for stores that several engines share (PostgreSQL). `None` (the default)
    /// means the store belongs to one engine at a time (SQLite: a second process is refused).
    fn leases(&self) -> Option<&dyn LeaseStore> {
        None
    }
}

/// An engine's reservation of a store (see [`Store::claim_engine`]): released when dropped.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use orchestrator::store::EngineClaim;
///
/// let claimed = Arc::new(AtomicBool::new(true));
/// let flag = claimed.clone();
/// let claim = EngineClaim::new(move || flag.store(false, Ordering::Release));
/// drop(claim);
/// assert!(!claimed.load(Ordering::Acquire));
/// ```
pub struct EngineClaim {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl EngineClaim {
    /// A claim that runs `release` when it is dropped.
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        EngineClaim {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for EngineClaim {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

impl std::fmt::Debug for EngineClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClaim").finish_non_exhaustive()
    }
}

/// Ownership of runs by nodes, through leases with fencing epochs. Required for a store several engine
/// processes share; see `docs/storage.md`.
///
/// Contract: a running run is owned by at most one node at a time. A node claims runs that have no
/// owner or whose lease expired, which increments their epoch; it keeps them by renewing its leases
/// before they expire. Every journal write of an owned run carries `(node, epoch)` in
/// [`Commit::fence`], and the store rejects it with [`StoreError::StaleLease`] unless that pair still
/// owns the run — checked in the same transaction as the write.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Claims up to `limit` running runs that are unowned or whose lease expired, for `node`, with a
    /// lease of `lease_ms`. Concurrent claimers never get the same run (e.g. `FOR UPDATE SKIP LOCKED`).
    async fn claim_runs(
        &self,
        node: &str,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Extends by `lease_ms` every lease `node` still holds on an unfinished run — expired or not: a
    /// run whose owner is still `node` was claimed by no one else since, and stays `node`'s under the
    /// same epoch. Returns the runs it still owns. Implementations should not let the node's own load
    /// starve this call (a connection of its own) and should time the new expiry after any lock wait.
    async fn renew_leases(&self, node: &str, lease_ms: i64) -> Result<Vec<Claim>, StoreError>;

    /// Gives a run back (it becomes claimable at once), if `claim` still owns it.
    async fn release_run(&self, node: &str, claim: &Claim) -> Result<(), StoreError>;

    /// Unconsumed signals (with their run's id) of running runs `node` owns, with inbox id greater than
    /// `after_id`, oldest first.
    async fn owned_signals(
        &self,
        node: &str,
        after_id: i64,
    ) -> Result<Vec<(String, SignalRecord)>, StoreError>;

    /// Running runs `node` owns that have a cancellation request: `(workflow_id, reason)`.
    async fn owned_cancellations(&self, node: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Unfinished runs `node` owns that an operator paused (their drivers must let in-flight
    /// attempts finish and give the run back). [`LeaseStore::claim_runs`] never claims a paused run.
    async fn owned_pauses(&self, node: &str) -> Result<Vec<String>, StoreError>;

    /// The node holding the run's lease, its epoch and expiry (expired or not); `None` when the run
    /// does not exist or has no owner. For inspection only: never a basis for writing.
    async fn lease_holder(&self, workflow_id: &str) -> Result<Option<LeaseHolder>, StoreError> {
        let _ = workflow_id;
        Ok(None)
    }
}
