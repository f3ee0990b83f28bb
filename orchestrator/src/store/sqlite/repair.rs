//! The SQL of the operator's repair verbs (retry's rewind, fork), each inside one write's savepoint
//! like every other write.

use rusqlite::{Connection, OptionalExtension, params};

use super::errors::Context;
use super::queries;
use crate::clock::now_ms;
use crate::store::{Commit, CreateOutcome, ForkRun, Rewind, RewindOutcome, RunState, StoreError};

pub(super) fn rewind(conn: &Connection, rewind: &Rewind) -> Result<RewindOutcome, StoreError> {
    const OP: &str = "rewinding a run";
    let id = &rewind.workflow_id;
    let found: Option<(i64, i64)> = conn
        .prepare_cached("SELECT state, run_no FROM runs WHERE workflow_id = ?1")
        .during(OP)?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .during(OP)?;
    let Some((code, run_no)) = found else {
        return Ok(RewindOutcome::NoSuchRun);
    };
    let state = RunState::from_code(code).ok_or_else(|| StoreError::MalformedRow {
        operation: OP,
        message: format!("run `{id}` has unknown state {code}"),
    })?;
    if state != rewind.expected_state || run_no != rewind.run_no {
        return Ok(RewindOutcome::Changed(state));
    }
    {
        let mut delete = conn
            .prepare_cached("DELETE FROM events WHERE workflow_id = ?1 AND seq = ?2")
            .during(OP)?;
        for seq in &rewind.drop_seqs {
            delete.execute(params![id, seq]).during(OP)?;
        }
    }
    for (step, at_ms) in &rewind.wakeups {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO wakeups (workflow_id, step, at_ms) VALUES (?1, ?2, ?3)",
        )
        .during(OP)?
        .execute(params![id, step, at_ms])
        .during(OP)?;
    }
    conn.prepare_cached(
        "UPDATE runs SET state = ?1, output = NULL, error = NULL, error_text = NULL, updated_at_ms = ?2 \
         WHERE workflow_id = ?3",
    )
    .during(OP)?
    .execute(params![RunState::Running.code(), now_ms(), id])
    .during(OP)?;
    let mut annotate = Commit::events(id, rewind.events.clone());
    annotate.run_no = Some(run_no);
    queries::commit(conn, &annotate)?;
    Ok(RewindOutcome::Rewound)
}

pub(super) fn fork_run(conn: &Connection, fork: &ForkRun) -> Result<CreateOutcome, StoreError> {
    let created = queries::create_run(conn, &fork.run)?;
    if let CreateOutcome::Existing(_) = created {
        return Ok(created);
    }
    queries::commit(
        conn,
        &Commit::events(&fork.run.workflow_id, fork.events.clone()),
    )?;
    // Fails (and the savepoint rolls the new run back) if the source does not exist.
    queries::commit(
        conn,
        &Commit::events(&fork.source_id, fork.source_events.clone()),
    )?;
    Ok(CreateOutcome::Created)
}
