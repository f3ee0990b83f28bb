//! The SQL of the PostgreSQL store. Every value is a bound parameter; the only text spliced into
//! statements is the schema name, validated against `^[a-z_][a-z0-9_]*$` and quoted, once, when the
//! store connects. Statements are prepared once per connection and cached.
//!
//! Writes that touch a run lock its row first (`SELECT ... FOR UPDATE`), so the writes of one run are
//! serialized: events get their `seq` in commit order, a status transition sees the state it changes,
//! and a takeover (which increments the lease epoch under the same lock) cannot interleave with a
//! fenced commit. Lease times come from the database's clock, journal timestamps from the caller's
//! (like the SQLite store: the engine's timers and deadlines are computed on its clock too).

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::errors::Context;
use super::schema::{LOCK_CLASS_SIGNALS, schema_lock_key};
use crate::clock::now_ms;
use crate::store::{
    ArchivedRun, CancelOutcome, Claim, Commit, CreateOutcome, LeaseHolder, NewRun, OperatorChange,
    OperatorOutcome, OperatorWrite, PauseInfo, RunPage, RunQuery, RunRecord, RunState,
    SignalOutcome, SignalRecord, StatusChange, StatusCounts, StoreError, StoredEvent, Wakeup,
};

/// Now on the database server, in ms since the Unix epoch: the clock every lease is measured on, so
/// nodes whose clocks disagree still agree on who holds a lease.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

const RUN_COLUMNS: &str = "workflow_id, workflow_name, state, input, output, error, created_at_ms, \
    updated_at_ms, run_no, parent_id, cancel_reason, deadline_ms, execution_timeout_ms, paused_by, \
    pause_reason, paused_at_ms";

/// Declares the statements: each a template in which `{s}` is the quoted schema, `{cols}` the run
/// columns and `{now}` the database clock.
macro_rules! statements {
    ($($(#[doc = $doc:literal])* $name:ident = $text:expr;)*) => {
        /// The store's statements, with the schema name filled in.
        #[derive(Debug)]
        pub(super) struct Sql {
            /// The schema's name (unquoted), for advisory lock keys.
            pub(super) schema: String,
            /// The quoted schema name, for statements built per call.
            pub(super) quoted: String,
            $($(#[doc = $doc])* pub(super) $name: String,)*
        }

        impl Sql {
            /// Fills the templates in for the validated schema `schema`.
            pub(super) fn new(schema: &str) -> Self {
                let quoted = format!("\"{schema}\"");
                let fill = |text: &str| {
                    text.replace("{s}", &quoted)
                        .replace("{cols}", RUN_COLUMNS)
                        .replace("{now}", DB_NOW)
                };
                Sql {
                    schema: schema.to_string(),
                    $($name: fill($text),)*
                    quoted,
                }
            }
        }
    };
}

statements! {
    /// A run by id.
    select_run = "SELECT {cols} FROM {s}.runs WHERE workflow_id = $1";
    /// Creates a run unless its id exists; owned from the start if `$8` (the node) is set, paused
    /// from the start if `$11` (who paused it) is.
    insert_run = "INSERT INTO {s}.runs (workflow_id, workflow_name, state, input, created_at_ms, \
        updated_at_ms, parent_id, deadline_ms, execution_timeout_ms, owner, lease_epoch, \
        lease_expires_at_ms, paused_by, pause_reason, paused_at_ms) VALUES ($1, $2, 0, $3, $4, $4, \
        $5, $6, $7, $8, $9, CASE WHEN $8::text IS NULL THEN NULL ELSE {now} + $10 END, $11, $12, \
        $13) ON CONFLICT (workflow_id) DO NOTHING";
    /// Locks a run's row for a commit.
    lock_run = "SELECT state, run_no, owner, lease_epoch FROM {s}.runs WHERE workflow_id = $1 FOR UPDATE";
    /// Appends an event.
    insert_event = "INSERT INTO {s}.events (workflow_id, step, kind, completion, payload, \
        recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";
    /// Sets a step's wake-up time.
    upsert_wakeup = "INSERT INTO {s}.wakeups (workflow_id, step, at_ms) VALUES ($1, $2, $3) \
        ON CONFLICT (workflow_id, step) DO UPDATE SET at_ms = excluded.at_ms";
    /// Removes a step's wake-up.
    delete_wakeup = "DELETE FROM {s}.wakeups WHERE workflow_id = $1 AND step = $2";
    /// Removes every wake-up of a run.
    delete_wakeups = "DELETE FROM {s}.wakeups WHERE workflow_id = $1";
    /// Consumes a signal, once.
    consume_signal = "UPDATE {s}.signals SET consumed_by_step = $1 \
        WHERE id = $2 AND workflow_id = $3 AND consumed_by_step IS NULL";
    /// Publishes a value.
    upsert_value = "INSERT INTO {s}.run_values (workflow_id, key, value, updated_at_ms) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (workflow_id, key) DO UPDATE \
        SET value = excluded.value, updated_at_ms = excluded.updated_at_ms";
    /// Changes a run's status if it is in one of the states `$6`.
    set_status = "UPDATE {s}.runs SET state = $1, output = $2, error = $3, updated_at_ms = $4, \
        error_text = $7 WHERE workflow_id = $5 AND state = ANY($6)";
    /// Archives the current (running) run of a workflow id.
    archive_run = "INSERT INTO {s}.archived_runs (workflow_id, run_no, workflow_name, input, \
        event_count, created_at_ms, ended_at_ms) \
        SELECT r.workflow_id, r.run_no, r.workflow_name, r.input, \
        (SELECT count(*) FROM {s}.events e WHERE e.workflow_id = r.workflow_id), \
        r.created_at_ms, $2 FROM {s}.runs r WHERE r.workflow_id = $1 AND r.state = 0";
    /// Archives the current run's events.
    archive_events = "INSERT INTO {s}.archived_events (workflow_id, run_no, seq, step, kind, \
        completion, payload, recorded_at_ms) \
        SELECT e.workflow_id, r.run_no, e.seq, e.step, e.kind, e.completion, e.payload, \
        e.recorded_at_ms FROM {s}.events e JOIN {s}.runs r ON r.workflow_id = e.workflow_id \
        WHERE e.workflow_id = $1";
    /// Deletes a run's events.
    delete_events = "DELETE FROM {s}.events WHERE workflow_id = $1";
    /// Turns a run's row into the next run of its workflow id.
    restart_run = "UPDATE {s}.runs SET run_no = run_no + 1, input = $2, output = NULL, \
        error = NULL, error_text = NULL, created_at_ms = $3, updated_at_ms = $3 WHERE workflow_id = $1 RETURNING run_no";
    /// Retention of archived events.
    prune_archived_events = "DELETE FROM {s}.archived_events WHERE workflow_id = $1 AND run_no < $2";
    /// Retention of archived runs.
    prune_archived_runs = "DELETE FROM {s}.archived_runs WHERE workflow_id = $1 AND run_no < $2";
    /// A run's events in commit order.
    history = "SELECT seq, step, kind, payload, recorded_at_ms FROM {s}.events WHERE workflow_id = $1 ORDER BY seq";
    /// A run's lease columns.
    lease_holder = "SELECT owner, lease_epoch, lease_expires_at_ms FROM {s}.runs WHERE workflow_id = $1";
    /// Running and parked runs.
    unfinished_runs = "SELECT {cols} FROM {s}.runs WHERE state IN (0, 3) \
        ORDER BY created_at_ms, workflow_id";
    /// A run's state, locked against a concurrent commit finishing it.
    share_run = "SELECT state FROM {s}.runs WHERE workflow_id = $1 FOR SHARE";
    /// A run's state, locked for an update.
    lock_run_state = "SELECT state FROM {s}.runs WHERE workflow_id = $1 FOR UPDATE";
    /// Serializes signal inserts so inbox ids grow in commit order.
    lock_signals = "SELECT pg_advisory_xact_lock($1, $2)";
    /// Adds a signal to an inbox.
    insert_signal = "INSERT INTO {s}.signals (workflow_id, name, payload, sent_at_ms) \
        VALUES ($1, $2, $3, $4) RETURNING id";
    /// A run's unconsumed signals.
    pending_signals = "SELECT id, name, payload FROM {s}.signals \
        WHERE workflow_id = $1 AND consumed_by_step IS NULL ORDER BY id";
    /// Records the first cancellation request.
    request_cancel = "UPDATE {s}.runs SET cancel_reason = $2, updated_at_ms = $3 \
        WHERE workflow_id = $1 AND cancel_reason IS NULL";
    /// A published value.
    value = "SELECT value FROM {s}.run_values WHERE workflow_id = $1 AND key = $2";
    /// The archived runs of a workflow id.
    archived_runs = "SELECT workflow_id, run_no, workflow_name, input, event_count, created_at_ms, \
        ended_at_ms FROM {s}.archived_runs WHERE workflow_id = $1 ORDER BY run_no";
    /// Runs due to be woken.
    due_wakeups = "SELECT workflow_id, MIN(at_ms) AS at_ms FROM ( \
          SELECT w.workflow_id, w.at_ms FROM {s}.wakeups w \
            JOIN {s}.runs r ON r.workflow_id = w.workflow_id \
            WHERE w.at_ms <= $1 AND r.state = 0 AND r.paused_at_ms IS NULL \
          UNION ALL \
          SELECT workflow_id, deadline_ms FROM {s}.runs \
            WHERE deadline_ms IS NOT NULL AND deadline_ms <= $1 AND state = 0 \
              AND paused_at_ms IS NULL \
        ) due GROUP BY workflow_id ORDER BY at_ms, workflow_id LIMIT $2";
    /// Claims unowned or expired running runs; concurrent claimers skip each other's rows.
    claim_runs = "WITH clock AS (SELECT {now} AS now_ms), \
        picked AS ( \
          SELECT r.workflow_id FROM {s}.runs r, clock \
          WHERE r.state = 0 AND r.paused_at_ms IS NULL \
            AND (r.owner IS NULL OR r.lease_expires_at_ms IS NULL \
            OR r.lease_expires_at_ms <= clock.now_ms) \
          ORDER BY r.lease_expires_at_ms NULLS FIRST, r.workflow_id \
          LIMIT $3 FOR UPDATE OF r SKIP LOCKED) \
        UPDATE {s}.runs r SET owner = $1, lease_epoch = r.lease_epoch + 1, \
          lease_expires_at_ms = clock.now_ms + $2 \
        FROM picked, clock WHERE r.workflow_id = picked.workflow_id \
        RETURNING r.workflow_id, r.lease_epoch";
    /// Extends the leases of one batch of a node's unfinished runs, expired or not: a run whose owner
    /// is still this node was claimed by nobody else (a claim changes the owner), so the node keeps it
    /// under the same epoch. `$3` is the last workflow id of the previous batch (NULL for the first), `$4` the batch size.
    /// Each row's new expiry reads the clock after its row lock is taken (`{now}` in the `SET`, not
    /// once up front), so time spent waiting for a lock does not shorten the lease. The last row, with
    /// a NULL epoch, is the batch's last id when the batch was full (more may follow).
    renew_leases = "WITH batch AS ( \
          SELECT workflow_id FROM {s}.runs \
          WHERE owner = $1 AND state IN (0, 3) AND ($3::text IS NULL OR workflow_id > $3) \
          ORDER BY workflow_id LIMIT $4), \
        locked AS ( \
          SELECT r.workflow_id FROM {s}.runs r JOIN batch ON batch.workflow_id = r.workflow_id \
          WHERE r.owner = $1 AND r.state IN (0, 3) \
          ORDER BY r.workflow_id FOR UPDATE OF r), \
        renewed AS ( \
          UPDATE {s}.runs r SET lease_expires_at_ms = {now} + $2 \
          FROM locked WHERE r.workflow_id = locked.workflow_id \
          RETURNING r.workflow_id, r.lease_epoch) \
        SELECT workflow_id, lease_epoch FROM renewed \
        UNION ALL SELECT max(workflow_id), NULL::bigint FROM batch HAVING count(*) = $4";
    /// Gives a run back.
    release_run = "UPDATE {s}.runs SET owner = NULL, lease_expires_at_ms = NULL \
        WHERE workflow_id = $1 AND owner = $2 AND lease_epoch = $3";
    /// Unconsumed signals of running runs a node owns.
    owned_signals = "SELECT s.workflow_id, s.id, s.name, s.payload FROM {s}.signals s \
        JOIN {s}.runs r ON r.workflow_id = s.workflow_id \
        WHERE r.owner = $1 AND r.state = 0 AND s.consumed_by_step IS NULL AND s.id > $2 \
        ORDER BY s.id";
    /// Cancellation requests of running runs a node owns.
    owned_cancellations = "SELECT workflow_id, cancel_reason FROM {s}.runs \
        WHERE owner = $1 AND state = 0 AND cancel_reason IS NOT NULL ORDER BY workflow_id";
    /// Paused unfinished runs a node owns.
    owned_pauses = "SELECT workflow_id FROM {s}.runs \
        WHERE owner = $1 AND state IN (0, 3) AND paused_at_ms IS NOT NULL ORDER BY workflow_id";
    /// A run's state and pause, locked for an operator action.
    lock_run_pause = "SELECT state, paused_at_ms FROM {s}.runs WHERE workflow_id = $1 FOR UPDATE";
    /// Pauses a run.
    pause_run = "UPDATE {s}.runs SET paused_by = $2, pause_reason = $3, paused_at_ms = $4, \
        updated_at_ms = $5 WHERE workflow_id = $1";
    /// Clears a run's pause.
    resume_run = "UPDATE {s}.runs SET paused_by = NULL, pause_reason = NULL, paused_at_ms = NULL, \
        updated_at_ms = $2 WHERE workflow_id = $1";
    /// Ends a run as terminated; its owner is cleared, so the old holder's writes are stale.
    terminate_run = "UPDATE {s}.runs SET state = $2, error = $3, error_text = $5, paused_by = NULL, \
        pause_reason = NULL, paused_at_ms = NULL, updated_at_ms = $4, owner = NULL, \
        lease_expires_at_ms = NULL WHERE workflow_id = $1";
}

// ---------------------------------------------------------------------------------------------------
// Helpers: run a cached statement, read a column.

async fn query<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    op: &'static str,
) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.during(op)?;
    client.query(&statement, params).await.during(op)
}

pub(super) async fn query_opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    op: &'static str,
) -> Result<Option<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.during(op)?;
    client.query_opt(&statement, params).await.during(op)
}

pub(super) async fn execute<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    op: &'static str,
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await.during(op)?;
    client.execute(&statement, params).await.during(op)
}

/// Column `idx` of `row`, or `MalformedRow`.
pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    op: &'static str,
) -> Result<T, StoreError> {
    row.try_get(idx).map_err(|error| StoreError::MalformedRow {
        operation: op,
        message: format!("column {idx}: {error}"),
    })
}

pub(super) fn run_from_row(row: &Row, op: &'static str) -> Result<RunRecord, StoreError> {
    let workflow_id: String = get(row, 0, op)?;
    let code: i32 = get(row, 2, op)?;
    let state = RunState::from_code(i64::from(code)).ok_or_else(|| StoreError::MalformedRow {
        operation: op,
        message: format!("run `{workflow_id}` has unknown state {code}"),
    })?;
    Ok(RunRecord {
        workflow_name: get(row, 1, op)?,
        state,
        input: get(row, 3, op)?,
        output: get(row, 4, op)?,
        error: get(row, 5, op)?,
        created_at_ms: get(row, 6, op)?,
        updated_at_ms: get(row, 7, op)?,
        run_no: get(row, 8, op)?,
        parent_id: get(row, 9, op)?,
        cancel_reason: get(row, 10, op)?,
        deadline_ms: get(row, 11, op)?,
        execution_timeout_ms: get(row, 12, op)?,
        paused: pause_from(get(row, 13, op)?, get(row, 14, op)?, get(row, 15, op)?),
        workflow_id,
    })
}

/// The pause of a run, from its three columns (all set while it is paused).
fn pause_from(by: Option<String>, reason: Option<String>, at_ms: Option<i64>) -> Option<PauseInfo> {
    Some(PauseInfo {
        by: by?,
        reason: reason.unwrap_or_default(),
        at_ms: at_ms?,
    })
}

fn step_from(value: i64, op: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::MalformedRow {
        operation: op,
        message: format!("step {value} is out of range"),
    })
}

fn kind_from(value: i32, op: &'static str) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| StoreError::MalformedRow {
        operation: op,
        message: format!("event kind {value} is out of range"),
    })
}

fn state_code(state: RunState) -> i32 {
    // Codes are 0..=6.
    i32::try_from(state.code()).unwrap_or(i32::MAX)
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn claims_from(rows: &[Row], op: &'static str) -> Result<Vec<Claim>, StoreError> {
    let mut claims = rows
        .iter()
        .map(|row| {
            Ok(Claim {
                workflow_id: get(row, 0, op)?,
                epoch: get(row, 1, op)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    claims.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
    Ok(claims)
}

// ---------------------------------------------------------------------------------------------------
// Writes.

pub(super) async fn create_run(
    client: &mut Object,
    sql: &Sql,
    run: &NewRun,
) -> Result<CreateOutcome, StoreError> {
    const OP: &str = "creating a run";
    // A concurrent creator of the same id either wins the insert (we then read its run) or loses it.
    // Runs are never deleted, so the read after a lost insert finds the row.
    let inserted = if run.events.is_empty() {
        // The insert alone is one transaction.
        insert_run(&*client, sql, run, OP).await?
    } else {
        // The row and its first events in one transaction.
        let tx = client.transaction().await.during(OP)?;
        let inserted = insert_run(&tx, sql, run, OP).await?;
        if inserted {
            super::repair::insert_events(&tx, sql, &run.workflow_id, &run.events, OP).await?;
            tx.commit().await.during(OP)?;
        }
        inserted
    };
    if inserted {
        return Ok(CreateOutcome::Created);
    }
    match query_opt(&*client, &sql.select_run, &[&run.workflow_id], OP).await? {
        Some(row) => Ok(CreateOutcome::Existing(Box::new(run_from_row(&row, OP)?))),
        None => Err(StoreError::Backend {
            operation: OP,
            message: format!(
                "run `{}` neither inserted nor found (was it deleted?)",
                run.workflow_id
            ),
        }),
    }
}

/// Inserts the row of `run` unless its id exists: `true` if it did.
pub(super) async fn insert_run<C: GenericClient>(
    client: &C,
    sql: &Sql,
    run: &NewRun,
    op: &'static str,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let (owner, epoch, duration) = match &run.owner {
        Some(lease) => (
            Some(lease.node.as_str()),
            lease.epoch,
            Some(lease.duration_ms),
        ),
        None => (None, 0, None),
    };
    let (paused_by, pause_reason, paused_at_ms) = match &run.paused {
        Some(pause) => (
            Some(pause.by.as_str()),
            Some(pause.reason.as_str()),
            Some(pause.at_ms),
        ),
        None => (None, None, None),
    };
    let inserted = execute(
        client,
        &sql.insert_run,
        &[
            &run.workflow_id,
            &run.workflow_name,
            &run.input,
            &now,
            &run.parent_id,
            &run.deadline_ms,
            &run.execution_timeout_ms,
            &owner,
            &epoch,
            &duration,
            &paused_by,
            &pause_reason,
            &paused_at_ms,
        ],
        op,
    )
    .await?;
    Ok(inserted == 1)
}

/// What `commit` found when it locked the run's row.
struct Locked {
    state: i32,
    run_no: i64,
    owner: Option<String>,
    epoch: i64,
}

pub(super) async fn commit(
    client: &mut Object,
    sql: &Sql,
    commit: &Commit,
) -> Result<(), StoreError> {
    const OP: &str = "committing journal events";
    let id = &commit.workflow_id;
    let now = now_ms();
    let tx = client.transaction().await.during(OP)?;
    let locked = match query_opt(&tx, &sql.lock_run, &[id], OP).await? {
        Some(row) => Some(Locked {
            state: get(&row, 0, OP)?,
            run_no: get(&row, 1, OP)?,
            owner: get(&row, 2, OP)?,
            epoch: get(&row, 3, OP)?,
        }),
        None => None,
    };
    // Fencing, under the row lock: a takeover increments the epoch under the same lock, so once this
    // check passes no other node can own the run until this transaction ends.
    if let Some((node, epoch)) = &commit.fence {
        let owns = locked
            .as_ref()
            .is_some_and(|run| run.owner.as_deref() == Some(node.as_str()) && run.epoch == *epoch);
        if !owns {
            return Err(StoreError::StaleLease {
                workflow_id: id.clone(),
                node: node.clone(),
                epoch: *epoch,
            });
        }
    }
    if let Some(run_no) = commit.run_no {
        let current = locked.as_ref().map(|run| run.run_no);
        if current != Some(run_no) {
            return Err(StoreError::Conflict {
                operation: OP,
                message: format!(
                    "write for run #{run_no} of `{id}`, which is now at run {current:?}"
                ),
            });
        }
    }
    let Some(locked) = locked else {
        let empty = commit.events.is_empty()
            && commit.consume_signal.is_none()
            && commit.status.is_none()
            && commit.values.is_empty();
        if empty {
            return Ok(());
        }
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!("no run has the workflow id `{id}`"),
        });
    };
    if RunState::from_code(i64::from(locked.state)) == Some(RunState::Terminated) {
        // A terminated run's journal is closed: a result arriving late is discarded.
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!("run `{id}` was terminated"),
        });
    }
    for event in &commit.events {
        let step = i64::from(event.step);
        if let Some(at_ms) = event.wake_at_ms {
            execute(&tx, &sql.upsert_wakeup, &[id, &step, &at_ms], OP).await?;
        }
        if event.completion {
            execute(&tx, &sql.delete_wakeup, &[id, &step], OP).await?;
        }
        let kind = i32::from(event.kind);
        execute(
            &tx,
            &sql.insert_event,
            &[id, &step, &kind, &event.completion, &event.payload, &now],
            OP,
        )
        .await
        .map_err(|error| match error {
            StoreError::Conflict { operation, message } => StoreError::Conflict {
                operation,
                message: format!(
                    "step {} of `{id}` already has a completion ({message})",
                    event.step
                ),
            },
            other => other,
        })?;
    }
    if let Some(signal_id) = commit.consume_signal {
        let step = commit
            .events
            .iter()
            .find(|event| event.completion)
            .map_or(0, |event| i64::from(event.step));
        let changed = execute(&tx, &sql.consume_signal, &[&step, &signal_id, id], OP).await?;
        if changed != 1 {
            return Err(StoreError::Conflict {
                operation: OP,
                message: format!("signal #{signal_id} of `{id}` is unknown or already consumed"),
            });
        }
    }
    for (key, value) in &commit.values {
        execute(&tx, &sql.upsert_value, &[id, key, value, &now], OP).await?;
    }
    if matches!(
        commit.status,
        Some(
            StatusChange::Complete { .. }
                | StatusChange::Fail { .. }
                | StatusChange::Cancel { .. }
                | StatusChange::CompensationFail { .. }
                | StatusChange::ContinueAsNew { .. }
        )
    ) {
        // A run that ends (or starts over) has nothing left to be woken for.
        execute(&tx, &sql.delete_wakeups, &[id], OP).await?;
    }
    match &commit.status {
        None => {}
        Some(StatusChange::ContinueAsNew { input, keep_runs }) => {
            continue_as_new(&tx, sql, id, input, *keep_runs, now).await?;
        }
        Some(status) => {
            let Transition {
                to: state,
                output,
                error,
                from: allowed,
            } = Transition::of(status);
            let changed = execute(
                &tx,
                &sql.set_status,
                &[
                    &state_code(state),
                    &output,
                    &error,
                    &now,
                    id,
                    &allowed.to_vec(),
                    &error.and(commit.error_text.as_deref()),
                ],
                OP,
            )
            .await?;
            if changed != 1 {
                let from = RunState::from_code(i64::from(locked.state));
                return Err(StoreError::Conflict {
                    operation: OP,
                    message: format!(
                        "run `{id}` cannot move to {state:?} from its current state ({from:?})"
                    ),
                });
            }
        }
    }
    tx.commit().await.during(OP)
}

/// A status change as a row update: the new state and columns, and the states it may start from.
struct Transition<'a> {
    to: RunState,
    output: Option<&'a [u8]>,
    error: Option<&'a [u8]>,
    from: &'static [i32],
}

impl<'a> Transition<'a> {
    /// The same transitions as the SQLite store's: only running or parked runs finish, only running
    /// runs park, only parked runs resume.
    fn of(status: &'a StatusChange) -> Self {
        const RUNNING: &[i32] = &[0];
        const PARKED: &[i32] = &[3];
        const UNFINISHED: &[i32] = &[0, 3];
        let (to, output, error, from) = match status {
            StatusChange::Resume => (RunState::Running, None, None, PARKED),
            StatusChange::Complete { output } => (
                RunState::Completed,
                Some(output.as_slice()),
                None,
                UNFINISHED,
            ),
            StatusChange::Fail { error } => {
                (RunState::Failed, None, Some(error.as_slice()), UNFINISHED)
            }
            StatusChange::Park { reason } => {
                (RunState::Parked, None, Some(reason.as_slice()), RUNNING)
            }
            StatusChange::Cancel { error } => (
                RunState::Cancelled,
                None,
                Some(error.as_slice()),
                UNFINISHED,
            ),
            StatusChange::CompensationFail { error } => (
                RunState::CompensationFailed,
                None,
                Some(error.as_slice()),
                UNFINISHED,
            ),
            StatusChange::ContinueAsNew { .. } => (RunState::Running, None, None, RUNNING),
        };
        Transition {
            to,
            output,
            error,
            from,
        }
    }
}

/// Archives the current run of `workflow_id` and turns its row into a fresh run with `input`.
async fn continue_as_new<C: GenericClient>(
    tx: &C,
    sql: &Sql,
    workflow_id: &String,
    input: &[u8],
    keep_runs: u32,
    now: i64,
) -> Result<(), StoreError> {
    const OP: &str = "continuing as new";
    let archived = execute(tx, &sql.archive_run, &[workflow_id, &now], OP).await?;
    if archived != 1 {
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!("run `{workflow_id}` is not running"),
        });
    }
    if keep_runs > 0 {
        execute(tx, &sql.archive_events, &[workflow_id], OP).await?;
    }
    execute(tx, &sql.delete_events, &[workflow_id], OP).await?;
    let row = query_opt(tx, &sql.restart_run, &[workflow_id, &input, &now], OP)
        .await?
        .ok_or_else(|| StoreError::Conflict {
            operation: OP,
            message: format!("run `{workflow_id}` disappeared"),
        })?;
    let run_no: i64 = get(&row, 0, OP)?;
    // Retention: keep the newest `keep_runs` archived runs.
    let oldest_kept = run_no - i64::from(keep_runs);
    execute(
        tx,
        &sql.prune_archived_events,
        &[workflow_id, &oldest_kept],
        OP,
    )
    .await?;
    execute(
        tx,
        &sql.prune_archived_runs,
        &[workflow_id, &oldest_kept],
        OP,
    )
    .await?;
    Ok(())
}

pub(super) async fn send_signal(
    client: &mut Object,
    sql: &Sql,
    workflow_id: &str,
    name: &str,
    payload: Vec<u8>,
) -> Result<SignalOutcome, StoreError> {
    const OP: &str = "sending a signal";
    let tx = client.transaction().await.during(OP)?;
    // The shared lock keeps a concurrent commit from finishing the run before this signal is in.
    let state = match query_opt(&tx, &sql.share_run, &[&workflow_id], OP).await? {
        None => return Ok(SignalOutcome::NoSuchRun),
        Some(row) => get::<i32>(&row, 0, OP)?,
    };
    if RunState::from_code(i64::from(state)).is_some_and(RunState::is_finished) {
        return Ok(SignalOutcome::RunFinished);
    }
    // Inbox ids must grow in commit order (nodes page through signals by id): one sender at a time
    // allocates an id and commits.
    execute(
        &tx,
        &sql.lock_signals,
        &[&LOCK_CLASS_SIGNALS, &schema_lock_key(&sql.schema)],
        OP,
    )
    .await?;
    let row = query_opt(
        &tx,
        &sql.insert_signal,
        &[&workflow_id, &name, &payload, &now_ms()],
        OP,
    )
    .await?
    .ok_or_else(|| StoreError::Backend {
        operation: OP,
        message: "the insert returned no id".to_string(),
    })?;
    let id: i64 = get(&row, 0, OP)?;
    tx.commit().await.during(OP)?;
    Ok(SignalOutcome::Queued(SignalRecord {
        id,
        name: name.to_string(),
        payload,
    }))
}

pub(super) async fn request_cancel(
    client: &mut Object,
    sql: &Sql,
    workflow_id: &str,
    reason: &str,
) -> Result<CancelOutcome, StoreError> {
    const OP: &str = "requesting a cancellation";
    let tx = client.transaction().await.during(OP)?;
    let state = match query_opt(&tx, &sql.lock_run_state, &[&workflow_id], OP).await? {
        None => return Ok(CancelOutcome::NoSuchRun),
        Some(row) => get::<i32>(&row, 0, OP)?,
    };
    if RunState::from_code(i64::from(state)).is_some_and(RunState::is_finished) {
        return Ok(CancelOutcome::RunFinished);
    }
    execute(
        &tx,
        &sql.request_cancel,
        &[&workflow_id, &reason, &now_ms()],
        OP,
    )
    .await?;
    tx.commit().await.during(OP)?;
    Ok(CancelOutcome::Requested)
}

pub(super) async fn operate(
    client: &mut Object,
    sql: &Sql,
    write: &OperatorWrite,
) -> Result<OperatorOutcome, StoreError> {
    const OP: &str = "applying an operator action";
    let id = &write.workflow_id;
    let tx = client.transaction().await.during(OP)?;
    let (state, paused_at_ms) = match query_opt(&tx, &sql.lock_run_pause, &[id], OP).await? {
        None => return Ok(OperatorOutcome::NoSuchRun),
        Some(row) => (get::<i32>(&row, 0, OP)?, get::<Option<i64>>(&row, 1, OP)?),
    };
    if RunState::from_code(i64::from(state)).is_none_or(RunState::is_finished) {
        return Ok(OperatorOutcome::RunFinished);
    }
    let now = now_ms();
    match &write.change {
        OperatorChange::Pause(pause) => {
            if paused_at_ms.is_some() {
                return Ok(OperatorOutcome::AlreadyPaused);
            }
            let params: [&(dyn ToSql + Sync); 5] =
                [id, &pause.by, &pause.reason, &pause.at_ms, &now];
            execute(&tx, &sql.pause_run, &params, OP).await?;
        }
        OperatorChange::Resume => {
            if paused_at_ms.is_none() {
                return Ok(OperatorOutcome::NotPaused);
            }
            execute(&tx, &sql.resume_run, &[id, &now], OP).await?;
        }
        OperatorChange::Terminate { error, text } => {
            let terminated = state_code(RunState::Terminated);
            let params: [&(dyn ToSql + Sync); 5] = [id, &terminated, error, &now, text];
            execute(&tx, &sql.terminate_run, &params, OP).await?;
            execute(&tx, &sql.delete_wakeups, &[id], OP).await?;
        }
    }
    let audit = &write.audit;
    let step = i64::from(audit.step);
    let kind = i32::from(audit.kind);
    execute(
        &tx,
        &sql.insert_event,
        &[id, &step, &kind, &false, &audit.payload, &now],
        OP,
    )
    .await?;
    tx.commit().await.during(OP)?;
    Ok(OperatorOutcome::Applied)
}

// ---------------------------------------------------------------------------------------------------
// Reads.

pub(super) async fn run(
    client: &Object,
    sql: &Sql,
    workflow_id: &str,
) -> Result<Option<RunRecord>, StoreError> {
    const OP: &str = "reading a run";
    query_opt(client, &sql.select_run, &[&workflow_id], OP)
        .await?
        .map(|row| run_from_row(&row, OP))
        .transpose()
}

pub(super) async fn history(
    client: &Object,
    sql: &Sql,
    workflow_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    const OP: &str = "reading a history";
    query(client, &sql.history, &[&workflow_id], OP)
        .await?
        .iter()
        .map(|row| {
            Ok(StoredEvent {
                seq: get(row, 0, OP)?,
                step: step_from(get(row, 1, OP)?, OP)?,
                kind: kind_from(get(row, 2, OP)?, OP)?,
                payload: get(row, 3, OP)?,
                recorded_at_ms: get(row, 4, OP)?,
            })
        })
        .collect()
}

pub(super) async fn lease_holder(
    client: &Object,
    sql: &Sql,
    workflow_id: &str,
) -> Result<Option<LeaseHolder>, StoreError> {
    const OP: &str = "reading a run's lease";
    let Some(row) = query_opt(client, &sql.lease_holder, &[&workflow_id], OP).await? else {
        return Ok(None);
    };
    let owner: Option<String> = get(&row, 0, OP)?;
    Ok(match owner {
        Some(node) => Some(LeaseHolder {
            node,
            epoch: get(&row, 1, OP)?,
            expires_at_ms: get(&row, 2, OP)?,
        }),
        None => None,
    })
}

pub(super) async fn unfinished_runs(
    client: &Object,
    sql: &Sql,
) -> Result<Vec<RunRecord>, StoreError> {
    const OP: &str = "listing unfinished runs";
    query(client, &sql.unfinished_runs, &[], OP)
        .await?
        .iter()
        .map(|row| run_from_row(row, OP))
        .collect()
}

fn signal_from_row(row: &Row, first: usize, op: &'static str) -> Result<SignalRecord, StoreError> {
    Ok(SignalRecord {
        id: get(row, first, op)?,
        name: get(row, first + 1, op)?,
        payload: get(row, first + 2, op)?,
    })
}

pub(super) async fn pending_signals(
    client: &Object,
    sql: &Sql,
    workflow_id: &str,
) -> Result<Vec<SignalRecord>, StoreError> {
    const OP: &str = "reading pending signals";
    query(client, &sql.pending_signals, &[&workflow_id], OP)
        .await?
        .iter()
        .map(|row| signal_from_row(row, 0, OP))
        .collect()
}

pub(super) async fn value(
    client: &Object,
    sql: &Sql,
    workflow_id: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    const OP: &str = "reading a published value";
    query_opt(client, &sql.value, &[&workflow_id, &key], OP)
        .await?
        .map(|row| get(&row, 0, OP))
        .transpose()
}

pub(super) async fn archived_runs(
    client: &Object,
    sql: &Sql,
    workflow_id: &str,
) -> Result<Vec<ArchivedRun>, StoreError> {
    const OP: &str = "listing archived runs";
    query(client, &sql.archived_runs, &[&workflow_id], OP)
        .await?
        .iter()
        .map(|row| {
            Ok(ArchivedRun {
                workflow_id: get(row, 0, OP)?,
                run_no: get(row, 1, OP)?,
                workflow_name: get(row, 2, OP)?,
                input: get(row, 3, OP)?,
                event_count: get(row, 4, OP)?,
                created_at_ms: get(row, 5, OP)?,
                ended_at_ms: get(row, 6, OP)?,
            })
        })
        .collect()
}

pub(super) async fn due_wakeups(
    client: &Object,
    sql: &Sql,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<Wakeup>, StoreError> {
    const OP: &str = "listing due wake-ups";
    query(
        client,
        &sql.due_wakeups,
        &[&before_ms, &limit_param(limit)],
        OP,
    )
    .await?
    .iter()
    .map(|row| {
        Ok(Wakeup {
            workflow_id: get(row, 0, OP)?,
            at_ms: get(row, 1, OP)?,
        })
    })
    .collect()
}

/// Bound parameters of a statement.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Adds a parameter and returns its number.
fn bind(params: &mut Params, value: Box<dyn ToSql + Sync + Send>) -> usize {
    params.push(value);
    params.len()
}

/// The `WHERE` clause of `run_query`'s filters (empty when none), its parameters pushed onto
/// `params`. Only the active filters are in the statement (better plans); every value is bound.
fn run_filter(run_query: &RunQuery, params: &mut Params) -> String {
    let mut conditions: Vec<String> = Vec::new();
    if let Some(name) = &run_query.workflow_name {
        let n = bind(params, Box::new(name.clone()));
        conditions.push(format!("workflow_name = ${n}"));
    }
    if !run_query.states.is_empty() {
        let codes: Vec<i32> = run_query
            .states
            .iter()
            .map(|state| state_code(*state))
            .collect();
        let n = bind(params, Box::new(codes));
        conditions.push(format!("state = ANY(${n})"));
    }
    if let Some(prefix) = &run_query.id_prefix {
        let n = bind(params, Box::new(prefix.clone()));
        conditions.push(format!(
            "workflow_id >= ${n} AND starts_with(workflow_id, ${n})"
        ));
    }
    if let Some(after) = &run_query.after {
        let n = bind(params, Box::new(after.clone()));
        conditions.push(format!("workflow_id > ${n}"));
    }
    match run_query.paused {
        Some(true) => conditions.push("paused_at_ms IS NOT NULL".to_string()),
        Some(false) => conditions.push("paused_at_ms IS NULL".to_string()),
        None => {}
    }
    if let Some(text) = &run_query.error_contains {
        let n = bind(params, Box::new(text.clone()));
        conditions.push(format!("strpos(lower(error_text), lower(${n})) > 0"));
    }
    if let Some(parent) = &run_query.parent_id {
        let n = bind(params, Box::new(parent.clone()));
        conditions.push(format!("parent_id = ${n}"));
    }
    let ranges = [
        ("created_at_ms >=", run_query.created_from_ms),
        ("created_at_ms <", run_query.created_until_ms),
        ("updated_at_ms >=", run_query.updated_from_ms),
        ("updated_at_ms <", run_query.updated_until_ms),
    ];
    for (condition, bound) in ranges {
        if let Some(bound) = bound {
            let n = bind(params, Box::new(bound));
            conditions.push(format!("{condition} ${n}"));
        }
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

fn param_refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

pub(super) async fn list_runs(
    client: &Object,
    sql: &Sql,
    run_query: &RunQuery,
) -> Result<RunPage, StoreError> {
    const OP: &str = "listing runs";
    let limit = run_query.limit.clamp(1, 1_000);
    let mut params: Params = Vec::new();
    let filter = run_filter(run_query, &mut params);
    let n = bind(&mut params, Box::new(limit_param(limit + 1)));
    let statement = format!(
        "SELECT {RUN_COLUMNS} FROM {}.runs {filter} ORDER BY workflow_id LIMIT ${n}",
        sql.quoted
    );
    let mut runs = query(client, &statement, &param_refs(&params), OP)
        .await?
        .iter()
        .map(|row| run_from_row(row, OP))
        .collect::<Result<Vec<_>, _>>()?;
    let next = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(|run| run.workflow_id.clone())
    } else {
        None
    };
    Ok(RunPage { runs, next })
}

pub(super) async fn count_runs(
    client: &Object,
    sql: &Sql,
    run_query: &RunQuery,
) -> Result<StatusCounts, StoreError> {
    const OP: &str = "counting runs";
    let mut every = run_query.clone();
    every.after = None;
    let mut params: Params = Vec::new();
    let filter = run_filter(&every, &mut params);
    let statement = format!(
        "SELECT state, paused_at_ms IS NOT NULL, count(*) FROM {}.runs {filter} \
         GROUP BY state, paused_at_ms IS NOT NULL",
        sql.quoted
    );
    let mut counts = StatusCounts::default();
    for row in query(client, &statement, &param_refs(&params), OP).await? {
        let code: i32 = get(&row, 0, OP)?;
        let paused: bool = get(&row, 1, OP)?;
        let count: i64 = get(&row, 2, OP)?;
        let state =
            RunState::from_code(i64::from(code)).ok_or_else(|| StoreError::MalformedRow {
                operation: OP,
                message: format!("a run has the unknown state {code}"),
            })?;
        let count = u64::try_from(count).unwrap_or(0);
        counts.add(state, count);
        if paused {
            counts.paused += count;
        }
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------------------------------
// Leases.

pub(super) async fn claim_runs(
    client: &Object,
    sql: &Sql,
    node: &str,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claim>, StoreError> {
    const OP: &str = "claiming runs";
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = query(
        client,
        &sql.claim_runs,
        &[&node, &lease_ms, &limit_param(limit)],
        OP,
    )
    .await?;
    claims_from(&rows, OP)
}

/// How many runs one renewal statement extends: each batch is its own short transaction, so the row
/// locks of a node with many runs are held briefly and a busy row delays only its batch.
pub(super) const RENEW_BATCH: usize = 512;

pub(super) async fn renew_leases(
    client: &Object,
    sql: &Sql,
    node: &str,
    lease_ms: i64,
) -> Result<Vec<Claim>, StoreError> {
    const OP: &str = "renewing leases";
    let batch = limit_param(RENEW_BATCH);
    let mut after: Option<String> = None;
    let mut claims = Vec::new();
    loop {
        let rows = query(
            client,
            &sql.renew_leases,
            &[&node, &lease_ms, &after, &batch],
            OP,
        )
        .await?;
        let mut next = None;
        for row in &rows {
            let workflow_id: String = get(row, 0, OP)?;
            match get::<Option<i64>>(row, 1, OP)? {
                Some(epoch) => claims.push(Claim { workflow_id, epoch }),
                None => next = Some(workflow_id),
            }
        }
        match next {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    claims.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
    Ok(claims)
}

pub(super) async fn release_run(
    client: &Object,
    sql: &Sql,
    node: &str,
    claim: &Claim,
) -> Result<(), StoreError> {
    const OP: &str = "releasing a run";
    execute(
        client,
        &sql.release_run,
        &[&claim.workflow_id, &node, &claim.epoch],
        OP,
    )
    .await?;
    Ok(())
}

pub(super) async fn owned_signals(
    client: &Object,
    sql: &Sql,
    node: &str,
    after_id: i64,
) -> Result<Vec<(String, SignalRecord)>, StoreError> {
    const OP: &str = "reading owned runs' signals";
    query(client, &sql.owned_signals, &[&node, &after_id], OP)
        .await?
        .iter()
        .map(|row| Ok((get(row, 0, OP)?, signal_from_row(row, 1, OP)?)))
        .collect()
}

pub(super) async fn owned_pauses(
    client: &Object,
    sql: &Sql,
    node: &str,
) -> Result<Vec<String>, StoreError> {
    const OP: &str = "reading owned runs' pauses";
    query(client, &sql.owned_pauses, &[&node], OP)
        .await?
        .iter()
        .map(|row| get(row, 0, OP))
        .collect()
}

pub(super) async fn owned_cancellations(
    client: &Object,
    sql: &Sql,
    node: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    const OP: &str = "reading owned runs' cancellations";
    query(client, &sql.owned_cancellations, &[&node], OP)
        .await?
        .iter()
        .map(|row| Ok((get(row, 0, OP)?, get(row, 1, OP)?)))
        .collect()
}
