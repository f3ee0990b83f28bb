//! The SQL of the operator's repair verbs (retry's rewind, fork): each one transaction, taking the
//! run's row lock first like every other write of a run.

use deadpool_postgres::{GenericClient, Object};

use super::errors::Context;
use super::queries::{Sql, execute, get, query_opt};
use crate::clock::now_ms;
use crate::store::{CreateOutcome, ForkRun, NewEvent, Rewind, RewindOutcome, RunState, StoreError};

pub(super) async fn rewind(
    client: &mut Object,
    sql: &Sql,
    rewind: &Rewind,
) -> Result<RewindOutcome, StoreError> {
    const OP: &str = "rewinding a run";
    let id = &rewind.workflow_id;
    let s = &sql.quoted;
    let tx = client.transaction().await.during(OP)?;
    let Some(row) = query_opt(&tx, &sql.lock_run, &[id], OP).await? else {
        return Ok(RewindOutcome::NoSuchRun);
    };
    let code: i32 = get(&row, 0, OP)?;
    let run_no: i64 = get(&row, 1, OP)?;
    let state = RunState::from_code(i64::from(code)).ok_or_else(|| StoreError::MalformedRow {
        operation: OP,
        message: format!("run `{id}` has unknown state {code}"),
    })?;
    if state != rewind.expected_state || run_no != rewind.run_no {
        return Ok(RewindOutcome::Changed(state));
    }
    if !rewind.drop_seqs.is_empty() {
        execute(
            &tx,
            &format!("DELETE FROM {s}.events WHERE workflow_id = $1 AND seq = ANY($2)"),
            &[id, &rewind.drop_seqs],
            OP,
        )
        .await?;
    }
    for (step, at_ms) in &rewind.wakeups {
        execute(&tx, &sql.upsert_wakeup, &[id, &i64::from(*step), at_ms], OP).await?;
    }
    // Running and unowned: whichever node claims it next drives it (the claim increments the epoch,
    // fencing off anything the previous owner might still write).
    execute(
        &tx,
        &format!(
            "UPDATE {s}.runs SET state = 0, output = NULL, error = NULL, error_text = NULL, updated_at_ms = $2, \
             owner = NULL, lease_expires_at_ms = NULL WHERE workflow_id = $1"
        ),
        &[id, &now_ms()],
        OP,
    )
    .await?;
    insert_events(&tx, sql, id, &rewind.events, OP).await?;
    tx.commit().await.during(OP)?;
    Ok(RewindOutcome::Rewound)
}

pub(super) async fn fork_run(
    client: &mut Object,
    sql: &Sql,
    fork: &ForkRun,
) -> Result<CreateOutcome, StoreError> {
    const OP: &str = "forking a run";
    let run = &fork.run;
    let tx = client.transaction().await.during(OP)?;
    // The source's row lock first: its annotation is written under it, and a fork of a run that does
    // not exist creates nothing.
    if query_opt(&tx, &sql.lock_run, &[&fork.source_id], OP)
        .await?
        .is_none()
    {
        return Err(StoreError::Conflict {
            operation: OP,
            message: format!("no run has the workflow id `{}`", fork.source_id),
        });
    }
    let inserted = super::queries::insert_run(&tx, sql, run, OP).await?;
    if !inserted {
        let existing = query_opt(&tx, &sql.select_run, &[&run.workflow_id], OP).await?;
        drop(tx);
        return match existing {
            Some(row) => Ok(CreateOutcome::Existing(Box::new(
                super::queries::run_from_row(&row, OP)?,
            ))),
            None => Err(StoreError::Conflict {
                operation: OP,
                message: format!("run `{}` neither inserted nor found", run.workflow_id),
            }),
        };
    }
    insert_events(&tx, sql, &run.workflow_id, &run.events, OP).await?;
    insert_events(&tx, sql, &run.workflow_id, &fork.events, OP).await?;
    insert_events(&tx, sql, &fork.source_id, &fork.source_events, OP).await?;
    tx.commit().await.during(OP)?;
    Ok(CreateOutcome::Created)
}

/// Appends `events` to a run whose row the transaction has locked (or just created), with their
/// wake-ups.
pub(super) async fn insert_events<C: GenericClient>(
    tx: &C,
    sql: &Sql,
    id: &String,
    events: &[NewEvent],
    op: &'static str,
) -> Result<(), StoreError> {
    let now = now_ms();
    for event in events {
        let step = i64::from(event.step);
        if let Some(at_ms) = event.wake_at_ms {
            execute(tx, &sql.upsert_wakeup, &[id, &step, &at_ms], op).await?;
        }
        if event.completion {
            execute(tx, &sql.delete_wakeup, &[id, &step], op).await?;
        }
        let kind = i32::from(event.kind);
        execute(
            tx,
            &sql.insert_event,
            &[id, &step, &kind, &event.completion, &event.payload, &now],
            op,
        )
        .await?;
    }
    Ok(())
}
