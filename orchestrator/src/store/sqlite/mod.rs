//! The SQLite journal store: one file, WAL mode, one writer thread.
//!
//! All statements run on a dedicated thread that owns the connection, so async callers never block a
//! runtime worker on disk I/O. Every write is one `BEGIN IMMEDIATE` transaction; statements are
//! prepared once and cached; parameters are always bound.

mod errors;
mod queries;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use errors::Context;

use super::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, NewRun, RunRecord, SignalOutcome,
    SignalRecord, Store, StoreError, StoredEvent,
};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

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
    jobs: mpsc::Sender<Job>,
}

/// Where and how to open an SQLite journal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The database file; `None` for a private in-memory database.
    pub path: Option<PathBuf>,
    /// How long a write waits for another connection's lock before failing with `Busy`.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            path: None,
            busy_timeout: Duration::from_secs(5),
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
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("orchestrator-sqlite".to_string())
            .spawn(move || {
                let mut conn = match open_connection(&options) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                while let Ok(job) = receiver.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|error| StoreError::Io {
                operation: "starting the SQLite thread",
                message: error.to_string(),
            })?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(SqliteStore { jobs })
    }

    /// Runs `work` on the connection's thread.
    async fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, response) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        response.await.map_err(|_| StoreError::Closed)?
    }
}

fn open_connection(options: &SqliteOptions) -> Result<Connection, StoreError> {
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
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .during("setting pragmas")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        self.call(move |conn| queries::create_run(conn, &run)).await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.call(move |conn| queries::commit(conn, &commit)).await
    }

    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.call(move |conn| queries::run(conn, &workflow_id))
            .await
    }

    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.call(move |conn| queries::history(conn, &workflow_id))
            .await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.call(queries::unfinished_runs).await
    }

    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        let workflow_id = workflow_id.to_string();
        let name = name.to_string();
        self.call(move |conn| queries::send_signal(conn, &workflow_id, &name, payload))
            .await
    }

    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.call(move |conn| queries::pending_signals(conn, &workflow_id))
            .await
    }

    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let workflow_id = workflow_id.to_string();
        let reason = reason.to_string();
        self.call(move |conn| queries::request_cancel(conn, &workflow_id, &reason))
            .await
    }

    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let workflow_id = workflow_id.to_string();
        let key = key.to_string();
        self.call(move |conn| queries::value(conn, &workflow_id, &key))
            .await
    }

    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        let workflow_id = workflow_id.to_string();
        self.call(move |conn| queries::archived_runs(conn, &workflow_id))
            .await
    }
}
