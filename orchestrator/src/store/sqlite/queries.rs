//! The SQL of the SQLite store. Every value is a bound parameter. Write functions run inside the
//! writer's open transaction (one savepoint each); they never begin or commit one themselves.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::errors::Context;
use crate::clock::now_ms;
use crate::store::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, NewEvent, NewRun, OperatorChange,
    OperatorOutcome, OperatorWrite, PauseInfo, RunPage, RunQuery, RunRecord, RunState,
    SignalOutcome, SignalRecord, StatusChange, StatusCounts, StoreError, StoredEvent, Wakeup,
};

const RUN_COLUMNS: &str = "workflow_id, workflow_name, state, input, output, error, created_at_ms, \
    updated_at_ms, run_no, parent_id, cancel_reason, deadline_ms, execution_timeout_ms, paused_by, \
    pause_reason, paused_at_ms";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<(RunRecord, i64)> {
    let state: i64 = row.get(2)?;
    Ok((
        RunRecord {
            workflow_id: row.get(0)?,
            workflow_name: row.get(1)?,
            state: RunState::Running,
            input: row.get(3)?,
            output: row.get(4)?,
            error: row.get(5)?,
            created_at_ms: row.get(6)?,
            updated_at_ms: row.get(7)?,
            run_no: row.get(8)?,
            parent_id: row.get(9)?,
            cancel_reason: row.get(10)?,
            deadline_ms: row.get(11)?,
            execution_timeout_ms: row.get(12)?,
            paused: pause_from(row.get(13)?, row.get(14)?, row.get(15)?),
        },
        state,
    ))
}

/// The pause of a run, from its three columns (all set while it is paused).
pub(super) fn pause_from(
    by: Option<String>,
    reason: Option<String>,
    at_ms: Option<i64>,
) -> Option<PauseInfo> {
    Some(PauseInfo {
        by: by?,
        reason: reason.unwrap_or_default(),
        at_ms: at_ms?,
    })
}

fn with_state((mut record, state): (RunRecord, i64)) -> Result<RunRecord, StoreError> {
    record.state = RunState::from_code(state).ok_or_else(|| StoreError::MalformedRow {
        operation: "reading a run",
        message: format!("run `{}` has unknown state {state}", record.workflow_id),
    })?;
    Ok(record)
}

pub(super) fn create_run(conn: &Connection, run: &NewRun) -> Result<CreateOutcome, StoreError> {
    let tx = conn;
    let existing = tx
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ?1"
        ))
        .during("creating a run")?
        .query_row([&run.workflow_id], run_from_row)
        .optional()
        .during("creating a run")?;
    if let Some(existing) = existing {
        return Ok(CreateOutcome::Existing(Box::new(with_state(existing)?)));
    }
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO runs (workflow_id, workflow_name, state, input, created_at_ms, updated_at_ms, \
         parent_id, deadline_ms, execution_timeout_ms, paused_by, pause_reason, paused_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .during("creating a run")?
    .execute(params![
        run.workflow_id,
        run.workflow_name,
        RunState::Running.code(),
        run.input,
        now,
        run.parent_id,
        run.deadline_ms,
        run.execution_timeout_ms,
        run.paused.as_ref().map(|pause| pause.by.as_str()),
        run.paused.as_ref().map(|pause| pause.reason.as_str()),
        run.paused.as_ref().map(|pause| pause.at_ms)
    ])
    .during("creating a run")?;
    insert_events(
        tx,
        &run.workflow_id,
        &run.events,
        false,
        now,
        "creating a run",
    )?;
    Ok(CreateOutcome::Created)
}

/// Appends `events` to the journal of `workflow_id`, with their wake-ups: the body of a commit, and of
/// a creation that carries the run's first events. `wakeups_exist`: whether the run may have rows in
/// `wakeups` already; if not, a completion has none to delete (most completions: an activity's step
/// never has one), which saves a statement per step.
fn insert_events(
    tx: &Connection,
    workflow_id: &str,
    events: &[NewEvent],
    mut wakeups_exist: bool,
    now: i64,
    op: &'static str,
) -> Result<(), StoreError> {
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (workflow_id, step, kind, completion, payload, recorded_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .during(op)?;
        for event in events {
            if let Some(at_ms) = event.wake_at_ms {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO wakeups (workflow_id, step, at_ms) VALUES (?1, ?2, ?3)",
                )
                .during(op)?
                .execute(params![workflow_id, event.step, at_ms])
                .during(op)?;
                wakeups_exist = true;
            }
            if event.completion && wakeups_exist {
                tx.prepare_cached("DELETE FROM wakeups WHERE workflow_id = ?1 AND step = ?2")
                    .during(op)?
                    .execute(params![workflow_id, event.step])
                    .during(op)?;
            }
            insert
                .execute(params![
                    workflow_id,
                    event.step,
                    event.kind,
                    event.completion,
                    event.payload,
                    now
                ])
                .map_err(|error| match super::errors::classify(op, error) {
                    StoreError::Conflict { operation, message } => StoreError::Conflict {
                        operation,
                        message: format!(
                            "step {} of `{}` already has a completion ({message})",
                            event.step, workflow_id
                        ),
                    },
                    other => other,
                })?;
        }
    }
    Ok(())
}

pub(super) fn commit(conn: &Connection, commit: &Commit) -> Result<(), StoreError> {
    const OP: &str = "committing journal events";
    let tx = conn;
    let now = now_ms();
    let found: Option<(i64, i64, bool)> = tx
        .prepare_cached(
            "SELECT run_no, state, EXISTS (SELECT 1 FROM wakeups WHERE workflow_id = ?1) \
             FROM runs WHERE workflow_id = ?1",
        )
        .during(OP)?
        .query_row([&commit.workflow_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
        .during(OP)?;
    let Some((run_no, state, wakeups_exist)) = found else {
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!("no run has the id `{}`", commit.workflow_id),
        });
    };
    let current = Some(run_no);
    if RunState::from_code(state) == Some(RunState::Terminated) {
        // A terminated run's journal is closed: a result arriving late is discarded.
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!("run `{}` was terminated", commit.workflow_id),
        });
    }
    if let Some(run_no) = commit.run_no
        && current != Some(run_no)
    {
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!(
                "write for run #{run_no} of `{}`, which is now at run {current:?}",
                commit.workflow_id
            ),
        });
    }
    insert_events(
        tx,
        &commit.workflow_id,
        &commit.events,
        wakeups_exist,
        now,
        OP,
    )?;
    if let Some(signal_id) = commit.consume_signal {
        let step = commit
            .events
            .iter()
            .find(|event| event.completion)
            .map(|event| event.step)
            .unwrap_or(0);
        let changed = tx
            .prepare_cached(
                "UPDATE signals SET consumed_by_step = ?1 \
                 WHERE id = ?2 AND workflow_id = ?3 AND consumed_by_step IS NULL",
            )
            .during(OP)?
            .execute(params![step, signal_id, commit.workflow_id])
            .during(OP)?;
        if changed != 1 {
            return Err(StoreError::Conflict {
                operation: OP,
                message: format!(
                    "signal #{signal_id} of `{}` is unknown or already consumed",
                    commit.workflow_id
                ),
            });
        }
    }
    {
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO run_values (workflow_id, key, value, updated_at_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (workflow_id, key) DO UPDATE SET value = excluded.value, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .during(OP)?;
        for (key, value) in &commit.values {
            upsert
                .execute(params![commit.workflow_id, key, value, now])
                .during(OP)?;
        }
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
        tx.prepare_cached("DELETE FROM wakeups WHERE workflow_id = ?1")
            .during(OP)?
            .execute([&commit.workflow_id])
            .during(OP)?;
    }
    if let Some(StatusChange::ContinueAsNew { input, keep_runs }) = &commit.status {
        continue_as_new(tx, &commit.workflow_id, input, *keep_runs, now)?;
    } else if let Some(status) = &commit.status {
        let (state, output, error, allowed): (RunState, Option<&[u8]>, Option<&[u8]>, &str) =
            match status {
                StatusChange::Resume => (RunState::Running, None, None, "3"),
                StatusChange::Complete { output } => {
                    (RunState::Completed, Some(output), None, "0, 3")
                }
                StatusChange::Fail { error } => (RunState::Failed, None, Some(error), "0, 3"),
                StatusChange::Park { reason } => (RunState::Parked, None, Some(reason), "0"),
                StatusChange::Cancel { error } => (RunState::Cancelled, None, Some(error), "0, 3"),
                StatusChange::CompensationFail { error } => {
                    (RunState::CompensationFailed, None, Some(error), "0, 3")
                }
                StatusChange::ContinueAsNew { .. } => (RunState::Running, None, None, "0"),
            };
        let changed = tx
            .prepare_cached(&format!(
                "UPDATE runs SET state = ?1, output = ?2, error = ?3, updated_at_ms = ?4, \
                 error_text = ?6 WHERE workflow_id = ?5 AND state IN ({allowed})"
            ))
            .during(OP)?
            .execute(params![
                state.code(),
                output,
                error,
                now,
                commit.workflow_id,
                error.and(commit.error_text.as_deref())
            ])
            .during(OP)?;
        if changed != 1 {
            return Err(StoreError::Conflict {
                operation: OP,
                message: format!(
                    "run `{}` cannot move to {state:?} from its current state",
                    commit.workflow_id
                ),
            });
        }
    }
    Ok(())
}

pub(super) fn run(conn: &Connection, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ?1"
    ))
    .during("reading a run")?
    .query_row([workflow_id], run_from_row)
    .optional()
    .during("reading a run")?
    .map(with_state)
    .transpose()
}

pub(super) fn history(
    conn: &Connection,
    workflow_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    const OP: &str = "reading a history";
    let mut statement = conn
        .prepare_cached(
            "SELECT seq, step, kind, payload, recorded_at_ms FROM events WHERE workflow_id = ?1 ORDER BY seq",
        )
        .during(OP)?;
    let rows = statement
        .query_map([workflow_id], |row| {
            Ok(StoredEvent {
                seq: row.get(0)?,
                step: row.get(1)?,
                kind: row.get(2)?,
                payload: row.get(3)?,
                recorded_at_ms: row.get(4)?,
            })
        })
        .during(OP)?;
    rows.collect::<Result<Vec<_>, _>>().during(OP)
}

pub(super) fn unfinished_runs(conn: &Connection) -> Result<Vec<RunRecord>, StoreError> {
    const OP: &str = "listing unfinished runs";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state IN (0, 3) ORDER BY created_at_ms, workflow_id"
        ))
        .during(OP)?;
    let rows = statement.query_map([], run_from_row).during(OP)?;
    let mut runs = Vec::new();
    for row in rows {
        runs.push(with_state(row.during(OP)?)?);
    }
    Ok(runs)
}

/// Whether a run exists and may still take requests (signals, cancellation).
enum Lifecycle {
    Missing,
    Finished,
    Open,
}

fn lifecycle(
    conn: &Connection,
    workflow_id: &str,
    op: &'static str,
) -> Result<Lifecycle, StoreError> {
    let state: Option<i64> = conn
        .prepare_cached("SELECT state FROM runs WHERE workflow_id = ?1")
        .during(op)?
        .query_row([workflow_id], |row| row.get(0))
        .optional()
        .during(op)?;
    Ok(match state.map(RunState::from_code) {
        None => Lifecycle::Missing,
        Some(Some(state)) if state.is_finished() => Lifecycle::Finished,
        Some(_) => Lifecycle::Open,
    })
}

pub(super) fn send_signal(
    conn: &Connection,
    workflow_id: &str,
    name: &str,
    payload: &[u8],
) -> Result<SignalOutcome, StoreError> {
    const OP: &str = "sending a signal";
    let tx = conn;
    match lifecycle(tx, workflow_id, OP)? {
        Lifecycle::Missing => return Ok(SignalOutcome::NoSuchRun),
        Lifecycle::Finished => return Ok(SignalOutcome::RunFinished),
        Lifecycle::Open => {}
    }
    tx.prepare_cached(
        "INSERT INTO signals (workflow_id, name, payload, sent_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .during(OP)?
    .execute(params![workflow_id, name, payload, now_ms()])
    .during(OP)?;
    let id = tx.last_insert_rowid();
    Ok(SignalOutcome::Queued(SignalRecord {
        id,
        name: name.to_string(),
        payload: payload.to_vec(),
    }))
}

pub(super) fn pending_signals(
    conn: &Connection,
    workflow_id: &str,
) -> Result<Vec<SignalRecord>, StoreError> {
    const OP: &str = "reading pending signals";
    let mut statement = conn
        .prepare_cached(
            "SELECT id, name, payload FROM signals \
             WHERE workflow_id = ?1 AND consumed_by_step IS NULL ORDER BY id",
        )
        .during(OP)?;
    let rows = statement
        .query_map([workflow_id], |row| {
            Ok(SignalRecord {
                id: row.get(0)?,
                name: row.get(1)?,
                payload: row.get(2)?,
            })
        })
        .during(OP)?;
    rows.collect::<Result<Vec<_>, _>>().during(OP)
}

/// Archives the current run of `workflow_id` and turns its row into a fresh run with `input`.
fn continue_as_new(
    tx: &Connection,
    workflow_id: &str,
    input: &[u8],
    keep_runs: u32,
    now: i64,
) -> Result<(), StoreError> {
    const OP: &str = "continuing as new";
    let archived = tx
        .prepare_cached(
            "INSERT INTO archived_runs (workflow_id, run_no, workflow_name, input, event_count, \
             created_at_ms, ended_at_ms) \
             SELECT workflow_id, run_no, workflow_name, input, \
             (SELECT count(*) FROM events WHERE events.workflow_id = runs.workflow_id), \
             created_at_ms, ?2 FROM runs WHERE workflow_id = ?1 AND state = 0",
        )
        .during(OP)?
        .execute(params![workflow_id, now])
        .during(OP)?;
    if archived != 1 {
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!("run `{workflow_id}` is not running"),
        });
    }
    if keep_runs > 0 {
        tx.prepare_cached(
            "INSERT INTO archived_events (workflow_id, run_no, seq, step, kind, completion, payload, \
             recorded_at_ms) SELECT e.workflow_id, r.run_no, e.seq, e.step, e.kind, e.completion, \
             e.payload, e.recorded_at_ms FROM events e JOIN runs r ON r.workflow_id = e.workflow_id \
             WHERE e.workflow_id = ?1",
        )
        .during(OP)?
        .execute([workflow_id])
        .during(OP)?;
    }
    tx.prepare_cached("DELETE FROM events WHERE workflow_id = ?1")
        .during(OP)?
        .execute([workflow_id])
        .during(OP)?;
    tx.prepare_cached(
        "UPDATE runs SET run_no = run_no + 1, input = ?2, output = NULL, error = NULL, \
         error_text = NULL, created_at_ms = ?3, updated_at_ms = ?3 WHERE workflow_id = ?1",
    )
    .during(OP)?
    .execute(params![workflow_id, input, now])
    .during(OP)?;
    // Retention: keep the newest `keep_runs` archived runs.
    let oldest_kept: i64 = tx
        .prepare_cached("SELECT run_no FROM runs WHERE workflow_id = ?1")
        .during(OP)?
        .query_row([workflow_id], |row| row.get::<_, i64>(0))
        .during(OP)?
        - i64::from(keep_runs);
    tx.prepare_cached("DELETE FROM archived_events WHERE workflow_id = ?1 AND run_no < ?2")
        .during(OP)?
        .execute(params![workflow_id, oldest_kept])
        .during(OP)?;
    tx.prepare_cached("DELETE FROM archived_runs WHERE workflow_id = ?1 AND run_no < ?2")
        .during(OP)?
        .execute(params![workflow_id, oldest_kept])
        .during(OP)?;
    Ok(())
}

pub(super) fn request_cancel(
    conn: &Connection,
    workflow_id: &str,
    reason: &str,
) -> Result<CancelOutcome, StoreError> {
    const OP: &str = "requesting a cancellation";
    let tx = conn;
    match lifecycle(tx, workflow_id, OP)? {
        Lifecycle::Missing => return Ok(CancelOutcome::NoSuchRun),
        Lifecycle::Finished => return Ok(CancelOutcome::RunFinished),
        Lifecycle::Open => {}
    }
    tx.prepare_cached(
        "UPDATE runs SET cancel_reason = ?2, updated_at_ms = ?3 \
         WHERE workflow_id = ?1 AND cancel_reason IS NULL",
    )
    .during(OP)?
    .execute(params![workflow_id, reason, now_ms()])
    .during(OP)?;
    Ok(CancelOutcome::Requested)
}

pub(super) fn operate(
    conn: &Connection,
    write: &OperatorWrite,
) -> Result<OperatorOutcome, StoreError> {
    const OP: &str = "applying an operator action";
    let tx = conn;
    let id = &write.workflow_id;
    let found: Option<(i64, Option<i64>)> = tx
        .prepare_cached("SELECT state, paused_at_ms FROM runs WHERE workflow_id = ?1")
        .during(OP)?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .during(OP)?;
    let Some((state, paused_at_ms)) = found else {
        return Ok(OperatorOutcome::NoSuchRun);
    };
    if RunState::from_code(state).is_none_or(RunState::is_finished) {
        return Ok(OperatorOutcome::RunFinished);
    }
    let now = now_ms();
    match &write.change {
        OperatorChange::Pause(pause) => {
            if paused_at_ms.is_some() {
                return Ok(OperatorOutcome::AlreadyPaused);
            }
            tx.prepare_cached(
                "UPDATE runs SET paused_by = ?2, pause_reason = ?3, paused_at_ms = ?4, \
                 updated_at_ms = ?5 WHERE workflow_id = ?1",
            )
            .during(OP)?
            .execute(params![id, pause.by, pause.reason, pause.at_ms, now])
            .during(OP)?;
        }
        OperatorChange::Resume => {
            if paused_at_ms.is_none() {
                return Ok(OperatorOutcome::NotPaused);
            }
            tx.prepare_cached(
                "UPDATE runs SET paused_by = NULL, pause_reason = NULL, paused_at_ms = NULL, \
                 updated_at_ms = ?2 WHERE workflow_id = ?1",
            )
            .during(OP)?
            .execute(params![id, now])
            .during(OP)?;
        }
        OperatorChange::Terminate { error, text } => {
            tx.prepare_cached(
                "UPDATE runs SET state = ?2, error = ?3, error_text = ?5, paused_by = NULL, \
                 pause_reason = NULL, paused_at_ms = NULL, updated_at_ms = ?4 WHERE workflow_id = ?1",
            )
            .during(OP)?
            .execute(params![id, RunState::Terminated.code(), error, now, text])
            .during(OP)?;
            tx.prepare_cached("DELETE FROM wakeups WHERE workflow_id = ?1")
                .during(OP)?
                .execute([id])
                .during(OP)?;
        }
    }
    let audit = &write.audit;
    tx.prepare_cached(
        "INSERT INTO events (workflow_id, step, kind, completion, payload, recorded_at_ms) \
         VALUES (?1, ?2, ?3, 0, ?4, ?5)",
    )
    .during(OP)?
    .execute(params![id, audit.step, audit.kind, audit.payload, now])
    .during(OP)?;
    Ok(OperatorOutcome::Applied)
}

pub(super) fn value(
    conn: &Connection,
    workflow_id: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    const OP: &str = "reading a published value";
    conn.prepare_cached("SELECT value FROM run_values WHERE workflow_id = ?1 AND key = ?2")
        .during(OP)?
        .query_row(params![workflow_id, key], |row| row.get(0))
        .optional()
        .during(OP)
}

pub(super) fn archived_runs(
    conn: &Connection,
    workflow_id: &str,
) -> Result<Vec<ArchivedRun>, StoreError> {
    const OP: &str = "listing archived runs";
    let mut statement = conn
        .prepare_cached(
            "SELECT workflow_id, run_no, workflow_name, input, event_count, created_at_ms, \
             ended_at_ms FROM archived_runs WHERE workflow_id = ?1 ORDER BY run_no",
        )
        .during(OP)?;
    let rows = statement
        .query_map([workflow_id], |row| {
            Ok(ArchivedRun {
                workflow_id: row.get(0)?,
                run_no: row.get(1)?,
                workflow_name: row.get(2)?,
                input: row.get(3)?,
                event_count: row.get(4)?,
                created_at_ms: row.get(5)?,
                ended_at_ms: row.get(6)?,
            })
        })
        .during(OP)?;
    rows.collect::<Result<Vec<_>, _>>().during(OP)
}

pub(super) fn due_wakeups(
    conn: &Connection,
    before_ms: i64,
    limit: usize,
) -> Result<Vec<Wakeup>, StoreError> {
    const OP: &str = "listing due wake-ups";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn
        .prepare_cached(
            "SELECT workflow_id, MIN(at_ms) AS at_ms FROM ( \
               SELECT w.workflow_id, w.at_ms FROM wakeups w JOIN runs r ON r.workflow_id = w.workflow_id \
                 WHERE w.at_ms <= ?1 AND r.state = 0 AND r.paused_at_ms IS NULL \
               UNION ALL \
               SELECT workflow_id, deadline_ms FROM runs \
                 WHERE deadline_ms IS NOT NULL AND deadline_ms <= ?1 AND state = 0 \
                   AND paused_at_ms IS NULL \
             ) GROUP BY workflow_id ORDER BY at_ms LIMIT ?2",
        )
        .during(OP)?;
    let rows = statement
        .query_map(params![before_ms, limit], |row| {
            Ok(Wakeup {
                workflow_id: row.get(0)?,
                at_ms: row.get(1)?,
            })
        })
        .during(OP)?;
    rows.collect::<Result<Vec<_>, _>>().during(OP)
}

/// The filters of a [`RunQuery`], with its parameters: `?1` name, `?2` states (comma-separated
/// codes), `?3` id prefix, `?4` after, `?6` paused, `?7` parent, `?8`–`?11` time ranges, `?12`
/// error text (`?5` is the list's limit). Fixed SQL with bound parameters: a NULL parameter
/// disables its filter. The prefix compares bytes: SQLite's `length()` of a text stops at its first
/// NUL, and ids may contain NULs (and `substr` of an empty blob is NULL, hence the empty prefix's
/// own case).
const RUN_FILTER: &str = "(?1 IS NULL OR workflow_name = ?1) \
    AND (?2 IS NULL OR instr(',' || ?2 || ',', ',' || state || ',') > 0) \
    AND (?3 IS NULL OR ?3 = '' \
      OR substr(CAST(workflow_id AS BLOB), 1, length(CAST(?3 AS BLOB))) = CAST(?3 AS BLOB)) \
    AND (?4 IS NULL OR workflow_id > ?4) \
    AND (?6 IS NULL OR (paused_at_ms IS NOT NULL) = ?6) \
    AND (?7 IS NULL OR parent_id = ?7) \
    AND (?8 IS NULL OR created_at_ms >= ?8) \
    AND (?9 IS NULL OR created_at_ms < ?9) \
    AND (?10 IS NULL OR updated_at_ms >= ?10) \
    AND (?11 IS NULL OR updated_at_ms < ?11) \
    AND (?12 IS NULL OR instr(lower(error_text), lower(?12)) > 0)";

/// The states of a query as `?2` of [`RUN_FILTER`].
fn state_codes(query: &RunQuery) -> Option<String> {
    if query.states.is_empty() {
        return None;
    }
    Some(
        query
            .states
            .iter()
            .map(|state| state.code().to_string())
            .collect::<Vec<_>>()
            .join(","),
    )
}

pub(super) fn list_runs(conn: &Connection, query: &RunQuery) -> Result<RunPage, StoreError> {
    const OP: &str = "listing runs";
    let states = state_codes(query);
    let limit = query.limit.clamp(1, 1_000);
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE {RUN_FILTER} ORDER BY workflow_id LIMIT ?5"
        ))
        .during(OP)?;
    let rows = statement
        .query_map(
            params![
                query.workflow_name,
                states,
                query.id_prefix,
                query.after,
                i64::try_from(limit + 1).unwrap_or(i64::MAX),
                query.paused,
                query.parent_id,
                query.created_from_ms,
                query.created_until_ms,
                query.updated_from_ms,
                query.updated_until_ms,
                query.error_contains
            ],
            run_from_row,
        )
        .during(OP)?;
    let mut runs = Vec::new();
    for row in rows {
        runs.push(with_state(row.during(OP)?)?);
    }
    let next = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(|run| run.workflow_id.clone())
    } else {
        None
    };
    Ok(RunPage { runs, next })
}

pub(super) fn count_runs(conn: &Connection, query: &RunQuery) -> Result<StatusCounts, StoreError> {
    const OP: &str = "counting runs";
    // `?4` (after) stays NULL and `?5` (the list's limit) is unused: counts cover every match.
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT state, paused_at_ms IS NOT NULL, count(*) FROM runs WHERE {RUN_FILTER} \
             GROUP BY state, paused_at_ms IS NOT NULL"
        ))
        .during(OP)?;
    let rows = statement
        .query_map(
            params![
                query.workflow_name,
                state_codes(query),
                query.id_prefix,
                None::<String>,
                0_i64,
                query.paused,
                query.parent_id,
                query.created_from_ms,
                query.created_until_ms,
                query.updated_from_ms,
                query.updated_until_ms,
                query.error_contains
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            },
        )
        .during(OP)?;
    let mut counts = StatusCounts::default();
    for row in rows {
        let (code, paused, count) = row.during(OP)?;
        let state = RunState::from_code(code).ok_or_else(|| StoreError::MalformedRow {
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
