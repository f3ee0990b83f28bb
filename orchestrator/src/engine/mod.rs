//! The engine: starts runs, resumes them after a restart, routes signals and cancellations, reports
//! outcomes and published state.

mod activity_task;
mod builder;
mod bulk;
mod cluster;
mod driver;
mod handle;
mod launch;
mod lease;
mod link;
mod operator;
mod recovery;
mod registry;
mod repair;
mod run_table;
mod start;
mod supervisor;
mod wakeups;

pub(crate) use activity_task::panic_message;
pub use builder::EngineBuilder;
pub use bulk::{BulkAction, BulkOptions, BulkProblem, BulkProgress, BulkReport};
pub use handle::{AnyOutput, RunHandle, RunStatus, Termination};
pub(crate) use link::EngineLink;
pub(crate) use registry::ErasedWorkflow;
pub use repair::Fork;
pub use start::StartRun;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::codec::Codec;
use crate::definition::{Payload, Workflow};
use crate::error::Error;
use crate::store::{
    ArchivedRun, CancelOutcome, Commit, EngineClaim, RunRecord, RunState, SignalOutcome,
    SqliteStore, StatusChange, Store,
};
use driver::DriverMsg;

/// How runs whose driver stopped on a store failure are revived: 20 ms doubling up to 5 s, without
/// limit (a run is never given up on; the journal is the truth once the store works again).
const STORE_REVIVAL: crate::retry::RetryPolicy = crate::retry::RetryPolicy {
    max_attempts: u32::MAX,
    initial_backoff: Duration::from_millis(20),
    max_backoff: Duration::from_secs(5),
    multiplier: 2.0,
    jitter: 0.2,
};

/// The progress of a run as seen by waiters in this process.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// A driver runs it (or is about to).
    Active,
    /// The driver ended; the store has the outcome, or the run resumes at the next start.
    Ended(DriverExitView),
}

/// How a driver ended, as reported to waiters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DriverExitView {
    /// Finished (or parked): the outcome is in the store; a completed run's output comes along.
    Settled(Option<Arc<Vec<u8>>>),
    /// Stopped before the run finished: the engine shut down (`None`) or the journal failed.
    Stopped(Option<String>),
}

/// What a driver is reached through: its message channel, and its halt flag (raised by an operator's
/// pause, so the driver starts nothing more even before it reads the pause message).
pub(crate) struct Channel {
    pub(crate) tx: mpsc::UnboundedSender<DriverMsg>,
    pub(crate) rx: mpsc::UnboundedReceiver<DriverMsg>,
    pub(crate) halt: Arc<watch::Sender<bool>>,
}

/// Tunables fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct EngineSettings {
    pub(crate) codec: Codec,
    pub(crate) shutdown_grace: Duration,
    pub(crate) history_warning: usize,
    pub(crate) keep_runs: u32,
    pub(crate) evict_after: Duration,
    pub(crate) max_resident_runs: usize,
    /// This engine's node id among the engines sharing a store with leases.
    pub(crate) node: Arc<str>,
    /// How long a lease on a run lasts without renewal.
    pub(crate) lease: Duration,
    /// How a run whose workflow code panics is replayed again before it is parked.
    pub(crate) panic_retry: crate::retry::RetryPolicy,
    /// The payload types known to this engine, for inspection (see `inspect/catalog.rs`).
    pub(crate) catalog: Arc<crate::inspect::Catalog>,
    /// Whether this engine drives runs (`false`: a client of a journal that others drive, see
    /// `EngineBuilder::drive_runs`).
    pub(crate) drive_runs: bool,
    /// How far ahead the wake-up pager loads wake-ups from the store (see `wakeups.rs`).
    pub(crate) wakeup_horizon: Duration,
    /// A test engine's activity mocks (feature `testing`), consulted before each attempt.
    #[cfg(feature = "testing")]
    pub(crate) mocks: Option<Arc<crate::testing::MockTable>>,
}

/// The durable execution engine.
///
/// Cheap to clone (all clones share one engine). Build one with [`Engine::builder`]; once started it
/// resumes every unfinished run from the journal in the background (see [`Engine::recovered`]), and
/// runs them on the current tokio runtime. One engine drives an SQLite journal at a time in a process
/// (a second gets [`StoreError::EngineRunning`](crate::store::StoreError::EngineRunning)): clone it
/// instead. See the crate documentation for a complete example.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field(
                "workflows",
                &self.inner.workflows.keys().collect::<Vec<_>>(),
            )
            .field("active_runs", &self.inner.active.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

pub(crate) struct EngineInner {
    store: Arc<dyn Store>,
    /// The SQLite store this engine opened itself (`.sqlite(path)`): closed by `shutdown`, so the
    /// file is free again when it returns.
    own_store: Option<SqliteStore>,
    /// This engine's reservation of its store (see [`Store::claim_engine`]); released at shutdown.
    claim: Mutex<Option<EngineClaim>>,
    /// Whether every run unfinished at start has been resumed (see `recovery.rs`).
    recovered: Arc<watch::Sender<bool>>,
    settings: EngineSettings,
    workflows: HashMap<&'static str, ErasedWorkflow>,
    /// Every run this process keeps state for: loads, drivers, waiters, panics, leases.
    runs: run_table::RunTable,
    state_published: Notify,
    wakeups: Arc<wakeups::Wakeups>,
    /// With leases: journal writes rejected because another node had taken the run over.
    stale_writes: AtomicU64,
    shutdown: watch::Sender<bool>,
    shutting_down: AtomicBool,
    active: AtomicUsize,
    idle: Notify,
    /// The embedded admin HTTP API, when configured; stopped by `shutdown`.
    #[cfg(feature = "admin")]
    admin: Mutex<Option<crate::admin::AdminServer>>,
}

/// A handle on an engine that does not keep it alive (for services it owns, such as the admin API).
#[derive(Clone)]
pub(crate) struct WeakEngine(std::sync::Weak<EngineInner>);

impl WeakEngine {
    /// The engine, unless every handle to it is gone.
    pub(crate) fn upgrade(&self) -> Option<Engine> {
        self.0.upgrade().map(|inner| Engine { inner })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    fn assemble(
        store: Arc<dyn Store>,
        own_store: Option<SqliteStore>,
        claim: Option<EngineClaim>,
        settings: EngineSettings,
        workflows: HashMap<&'static str, ErasedWorkflow>,
    ) -> Self {
        let (shutdown, _) = watch::channel(false);
        Engine {
            inner: Arc::new(EngineInner {
                store,
                own_store,
                claim: Mutex::new(claim),
                recovered: Arc::new(watch::channel(false).0),
                settings,
                workflows,
                runs: run_table::RunTable::default(),
                state_published: Notify::new(),
                wakeups: Arc::new(wakeups::Wakeups::default()),
                stale_writes: AtomicU64::new(0),
                shutdown,
                shutting_down: AtomicBool::new(false),
                active: AtomicUsize::new(0),
                idle: Notify::new(),
                #[cfg(feature = "admin")]
                admin: Mutex::new(None),
            }),
        }
    }

    /// A handle that does not keep the engine alive.
    pub(crate) fn downgrade(&self) -> WeakEngine {
        WeakEngine(Arc::downgrade(&self.inner))
    }

    /// Whether every run unfinished at start has been resumed (see [`Engine::recovered`]).
    pub(crate) fn is_recovered(&self) -> bool {
        *self.inner.recovered.borrow()
    }

    /// Serves the admin API for this engine from now on.
    #[cfg(feature = "admin")]
    fn serve_admin(&self, listener: crate::admin::AdminListener) -> Result<(), Error> {
        let server = crate::admin::AdminServer::serve(listener, self)?;
        *lock(&self.inner.admin) = Some(server);
        Ok(())
    }

    /// The address the embedded admin HTTP API listens on (useful with port 0), or `None` when it is
    /// not configured or the engine has shut down. See [`EngineBuilder::admin`].
    #[cfg(feature = "admin")]
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        lock(&self.inner.admin)
            .as_ref()
            .map(crate::admin::AdminServer::addr)
    }

    /// The store this engine journals to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn codec(&self) -> Codec {
        self.inner.settings.codec
    }

    /// The names of the registered workflow types, sorted.
    pub(crate) fn workflow_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.inner.workflows.keys().copied().collect();
        names.sort_unstable();
        names
    }

    pub(crate) fn catalog(&self) -> &crate::inspect::Catalog {
        &self.inner.settings.catalog
    }

    pub(crate) fn workflow(&self, name: &str) -> Option<ErasedWorkflow> {
        self.inner.workflows.get(name).copied()
    }

    /// Starts the loop that claims, renews and takes over runs (stores with leases only).
    fn start_cluster(&self) {
        if self.lease_mode() {
            let engine = Arc::downgrade(&self.inner);
            let shutdown = self.inner.shutdown.subscribe();
            tokio::spawn(cluster::run(engine, shutdown));
        }
    }

    /// Starts the service that wakes evicted runs at their timers.
    fn start_wakeups(&self) {
        let engine = Arc::downgrade(&self.inner);
        let shutdown = self.inner.shutdown.subscribe();
        tokio::spawn(wakeups::run(engine, self.inner.wakeups.clone(), shutdown));
    }

    /// Whether this engine drives runs (see [`EngineBuilder::drive_runs`]).
    pub fn drives_runs(&self) -> bool {
        self.inner.settings.drive_runs
    }

    /// Whether the store is shared by several engines under leases.
    pub(crate) fn lease_mode(&self) -> bool {
        self.inner.store.leases().is_some()
    }

    /// The fence (node, epoch) this engine writes `id` under, with leases.
    pub(crate) fn fence_for(&self, id: &str) -> Option<(String, i64)> {
        if !self.lease_mode() {
            return None;
        }
        Some(self.inner.runs.lease(id)?.fence())
    }

    /// This node's lease on `id`, with leases.
    pub(crate) fn lease_of(&self, id: &str) -> Option<Arc<lease::RunLease>> {
        self.inner.runs.lease(id)
    }

    /// Records that this node holds `id` under `epoch`, confirmed by a request sent at `sent`.
    pub(crate) fn hold(&self, id: &str, epoch: i64, sent: tokio::time::Instant) {
        let settings = &self.inner.settings;
        self.inner
            .runs
            .hold(id, &settings.node, epoch, sent, settings.lease);
    }

    /// The lease a run created by this node starts with (with leases).
    pub(crate) fn initial_lease(&self) -> Option<crate::store::Lease> {
        self.lease_mode().then(|| crate::store::Lease {
            node: self.inner.settings.node.to_string(),
            epoch: 1,
            duration_ms: i64::try_from(self.inner.settings.lease.as_millis()).unwrap_or(i64::MAX),
        })
    }

    /// How often waiters re-read the store for runs other nodes drive (with leases).
    pub(crate) fn poll_interval(&self) -> Option<Duration> {
        self.lease_mode().then_some(Duration::from_millis(100))
    }

    /// This engine's node id (meaningful with a store shared under leases).
    pub fn node_id(&self) -> &str {
        &self.inner.settings.node
    }

    /// With a store shared by several engines: how many of this engine's journal writes were rejected
    /// because another node had taken the run over (this node paused or was cut off past its lease).
    pub fn stale_writes_rejected(&self) -> u64 {
        self.inner.stale_writes.load(Ordering::Acquire)
    }

    /// Starts resuming every unfinished (running or parked) run from its journal, in the background
    /// (see `recovery.rs`); [`Engine::recovered`] reports when it is done.
    fn start_recovery(&self) {
        let engine = Arc::downgrade(&self.inner);
        tokio::spawn(recovery::run(engine, self.inner.recovered.clone()));
    }

    /// Lets the parked runs of registered workflow types run again (a deploy may have fixed them):
    /// done before `start` returns, so a waiter never sees such a run as parked; loading them is left
    /// to the background recovery. Parked runs are few (each needs an operator), and this is one
    /// paged query plus one write per such run.
    async fn unpark_registered(&self) -> Result<(), Error> {
        let mut query = crate::store::RunQuery::new()
            .state(RunState::Parked)
            .limit(1_000);
        loop {
            let page = self.inner.store.list_runs(&query).await?;
            for run in &page.runs {
                if self.workflow(&run.workflow_name).is_some() {
                    let mut resume = Commit::events(&run.workflow_id, Vec::new());
                    resume.status = Some(StatusChange::Resume);
                    self.inner.store.commit(resume).await?;
                }
            }
            match page.next {
                Some(next) => query = query.after(next),
                None => return Ok(()),
            }
        }
    }

    /// Reports recovery as done (engines under leases claim runs continuously instead).
    fn mark_recovered(&self) {
        self.inner.recovered.send_replace(true);
    }

    /// Waits until the engine has resumed every run that was unfinished when it started.
    ///
    /// [`EngineBuilder::start`] returns before that: recovery goes on in the background, and
    /// starting, signalling, cancelling and awaiting runs work meanwhile (a run not recovered yet is
    /// loaded at once when it is signalled, and driven once). Useful for readiness probes and tests.
    /// Never resolves after [`Engine::shutdown`] interrupted the recovery; resolves at once for an
    /// engine sharing its store under leases (its runs are claimed continuously instead).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use orchestrator::Engine;
    ///
    /// let engine = Engine::builder().in_memory().start().await?;
    /// engine.recovered().await;
    /// engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recovered(&self) {
        let mut done = self.inner.recovered.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }

    /// A receiver of the phase of `id`, for a waiter of its outcome.
    pub(crate) fn subscribe(&self, id: &str) -> watch::Receiver<Phase> {
        self.inner.runs.subscribe(id)
    }

    /// Forgets the waiters' channel of a run that no driver runs here (called once a waiter is done).
    pub(crate) fn release(&self, id: &str) {
        self.inner.runs.release_waiters(id);
    }

    /// Whether a driver of this engine drives the run now.
    pub(crate) fn is_driven(&self, workflow_id: &str) -> bool {
        self.inner.runs.is_resident(workflow_id)
    }

    /// Whether [`Engine::shutdown`] has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Starts a run of workflow `W` with a caller-chosen id, or returns the existing run with that id.
    ///
    /// Idempotent on the id: starting `"order-42"` twice returns a handle to the same run (the second
    /// input is ignored). If the id belongs to a run of another workflow type, fails with
    /// [`Error::WorkflowIdConflict`]. Once the returned future resolves to `Ok`, the run is journaled
    /// and will complete, fail, be cancelled or be parked — after any number of crashes. Options such as
    /// [`StartRun::execution_timeout`] are set on the value before awaiting it.
    pub fn start<W: Workflow>(
        &self,
        workflow: W,
        workflow_id: impl Into<String>,
        input: W::Input,
    ) -> StartRun<W> {
        let _ = workflow;
        StartRun::new(self.clone(), workflow_id.into(), input)
    }

    /// A handle to an existing run of workflow `W`.
    pub async fn handle<W: Workflow>(
        &self,
        workflow: W,
        workflow_id: impl Into<String>,
    ) -> Result<RunHandle<W::Output>, Error> {
        let _ = workflow;
        let workflow_id = workflow_id.into();
        crate::limits::check_workflow_id(&workflow_id)?;
        let run = self.run_record(&workflow_id).await?;
        if run.workflow_name != W::NAME {
            return Err(Error::WrongWorkflowType {
                workflow_id,
                expected: W::NAME.to_string(),
                actual: run.workflow_name,
            });
        }
        Ok(RunHandle::new(self.clone(), workflow_id))
    }

    pub(crate) async fn run_record(&self, workflow_id: &str) -> Result<RunRecord, Error> {
        self.inner
            .store
            .run(workflow_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                workflow_id: workflow_id.to_string(),
            })
    }

    /// Sends the signal `name` with `payload` to a run. Signals are journaled in the run's inbox at
    /// once (so they survive crashes even before the workflow waits for them) and delivered to its
    /// waits for that name in the order they were sent, each exactly once.
    /// [`RunHandle::signal`] does the same through a run's handle.
    ///
    /// # Errors
    ///
    /// - [`Error::NotFound`] when no run has this workflow id (a typo, or a run not started yet:
    ///   signals are not buffered for runs that do not exist). Nothing is stored.
    /// - [`Error::RunFinished`] when the run has already completed, failed or been cancelled.
    /// - [`Error::Codec`] when `payload` cannot be encoded, [`Error::Store`] when the store fails.
    pub async fn signal<T: Payload>(
        &self,
        workflow_id: &str,
        name: &str,
        payload: T,
    ) -> Result<(), Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        crate::limits::check_signal_name(name)?;
        let payload = self.codec().encode(&payload)?;
        self.signal_encoded(workflow_id, name, payload).await
    }

    /// [`Engine::signal`] with an already encoded payload (ids and name checked by the caller).
    pub(crate) async fn signal_encoded(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        match self
            .inner
            .store
            .send_signal(workflow_id, name, payload)
            .await?
        {
            SignalOutcome::Queued(signal) => {
                self.notify_driver(workflow_id, DriverMsg::Signal(signal));
                Ok(())
            }
            SignalOutcome::NoSuchRun => Err(Error::NotFound {
                workflow_id: workflow_id.to_string(),
            }),
            SignalOutcome::RunFinished => Err(Error::RunFinished {
                workflow_id: workflow_id.to_string(),
            }),
        }
    }

    /// Sends `message` to the run's driver; if the run is not in memory, wakes it (it reads its inbox
    /// and cancellation from the store). A driver deciding to leave memory either sees the message or
    /// is already gone (see [`run_table::RunTable::send`]).
    fn notify_driver(&self, workflow_id: &str, message: DriverMsg) {
        let sent = self.inner.runs.send(workflow_id, message);
        // With leases the owning node (maybe another process) picks it up from the store.
        if !sent && !self.lease_mode() {
            self.wake(workflow_id);
        }
    }

    /// Whether more runs are in memory than the configured maximum.
    pub(crate) fn over_capacity(&self) -> bool {
        self.inner.active.load(Ordering::Acquire) > self.inner.settings.max_resident_runs
    }

    /// Cancels a run. The request is durable: the run observes it at its next await point as
    /// [`WorkflowError::Cancelled`](crate::WorkflowError::Cancelled) (its code may catch it to clean
    /// up); if it then fails, its compensations run and it ends as [`RunStatus::Cancelled`]. Running
    /// activities learn it through [`ActivityContext::is_cancelled`](crate::ActivityContext) and their
    /// results are discarded; child runs it waits for are cancelled too (unless detached). Cancelling
    /// twice keeps the first reason; cancelling a finished run is [`Error::RunFinished`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use orchestrator::prelude::*;
    ///
    /// #[activity]
    /// async fn release_seat(seat: u32) -> Result<(), ActivityError> { Ok(()) }
    ///
    /// #[workflow]
    /// async fn hold_seat(ctx: WorkflowContext, seat: u32) -> Result<(), WorkflowError> {
    ///     ctx.compensate_with(release_seat, seat);
    ///     ctx.sleep(Duration::from_secs(15 * 60)).await?; // cancelled here
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(hold_seat).start().await?;
    /// let run = engine.start(hold_seat, "seat-12A", 12).await?;
    /// engine.cancel("seat-12A", "customer left").await?;
    /// assert!(matches!(run.result().await, Err(Error::WorkflowFailed { .. })));
    /// assert!(matches!(
    ///     engine.status("seat-12A").await?,
    ///     RunStatus::Cancelled(WorkflowError::Cancelled { .. })
    /// ));
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cancel(&self, workflow_id: &str, reason: &str) -> Result<(), Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        match self.inner.store.request_cancel(workflow_id, reason).await? {
            CancelOutcome::Requested => {
                self.notify_driver(
                    workflow_id,
                    DriverMsg::Cancel {
                        reason: reason.to_string(),
                    },
                );
                Ok(())
            }
            CancelOutcome::NoSuchRun => Err(Error::NotFound {
                workflow_id: workflow_id.to_string(),
            }),
            CancelOutcome::RunFinished => Err(Error::RunFinished {
                workflow_id: workflow_id.to_string(),
            }),
        }
    }

    /// The value a run published under `key` with
    /// [`WorkflowContext::set_state`](crate::WorkflowContext::set_state), if it has.
    pub async fn get_state<T: Payload>(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> Result<Option<T>, Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        crate::limits::check_state_key(key)?;
        match self.inner.store.value(workflow_id, key).await? {
            Some(bytes) => Ok(Some(self.codec().decode(&bytes)?)),
            None => {
                // Tell "not published yet" from "no such run".
                self.run_record(workflow_id).await?;
                Ok(None)
            }
        }
    }

    /// Waits until a run has published a value under `key` and returns it. Fails with
    /// [`Error::StateNeverSet`] if the run finishes without publishing it.
    pub async fn wait_state<T: Payload>(&self, workflow_id: &str, key: &str) -> Result<T, Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        crate::limits::check_state_key(key)?;
        loop {
            let published = self.inner.state_published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let mut phase = self.subscribe(workflow_id);
            if let Some(value) = self.get_state(workflow_id, key).await? {
                self.release(workflow_id);
                return Ok(value);
            }
            let run = self.run_record(workflow_id).await?;
            if run.state.is_finished() {
                self.release(workflow_id);
                return Err(Error::StateNeverSet {
                    workflow_id: workflow_id.to_string(),
                    key: key.to_string(),
                });
            }
            if self.is_shutting_down() {
                return Err(Error::ShuttingDown);
            }
            let poll = self.poll_interval().unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = published => {}
                _ = phase.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// The earlier runs of a workflow id that continued as new and are still kept (oldest first).
    pub async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        Ok(self.inner.store.archived_runs(workflow_id).await?)
    }

    /// Runs matching `query` (by workflow type, state, id prefix), one page at a time, ordered by
    /// workflow id.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    /// use orchestrator::store::{RunQuery, RunState};
    ///
    /// #[workflow]
    /// async fn nightly(ctx: WorkflowContext, day: u32) -> Result<u32, WorkflowError> { Ok(day) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(nightly).start().await?;
    /// for day in 1..=3 {
    ///     engine.start(nightly, format!("nightly-{day}"), day).await?.result().await?;
    /// }
    /// let page = engine.list_runs(&RunQuery::new().state(RunState::Completed).limit(2)).await?;
    /// assert_eq!(page.runs.len(), 2);
    /// let rest = engine.list_runs(&RunQuery::new().after(page.next.unwrap())).await?;
    /// assert_eq!(rest.runs[0].workflow_id, "nightly-3");
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_runs(
        &self,
        query: &crate::store::RunQuery,
    ) -> Result<crate::store::RunPage, Error> {
        Ok(self.inner.store.list_runs(query).await?)
    }

    /// How many runs match `query`'s filters, by state (its cursor and page size are ignored), with
    /// one grouped query in the store: the counts of a dashboard.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    /// use orchestrator::store::{RunQuery, RunState};
    ///
    /// #[workflow]
    /// async fn nightly(ctx: WorkflowContext, day: u32) -> Result<u32, WorkflowError> { Ok(day) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(nightly).start().await?;
    /// for day in 1..=3 {
    ///     engine.start(nightly, format!("nightly-{day}"), day).await?.result().await?;
    /// }
    /// let counts = engine.count_runs(&RunQuery::new().workflow_name("nightly")).await?;
    /// assert_eq!(counts.get(RunState::Completed), 3);
    /// assert_eq!(counts.total, 3);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn count_runs(
        &self,
        query: &crate::store::RunQuery,
    ) -> Result<crate::store::StatusCounts, Error> {
        Ok(self.inner.store.count_runs(query).await?)
    }

    /// How many runs are in memory now (driven by this engine). Runs waiting only on timers or
    /// signals leave memory after [`EngineBuilder::evict_after`] and do not count.
    pub fn resident_runs(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// The status of a run.
    pub async fn status(&self, workflow_id: &str) -> Result<RunStatus, Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        let run = self.run_record(workflow_id).await?;
        RunStatus::from_record(&run, self.codec())
    }

    /// Stops taking work, lets running activity attempts finish and be journaled (up to the shutdown
    /// grace period), and stops every run's driver. Unfinished runs resume at the next start.
    ///
    /// When it returns, the journal is free: the engine's claim on its store is released (another
    /// engine of this process may drive it), and an SQLite journal the engine opened itself
    /// ([`EngineBuilder::sqlite`]) is closed for writing and its ownership lock released, so a new
    /// engine — in this process or another — can open the file at once. Reads through
    /// [`Engine::store`] keep working; writes fail with
    /// [`StoreError::Closed`](crate::store::StoreError::Closed). A store passed with
    /// [`EngineBuilder::store`] belongs to the caller and stays open.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use orchestrator::Engine;
    ///
    /// # let dir = std::env::temp_dir().join(format!("orch-doc-shutdown-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("app.db");
    /// let engine = Engine::builder().sqlite(&path).start().await?;
    /// engine.shutdown().await;
    /// // The file is free at once (here, or in another process).
    /// let next = Engine::builder().sqlite(&path).start().await?;
    /// next.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        #[cfg(feature = "admin")]
        {
            // First, so no action arrives while the runs stop (requests in flight finish).
            let admin = lock(&self.inner.admin).take();
            if let Some(admin) = admin {
                admin.stop().await;
            }
        }
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.shutdown.send_replace(true);
        let grace = self.inner.settings.shutdown_grace + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            loop {
                let idle = self.inner.idle.notified();
                if self.inner.active.load(Ordering::Acquire) == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
        let claim = lock(&self.inner.claim).take();
        drop(claim);
        if let Some(store) = &self.inner.own_store {
            store.close().await;
        }
    }
}
