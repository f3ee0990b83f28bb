//! The SQLite journal store: one file, WAL mode, a writer thread that group-commits, a reader thread.
//!
//! By default ([`SqliteExecution::Threads`]) all statements run on dedicated threads that own their
//! connections, so async callers never block a runtime worker on disk I/O. Writes are group-committed
//! (see `writer.rs`): one `BEGIN IMMEDIATE` transaction and one fsync per batch, one savepoint per
//! write. Reads use a second connection. [`SqliteExecution::Inline`] runs the same statements on the
//! caller's task instead (see `inline.rs`), for deterministic simulations. A store opened read-only
//! ([`SqliteStore::open_read_only`]) has only a read connection and refuses writes. Statements are
//! prepared once and cached; parameters are always bound.

mod access;
mod errors;
mod integrity;

pub use integrity::IntegrityCheck;
mod inline;
mod ownership;
mod queries;
mod reader;
mod repair;
mod reply;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use errors::Context;
use inline::InlineConnection;
use ownership::OwnerLock;
use writer::{TypedWrite, WriterJob};

use super::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, EngineClaim, ForkRun, NewRun,
    OperatorOutcome, OperatorWrite, Rewind, RewindOutcome, RunPage, RunQuery, RunRecord,
    SignalOutcome, SignalRecord, StatusCounts, Store, StoreError, StoredEvent, Wakeup,
};

/// What a commit promises once it returns.
///
/// | mode | SQLite setting | survives a process crash (kill -9) | survives power loss / OS crash |
/// |---|---|---|---|
/// | `Full` | `synchronous = FULL` | yes | yes: every commit is fsynced before it is acknowledged |
/// | `Normal` | `synchronous = NORMAL` | yes | no: the last commits before the failure may be lost |
///
/// `Full` is the default: a durable-execution engine that acknowledges a step and then forgets it after
/// a power cut breaks its first promise. With group commit, the fsync is shared by every write in a
/// batch, so `Full` costs latency for a lone workflow but little throughput under load. Choose `Normal`
/// when the process crashing is the failure you care about and the machine's storage is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// fsync on every commit (the default).
    #[default]
    Full,
    /// fsync only at WAL checkpoints.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Where SQLite's statements run.
///
/// ```
/// use orchestrator::store::sqlite::{SqliteExecution, SqliteOptions};
///
/// let mut options = SqliteOptions::default(); // in memory
/// options.execution = SqliteExecution::Inline;
/// assert_ne!(options.execution, SqliteExecution::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SqliteExecution {
    /// A writer thread that owns the read-write connection and group-commits queued writes (one
    /// transaction and one fsync per batch), plus a reader thread with its own connection (files only;
    /// in memory, reads run on the writer thread). Async callers never block on disk I/O. The default.
    #[default]
    Threads,
    /// Every statement runs on the calling task, under a mutex on one connection: no threads, and
    /// deterministic. Each write is its own transaction, committed with the configured
    /// [`Durability`] before the call returns; queries, savepoints, error mapping and the ownership
    /// lock are the same as with [`Threads`](SqliteExecution::Threads). It blocks the async runtime's
    /// thread while SQLite works (fsyncs included): for simulations and tests, not for services.
    Inline,
}

/// The SQLite journal store.
///
/// ```
/// # tokio_test_block_on(async {
/// use orchestrator::store::{SqliteStore, Store};
///
/// let dir = tempfile_dir();
/// let store = SqliteStore::open(dir.join("journal.db")).await?;
/// assert!(store.unfinished_runs().await?.is_empty());
/// # Ok::<(), orchestrator::store::StoreError>(())
/// # });
/// # fn tempfile_dir() -> std::path::PathBuf {
/// #     let dir = std::env::temp_dir().join(format!("orch-doc-{}", std::process::id()));
/// #     std::fs::create_dir_all(&dir).unwrap();
/// #     let _ = std::fs::remove_file(dir.join("journal.db"));
/// #     dir
/// # }
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    execution: Execution,
    read_only: bool,
    /// The journal's ownership, held by the writer (or the inline connection) until it closes.
    owner: Option<Weak<OwnerLock>>,
}

/// How a store reaches its connections.
#[derive(Debug, Clone)]
enum Execution {
    /// Through the writer and reader threads' queues. A read-only store has no writer; an in-memory
    /// store has no reader (its reads run on the writer thread).
    Threads {
        writer: Option<mpsc::Sender<WriterJob>>,
        reader: Option<mpsc::Sender<reader::ReadJob>>,
        /// How callers wait for the threads' replies.
        replies: Arc<reply::Replies>,
    },
    /// On the caller's task.
    Inline(Arc<InlineConnection>),
}

/// Where and how to open an SQLite journal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The database file; `None` for a private in-memory database.
    pub path: Option<PathBuf>,
    /// How long a statement waits for another connection's lock before failing with `Busy`.
    pub busy_timeout: Duration,
    /// What a commit promises (see [`Durability`]).
    pub durability: Durability,
    /// How long the writer waits for more writes before committing a batch. Zero (the default) commits
    /// what has queued up while the previous commit was syncing, which batches well under load without
    /// delaying a lone write. Ignored by [`SqliteExecution::Inline`].
    pub group_commit_window: Duration,
    /// Where the statements run (see [`SqliteExecution`]; default: threads).
    pub execution: SqliteExecution,
    /// How long a task waiting for the writer's or the reader's reply keeps looking for it (yielding
    /// to other threads and tasks between looks) before it lets its runtime worker sleep. Default 1 ms; zero never
    /// spins.
    ///
    /// Waking a sleeping worker thread costs tens of microseconds on a virtual machine — more than a
    /// commit without fsync — and a lone workflow would pay it on every step. Only one task spins at a
    /// time, and only while the store is quiet (at most two requests outstanding): under load, workers
    /// are awake anyway and the CPU is better left to the writer. An idle store never spins. Ignored by
    /// [`SqliteExecution::Inline`].
    pub spin_wait: Duration,
    /// Open the file for reading only (see [`SqliteStore::open_read_only`]): no ownership lock, no
    /// migrations, and every write fails with [`StoreError::ReadOnly`]. Needs a `path`.
    pub read_only: bool,
    /// How thoroughly the file is checked when it is opened (see [`IntegrityCheck`]; default
    /// [`IntegrityCheck::Quick`]). A damaged file is refused with [`StoreError::Corrupt`].
    pub integrity_check: IntegrityCheck,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            path: None,
            busy_timeout: Duration::from_secs(5),
            durability: Durability::Full,
            group_commit_window: Duration::ZERO,
            execution: SqliteExecution::Threads,
            spin_wait: Duration::from_millis(1),
            read_only: false,
            integrity_check: IntegrityCheck::Quick,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the journal at `path` with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteOptions {
            path: Some(path.as_ref().to_path_buf()),
            ..SqliteOptions::default()
        })
        .await
    }

    /// Opens a private in-memory journal (for tests: nothing survives the process).
    pub async fn in_memory() -> Result<Self, StoreError> {
        Self::open_with(SqliteOptions::default()).await
    }

    /// Opens an existing journal for reading only, while the process that owns it (its engine) may be
    /// writing: for operators' tools and CLIs that list runs and read their histories.
    ///
    /// It takes no ownership lock (so it works next to a running engine, in this process or another),
    /// opens the file with `SQLITE_OPEN_READONLY` and a 5 s busy timeout, and never migrates. Reads
    /// ([`run`](Store::run), [`history`](Store::history), [`list_runs`](Store::list_runs),
    /// [`pending_signals`](Store::pending_signals), [`value`](Store::value),
    /// [`archived_runs`](Store::archived_runs), [`unfinished_runs`](Store::unfinished_runs),
    /// [`due_wakeups`](Store::due_wakeups)) see the last committed state: in WAL mode they neither wait
    /// for nor block the owner's writes. Every write fails with [`StoreError::ReadOnly`].
    ///
    /// Refused with a typed error: a missing file ([`StoreError::Io`]), a file that is not a database
    /// ([`StoreError::NotADatabase`]), another application's database
    /// ([`StoreError::ForeignDatabase`]), a journal of a newer build ([`StoreError::SchemaTooNew`]),
    /// or one an older build wrote and nobody has migrated yet ([`StoreError::SchemaTooOld`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use orchestrator::store::{NewRun, RunQuery, SqliteStore, Store, StoreError};
    ///
    /// # let dir = std::env::temp_dir().join(format!("orch-doc-ro-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let _ = std::fs::remove_file(dir.join("app.db"));
    /// let path = dir.join("app.db");
    /// // The owning process (usually an engine) writes...
    /// let owner = SqliteStore::open(&path).await?;
    /// owner
    ///     .create_run(NewRun {
    ///         workflow_id: "order-42".into(),
    ///         workflow_name: "checkout".into(),
    ///         input: vec![1, 2, 3],
    ///         parent_id: None,
    ///         deadline_ms: None,
    ///         execution_timeout_ms: None,
    ///         owner: None,
    ///         events: Vec::new(),
    ///         paused: None,
    ///     })
    ///     .await?;
    ///
    /// // ...while a tool reads.
    /// let reader = SqliteStore::open_read_only(&path).await?;
    /// let page = reader.list_runs(&RunQuery::new().workflow_name("checkout")).await?;
    /// assert_eq!(page.runs[0].workflow_id, "order-42");
    /// assert!(reader.history("order-42").await?.is_empty());
    ///
    /// let refused = reader.request_cancel("order-42", "not from a reader").await;
    /// assert!(matches!(refused, Err(StoreError::ReadOnly { .. })));
    /// # Ok::<(), StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteOptions {
            path: Some(path.as_ref().to_path_buf()),
            read_only: true,
            ..SqliteOptions::default()
        })
        .await
    }

    /// Opens a journal with explicit options.
    pub async fn open_with(options: SqliteOptions) -> Result<Self, StoreError> {
        if let Some(path) = &options.path {
            access::check(path, options.read_only)?;
        }
        let owner = match (&options.path, options.read_only) {
            (Some(path), false) => Some(ownership::acquire(path)?),
            _ => None,
        };
        let weak_owner = owner.as_ref().map(Arc::downgrade);
        let execution = match (options.read_only, options.execution) {
            (false, SqliteExecution::Threads) => open_threads(&options, owner).await?,
            (false, SqliteExecution::Inline) => {
                let conn = match open_writer(&options) {
                    Ok(conn) => conn,
                    Err(error) => {
                        if let Some(owner) = owner {
                            ownership::abandon(owner);
                        }
                        return Err(error);
                    }
                };
                let wal = options
                    .path
                    .as_deref()
                    .map(|path| writer::WalGuard::new(path, options.busy_timeout));
                Execution::Inline(Arc::new(InlineConnection::new(conn, wal, owner)))
            }
            (true, execution) => {
                let Some(path) = options.path.clone() else {
                    return Err(StoreError::Backend {
                        operation: "opening a read-only store",
                        message: "a read-only store needs a journal file (`path` is None)"
                            .to_string(),
                    });
                };
                match execution {
                    SqliteExecution::Threads => {
                        let busy_timeout = options.busy_timeout;
                        let reader =
                            spawn_reader(move || open_read_only(&path, busy_timeout)).await?;
                        Execution::Threads {
                            writer: None,
                            reader: Some(reader),
                            replies: Arc::new(reply::Replies::new(options.spin_wait)),
                        }
                    }
                    SqliteExecution::Inline => {
                        let conn = open_read_only(&path, options.busy_timeout)?;
                        Execution::Inline(Arc::new(InlineConnection::new(conn, None, None)))
                    }
                }
            }
        };
        Ok(SqliteStore {
            execution,
            read_only: options.read_only,
            owner: weak_owner,
        })
    }

    /// Closes the journal for writing and waits until this store's hold on the file is released:
    /// the writer commits what is queued, closes its connection and gives up the journal's ownership
    /// lock, so another process (or a new engine) can open the file at once. Later writes through
    /// any clone of this store fail with [`StoreError::Closed`]; reads keep working. Idempotent.
    ///
    /// The lock file stays locked while another store of this process still uses the same journal
    /// (stores of one process share it). [`Engine::shutdown`](crate::Engine::shutdown) calls this
    /// for a store the engine opened itself.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use orchestrator::store::{SqliteStore, Store, StoreError};
    ///
    /// # let dir = std::env::temp_dir().join(format!("orch-doc-close-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let store = SqliteStore::open(dir.join("closed.db")).await?;
    /// store.close().await;
    /// let refused = store.request_cancel("any", "closed").await;
    /// assert!(matches!(refused, Err(StoreError::Closed)));
    /// # Ok::<(), StoreError>(())
    /// # }).unwrap();
    /// ```
    pub async fn close(&self) {
        match &self.execution {
            Execution::Threads {
                writer: Some(writer),
                ..
            } => {
                let (closed, done) = oneshot::channel();
                if writer.send(WriterJob::Close(closed)).is_ok() {
                    let _ = done.await;
                }
            }
            Execution::Threads { writer: None, .. } => {}
            Execution::Inline(conn) => conn.close(),
        }
    }

    /// Whether the store was opened read-only (its writes fail with [`StoreError::ReadOnly`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Runs a write and waits until it is durable: queued for the next group commit, or inline.
    async fn write<R, F>(&self, operation: &'static str, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (writer, replies) = match &self.execution {
            _ if self.read_only => return Err(StoreError::ReadOnly { operation }),
            Execution::Inline(conn) => return conn.write(work),
            Execution::Threads {
                writer: Some(writer),
                replies,
                ..
            } => (writer, replies),
            Execution::Threads { writer: None, .. } => {
                return Err(StoreError::ReadOnly { operation });
            }
        };
        let (reply, response) = oneshot::channel();
        let job = WriterJob::Write(Box::new(TypedWrite::new(work, reply)));
        writer.send(job).map_err(|_| StoreError::Closed)?;
        replies.wait(response).await
    }

    /// Runs a read: on the reader connection (or the writer's, in memory), or inline.
    async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (writer, reader, replies) = match &self.execution {
            Execution::Inline(conn) => return conn.read(work),
            Execution::Threads {
                writer,
                reader,
                replies,
            } => (writer, reader, replies),
        };
        let (reply, response) = oneshot::channel();
        let job = Box::new(move |conn: &Connection| {
            let _ = reply.send(work(conn));
        });
        match (reader, writer) {
            (Some(reader), _) => reader.send(job).map_err(|_| StoreError::Closed)?,
            (None, Some(writer)) => writer
                .send(WriterJob::Read(job))
                .map_err(|_| StoreError::Closed)?,
            (None, None) => return Err(StoreError::Closed),
        }
        replies.wait(response).await
    }
}

/// Starts the writer thread (which holds the ownership lock of a file) and, for a file, the reader.
async fn open_threads(
    options: &SqliteOptions,
    owner: Option<Arc<OwnerLock>>,
) -> Result<Execution, StoreError> {
    let (writer, jobs) = mpsc::channel::<WriterJob>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let writer_options = options.clone();
    spawn_thread("orchestrator-sqlite-writer", move || {
        // Ownership lasts as long as the writer: it ends when the last store clone is dropped, or
        // when the store is closed.
        match open_writer(&writer_options) {
            Ok(conn) => {
                let _ = ready_tx.send(Ok(()));
                let wal = writer_options
                    .path
                    .as_deref()
                    .map(|path| writer::WalGuard::new(path, writer_options.busy_timeout));
                let closers = writer::run(conn, jobs, writer_options.group_commit_window, wal);
                drop(owner);
                for closer in closers {
                    let _ = closer.send(());
                }
            }
            Err(error) => {
                if let Some(owner) = owner {
                    ownership::abandon(owner);
                }
                let _ = ready_tx.send(Err(error));
            }
        }
    })?;
    ready_rx.await.map_err(|_| StoreError::Closed)??;
    let reader = match &options.path {
        None => None,
        Some(path) => {
            let path = path.clone();
            let busy_timeout = options.busy_timeout;
            Some(spawn_reader(move || open_reader(&path, busy_timeout)).await?)
        }
    };
    Ok(Execution::Threads {
        writer: Some(writer),
        reader,
        replies: Arc::new(reply::Replies::new(options.spin_wait)),
    })
}

/// Starts a reader thread on the connection `open` returns.
async fn spawn_reader(
    open: impl FnOnce() -> Result<Connection, StoreError> + Send + 'static,
) -> Result<mpsc::Sender<reader::ReadJob>, StoreError> {
    let (reader, reads) = mpsc::channel::<reader::ReadJob>();
    let (ready_tx, ready_rx) = oneshot::channel();
    spawn_thread("orchestrator-sqlite-reader", move || match open() {
        Ok(conn) => {
            let _ = ready_tx.send(Ok(()));
            reader::run(conn, reads);
        }
        Err(error) => {
            let _ = ready_tx.send(Err(error));
        }
    })?;
    ready_rx.await.map_err(|_| StoreError::Closed)??;
    Ok(reader)
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    // The thread stamps rows with the engine's clock (`clock::now_ms`), which follows the clock of
    // the tokio runtime the store was opened on: enter that runtime's context, so a runtime with
    // paused (virtual) time stamps virtual times. (With tokio's real clock nothing changes.)
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _clock = runtime.as_ref().map(tokio::runtime::Handle::enter);
            body();
        })
        .map(|_| ())
        .map_err(|error| StoreError::Io {
            operation: "starting an SQLite thread",
            message: error.to_string(),
        })
}

fn open_writer(options: &SqliteOptions) -> Result<Connection, StoreError> {
    let (mut conn, label) = match &options.path {
        Some(path) => {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(path, flags).during("opening the database")?;
            (conn, path.display().to_string())
        }
        None => (
            Connection::open_in_memory().during("opening an in-memory database")?,
            ":memory:".to_string(),
        ),
    };
    conn.busy_timeout(options.busy_timeout)
        .during("setting the busy timeout")?;
    if options.path.is_some() {
        // Before the schema is read, so damage anywhere in the file is reported as such.
        integrity::check(&conn, options.integrity_check, &label)?;
    }
    schema::prepare(&mut conn, &label)?;
    if options.path.is_some() {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .during("enabling WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend {
                operation: "enabling WAL",
                message: format!("journal_mode is `{mode}`"),
            });
        }
    }
    // The schema declares its foreign keys (every row belongs to a run), but this connection does not
    // enforce them on each insert: every write checks, in its own transaction, that its run exists
    // before it inserts anything, and no run is ever deleted. Enforcing them again cost about 6 % of a
    // step's instructions (a lookup in `runs` per journal row). `PRAGMA foreign_key_check` finds no
    // violation after the conformance suite (`tests/store_conformance.rs`).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = OFF;",
        options.durability.pragma()
    ))
    .during("setting pragmas")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).during("opening the reader")?;
    conn.busy_timeout(busy_timeout)
        .during("setting the busy timeout")?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .during("setting pragmas")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens `path` read-only for [`SqliteStore::open_read_only`]: checks it is a current journal, never
/// writes to it (no migration, no ownership lock).
fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    const OP: &str = "opening the journal read-only";
    // SQLite reports a missing file as "unable to open database file": say which one, and why.
    if let Err(error) = std::fs::metadata(path) {
        return Err(StoreError::Io {
            operation: OP,
            message: format!("{}: {error}", path.display()),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).during(OP)?;
    conn.busy_timeout(busy_timeout)
        .during("setting the busy timeout")?;
    match schema::check(&conn, &path.display().to_string())? {
        schema::Found::Current => {}
        schema::Found::Older(found) => {
            return Err(StoreError::SchemaTooOld {
                found,
                supported: schema::SCHEMA_VERSION,
            });
        }
    }
    conn.execute_batch("PRAGMA query_only = ON;")
        .during("setting pragmas")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        self.write("creating a run", move |conn| {
            queries::create_run(conn, &run)
        })
        .await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.write("committing journal events", move |conn| {
            queries::commit(conn, &commit)
        })
        .await
    }

    async fn rewind(&self, rewind: Rewind) -> Result<RewindOutcome, StoreError> {
        self.write("rewinding a run", move |conn| repair::rewind(conn, &rewind))
            .await
    }

    async fn fork_run(&self, fork: ForkRun) -> Result<CreateOutcome, StoreError> {
        self.write("forking a run", move |conn| repair::fork_run(conn, &fork))
            .await
    }

    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.read(move |conn| queries::run(conn, &workflow_id))
            .await
    }

    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.read(move |conn| queries::history(conn, &workflow_id))
            .await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.read(queries::unfinished_runs).await
    }

    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        let workflow_id = workflow_id.to_string();
        let name = name.to_string();
        self.write("sending a signal", move |conn| {
            queries::send_signal(conn, &workflow_id, &name, &payload)
        })
        .await
    }

    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.read(move |conn| queries::pending_signals(conn, &workflow_id))
            .await
    }

    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let workflow_id = workflow_id.to_string();
        let reason = reason.to_string();
        self.write("requesting a cancellation", move |conn| {
            queries::request_cancel(conn, &workflow_id, &reason)
        })
        .await
    }

    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
        self.write("applying an operator action", move |conn| {
            queries::operate(conn, &write)
        })
        .await
    }

    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let workflow_id = workflow_id.to_string();
        let key = key.to_string();
        self.read(move |conn| queries::value(conn, &workflow_id, &key))
            .await
    }

    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.read(move |conn| queries::archived_runs(conn, &workflow_id))
            .await
    }

    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError> {
        self.read(move |conn| queries::due_wakeups(conn, before_ms, limit))
            .await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let query = query.clone();
        self.read(move |conn| queries::list_runs(conn, &query))
            .await
    }

    async fn count_runs(&self, query: &RunQuery) -> Result<StatusCounts, StoreError> {
        let query = query.clone();
        self.read(move |conn| queries::count_runs(conn, &query))
            .await
    }

    fn claim_engine(&self) -> Result<Option<EngineClaim>, StoreError> {
        match &self.owner {
            // In memory or read-only: nothing to share.
            None => Ok(None),
            Some(owner) => match owner.upgrade() {
                Some(owner) => owner.claim_engine().map(Some),
                None => Err(StoreError::Closed),
            },
        }
    }
}

#[cfg(test)]
mod tests;
