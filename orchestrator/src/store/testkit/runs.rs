//! Runs: creation, the run record, and the list of unfinished runs.

use std::sync::Arc;

use super::support::{Ck, completion, new_run, timer};
use super::{CheckOutcome, ConformanceFailure};
use crate::clock::now_ms;
use crate::store::{CreateOutcome, NewRun, RunQuery, RunRecord, RunState, StatusChange, Store};

/// **Contract:** `create_run` is idempotent on the workflow id. Creating a run whose id exists writes
/// nothing and returns `CreateOutcome::Existing` with the stored record: the original name, input,
/// parent and deadlines, never those of the second request. This holds after the run has progressed
/// and after it finished (its journal, state and output are kept) — it is how `Engine::start` stays
/// idempotent. The events a creation carries ([`NewRun::events`]) are written with the row, wake-ups
/// included, all or nothing, and not at all when the run exists.
pub async fn create_run_idempotent(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("create_run_idempotent", store);
    let id = "order-42";
    ck.create_run(NewRun {
        deadline_ms: Some(4_102_444_800_000),
        execution_timeout_ms: Some(60_000),
        ..new_run(id, "checkout")
    })
    .await?;
    let original = ck.record(id).await?;
    let second = NewRun {
        workflow_id: id.to_string(),
        workflow_name: "other_workflow".to_string(),
        input: b"second input".to_vec(),
        parent_id: Some("some-parent".to_string()),
        deadline_ms: None,
        execution_timeout_ms: None,
        owner: None,
        events: vec![completion(1, b"from a second start")],
        paused: None,
    };
    expect_existing(
        &ck,
        "a second create_run of a running run",
        second.clone(),
        &original,
    )
    .await?;
    ck.eq(
        "the stored record after a second create_run",
        &original,
        &ck.record(id).await?,
    )?;

    ck.commit(
        "step 1",
        crate::store::Commit::events(id, vec![completion(1, b"charged")]),
    )
    .await?;
    ck.set_status(
        id,
        StatusChange::Complete {
            output: b"receipt".to_vec(),
        },
    )
    .await?;
    let finished = ck.record(id).await?;
    ck.eq(
        "state after completing",
        &RunState::Completed,
        &finished.state,
    )?;
    expect_existing(&ck, "create_run of a finished run", second, &finished).await?;
    ck.eq(
        "the stored record after create_run of a finished run",
        &finished,
        &ck.record(id).await?,
    )?;
    let history = ck.steps(id).await?;
    ck.eq(
        "the history after create_run of a finished run",
        &vec![(1, super::support::KIND_COMPLETION, b"charged".to_vec())],
        &history,
    )?;

    // A creation that carries the run's first events: written with the row, wake-ups included.
    let with_events = "order-43";
    let due_at = now_ms() + 3_600_000;
    ck.create_run(NewRun {
        events: vec![timer(1, due_at), completion(2, b"first poll")],
        ..new_run(with_events, "checkout")
    })
    .await?;
    ck.eq(
        "the history of a run created with events",
        &vec![
            (1, super::support::KIND_TIMER, due_at.to_le_bytes().to_vec()),
            (2, super::support::KIND_COMPLETION, b"first poll".to_vec()),
        ],
        &ck.steps(with_events).await?,
    )?;
    let wakeups: Vec<i64> = ck
        .wakeups_of(with_events)
        .await?
        .into_iter()
        .map(|wakeup| wakeup.at_ms)
        .collect();
    ck.eq(
        "the wake-ups of a run created with a timer event",
        &vec![due_at],
        &wakeups,
    )?;

    // All or nothing: a creation whose events conflict (two completions of one step) writes no row.
    let broken = "order-44";
    let refused = ck
        .store
        .create_run(NewRun {
            events: vec![completion(1, b"one"), completion(1, b"two")],
            ..new_run(broken, "checkout")
        })
        .await;
    ck.ensure(
        refused.is_err(),
        "create_run with two completions of step 1",
        "an error",
        format!("{refused:?}"),
    )?;
    let row = ck.ok("run(`order-44`)", ck.store.run(broken)).await?;
    ck.ensure(
        row.is_none(),
        "the run after its creation failed",
        "no row",
        format!("{row:?}"),
    )?;
    let history = ck.history(broken).await?;
    ck.ensure(
        history.is_empty(),
        "the history after the creation failed",
        "no events",
        format!("{history:?}"),
    )?;
    Ok(CheckOutcome::Passed)
}

async fn expect_existing(
    ck: &Ck,
    what: &str,
    run: NewRun,
    stored: &RunRecord,
) -> Result<(), ConformanceFailure> {
    match ck.ok(what, ck.store.create_run(run)).await? {
        CreateOutcome::Existing(record) => {
            ck.eq(format!("the record returned by {what}"), stored, &*record)
        }
        CreateOutcome::Created => Err(ck.violation(
            what,
            "CreateOutcome::Existing(the stored record)",
            "CreateOutcome::Created",
        )),
    }
}

/// **Contract:** a created run reads back exactly as created — workflow id (any UTF-8), name, input
/// bytes (empty too), parent, deadline and execution timeout, `None` where absent — in state
/// `Running`, with `run_no` 0, no output, error or cancel reason, `created_at_ms` in Unix
/// milliseconds and `updated_at_ms >= created_at_ms`. `list_runs` returns the same record. Reads of
/// an unknown workflow id find nothing (`None` or empty), and are not errors.
pub async fn run_record_round_trip(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("run_record_round_trip", store);
    let before = now_ms();
    let full = NewRun {
        workflow_id: "rt-ünïcødé/🚀 1".to_string(),
        workflow_name: "round_trip".to_string(),
        input: (0..=255).collect(),
        parent_id: Some("rt-parent".to_string()),
        deadline_ms: Some(4_102_444_800_000),
        execution_timeout_ms: Some(86_400_000),
        owner: None,
        events: Vec::new(),
        paused: None,
    };
    let minimal = NewRun {
        input: Vec::new(),
        ..new_run("rt-minimal", "minimal")
    };
    for run in [full, minimal] {
        let id = run.workflow_id.clone();
        ck.create_run(run.clone()).await?;
        let after = now_ms();
        let found = ck.record(&id).await?;
        let expected = RunRecord {
            workflow_id: run.workflow_id,
            workflow_name: run.workflow_name,
            state: RunState::Running,
            input: run.input,
            output: None,
            error: None,
            run_no: 0,
            parent_id: run.parent_id,
            cancel_reason: None,
            deadline_ms: run.deadline_ms,
            execution_timeout_ms: run.execution_timeout_ms,
            created_at_ms: found.created_at_ms,
            updated_at_ms: found.updated_at_ms,
            paused: None,
        };
        ck.eq(format!("the record of `{id}`"), &expected, &found)?;
        let hour = 3_600_000;
        ck.ensure(
            found.created_at_ms >= before - hour && found.created_at_ms <= after + hour,
            format!("created_at_ms of `{id}`"),
            format!("Unix milliseconds near {before}"),
            found.created_at_ms,
        )?;
        ck.ensure(
            found.updated_at_ms >= found.created_at_ms,
            format!("updated_at_ms of `{id}`"),
            format!(">= created_at_ms ({})", found.created_at_ms),
            found.updated_at_ms,
        )?;
        let page = ck
            .ok(
                format!("list_runs(prefix `{id}`)"),
                ck.store.list_runs(&RunQuery::new().id_prefix(id.clone())),
            )
            .await?;
        ck.eq(
            format!("list_runs(prefix `{id}`)"),
            &vec![found],
            &page.runs,
        )?;
    }

    let unknown = "rt-unknown";
    let record = ck.ok("run(unknown id)", ck.store.run(unknown)).await?;
    ck.eq("run(unknown id)", &None, &record)?;
    ck.eq(
        "history(unknown id)",
        &Vec::new(),
        &ck.history(unknown).await?,
    )?;
    ck.eq(
        "pending_signals(unknown id)",
        &Vec::new(),
        &ck.pending(unknown).await?,
    )?;
    ck.eq("value(unknown id)", &None, &ck.value(unknown, "key").await?)?;
    let archived = ck
        .ok("archived_runs(unknown id)", ck.store.archived_runs(unknown))
        .await?;
    ck.eq("archived_runs(unknown id)", &Vec::new(), &archived)?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `unfinished_runs` (what an engine resumes at start) lists exactly the runs that are
/// running or parked — including one parked and resumed — each once and with its current record; never a
/// completed, failed, cancelled or compensation-failed run.
pub async fn unfinished_runs_lists_running_and_parked(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("unfinished_runs_lists_running_and_parked", store);
    let outcomes: [(&str, Vec<StatusChange>); 7] = [
        ("u-running", vec![]),
        ("u-parked", vec![park()]),
        ("u-resumed", vec![park(), StatusChange::Resume]),
        (
            "u-completed",
            vec![StatusChange::Complete {
                output: b"out".to_vec(),
            }],
        ),
        (
            "u-failed",
            vec![StatusChange::Fail {
                error: b"err".to_vec(),
            }],
        ),
        (
            "u-cancelled",
            vec![StatusChange::Cancel {
                error: b"cancelled".to_vec(),
            }],
        ),
        (
            "u-compensation-failed",
            vec![StatusChange::CompensationFail {
                error: b"rollback".to_vec(),
            }],
        ),
    ];
    for (id, changes) in outcomes {
        ck.create(id, "unfinished").await?;
        for change in changes {
            ck.set_status(id, change).await?;
        }
    }
    let mut found = ck
        .ok("unfinished_runs()", ck.store.unfinished_runs())
        .await?;
    found.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
    let mut expected = Vec::new();
    for id in ["u-parked", "u-resumed", "u-running"] {
        expected.push(ck.record(id).await?);
    }
    ck.eq("unfinished_runs() (sorted by id)", &expected, &found)?;
    Ok(CheckOutcome::Passed)
}

fn park() -> StatusChange {
    StatusChange::Park {
        reason: b"parked by the test".to_vec(),
    }
}
