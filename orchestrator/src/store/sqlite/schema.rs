//! The SQLite journal schema, its version, and its migrations.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::errors::Context;
use crate::store::StoreError;

/// `PRAGMA application_id` of an orchestrator journal: "ORCH".
pub(super) const APPLICATION_ID: i64 = 0x4F52_4348;

/// Migrations, in order: `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1: runs, events, signals, meta.
    r#"
    CREATE TABLE runs (
        workflow_id   TEXT    NOT NULL PRIMARY KEY,
        workflow_name TEXT    NOT NULL,
        state         INTEGER NOT NULL,
        input         BLOB    NOT NULL,
        output        BLOB,
        error         BLOB,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE INDEX runs_unfinished ON runs(state) WHERE state IN (0, 3);
    CREATE TABLE events (
        seq            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        workflow_id    TEXT    NOT NULL REFERENCES runs(workflow_id),
        step           INTEGER NOT NULL,
        kind           INTEGER NOT NULL,
        completion     INTEGER NOT NULL,
        payload        BLOB    NOT NULL,
        recorded_at_ms INTEGER NOT NULL
    );
    CREATE INDEX events_by_run ON events(workflow_id, seq);
    CREATE UNIQUE INDEX events_one_completion_per_step
        ON events(workflow_id, step) WHERE completion = 1;
    CREATE TABLE signals (
        id               INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        workflow_id      TEXT    NOT NULL REFERENCES runs(workflow_id),
        name             TEXT    NOT NULL,
        payload          BLOB    NOT NULL,
        sent_at_ms       INTEGER NOT NULL,
        consumed_by_step INTEGER
    );
    CREATE INDEX signals_pending ON signals(workflow_id, id) WHERE consumed_by_step IS NULL;
    CREATE TABLE meta (
        key   TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // Version 2: cancellation, child runs, execution deadlines, published values, continue-as-new.
    r#"
    ALTER TABLE runs ADD COLUMN run_no INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN parent_id TEXT;
    ALTER TABLE runs ADD COLUMN cancel_reason TEXT;
    ALTER TABLE runs ADD COLUMN deadline_ms INTEGER;
    CREATE INDEX runs_by_parent ON runs(parent_id) WHERE parent_id IS NOT NULL;
    CREATE TABLE run_values (
        workflow_id   TEXT    NOT NULL REFERENCES runs(workflow_id),
        key           TEXT    NOT NULL,
        value         BLOB    NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, key)
    );
    CREATE TABLE archived_runs (
        workflow_id   TEXT    NOT NULL REFERENCES runs(workflow_id),
        run_no        INTEGER NOT NULL,
        workflow_name TEXT    NOT NULL,
        input         BLOB    NOT NULL,
        event_count   INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        ended_at_ms   INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, run_no)
    );
    CREATE TABLE archived_events (
        workflow_id    TEXT    NOT NULL,
        run_no         INTEGER NOT NULL,
        seq            INTEGER NOT NULL,
        step           INTEGER NOT NULL,
        kind           INTEGER NOT NULL,
        completion     INTEGER NOT NULL,
        payload        BLOB    NOT NULL,
        recorded_at_ms INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, run_no, seq)
    );
    "#,
    // Version 3: the wake-up index, so runs evicted from memory are woken at their timers.
    r#"
    CREATE TABLE wakeups (
        workflow_id TEXT    NOT NULL REFERENCES runs(workflow_id),
        step        INTEGER NOT NULL,
        at_ms       INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, step)
    );
    CREATE INDEX wakeups_by_time ON wakeups(at_ms);
    CREATE INDEX runs_by_deadline ON runs(deadline_ms) WHERE deadline_ms IS NOT NULL AND state IN (0, 3);
    ALTER TABLE runs ADD COLUMN execution_timeout_ms INTEGER;
    "#,
    // Version 4: `events.seq` without AUTOINCREMENT, saving one page write (sqlite_sequence) per
    // commit. A run's events still get increasing `seq`s: a new rowid is one more than the largest
    // present, which includes the run's own earlier events.
    r#"
    CREATE TABLE events_v4 (
        seq            INTEGER NOT NULL PRIMARY KEY,
        workflow_id    TEXT    NOT NULL REFERENCES runs(workflow_id),
        step           INTEGER NOT NULL,
        kind           INTEGER NOT NULL,
        completion     INTEGER NOT NULL,
        payload        BLOB    NOT NULL,
        recorded_at_ms INTEGER NOT NULL
    );
    INSERT INTO events_v4 (seq, workflow_id, step, kind, completion, payload, recorded_at_ms)
        SELECT seq, workflow_id, step, kind, completion, payload, recorded_at_ms FROM events;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE INDEX events_by_run ON events(workflow_id, seq);
    CREATE UNIQUE INDEX events_one_completion_per_step
        ON events(workflow_id, step) WHERE completion = 1;
    "#,
    // Version 5: operator pauses (who, why, when) on the run's row; the searchable text of a run's
    // error (for `RunQuery::error_contains`); the terminated state (6) needs no column.
    r#"
    ALTER TABLE runs ADD COLUMN paused_by TEXT;
    ALTER TABLE runs ADD COLUMN pause_reason TEXT;
    ALTER TABLE runs ADD COLUMN paused_at_ms INTEGER;
    ALTER TABLE runs ADD COLUMN error_text TEXT;
    CREATE INDEX runs_paused ON runs(workflow_id) WHERE paused_at_ms IS NOT NULL;
    "#,
];

/// The newest schema version this build knows.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// What [`check`] found in a file that is an orchestrator journal (or an empty database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// The schema is this build's.
    Current,
    /// The schema is older (0: an empty database): it needs migrations.
    Older(i64),
}

/// Checks, without writing anything, that `conn` is an orchestrator journal (or an empty database)
/// no newer than this build.
pub(super) fn check(conn: &Connection, path: &str) -> Result<Found, StoreError> {
    // The first read of the header: a file that is not a database fails here.
    let application_id: i64 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => StoreError::NotADatabase {
                path: path.to_string(),
            },
            _ => super::errors::classify("reading the database header", error),
        })?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .during("reading the schema version")?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |row| row.get(0),
        )
        .during("listing tables")?;
    let fresh = application_id == 0 && version == 0 && tables == 0;
    if !fresh && application_id != APPLICATION_ID {
        return Err(StoreError::ForeignDatabase {
            path: path.to_string(),
            application_id,
            tables,
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(if version == SCHEMA_VERSION {
        Found::Current
    } else {
        Found::Older(version)
    })
}

/// Whether the journal's `meta` row records this build's event format: `false` if it records an older
/// one (or none), [`StoreError::FormatTooNew`] if a newer one. Call only on a current schema.
fn format_is_current(conn: &Connection) -> Result<bool, StoreError> {
    let recorded: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'format_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .during("reading the format version")?;
    let found = recorded.and_then(|value| value.parse::<u32>().ok());
    match found {
        Some(found) if found > crate::journal::FORMAT_VERSION => Err(StoreError::FormatTooNew {
            found,
            supported: crate::journal::FORMAT_VERSION,
        }),
        Some(found) => Ok(found == crate::journal::FORMAT_VERSION),
        None => Ok(false),
    }
}

/// Checks that `conn` is an orchestrator journal (or an empty database) no newer than this build, then
/// brings its schema up to date.
pub(super) fn prepare(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    if check(conn, path)? == Found::Current && format_is_current(conn)? {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .during("starting the migration")?;
    // Another process may have migrated while we waited for the lock: read the version again.
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .during("reading the schema version")?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(version).unwrap_or(0);
    for migration in MIGRATIONS.iter().skip(start) {
        tx.execute_batch(migration).during("migrating the schema")?;
    }
    // A current schema can still carry an older event format (format 2 → 3 kept schema 4): the
    // stamp below raises it. Never lower it.
    format_is_current(&tx)?;
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .during("stamping the schema version")?;
    tx.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('format_version', ?1)",
        [crate::journal::FORMAT_VERSION.to_string()],
    )
    .during("recording the format version")?;
    tx.commit().during("committing the migration")?;
    Ok(())
}
