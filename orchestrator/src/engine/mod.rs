//! The engine: starts runs, resumes them after a restart, routes signals and cancellations, reports
//! outcomes and published state.

mod activity_task;
mod builder;
mod cluster;
mod driver;
mod handle;
mod lease;
mod link;
mod recovery;
mod registry;
mod start;
mod wakeups;

pub use builder::EngineBuilder;
pub use handle::{RunHandle, RunStatus};
pub(crate) use link::EngineLink;
pub(crate) use registry::ErasedWorkflow;
pub use start::StartRun;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use crate::codec::Codec;
use crate::context::RunShared;
use crate::definition::{Payload, Workflow};
use crate::error::{Error, ParkReason};
use crate::journal::{History, decode_history};
use crate::replay::ReplayMachine;
use crate::store::{
    ArchivedRun, CancelOutcome, Commit, EngineClaim, RunRecord, RunState, SignalOutcome,
    SqliteStore, StatusChange, Store,
};
use driver::{Driver, DriverExit, DriverMsg, DriverParts};

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

/// A driver's message channel.
pub(crate) type Channel = (
    mpsc::UnboundedSender<DriverMsg>,
    mpsc::UnboundedReceiver<DriverMsg>,
);

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
    drivers: Mutex<HashMap<Arc<str>, mpsc::UnboundedSender<DriverMsg>>>,
    phases: Mutex<HashMap<Arc<str>, watch::Sender<Phase>>>,
    state_published: Notify,
    wakeups: Arc<wakeups::Wakeups>,
    /// Runs being loaded from the store to be driven (so two wake-ups never load one run twice).
    resuming: Mutex<HashSet<Arc<str>>>,
    /// How many attempts in a row panicked, per run whose workflow code panicked.
    panics: Mutex<HashMap<Arc<str>, u32>>,
    /// With leases: this node's lease on each run it drives (epoch, local deadline, revocation).
    epochs: Mutex<HashMap<Arc<str>, Arc<lease::RunLease>>>,
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
                drivers: Mutex::new(HashMap::new()),
                phases: Mutex::new(HashMap::new()),
                state_published: Notify::new(),
                wakeups: Arc::new(wakeups::Wakeups::default()),
                resuming: Mutex::new(HashSet::new()),
                panics: Mutex::new(HashMap::new()),
                epochs: Mutex::new(HashMap::new()),
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

    /// Whether the store is shared by several engines under leases.
    pub(crate) fn lease_mode(&self) -> bool {
        self.inner.store.leases().is_some()
    }

    /// The fence (node, epoch) this engine writes `id` under, with leases.
    pub(crate) fn fence_for(&self, id: &str) -> Option<(String, i64)> {
        if !self.lease_mode() {
            return None;
        }
        let lease = lock(&self.inner.epochs).get(id).cloned()?;
        Some(lease.fence())
    }

    /// This node's lease on `id`, with leases.
    pub(crate) fn lease_of(&self, id: &str) -> Option<Arc<lease::RunLease>> {
        lock(&self.inner.epochs).get(id).cloned()
    }

    /// Records that this node holds `id` under `epoch`, confirmed by a request sent at `sent`.
    pub(crate) fn hold(&self, id: &str, epoch: i64, sent: tokio::time::Instant) {
        let duration = self.inner.settings.lease;
        let mut leases = lock(&self.inner.epochs);
        match leases.get(id) {
            Some(held) if !held.is_revoked() => held.renewed(epoch, sent, duration),
            _ => {
                let node: Arc<str> = self.inner.settings.node.clone();
                leases.insert(
                    Arc::from(id),
                    lease::RunLease::new(node, epoch, sent, duration),
                );
            }
        }
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

    /// Resumes a run; if a journal row of it is damaged, parks it instead (the damage affects only
    /// that run).
    async fn resume_or_park(&self, run: RunRecord) -> Result<(), Error> {
        let id = run.workflow_id.clone();
        match self.resume(run).await {
            Err(Error::Store(error @ crate::store::StoreError::MalformedRow { .. })) => {
                let reason = ParkReason::CorruptJournal {
                    message: error.to_string(),
                };
                self.park_stored(&id, &reason).await
            }
            other => other,
        }
    }

    /// Loads a run's journal and drives it.
    async fn resume(&self, run: RunRecord) -> Result<(), Error> {
        let id: Arc<str> = Arc::from(run.workflow_id.as_str());
        let Some(workflow) = self.workflow(&run.workflow_name) else {
            tracing::error!(workflow_id = %id, workflow = %run.workflow_name, "journal names an unregistered workflow type");
            if run.state == RunState::Running {
                let reason = ParkReason::UnknownWorkflowType {
                    name: run.workflow_name.clone(),
                };
                self.park_stored(&id, &reason).await?;
            }
            return Ok(());
        };
        if run.state == RunState::Parked {
            let mut resume = Commit::events(&run.workflow_id, Vec::new());
            resume.status = Some(StatusChange::Resume);
            resume.fence = self.fence_for(&id);
            self.inner.store.commit(resume).await?;
        }
        let rows = self.inner.store.history(&id).await?;
        let history = match decode_history(&self.codec(), &rows) {
            Ok(history) => history,
            Err(reason) => {
                self.park_stored(&id, &reason).await?;
                return Ok(());
            }
        };
        self.spawn_driver(id, workflow, &run, history).await
    }

    async fn park_stored(&self, id: &str, reason: &ParkReason) -> Result<(), Error> {
        let mut park = Commit::events(id, Vec::new());
        park.status = Some(StatusChange::Park {
            reason: self.codec().encode(reason)?,
        });
        park.fence = self.fence_for(id);
        self.inner.store.commit(park).await?;
        Ok(())
    }

    /// Creates the driver of a run and spawns it. (Boxed: drivers spawn drivers, for children and
    /// continue-as-new, so the future type would otherwise be recursive.)
    pub(crate) fn spawn_driver<'a>(
        &'a self,
        id: Arc<str>,
        workflow: ErasedWorkflow,
        run: &'a RunRecord,
        history: History,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>> {
        Box::pin(self.spawn_driver_inner(id, workflow, run, history, None))
    }

    /// Like [`Engine::spawn_driver`], for a run just created by this engine through a channel it
    /// registered before creating it (see [`Engine::preregister`]).
    pub(crate) fn spawn_new_driver<'a>(
        &'a self,
        id: Arc<str>,
        workflow: ErasedWorkflow,
        run: &'a RunRecord,
        channel: Channel,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>> {
        Box::pin(self.spawn_driver_inner(id, workflow, run, History::default(), Some(channel)))
    }

    /// Registers a driver channel for a run about to be created, so every signal or cancellation
    /// accepted once its row exists reaches it (the new driver then needs no inbox read). `None` if a
    /// driver (or another start's channel) is registered already.
    pub(crate) fn preregister(&self, id: &str) -> Option<Channel> {
        let mut drivers = lock(&self.inner.drivers);
        if drivers.contains_key(id) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        drivers.insert(Arc::from(id), tx.clone());
        Some((tx, rx))
    }

    /// Takes back a channel registered by [`Engine::preregister`] for a run that was not created
    /// (it existed already, or the write failed), and wakes that run: a wake-up or message that
    /// met the channel meanwhile was meant for it.
    pub(crate) fn withdraw(&self, id: &str, channel: &Channel) {
        let removed = {
            let mut drivers = lock(&self.inner.drivers);
            let ours = drivers
                .get(id)
                .is_some_and(|registered| registered.same_channel(&channel.0));
            if ours {
                drivers.remove(id);
            }
            ours
        };
        if removed {
            // A waiter that saw the channel and took the run for driven here re-reads the store.
            self.release(id);
        }
        if !self.lease_mode() {
            self.wake(id);
        }
    }

    async fn spawn_driver_inner(
        &self,
        id: Arc<str>,
        workflow: ErasedWorkflow,
        run: &RunRecord,
        history: History,
        channel: Option<Channel>,
    ) -> Result<(), Error> {
        let settings = &self.inner.settings;
        let shared = Arc::new(RunShared::new(
            id.clone(),
            settings.codec,
            ReplayMachine::new(history),
        ));
        let future = match workflow.start(shared.clone(), &run.input) {
            Ok(future) => future,
            Err(error) => {
                let reason = ParkReason::UndecodablePayload {
                    step: 0,
                    type_name: format!("input of `{}`", workflow.name),
                    message: error.to_string(),
                };
                if let Some(channel) = &channel {
                    let mut drivers = lock(&self.inner.drivers);
                    if drivers
                        .get(&id)
                        .is_some_and(|registered| registered.same_channel(&channel.0))
                    {
                        drivers.remove(&id);
                    }
                }
                return self.park_stored(&id, &reason).await;
            }
        };
        let fresh = channel.is_some();
        let (tx, rx) = match channel {
            // Registered before the run was created: it is ours.
            Some(channel) => channel,
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let mut drivers = lock(&self.inner.drivers);
                if drivers.contains_key(&id) {
                    // Already driven (a start and a wake-up raced): one driver per run.
                    return Ok(());
                }
                drivers.insert(id.clone(), tx.clone());
                (tx, rx)
            }
        };
        self.publish(&id, Phase::Active);
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        let deadline = run.deadline_ms.map(|deadline| {
            let timeout = run
                .execution_timeout_ms
                .unwrap_or_else(|| deadline.saturating_sub(run.created_at_ms));
            (deadline, u64::try_from(timeout).unwrap_or(0))
        });
        let driver = Driver::new(DriverParts {
            shared,
            future,
            store: self.inner.store.clone(),
            engine: EngineLink::new(&self.inner),
            tx,
            rx,
            shutdown: self.inner.shutdown.subscribe(),
            shutdown_grace: settings.shutdown_grace,
            cancel_reason: run.cancel_reason.clone(),
            deadline,
            history_warning: settings.history_warning,
            keep_runs: settings.keep_runs,
            evict_after: settings.evict_after,
            run_no: run.run_no,
            lease: self.lease_of(&id),
            fresh,
        });
        let engine = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let exit = driver.run().await;
            let Some(inner) = engine.upgrade() else {
                return;
            };
            let engine = Engine { inner };
            engine.driver_ended(id, exit).await;
            if engine.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
                engine.inner.idle.notify_waiters();
            }
        });
        Ok(())
    }

    /// What happens to a run once its driver has ended.
    async fn driver_ended(&self, id: Arc<str>, exit: DriverExit) {
        if !matches!(exit, DriverExit::Evicted { .. }) {
            // (An evicted driver left the map itself, and a new one may be registered already.)
            lock(&self.inner.drivers).remove(&id);
        }
        match exit {
            DriverExit::LeaseLost {
                rejected_write,
                epoch,
            } => {
                // Another node owns the run now; it drives it (waiters poll the store). If this
                // node claimed it back meanwhile (a newer epoch is held), the cluster loop adopts it.
                {
                    let mut epochs = lock(&self.inner.epochs);
                    if epochs.get(&id).is_some_and(|held| held.epoch() == epoch)
                        && let Some(lost) = epochs.remove(&id)
                    {
                        lost.revoke();
                    }
                }
                if rejected_write {
                    self.inner.stale_writes.fetch_add(1, Ordering::AcqRel);
                }
            }
            DriverExit::Evicted { wake_at_ms } => {
                // The driver already left the drivers map; the run waits in the store. Nothing of it
                // stays in memory: waiters see their channel close, re-read the store (still running)
                // and wait on a fresh channel until the run is woken.
                tracing::debug!(workflow_id = %id, ?wake_at_ms, "run evicted from memory");
                if let Some(at) = wake_at_ms {
                    self.inner.wakeups.schedule(id.clone(), at);
                }
                if !lock(&self.inner.drivers).contains_key(&id) {
                    lock(&self.inner.phases).remove(&id);
                }
            }
            DriverExit::ContinuedAsNew => {
                lock(&self.inner.panics).remove(&id);
                // Drives the fresh run that replaced this one, from the store.
                self.wake(&id);
            }
            DriverExit::Shutdown => {
                self.release_lease(&id).await;
                self.publish(&id, Phase::Ended(DriverExitView::Stopped(None)));
            }
            DriverExit::StoreFailed { message, retryable } => {
                if !retryable {
                    // Waiters learn of it (a typed error); the engine keeps trying meanwhile.
                    self.publish(&id, Phase::Ended(DriverExitView::Stopped(Some(message))));
                }
                self.revive(id, STORE_REVIVAL.initial_backoff);
            }
            DriverExit::Panicked { message } => {
                self.after_panic(id, message).await;
            }
            DriverExit::Finished { output } => {
                self.settle(&id, output.map(Arc::new));
            }
            DriverExit::Parked => {
                self.settle(&id, None);
            }
        }
    }

    /// Tells the waiters of a run that its outcome is in the store (a completed run's output comes
    /// along), and forgets the run.
    fn settle(&self, id: &Arc<str>, output: Option<Arc<Vec<u8>>>) {
        lock(&self.inner.panics).remove(id);
        self.publish(id, Phase::Ended(DriverExitView::Settled(output)));
        // Waiters holding a receiver re-read the store.
        lock(&self.inner.phases).remove(id);
        if let Some(lease) = lock(&self.inner.epochs).remove(id) {
            lease.revoke();
        }
    }

    /// After the workflow code of `id` panicked: replays the run again after the panic policy's
    /// backoff, or parks it once the policy's attempts are spent.
    async fn after_panic(&self, id: Arc<str>, message: String) {
        let policy = &self.inner.settings.panic_retry;
        let attempts = {
            let mut panics = lock(&self.inner.panics);
            let attempts = panics.entry(id.clone()).or_insert(0);
            *attempts = attempts.saturating_add(1);
            *attempts
        };
        if policy.allows_retry_after(attempts) {
            let wait = policy.backoff(attempts, fastrand::f64());
            tracing::warn!(workflow_id = %id, attempts, ?wait, %message, "workflow code panicked; replaying the run again after a backoff");
            self.revive(id, wait);
            return;
        }
        let reason = ParkReason::Panicked { message, attempts };
        tracing::error!(workflow_id = %id, %reason, "run parked");
        match self.park_stored(&id, &reason).await {
            Ok(()) => self.settle(&id, None),
            Err(error) => {
                // Not parked: try again (the attempt count stays, so it parks at the next panic).
                tracing::error!(workflow_id = %id, %error, "could not park a panicking run; reviving it");
                self.revive(id, STORE_REVIVAL.initial_backoff);
            }
        }
    }

    /// Gives the lease on `id` back so another node can take the run over at once (graceful stop).
    async fn release_lease(&self, id: &str) {
        let Some((node, epoch)) = self.fence_for(id) else {
            return;
        };
        if let Some(lease) = lock(&self.inner.epochs).remove(id) {
            lease.revoke();
        }
        if let Some(leases) = self.inner.store.leases() {
            let claim = crate::store::Claim {
                workflow_id: id.to_string(),
                epoch,
            };
            if let Err(error) = leases.release_run(&node, &claim).await {
                tracing::warn!(workflow_id = %id, %error, "could not release a lease; it expires instead");
            }
        }
    }

    /// Drives `id` again from its journal after `delay`: its driver stopped on a store failure or a
    /// panic. Nothing happens if the engine shuts down first.
    fn revive(&self, id: Arc<str>, delay: Duration) {
        let engine = Arc::downgrade(&self.inner);
        let mut shutdown = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            if let Some(inner) = engine.upgrade() {
                Engine { inner }.wake(&id);
            }
        });
    }

    fn publish(&self, id: &Arc<str>, phase: Phase) {
        let mut phases = lock(&self.inner.phases);
        match phases.get(id) {
            Some(sender) => {
                sender.send_replace(phase);
            }
            None => {
                phases.insert(id.clone(), watch::channel(phase).0);
            }
        }
    }

    pub(crate) fn subscribe(&self, id: &str) -> watch::Receiver<Phase> {
        let mut phases = lock(&self.inner.phases);
        if let Some(sender) = phases.get(id) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(Phase::Active);
        phases.insert(Arc::from(id), sender);
        receiver
    }

    /// Forgets the waiters' channel of a run that no driver runs here (called once a waiter is done).
    pub(crate) fn release(&self, id: &str) {
        let driven = lock(&self.inner.drivers).contains_key(id);
        if !driven {
            lock(&self.inner.phases).remove(id);
        }
    }

    /// Whether a driver of this engine drives the run now.
    pub(crate) fn is_driven(&self, workflow_id: &str) -> bool {
        lock(&self.inner.drivers).contains_key(workflow_id)
    }

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
    /// and cancellation from the store). Sent under the drivers lock, so a driver deciding to leave
    /// memory either sees the message or is already gone (see `release_driver`).
    fn notify_driver(&self, workflow_id: &str, message: DriverMsg) {
        let sent = {
            let drivers = lock(&self.inner.drivers);
            match drivers.get(workflow_id) {
                Some(driver) => driver.send(message).is_ok(),
                None => false,
            }
        };
        // With leases the owning node (maybe another process) picks it up from the store.
        if !sent && !self.lease_mode() {
            self.wake(workflow_id);
        }
    }

    /// Drives a run that is not in memory (evicted) again, from its journal. No-op if it is in memory,
    /// being loaded, finished or parked.
    pub(crate) fn wake(&self, workflow_id: &str) {
        if self.is_shutting_down() || lock(&self.inner.drivers).contains_key(workflow_id) {
            return;
        }
        let engine = self.clone();
        let id: Arc<str> = Arc::from(workflow_id);
        tokio::spawn(async move { engine.load(id, false).await });
    }

    /// Loads a run that is not in memory from its journal and drives it (a parked one only if
    /// `parked_too`, as at start), retrying while the store fails. No-op if it is in memory, being
    /// loaded by another call, or finished: one load per run at a time, and one driver per run.
    pub(crate) async fn load(&self, id: Arc<str>, parked_too: bool) {
        if lock(&self.inner.drivers).contains_key(&id) {
            return;
        }
        if !lock(&self.inner.resuming).insert(id.clone()) {
            return;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.inner.store.run(&id).await {
                Ok(_) if lock(&self.inner.drivers).contains_key(&id) => Ok(()),
                Ok(Some(run))
                    if run.state == RunState::Running
                        || (parked_too && run.state == RunState::Parked) =>
                {
                    self.resume_or_park(run).await
                }
                Ok(Some(_)) => {
                    // Finished or parked meanwhile (perhaps by a write reported as failed that
                    // took effect): waiters read the outcome from the store.
                    self.settle(&id, None);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error.into()),
            };
            match result {
                Ok(()) => break,
                Err(error) if self.is_shutting_down() => {
                    tracing::warn!(workflow_id = %id, %error, "could not load a run before shutdown; it resumes at the next start");
                    break;
                }
                Err(error) => {
                    let wait = STORE_REVIVAL.backoff(attempt, fastrand::f64());
                    tracing::warn!(workflow_id = %id, %error, attempt, ?wait, "could not load a run; trying again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        lock(&self.inner.resuming).remove(&id);
    }

    /// Removes an idle driver from the drivers map unless a message is waiting for it. `true` if it
    /// may leave memory.
    pub(crate) fn release_driver(
        &self,
        workflow_id: &str,
        rx: &mut mpsc::UnboundedReceiver<DriverMsg>,
    ) -> bool {
        let mut drivers = lock(&self.inner.drivers);
        if !rx.is_empty() {
            return false;
        }
        drivers.remove(workflow_id);
        true
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
