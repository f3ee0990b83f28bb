//! Configuring and starting an [`Engine`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::registry::ErasedWorkflow;
use super::{Engine, EngineSettings};
use crate::codec::{Codec, DEFAULT_PAYLOAD_LIMIT};
use crate::definition::{Payload, Registrable, RegistrationKind, Workflow};
use crate::error::Error;
use crate::inspect::Catalog;
use crate::retry::RetryPolicy;
use crate::store::sqlite::{Durability, SqliteOptions};
use crate::store::{SqliteStore, Store};

enum StoreChoice {
    Sqlite(PathBuf),
    InMemory,
    Custom(Arc<dyn Store>),
}

/// Configures an [`Engine`]: where the journal lives, which workflows and activities exist, limits.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrator::Error> {
/// use std::time::Duration;
/// use orchestrator::Engine;
///
/// let engine = Engine::builder()
///     .in_memory()
///     .payload_limit(1024 * 1024)
///     .shutdown_grace(Duration::from_secs(5))
///     .start()
///     .await?;
/// engine.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[must_use = "an engine builder does nothing until `.start()` is awaited"]
pub struct EngineBuilder {
    store: Option<StoreChoice>,
    workflows: HashMap<&'static str, ErasedWorkflow>,
    activities: Vec<&'static str>,
    catalog: Arc<Catalog>,
    duplicates: Vec<&'static str>,
    payload_limit: usize,
    busy_timeout: Duration,
    shutdown_grace: Duration,
    history_warning: usize,
    keep_runs: u32,
    durability: Durability,
    group_commit_window: Duration,
    spin_wait: Duration,
    integrity_check: crate::store::IntegrityCheck,
    evict_after: Duration,
    max_resident_runs: usize,
    wakeup_horizon: Duration,
    #[cfg(feature = "testing")]
    mocks: Option<Arc<crate::testing::MockTable>>,
    node: Option<String>,
    lease: Duration,
    panic_retry: RetryPolicy,
    drive_runs: bool,
    #[cfg(feature = "admin")]
    admin: Option<crate::admin::AdminConfig>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("workflows", &self.workflows.keys().collect::<Vec<_>>())
            .field("activities", &self.activities)
            .field("payload_limit", &self.payload_limit)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    pub(super) fn new() -> Self {
        EngineBuilder {
            store: None,
            workflows: HashMap::new(),
            activities: Vec::new(),
            duplicates: Vec::new(),
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            busy_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            history_warning: 10_000,
            keep_runs: 10,
            durability: Durability::Full,
            group_commit_window: Duration::ZERO,
            spin_wait: SqliteOptions::default().spin_wait,
            integrity_check: SqliteOptions::default().integrity_check,
            evict_after: Duration::from_secs(60),
            max_resident_runs: 1_000,
            wakeup_horizon: super::wakeups::HORIZON,
            #[cfg(feature = "testing")]
            mocks: None,
            node: None,
            lease: Duration::from_secs(10),
            panic_retry: default_panic_retry(),
            drive_runs: true,
            #[cfg(feature = "admin")]
            admin: None,
            catalog: Arc::default(),
        }
    }

    /// How far ahead the wake-up pager loads wake-ups (the test engine loads them all at once, so
    /// virtual time jumps straight to the next one).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn wakeup_horizon(mut self, horizon: Duration) -> Self {
        self.wakeup_horizon = horizon;
        self
    }

    /// The activity mocks of a test engine.
    #[cfg(feature = "testing")]
    pub(crate) fn mocks(mut self, mocks: Arc<crate::testing::MockTable>) -> Self {
        self.mocks = Some(mocks);
        self
    }

    /// Keeps the journal in the SQLite file at `path` (created if missing).
    pub fn sqlite(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = Some(StoreChoice::Sqlite(path.into()));
        self
    }

    /// Keeps the journal in a private in-memory SQLite database: for tests, nothing survives.
    pub fn in_memory(mut self) -> Self {
        self.store = Some(StoreChoice::InMemory);
        self
    }

    /// Uses a custom [`Store`].
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(StoreChoice::Custom(store));
        self
    }

    /// Registers a `#[workflow]` (required to start or resume it) or an `#[activity]` (optional; checks
    /// that names are unique).
    pub fn register(mut self, item: impl Registrable) -> Self {
        let registration = item.registration();
        let taken = self.workflows.contains_key(registration.name)
            || self.activities.contains(&registration.name);
        if taken {
            self.duplicates.push(registration.name);
            return self;
        }
        (registration.teach)(&self.catalog);
        match registration.kind {
            RegistrationKind::Workflow(workflow) => {
                self.workflows.insert(registration.name, workflow);
            }
            RegistrationKind::Activity => self.activities.push(registration.name),
        }
        self
    }

    /// Declares the payload type of signal `name` of workflow `workflow`, so
    /// [`Engine::describe`](crate::Engine::describe) shows its payloads as JSON and
    /// [`Engine::signal_json`](crate::Engine::signal_json) accepts JSON for it before any run of the
    /// workflow waited for it in this process (a `ctx.signal::<T>(name)` teaches it too).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn approval(ctx: WorkflowContext, _id: u64) -> Result<bool, WorkflowError> {
    ///     ctx.signal::<bool>("approve").await
    /// }
    ///
    /// let engine = Engine::builder()
    ///     .in_memory()
    ///     .register(approval)
    ///     .signal_type::<_, bool>(approval, "approve")
    ///     .start()
    ///     .await?;
    /// let run = engine.start(approval, "a-1", 1).await?;
    /// engine.signal_json("a-1", "approve", serde_json::json!(true)).await?;
    /// assert!(run.result().await?);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn signal_type<W: Workflow, T: Payload>(self, workflow: W, name: &str) -> Self {
        let _ = workflow;
        self.catalog.learn_signal::<T>(W::NAME, name);
        self
    }

    /// Declares the type of the value workflow `workflow` publishes under `key` (see
    /// [`WorkflowContext::set_state`](crate::WorkflowContext::set_state)), for
    /// [`Engine::describe`](crate::Engine::describe); a `ctx.set_state` in this process teaches it
    /// too.
    pub fn state_type<W: Workflow, T: Payload>(self, workflow: W, key: &str) -> Self {
        let _ = workflow;
        self.catalog.learn_state::<T>(W::NAME, key);
        self
    }

    /// The largest encoded payload (input, output, signal, error) accepted, in bytes. Default 4 MiB,
    /// at most [`MAX_PAYLOAD_LIMIT`](crate::codec::MAX_PAYLOAD_LIMIT) (64 MiB): a larger value, or 0,
    /// makes [`start`](EngineBuilder::start) fail with [`Error::Config`].
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.payload_limit = bytes;
        self
    }

    /// What a journal commit promises: [`Durability::Full`] (the default: fsync per commit, survives
    /// power loss) or [`Durability::Normal`] (survives a process crash). See [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long the SQLite writer waits to gather more writes into one commit. Default zero: a batch
    /// is whatever queued up during the previous commit, which already amortizes the fsync under load.
    pub fn group_commit_window(mut self, window: Duration) -> Self {
        self.group_commit_window = window;
        self
    }

    /// How long a task waiting for the SQLite writer's (or reader's) reply keeps looking for it before
    /// it lets its runtime worker sleep, while the store is quiet. Default 1 ms; `Duration::ZERO`
    /// never spins (for CPU-starved deployments that prefer idle cores to latency). See
    /// [`SqliteOptions::spin_wait`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use std::time::Duration;
    /// use orchestrator::Engine;
    ///
    /// // Leave the cores idle while commits sync, at the price of a worker wake-up per step.
    /// let engine = Engine::builder()
    ///     .in_memory()
    ///     .spin_wait(Duration::ZERO)
    ///     .start()
    ///     .await?;
    /// engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn spin_wait(mut self, spin: Duration) -> Self {
        self.spin_wait = spin;
        self
    }

    /// How thoroughly an SQLite journal file is checked at start (default
    /// [`IntegrityCheck::Quick`](crate::store::IntegrityCheck::Quick)): a damaged file makes
    /// [`start`](EngineBuilder::start) fail with a corrupt-store error. See
    /// [`IntegrityCheck`](crate::store::IntegrityCheck) for the cost.
    pub fn integrity_check(mut self, check: crate::store::IntegrityCheck) -> Self {
        self.integrity_check = check;
        self
    }

    /// How long a run waiting only on timers or signals stays in memory before it is evicted (and
    /// replayed from its journal when woken). Default 60 s.
    pub fn evict_after(mut self, idle: Duration) -> Self {
        self.evict_after = idle;
        self
    }

    /// The most runs kept in memory: beyond it, idle runs are evicted at once. Default 1,000 (a
    /// resident idle run costs a few KiB; an evicted one nothing but its row in the store).
    /// Runs with work in flight (activities, children) are never evicted.
    pub fn max_resident_runs(mut self, runs: usize) -> Self {
        self.max_resident_runs = runs;
        self
    }

    /// This engine's node id, for a store several engines share (PostgreSQL). Must be unique among the
    /// engines running at one time; default: a random UUID per engine.
    pub fn node_id(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// How long a node's lease on a run lasts without renewal (stores shared by several engines).
    /// A node that dies or pauses longer than this loses its runs to the others. Default 10 s.
    pub fn lease_duration(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How long a write waits for another process's lock on the SQLite file. Default 5 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long [`Engine::shutdown`] waits for running activity attempts to finish and be journaled.
    /// Default 30 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How many events a run's journal may reach before the engine logs a warning (suggesting
    /// `continue_as_new`). Default 10,000.
    pub fn history_warning(mut self, events: usize) -> Self {
        self.history_warning = events;
        self
    }

    /// How many earlier runs of a workflow id that continued as new are kept for inspection (with
    /// their journals); older ones are pruned. 0 keeps none. Default 10.
    pub fn keep_continued_runs(mut self, runs: u32) -> Self {
        self.keep_runs = runs;
        self
    }

    /// How often a run whose workflow code panics is replayed from its journal before it is parked
    /// (default: 5 attempts, 100 ms doubling up to 10 s between them).
    ///
    /// A panic in workflow code is a bug, not an outcome: the run does not fail (its compensations do
    /// not run). Its driver stops, and the run is replayed from its journal after the policy's backoff,
    /// which also covers panics that depend on something outside the journal. Once `max_attempts`
    /// attempts have panicked, the run is parked with [`ParkReason::Panicked`](crate::ParkReason) and
    /// costs nothing more until an operator deploys a fix and restarts the engine (parked runs are
    /// tried again at start). Other runs are not slowed down meanwhile.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn brittle(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    ///     if n == 0 { panic!("division by zero"); }
    ///     Ok(100 / n)
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// let engine = Engine::builder()
    ///     .in_memory()
    ///     .register(brittle)
    ///     .panic_retry(
    ///         RetryPolicy::builder()
    ///             .max_attempts(3)
    ///             .initial_backoff(Duration::from_millis(10))
    ///             .build(),
    ///     )
    ///     .start()
    ///     .await?;
    /// let run = engine.start(brittle, "brittle-0", 0).await?;
    /// assert!(matches!(
    ///     run.result().await,
    ///     Err(orchestrator::Error::RunParked { reason: orchestrator::ParkReason::Panicked { attempts: 3, .. }, .. })
    /// ));
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn panic_retry(mut self, policy: RetryPolicy) -> Self {
        self.panic_retry = policy;
        self
    }

    /// Whether this engine drives runs (default `true`). With `false` it is a **client** of a journal
    /// that other engines drive: it reads, describes, lists, signals, cancels and repairs runs
    /// (pause, resume, retry, fork, terminate, bulk) by writing to the store, but never executes
    /// workflow code: it resumes nothing at start, claims no runs on a shared store, and a run it
    /// retried, resumed, forked or signalled is driven by the journal's owner (on SQLite, the next
    /// engine that opens the file; on PostgreSQL, whichever node claims it). Starting runs is
    /// refused with [`Error::Config`]. For operators' tools such as the `orchestrator` CLI.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use orchestrator::Engine;
    ///
    /// let client = Engine::builder().in_memory().drive_runs(false).start().await?;
    /// assert!(!client.drives_runs());
    /// assert!(client.list_runs(&orchestrator::store::RunQuery::new()).await?.runs.is_empty());
    /// # client.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn drive_runs(mut self, drive: bool) -> Self {
        self.drive_runs = drive;
        self
    }

    /// Serves the embedded admin HTTP API (cargo feature `admin`) from this engine, on the runtime
    /// that calls [`start`](EngineBuilder::start), until [`Engine::shutdown`]: list and search runs,
    /// inspect them, signal, cancel and repair them, watch them live. Off unless called. `start` fails
    /// with [`Error::Config`] when the address cannot be bound, or is not loopback and no token is
    /// configured. See [`admin`](crate::admin) and `docs/operations.md`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use orchestrator::{Engine, Error};
    /// use orchestrator::admin::AdminConfig;
    ///
    /// // Reachable from other machines only with a token.
    /// let open = Engine::builder()
    ///     .in_memory()
    ///     .admin(AdminConfig::builder().bind(([0, 0, 0, 0], 0)).build())
    ///     .start()
    ///     .await;
    /// assert!(matches!(open, Err(Error::Config { .. })));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "admin")]
    pub fn admin(mut self, config: crate::admin::AdminConfig) -> Self {
        self.admin = Some(config);
        self
    }

    /// Opens the store and returns the engine; every unfinished run is resumed from its journal in
    /// the background (see [`Engine::recovered`]), so this returns promptly however many runs wait.
    pub async fn start(self) -> Result<Engine, Error> {
        if let Some(name) = self.duplicates.first() {
            return Err(Error::DuplicateRegistration {
                name: (*name).to_string(),
            });
        }
        if self.payload_limit == 0 {
            return Err(Error::Config {
                message: "payload_limit must be at least 1 byte".to_string(),
            });
        }
        if self.payload_limit > crate::codec::MAX_PAYLOAD_LIMIT {
            return Err(Error::Config {
                message: format!(
                    "payload_limit {} bytes is above the largest a journal can decode, {} bytes (64 MiB)",
                    self.payload_limit,
                    crate::codec::MAX_PAYLOAD_LIMIT
                ),
            });
        }
        // Bound before the store is opened: a refused configuration or a taken port changes nothing.
        #[cfg(feature = "admin")]
        let admin = match self.admin {
            Some(config) => Some(crate::admin::bind(config).await?),
            None => None,
        };
        let mut own_store = None;
        let store: Arc<dyn Store> = match self.store {
            None => {
                return Err(Error::Config {
                    message: "no journal store chosen: call `.sqlite(path)`, `.in_memory()` or `.store(..)`"
                        .to_string(),
                });
            }
            Some(StoreChoice::Sqlite(path)) => {
                let options = SqliteOptions {
                    path: Some(path),
                    busy_timeout: self.busy_timeout,
                    durability: self.durability,
                    group_commit_window: self.group_commit_window,
                    spin_wait: self.spin_wait,
                    integrity_check: self.integrity_check,
                    ..SqliteOptions::default()
                };
                let store = SqliteStore::open_with(options).await?;
                own_store = Some(store.clone());
                Arc::new(store)
            }
            Some(StoreChoice::InMemory) => Arc::new(
                SqliteStore::open_with(SqliteOptions {
                    spin_wait: self.spin_wait,
                    ..SqliteOptions::default()
                })
                .await?,
            ),
            Some(StoreChoice::Custom(store)) => store,
        };
        let settings = EngineSettings {
            codec: Codec::new(self.payload_limit),
            shutdown_grace: self.shutdown_grace,
            history_warning: self.history_warning,
            keep_runs: self.keep_runs,
            evict_after: self.evict_after,
            max_resident_runs: self.max_resident_runs,
            node: Arc::from(
                self.node
                    .unwrap_or_else(|| {
                        uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
                            .into_uuid()
                            .to_string()
                    })
                    .as_str(),
            ),
            lease: self.lease,
            panic_retry: self.panic_retry,
            catalog: self.catalog,
            drive_runs: self.drive_runs,
            wakeup_horizon: self.wakeup_horizon,
            #[cfg(feature = "testing")]
            mocks: self.mocks,
        };
        // One engine per journal in this process (SQLite): a second one would drive the same runs.
        let claim = store.claim_engine()?;
        let engine = Engine::assemble(store, own_store, claim, settings, self.workflows);
        if !self.drive_runs {
            // A client: nothing to resume, claim or wake here.
            engine.mark_recovered();
        } else if engine.lease_mode() {
            // Runs are claimed by the cluster loop, from whichever node is first.
            engine.release_stale_claims().await?;
            engine.start_cluster();
            engine.mark_recovered();
        } else {
            // The wake-up pager first: runs evicted while recovery replays them are woken in time.
            engine.unpark_registered().await?;
            engine.start_wakeups();
            engine.start_recovery();
        }
        #[cfg(feature = "admin")]
        if let Some(listener) = admin
            && let Err(error) = engine.serve_admin(listener)
        {
            engine.shutdown().await;
            return Err(error);
        }
        Ok(engine)
    }
}

/// 5 attempts, 100 ms doubling up to 10 s, ±10% jitter (see [`EngineBuilder::panic_retry`]).
fn default_panic_retry() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(5)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_secs(10))
        .build()
}
