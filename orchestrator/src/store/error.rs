//! Errors of journal stores.

/// A journal store operation failed.
///
/// [`StoreError::is_retryable`] tells whether trying the same operation again may succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but is not an SQLite database.
    #[error("`{path}` is not an SQLite database (or is encrypted or corrupted beyond its header)")]
    NotADatabase {
        /// The file's path.
        path: String,
    },
    /// The file is an SQLite database that belongs to another application.
    #[error(
        "`{path}` is an SQLite database of another application (application_id {application_id:#x}, {tables} tables); refusing to touch it"
    )]
    ForeignDatabase {
        /// The file's path.
        path: String,
        /// The `PRAGMA application_id` found.
        application_id: i64,
        /// How many tables the file already has.
        tables: i64,
    },
    /// Another process already has this journal open (one process per SQLite journal; use the
    /// PostgreSQL store for several processes).
    #[error(
        "`{path}` is already open in another process ({owner}); one process per SQLite journal"
    )]
    AlreadyOpen {
        /// The journal's path.
        path: String,
        /// What the owner recorded about itself (its pid).
        owner: String,
    },
    /// Another engine of this process already drives this journal. Engines are cheap to clone (clones
    /// share one engine): use that engine, or shut it down before starting another. Read-only stores
    /// and plain stores (no engine) may still be opened beside it.
    #[error(
        "`{path}` is already driven by another engine of this process; clone that engine instead, or shut it down first"
    )]
    EngineRunning {
        /// The journal's path.
        path: String,
    },
    /// The journal was written by a newer orchestrator whose schema this build does not know.
    #[error(
        "journal schema version {found} is newer than this build supports (up to {supported}); upgrade orchestrator"
    )]
    SchemaTooNew {
        /// The schema version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The journal's events are written in an event format newer than this build reads (`meta`
    /// `format_version`, see `docs/journal.md`): its runs would not replay. Nothing was written.
    #[error(
        "journal event format version {found} is newer than this build reads (up to {supported}); upgrade orchestrator"
    )]
    FormatTooNew {
        /// The event format version recorded in the journal.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// A read-only store found a journal whose schema is older than this build's, or no journal schema
    /// at all (an empty database): it cannot migrate it. Opening the file read-write once (starting an
    /// engine on it) migrates it.
    #[error(
        "journal schema version {found} is older than this build's ({supported}) and a read-only store cannot migrate it; open it read-write once"
    )]
    SchemaTooOld {
        /// The schema version in the file (0: no journal schema).
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// The store was opened read-only (`SqliteStore::open_read_only`) and refuses every write;
    /// nothing was written. Not retryable: the same store refuses it again.
    #[error("the store is read-only: {operation} needs a read-write store")]
    ReadOnly {
        /// The write that was refused.
        operation: &'static str,
    },
    /// The database stayed locked by another connection past the busy timeout.
    #[error("database busy or locked during {operation}")]
    Busy {
        /// What the store was doing.
        operation: &'static str,
    },
    /// The database server refused a new connection because it has as many as it allows
    /// (PostgreSQL's `max_connections`, or a role's or database's connection limit; SQLSTATE 53300).
    /// Retryable (a connection may free up), but if it persists the nodes together ask for more
    /// connections than the server allows: lower each store's pool size
    /// (`PostgresOptions::pool_size`) or raise the server's `max_connections`.
    #[error(
        "too many database connections during {operation}: {message}; lower the pool size \
         (PostgresOptions::pool_size) or raise the server's max_connections"
    )]
    TooManyConnections {
        /// What the store was doing.
        operation: &'static str,
        /// The database's message.
        message: String,
    },
    /// The disk (or a quota) is full.
    #[error("disk full during {operation}")]
    DiskFull {
        /// What the store was doing.
        operation: &'static str,
    },
    /// The database file is damaged.
    #[error("database corrupt during {operation}: {message}")]
    Corrupt {
        /// What the store was doing.
        operation: &'static str,
        /// The database's message.
        message: String,
    },
    /// The journal's path cannot be opened: its directory is missing or access is denied. Not
    /// retryable: fix the path or its permissions.
    #[error("cannot open the journal `{path}`: {problem}")]
    Inaccessible {
        /// The journal's path.
        path: String,
        /// What is wrong with it.
        problem: AccessProblem,
    },
    /// An operating-system I/O error.
    #[error("I/O error during {operation}: {message}")]
    Io {
        /// What the store was doing.
        operation: &'static str,
        /// The database's message.
        message: String,
    },
    /// The write contradicts what is stored (a step completed twice, a signal consumed twice, a run
    /// finished twice); nothing was written.
    #[error("conflict during {operation}: {message}")]
    Conflict {
        /// What the store was doing.
        operation: &'static str,
        /// What conflicted.
        message: String,
    },
    /// The writer's lease on the run is gone: another node took the run over (its epoch is newer).
    /// Nothing was written; the writer must stop driving the run.
    #[error("stale lease on `{workflow_id}`: epoch {epoch} of node `{node}` no longer owns it")]
    StaleLease {
        /// The run.
        workflow_id: String,
        /// The node whose write was rejected.
        node: String,
        /// The epoch it wrote under.
        epoch: i64,
    },
    /// A stored row does not have the expected shape.
    #[error("malformed row during {operation}: {message}")]
    MalformedRow {
        /// What the store was doing.
        operation: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Any other backend failure.
    #[error("store backend error during {operation}: {message}")]
    Backend {
        /// What the store was doing.
        operation: &'static str,
        /// The backend's message.
        message: String,
    },
    /// The store has been shut down.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    /// Whether the same operation may succeed if tried again (busy, transient I/O).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Busy { .. } | StoreError::Io { .. } | StoreError::TooManyConnections { .. }
        )
    }
}

/// Why a journal's path cannot be opened ([`StoreError::Inaccessible`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessProblem {
    /// The process may not read or write the file or its directory (or the file system is read-only).
    PermissionDenied,
    /// The directory that should hold the journal does not exist (or is not a directory).
    MissingDirectory,
}

impl std::fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccessProblem::PermissionDenied => "permission denied",
            AccessProblem::MissingDirectory => "its directory does not exist",
        })
    }
}
