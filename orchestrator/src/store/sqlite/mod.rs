//! The SQLite journal store: one file, WAL mode, a writer thread that group-commits, a reader thread.
//!
//! All statements run on dedicated threads that own their connections, so async callers never block a
//! runtime worker on disk I/O. Writes are group-committed (see `writer.rs`): one `BEGIN IMMEDIATE`
//! transaction and one fsync per batch, one savepoint per write. Reads use a second connection. Statements
//! are prepared once and cached; parameters are always bound.

mod errors;
mod ownership;
mod queries;
mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use errors::Context;
use writer::{TypedWrite, WriterJob};

use super::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, NewRun, RunPage, RunQuery, RunRecord,
    SignalOutcome, SignalRecord, Store, StoreError, StoredEvent, Wakeup,
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
    writer: mpsc::Sender<WriterJob>,
    reader: Option<mpsc::Sender<reader::ReadJob>>,
}

/// Where and how to open an SQLite journal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The database file; `None` for a private in-memory database.
    pub path: Option<PathBuf>,
    /// How long a write waits for another connection's lock before failing with `Busy`.
    pub busy_timeout: Duration,
    /// What a commit promises (see [`Durability`]).
    pub durability: Durability,
    /// How long the writer waits for more writes before committing a batch. Zero (the default) commits
    /// what has queued up while the previous commit was syncing, which batches well under load without
    /// delaying a lone write.
    pub group_commit_window: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            path: None,
            busy_timeout: Duration::from_secs(5),
            durability: Durability::Full,
            group_commit_window: Duration::ZERO,
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

    /// Opens a journal with explicit options.
    pub async fn open_with(options: SqliteOptions) -> Result<Self, StoreError> {
        let (writer, jobs) = mpsc::channel::<WriterJob>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let owner = match &options.path {
            Some(path) => Some(ownership::acquire(path)?),
            None => None,
        };
        let writer_options = options.clone();
        spawn_thread("orchestrator-sqlite-writer", move || {
            // Ownership lasts as long as the writer: it ends when the last store clone is dropped.
            let _owner = owner;
            match open_writer(&writer_options) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    writer::run(conn, jobs, writer_options.group_commit_window);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            }
        })?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        let reader = match &options.path {
            None => None,
            Some(path) => {
                let (reader, reads) = mpsc::channel::<reader::ReadJob>();
                let (ready_tx, ready_rx) = oneshot::channel();
                let path = path.clone();
                let busy_timeout = options.busy_timeout;
                spawn_thread("orchestrator-sqlite-reader", move || {
                    match open_reader(&path, busy_timeout) {
                        Ok(conn) => {
                            let _ = ready_tx.send(Ok(()));
                            reader::run(conn, reads);
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                        }
                    }
                })?;
                ready_rx.await.map_err(|_| StoreError::Closed)??;
                Some(reader)
            }
        };
        Ok(SqliteStore { writer, reader })
    }

    /// Queues a write for the next group commit and waits until it is durable.
    async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, response) = oneshot::channel();
        let job = WriterJob::Write(Box::new(TypedWrite::new(work, reply)));
        self.writer.send(job).map_err(|_| StoreError::Closed)?;
        response.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on the reader connection (or the writer's, in memory).
    async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (reply, response) = oneshot::channel();
        let job = Box::new(move |conn: &Connection| {
            let _ = reply.send(work(conn));
        });
        match &self.reader {
            Some(reader) => reader.send(job).map_err(|_| StoreError::Closed)?,
            None => self
                .writer
                .send(WriterJob::Read(job))
                .map_err(|_| StoreError::Closed)?,
        }
        response.await.map_err(|_| StoreError::Closed)?
    }
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
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
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
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

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        self.write(move |conn| queries::create_run(conn, &run))
            .await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.write(move |conn| queries::commit(conn, &commit)).await
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
        self.write(move |conn| queries::send_signal(conn, &workflow_id, &name, payload))
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
        self.write(move |conn| queries::request_cancel(conn, &workflow_id, &reason))
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
}
