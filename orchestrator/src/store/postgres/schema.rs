//! The PostgreSQL journal schema, its version, and its migrations.
//!
//! Every table lives in one PostgreSQL schema (`public` unless configured), so several journals (or a
//! journal and an application's own tables) can share a database. The schema's version is the
//! `schema_version` row of its `orchestrator_meta` table. Migrations run in one transaction under an
//! advisory lock, so nodes starting together migrate once; a schema newer than this build is refused.

use deadpool_postgres::Object;

use super::errors::Context;
use crate::store::StoreError;

/// The first key of the advisory locks the store takes ("ORCH"); the second is the schema's hash.
pub(super) const LOCK_CLASS_MIGRATION: i32 = 0x4F52_4348;
/// The advisory lock that orders signal inbox ids by commit order ("ORCI").
pub(super) const LOCK_CLASS_SIGNALS: i32 = 0x4F52_4349;

/// The tables of a journal, to recognise a schema that holds someone else's tables of these names.
const TABLES: &[&str] = &[
    "runs",
    "events",
    "signals",
    "run_values",
    "archived_runs",
    "archived_events",
    "wakeups",
];

/// Migrations, in order: `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`. `{s}` stands
/// for the quoted schema name.
const MIGRATIONS: &[&str] = &[
    // Version 1: the journal as of SQLite schema 3, plus lease columns.
    r#"
    CREATE TABLE {s}.runs (
        workflow_id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        workflow_name        TEXT    NOT NULL,
        state                INTEGER NOT NULL,
        input                BYTEA   NOT NULL,
        output               BYTEA,
        error                BYTEA,
        created_at_ms        BIGINT  NOT NULL,
        updated_at_ms        BIGINT  NOT NULL,
        run_no               BIGINT  NOT NULL DEFAULT 0,
        parent_id            TEXT COLLATE "C",
        cancel_reason        TEXT,
        deadline_ms          BIGINT,
        execution_timeout_ms BIGINT,
        owner                TEXT,
        lease_epoch          BIGINT  NOT NULL DEFAULT 0,
        lease_expires_at_ms  BIGINT
    );
    CREATE INDEX runs_unfinished ON {s}.runs (created_at_ms, workflow_id) WHERE state IN (0, 3);
    CREATE INDEX runs_by_parent ON {s}.runs (parent_id) WHERE parent_id IS NOT NULL;
    CREATE INDEX runs_by_deadline ON {s}.runs (deadline_ms)
        WHERE deadline_ms IS NOT NULL AND state IN (0, 3);
    CREATE INDEX runs_by_name ON {s}.runs (workflow_name, workflow_id);
    CREATE INDEX runs_claimable ON {s}.runs (lease_expires_at_ms NULLS FIRST, workflow_id)
        WHERE state = 0;
    CREATE INDEX runs_by_owner ON {s}.runs (owner) WHERE owner IS NOT NULL;

    CREATE TABLE {s}.events (
        seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        workflow_id    TEXT COLLATE "C" NOT NULL REFERENCES {s}.runs (workflow_id),
        step           BIGINT  NOT NULL,
        kind           INTEGER NOT NULL,
        completion     BOOLEAN NOT NULL,
        payload        BYTEA   NOT NULL,
        recorded_at_ms BIGINT  NOT NULL
    );
    CREATE INDEX events_by_run ON {s}.events (workflow_id, seq);
    CREATE UNIQUE INDEX events_one_completion_per_step ON {s}.events (workflow_id, step)
        WHERE completion;

    CREATE TABLE {s}.signals (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        workflow_id      TEXT COLLATE "C" NOT NULL REFERENCES {s}.runs (workflow_id),
        name             TEXT   NOT NULL,
        payload          BYTEA  NOT NULL,
        sent_at_ms       BIGINT NOT NULL,
        consumed_by_step BIGINT
    );
    CREATE INDEX signals_pending ON {s}.signals (workflow_id, id) WHERE consumed_by_step IS NULL;

    CREATE TABLE {s}.run_values (
        workflow_id   TEXT COLLATE "C" NOT NULL REFERENCES {s}.runs (workflow_id),
        key           TEXT   NOT NULL,
        value         BYTEA  NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (workflow_id, key)
    );

    CREATE TABLE {s}.archived_runs (
        workflow_id   TEXT COLLATE "C" NOT NULL REFERENCES {s}.runs (workflow_id),
        run_no        BIGINT NOT NULL,
        workflow_name TEXT   NOT NULL,
        input         BYTEA  NOT NULL,
        event_count   BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        ended_at_ms   BIGINT NOT NULL,
        PRIMARY KEY (workflow_id, run_no)
    );
    CREATE TABLE {s}.archived_events (
        workflow_id    TEXT COLLATE "C" NOT NULL,
        run_no         BIGINT  NOT NULL,
        seq            BIGINT  NOT NULL,
        step           BIGINT  NOT NULL,
        kind           INTEGER NOT NULL,
        completion     BOOLEAN NOT NULL,
        payload        BYTEA   NOT NULL,
        recorded_at_ms BIGINT  NOT NULL,
        PRIMARY KEY (workflow_id, run_no, seq)
    );

    CREATE TABLE {s}.wakeups (
        workflow_id TEXT COLLATE "C" NOT NULL REFERENCES {s}.runs (workflow_id),
        step        BIGINT NOT NULL,
        at_ms       BIGINT NOT NULL,
        PRIMARY KEY (workflow_id, step)
    );
    CREATE INDEX wakeups_by_time ON {s}.wakeups (at_ms);
    "#,
    // Version 2 (SQLite schema 5): operator pauses on the run's row; the searchable error text; the
    // terminated state (6).
    r#"
    ALTER TABLE {s}.runs ADD COLUMN paused_by TEXT;
    ALTER TABLE {s}.runs ADD COLUMN pause_reason TEXT;
    ALTER TABLE {s}.runs ADD COLUMN paused_at_ms BIGINT;
    ALTER TABLE {s}.runs ADD COLUMN error_text TEXT;
    CREATE INDEX runs_paused ON {s}.runs (workflow_id) WHERE paused_at_ms IS NOT NULL;
    "#,
];

/// The newest schema version this build knows.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Whether `name` may be used as a schema name: `^[a-z_][a-z0-9_]*$`, at most 63 bytes.
pub(super) fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= 63
        && (first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A stable 32-bit hash of the schema name (FNV-1a), the second key of the store's advisory locks, so
/// journals in different schemas of one database do not contend.
pub(super) fn schema_lock_key(schema: &str) -> i32 {
    let mut hash: u32 = 0x811C_9DC5;
    for byte in schema.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Checks that `schema` holds an orchestrator journal (or nothing of ours) no newer than this build,
/// then creates or migrates it. `quoted` is the validated, quoted schema name.
pub(super) async fn prepare(
    client: &mut Object,
    schema: &str,
    quoted: &str,
) -> Result<(), StoreError> {
    // Fast path: an up-to-date journal needs no lock and no transaction.
    if let Some(version) = read_version(client, schema, quoted).await? {
        check_not_newer(version)?;
        if version == SCHEMA_VERSION && format_is_current(client, quoted).await? {
            return Ok(());
        }
    }
    const OP: &str = "migrating the PostgreSQL schema";
    let tx = client.transaction().await.during(OP)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_CLASS_MIGRATION, &schema_lock_key(schema)],
    )
    .await
    .during(OP)?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .during(OP)?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .await
            .during("creating the PostgreSQL schema")?;
    }
    // Another node may have migrated while we waited for the lock: read the version again.
    let version = match read_version(&tx, schema, quoted).await? {
        Some(version) => version,
        None => {
            let names: Vec<String> = TABLES.iter().map(|name| (*name).to_string()).collect();
            let clashing: i64 = tx
                .query_one(
                    "SELECT count(*) FROM pg_catalog.pg_tables \
                     WHERE schemaname = $1 AND tablename = ANY($2)",
                    &[&schema, &names],
                )
                .await
                .during(OP)?
                .try_get(0)
                .during(OP)?;
            if clashing > 0 {
                return Err(StoreError::ForeignDatabase {
                    path: format!("PostgreSQL schema `{schema}`"),
                    application_id: 0,
                    tables: clashing,
                });
            }
            tx.batch_execute(&format!(
                "CREATE TABLE {quoted}.orchestrator_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)"
            ))
            .await
            .during(OP)?;
            0
        }
    };
    check_not_newer(version)?;
    let start = usize::try_from(version).unwrap_or(0);
    for migration in MIGRATIONS.iter().skip(start) {
        tx.batch_execute(&migration.replace("{s}", quoted))
            .await
            .during(OP)?;
    }
    // A current schema can still carry an older event format (format 2 → 3 kept the schema): the
    // upsert below raises it. Never lower it.
    if version > 0 {
        format_is_current(&tx, quoted).await?;
    }
    let upsert = format!(
        "INSERT INTO {quoted}.orchestrator_meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    );
    tx.execute(&upsert, &[&"schema_version", &SCHEMA_VERSION.to_string()])
        .await
        .during(OP)?;
    tx.execute(
        &upsert,
        &[
            &"format_version",
            &crate::journal::FORMAT_VERSION.to_string(),
        ],
    )
    .await
    .during(OP)?;
    tx.commit().await.during(OP)?;
    Ok(())
}

/// Whether `orchestrator_meta` records this build's event format: `false` if an older one (or none),
/// [`StoreError::FormatTooNew`] if a newer one. Call only when the meta table exists.
async fn format_is_current<C>(client: &C, quoted: &str) -> Result<bool, StoreError>
where
    C: deadpool_postgres::GenericClient,
{
    const OP: &str = "reading the format version";
    let row = client
        .query_opt(
            &format!("SELECT value FROM {quoted}.orchestrator_meta WHERE key = 'format_version'"),
            &[],
        )
        .await
        .during(OP)?;
    let found = match row {
        Some(row) => row.try_get::<_, String>(0).during(OP)?.parse::<u32>().ok(),
        None => None,
    };
    match found {
        Some(found) if found > crate::journal::FORMAT_VERSION => Err(StoreError::FormatTooNew {
            found,
            supported: crate::journal::FORMAT_VERSION,
        }),
        Some(found) => Ok(found == crate::journal::FORMAT_VERSION),
        None => Ok(false),
    }
}

fn check_not_newer(version: i64) -> Result<(), StoreError> {
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The schema version recorded in `orchestrator_meta`, or `None` if the table does not exist.
async fn read_version<C>(client: &C, schema: &str, quoted: &str) -> Result<Option<i64>, StoreError>
where
    C: deadpool_postgres::GenericClient,
{
    const OP: &str = "reading the schema version";
    let table = format!("{schema}.orchestrator_meta");
    let has_meta = client
        .query_one(
            "SELECT to_regclass(quote_ident($1) || '.orchestrator_meta') IS NOT NULL",
            &[&schema],
        )
        .await
        .during(OP)?
        .try_get::<_, bool>(0)
        .during(OP)?;
    if !has_meta {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT value FROM {quoted}.orchestrator_meta WHERE key = 'schema_version'"),
            &[],
        )
        .await
        .during(OP)?;
    let Some(row) = row else {
        return Ok(Some(0));
    };
    let value: String = row.try_get(0).during(OP)?;
    value
        .parse::<i64>()
        .map(Some)
        .map_err(|_| StoreError::MalformedRow {
            operation: OP,
            message: format!("`{table}` has schema_version `{value}`"),
        })
}
