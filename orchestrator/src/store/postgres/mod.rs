//! The PostgreSQL journal store: several engine processes (nodes) share one database and divide the
//! runs between them through leases with fencing epochs (see [`LeaseStore`]).
//!
//! Enabled by the cargo feature `postgres`. Connections come from a pool (deadpool-postgres); every
//! trait call that writes is one transaction; every value is a bound parameter. Tables live in one
//! PostgreSQL schema (`public` unless [`PostgresOptions::schema`] says otherwise), versioned in its
//! `orchestrator_meta` table and migrated at connect time under an advisory lock.
//!
//! Requires PostgreSQL 11 or newer. Connections are made without TLS (`NoTls`); use a URL with
//! `sslmode=disable` or `prefer`, or a local socket / private network.

mod errors;
mod queries;
mod repair;
mod schema;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;

use super::{
    ArchivedRun, CancelOutcome, Claim, Commit, CreateOutcome, ForkRun, LeaseHolder, LeaseStore,
    NewRun, OperatorOutcome, OperatorWrite, Rewind, RewindOutcome, RunPage, RunQuery, RunRecord,
    SignalOutcome, SignalRecord, StatusCounts, Store, StoreError, StoredEvent, Wakeup,
};
use errors::classify_pool;
use queries::Sql;

/// Where and how to connect to a PostgreSQL journal.
///
/// ```
/// use std::time::Duration;
/// use orchestrator::store::PostgresOptions;
///
/// let options = PostgresOptions::new("postgres://app@db.internal/app")
///     .schema("orders_journal")
///     .pool_size(32)
///     .acquire_timeout(Duration::from_secs(10));
/// assert_eq!(options.schema, "orders_journal");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// The connection string: a URL (`postgres://user:password@host:5432/database`) or libpq's
    /// `key=value` form.
    pub url: String,
    /// The most connections the store's pool opens (default 10). The store also keeps one more
    /// connection of its own for lease renewals, so a node uses at most `pool_size + 1`: three nodes
    /// with the default take 33 of a default server's 100 `max_connections`. Past the server's limit
    /// connecting fails with [`StoreError::TooManyConnections`].
    pub pool_size: usize,
    /// The PostgreSQL schema holding the journal's tables (default `public`). It must match
    /// `^[a-z_][a-z0-9_]*$`; it is created if missing. A schema that already holds tables named like
    /// the journal's (`runs`, `events`, ...) but no `orchestrator_meta` is refused with
    /// [`StoreError::ForeignDatabase`], untouched: give the journal a schema of its own.
    pub schema: String,
    /// How long opening one connection may take (default 10 s), unless the URL sets
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// How long a call waits for a free pooled connection before failing with
    /// [`StoreError::Busy`] (default 30 s).
    pub acquire_timeout: Duration,
    /// The server ends a session of this store that stays idle inside a transaction this long
    /// (`idle_in_transaction_session_timeout`; default 5 s, `None` leaves the server's setting).
    /// A node paused (or cut off) in the middle of a commit holds its run's row lock, which keeps
    /// other nodes from taking the run over (claims skip locked rows); this bounds how long. Keep it
    /// at or below the engine's lease duration, so a takeover waits about one lease, not longer.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// How long one statement of this store may wait for a lock (`lock_timeout`; default 5 s,
    /// `None`: the server's setting, by default forever). A commit waiting on a row locked by a
    /// frozen node fails with the retryable [`StoreError::Busy`] instead of waiting as long as the
    /// freeze; the engine then revives the run from its journal.
    pub lock_timeout: Option<Duration>,
    /// How long one statement of this store may run (`statement_timeout`; default 60 s, `None`: the
    /// server's setting, by default forever). A statement cancelled this way is
    /// [`StoreError::Busy`].
    pub statement_timeout: Option<Duration>,
}

impl PostgresOptions {
    /// Options for the database at `url`, with defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            pool_size: 10,
            schema: "public".to_string(),
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(30),
            idle_in_transaction_timeout: Some(Duration::from_secs(5)),
            lock_timeout: Some(Duration::from_secs(5)),
            statement_timeout: Some(Duration::from_secs(60)),
        }
    }

    /// Keeps the journal's tables in the PostgreSQL schema `schema`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Opens at most `size` connections (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Gives up opening a connection after `timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Waits at most `timeout` for a free pooled connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Has the server end sessions idle inside a transaction for `timeout` (`None`: the server's
    /// setting).
    pub fn idle_in_transaction_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_in_transaction_timeout = timeout;
        self
    }

    /// Has a statement give up waiting for a lock after `timeout` (`None`: the server's setting).
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Has the server cancel a statement running longer than `timeout` (`None`: the server's
    /// setting).
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// The session settings every connection of the store gets: `(name, value in ms)`.
    fn session_settings(&self) -> Vec<(&'static str, String)> {
        [
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
            ("lock_timeout", self.lock_timeout),
            ("statement_timeout", self.statement_timeout),
        ]
        .into_iter()
        .filter_map(|(name, timeout)| {
            timeout.map(|timeout| (name, timeout.as_millis().max(1).to_string()))
        })
        .collect()
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PostgresOptions")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("schema", &self.schema)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("lock_timeout", &self.lock_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// The PostgreSQL journal store, shared by several engine processes.
///
/// It implements [`Store`] with the same semantics as the SQLite store, and [`LeaseStore`]
/// ([`Store::leases`] returns it): runs are owned by nodes through leases timed on the database's
/// clock, and every commit that carries a [`Commit::fence`] is checked against the run's current
/// owner and epoch in its own transaction, under the run's row lock.
///
/// Errors: serialization failures, deadlocks and lock timeouts are [`StoreError::Busy`], lost
/// connections [`StoreError::Io`] (both [retryable](StoreError::is_retryable)); constraint violations
/// are [`StoreError::Conflict`]; a full disk is [`StoreError::DiskFull`]; a schema written by a newer
/// orchestrator is refused with [`StoreError::SchemaTooNew`].
///
/// ```no_run
/// use std::sync::Arc;
/// use orchestrator::store::{PostgresOptions, PostgresStore};
/// use orchestrator::Engine;
///
/// # async fn run() -> Result<(), orchestrator::Error> {
/// let store = PostgresStore::connect_with(
///     PostgresOptions::new("postgres://app@db.internal:5432/app").schema("journal"),
/// )
/// .await?;
/// let engine = Engine::builder()
///     .store(Arc::new(store))
///     // .register(checkout).register(charge_card)
///     .start()
///     .await?;
/// # let _ = engine;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// A connection of its own for lease renewals (a pool of one, so it reconnects by itself).
    lease_connection: Pool,
    sql: Arc<Sql>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("schema", &self.sql.schema)
            .field("pool_size", &status.max_size)
            .field("connections", &status.size)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (schema `public`, default options), creating or migrating
    /// the journal's tables.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PostgresOptions::new(url)).await
    }

    /// Connects with explicit options, creating or migrating the journal's tables.
    pub async fn connect_with(options: PostgresOptions) -> Result<Self, StoreError> {
        if !schema::valid_schema_name(&options.schema) {
            return Err(StoreError::Backend {
                operation: "checking the PostgreSQL options",
                message: format!(
                    "schema name `{}` must match ^[a-z_][a-z0-9_]*$ (at most 63 bytes)",
                    options.schema
                ),
            });
        }
        let mut config = options
            .url
            .parse::<tokio_postgres::Config>()
            .map_err(|error| StoreError::Backend {
                operation: "parsing the PostgreSQL connection string",
                message: errors::describe(&error),
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("orchestrator");
        }
        let settings = Arc::new(options.session_settings());
        let build = |size: usize| {
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            // Session settings, on every new connection (bound, not spliced).
            let settings = settings.clone();
            let setup = Hook::async_fn(move |client: &mut ClientWrapper, _| {
                let settings = settings.clone();
                Box::pin(async move {
                    for (name, ms) in settings.iter() {
                        client
                            .execute("SELECT set_config($1, $2, false)", &[name, ms])
                            .await
                            .map_err(HookError::Backend)?;
                    }
                    Ok(())
                })
            });
            Pool::builder(manager)
                .post_create(setup)
                .max_size(size)
                .wait_timeout(Some(options.acquire_timeout))
                .create_timeout(Some(options.connect_timeout))
                .runtime(Runtime::Tokio1)
                .build()
                .map_err(|error| StoreError::Backend {
                    operation: "building the PostgreSQL connection pool",
                    message: error.to_string(),
                })
        };
        let pool = build(options.pool_size.max(1))?;
        // Renewals never queue behind the node's own journal writes for a pooled connection.
        let lease_connection = build(1)?;
        let sql = Sql::new(&options.schema);
        let mut client = pool
            .get()
            .await
            .map_err(|error| classify_pool("connecting to PostgreSQL", error))?;
        schema::prepare(&mut client, &sql.schema, &sql.quoted).await?;
        drop(client);
        Ok(PostgresStore {
            pool,
            lease_connection,
            sql: Arc::new(sql),
        })
    }

    /// The PostgreSQL schema holding this journal.
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// Closes the pool: calls made afterwards fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.pool.close();
        self.lease_connection.close();
    }

    async fn client(&self, operation: &'static str) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| classify_pool(operation, error))
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        let mut client = self.client("creating a run").await?;
        queries::create_run(&mut client, &self.sql, &run).await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let mut client = self.client("committing journal events").await?;
        queries::commit(&mut client, &self.sql, &commit).await
    }

    async fn rewind(&self, rewind: Rewind) -> Result<RewindOutcome, StoreError> {
        let mut client = self.client("rewinding a run").await?;
        repair::rewind(&mut client, &self.sql, &rewind).await
    }

    async fn fork_run(&self, fork: ForkRun) -> Result<CreateOutcome, StoreError> {
        let mut client = self.client("forking a run").await?;
        repair::fork_run(&mut client, &self.sql, &fork).await
    }

    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let client = self.client("reading a run").await?;
        queries::run(&client, &self.sql, workflow_id).await
    }

    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client("reading a history").await?;
        queries::history(&client, &self.sql, workflow_id).await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let client = self.client("listing unfinished runs").await?;
        queries::unfinished_runs(&client, &self.sql).await
    }

    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        let mut client = self.client("sending a signal").await?;
        queries::send_signal(&mut client, &self.sql, workflow_id, name, payload).await
    }

    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        let client = self.client("reading pending signals").await?;
        queries::pending_signals(&client, &self.sql, workflow_id).await
    }

    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let mut client = self.client("requesting a cancellation").await?;
        queries::request_cancel(&mut client, &self.sql, workflow_id, reason).await
    }

    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
        let mut client = self.client("applying an operator action").await?;
        queries::operate(&mut client, &self.sql, &write).await
    }

    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client("reading a published value").await?;
        queries::value(&client, &self.sql, workflow_id, key).await
    }

    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        let client = self.client("listing archived runs").await?;
        queries::archived_runs(&client, &self.sql, workflow_id).await
    }

    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError> {
        let client = self.client("listing due wake-ups").await?;
        queries::due_wakeups(&client, &self.sql, before_ms, limit).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let client = self.client("listing runs").await?;
        queries::list_runs(&client, &self.sql, query).await
    }

    async fn count_runs(&self, query: &RunQuery) -> Result<StatusCounts, StoreError> {
        let client = self.client("counting runs").await?;
        queries::count_runs(&client, &self.sql, query).await
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl LeaseStore for PostgresStore {
    async fn lease_holder(&self, workflow_id: &str) -> Result<Option<LeaseHolder>, StoreError> {
        let client = self.client("reading a run's lease").await?;
        queries::lease_holder(&client, &self.sql, workflow_id).await
    }

    async fn claim_runs(
        &self,
        node: &str,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let client = self.client("claiming runs").await?;
        queries::claim_runs(&client, &self.sql, node, lease_ms, limit).await
    }

    async fn renew_leases(&self, node: &str, lease_ms: i64) -> Result<Vec<Claim>, StoreError> {
        const OP: &str = "renewing leases";
        let client = self
            .lease_connection
            .get()
            .await
            .map_err(|error| classify_pool(OP, error))?;
        queries::renew_leases(&client, &self.sql, node, lease_ms).await
    }

    async fn release_run(&self, node: &str, claim: &Claim) -> Result<(), StoreError> {
        let client = self.client("releasing a run").await?;
        queries::release_run(&client, &self.sql, node, claim).await
    }

    async fn owned_signals(
        &self,
        node: &str,
        after_id: i64,
    ) -> Result<Vec<(String, SignalRecord)>, StoreError> {
        let client = self.client("reading owned runs' signals").await?;
        queries::owned_signals(&client, &self.sql, node, after_id).await
    }

    async fn owned_cancellations(&self, node: &str) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.client("reading owned runs' cancellations").await?;
        queries::owned_cancellations(&client, &self.sql, node).await
    }

    async fn owned_pauses(&self, node: &str) -> Result<Vec<String>, StoreError> {
        let client = self.client("reading owned runs' pauses").await?;
        queries::owned_pauses(&client, &self.sql, node).await
    }
}

#[cfg(test)]
mod tests {
    use super::schema::valid_schema_name;

    #[test]
    fn schema_names_are_validated() {
        assert!(valid_schema_name("public"));
        assert!(valid_schema_name("_journal_2"));
        assert!(!valid_schema_name(""));
        assert!(!valid_schema_name("Public"));
        assert!(!valid_schema_name("2abc"));
        assert!(!valid_schema_name("a\"; DROP TABLE runs; --"));
        assert!(!valid_schema_name(&"a".repeat(64)));
    }
}
