//! Operator actions ([`Store::operate`]): pause, resume and terminate, their audit events and
//! refusals, what a pause hides (wake-ups, claims) and what a termination closes (the journal, the
//! lease); and the `list_runs` filters operators use.

use std::sync::Arc;

use super::support::{Ck, completion, new_run, note, status_commit, timer};
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{
    Commit, Lease, NewEvent, OperatorChange, OperatorOutcome, OperatorWrite, PauseInfo, RunQuery,
    RunState, StatusChange, Store,
};

/// The event kind of an operator event (`EventBody::Operator`).
const KIND_OPERATOR: u16 = 16;

fn audit(tag: &str) -> NewEvent {
    note(0, KIND_OPERATOR, tag.as_bytes())
}

fn write(id: &str, change: OperatorChange, tag: &str) -> OperatorWrite {
    OperatorWrite {
        workflow_id: id.to_string(),
        change,
        audit: audit(tag),
    }
}

fn pause(by: &str, at_ms: i64) -> OperatorChange {
    OperatorChange::Pause(PauseInfo {
        by: by.to_string(),
        reason: format!("reason of {by}"),
        at_ms,
    })
}

fn terminate(text: &str) -> OperatorChange {
    OperatorChange::Terminate {
        error: text.as_bytes().to_vec(),
        text: text.to_string(),
    }
}

async fn operate(
    ck: &Ck,
    what: &str,
    write: OperatorWrite,
    expected: OperatorOutcome,
) -> Result<(), ConformanceFailure> {
    let id = write.workflow_id.clone();
    let found = ck
        .ok(format!("operate(`{id}`, {what})"), ck.store.operate(write))
        .await?;
    ck.eq(
        format!("the outcome of {what} on `{id}`"),
        &expected,
        &found,
    )
}

/// The audit events (payloads at step 0 of the operator kind) of a run, in history order.
async fn audits(ck: &Ck, id: &str) -> Result<Vec<String>, ConformanceFailure> {
    Ok(ck
        .history(id)
        .await?
        .into_iter()
        .filter(|event| event.kind == KIND_OPERATOR && event.step == 0)
        .map(|event| String::from_utf8_lossy(&event.payload).into_owned())
        .collect())
}

/// **Contract:** `operate` applies an operator action and appends its audit event (a
/// non-completion event at step 0) in one transaction, or writes nothing and says why:
/// `NoSuchRun`, `RunFinished` (every action on a finished run), `AlreadyPaused` (pause of a paused
/// run), `NotPaused` (resume of a run that is not paused). A pause is on the record
/// ([`RunRecord::paused`](crate::store::RunRecord)) and hides the run's wake-ups until it is resumed.
/// A termination (of a running, paused or parked run) ends it in [`RunState::Terminated`] with the
/// given error, clears the pause and the wake-ups, and closes the journal: a later commit is
/// rejected.
pub async fn operator_actions(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("operator_actions", store);
    operate(
        &ck,
        "pause",
        write("op/none", pause("a", 1), "p"),
        OperatorOutcome::NoSuchRun,
    )
    .await?;

    let id = "op/1";
    ck.create(id, "op").await?;
    ck.commit(
        "a timer due long ago",
        Commit::events(id, vec![timer(1, 1_000)]),
    )
    .await?;
    operate(
        &ck,
        "resume",
        write(id, OperatorChange::Resume, "r0"),
        OperatorOutcome::NotPaused,
    )
    .await?;
    ck.eq(
        "audit events after a refused resume",
        &Vec::<String>::new(),
        &audits(&ck, id).await?,
    )?;

    operate(
        &ck,
        "pause",
        write(id, pause("alice", 42), "p1"),
        OperatorOutcome::Applied,
    )
    .await?;
    let record = ck.record(id).await?;
    let expected = Some(PauseInfo {
        by: "alice".to_string(),
        reason: "reason of alice".to_string(),
        at_ms: 42,
    });
    ck.eq(format!("the pause on `{id}`"), &expected, &record.paused)?;
    ck.eq(
        format!("the state of paused `{id}`"),
        &RunState::Running,
        &record.state,
    )?;
    ck.ensure(
        ck.wakeups_of(id).await?.is_empty(),
        format!("due_wakeups of paused `{id}`"),
        "none while paused",
        "its timer",
    )?;
    operate(
        &ck,
        "a second pause",
        write(id, pause("bob", 43), "p2"),
        OperatorOutcome::AlreadyPaused,
    )
    .await?;
    ck.eq(
        format!("the pause on `{id}` after a second pause"),
        &expected,
        &ck.record(id).await?.paused,
    )?;
    ck.eq(
        "audit events after two pauses",
        &vec!["p1".to_string()],
        &audits(&ck, id).await?,
    )?;

    operate(
        &ck,
        "resume",
        write(id, OperatorChange::Resume, "r1"),
        OperatorOutcome::Applied,
    )
    .await?;
    ck.eq(
        format!("the pause on resumed `{id}`"),
        &None,
        &ck.record(id).await?.paused,
    )?;
    ck.eq(
        format!("due_wakeups of resumed `{id}`"),
        &1,
        &ck.wakeups_of(id).await?.len(),
    )?;

    operate(
        &ck,
        "pause",
        write(id, pause("carol", 44), "p3"),
        OperatorOutcome::Applied,
    )
    .await?;
    operate(
        &ck,
        "terminate",
        write(id, terminate("ended"), "t1"),
        OperatorOutcome::Applied,
    )
    .await?;
    let record = ck.record(id).await?;
    ck.eq(
        format!("the state of terminated `{id}`"),
        &RunState::Terminated,
        &record.state,
    )?;
    ck.eq(
        format!("the error of terminated `{id}`"),
        &Some(b"ended".to_vec()),
        &record.error,
    )?;
    ck.eq(
        format!("the pause on terminated `{id}`"),
        &None,
        &record.paused,
    )?;
    ck.ensure(
        ck.wakeups_of(id).await?.is_empty(),
        format!("due_wakeups of terminated `{id}`"),
        "none",
        "its timer",
    )?;
    let late = ck
        .store
        .commit(Commit::events(id, vec![completion(1, b"late")]))
        .await;
    ck.conflict(format!("a commit to terminated `{id}`"), late)?;
    for (what, change) in [
        ("pause", pause("dave", 45)),
        ("resume", OperatorChange::Resume),
        ("terminate", terminate("again")),
    ] {
        operate(
            &ck,
            what,
            write(id, change, "x"),
            OperatorOutcome::RunFinished,
        )
        .await?;
    }
    ck.eq(
        format!("the audit events of `{id}`"),
        &vec!["p1", "r1", "p3", "t1"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
        &audits(&ck, id).await?,
    )?;

    // A parked run can be terminated; a completed one cannot.
    ck.create("op/parked", "op").await?;
    ck.set_status(
        "op/parked",
        StatusChange::Park {
            reason: b"p".to_vec(),
        },
    )
    .await?;
    operate(
        &ck,
        "terminate",
        write("op/parked", terminate("gone"), "t"),
        OperatorOutcome::Applied,
    )
    .await?;
    ck.create("op/done", "op").await?;
    ck.set_status("op/done", StatusChange::Complete { output: Vec::new() })
        .await?;
    operate(
        &ck,
        "pause",
        write("op/done", pause("a", 1), "p"),
        OperatorOutcome::RunFinished,
    )
    .await?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `list_runs` also filters by pause (`paused`), parent (`parent_id`), creation and
/// last-change time (`[from, until)`), and error text (`error_contains`: a substring of the text a
/// status change or termination recorded, ignoring ASCII case; a run without error text never
/// matches).
pub async fn list_runs_operator_filters(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("list_runs_operator_filters", store);
    ck.create("f/parent", "f").await?;
    let mut child = new_run("f/child", "f");
    child.parent_id = Some("f/parent".to_string());
    ck.create_run(child).await?;
    ck.create("f/failed", "f").await?;
    let mut fail = status_commit(
        "f/failed",
        StatusChange::Fail {
            error: b"x".to_vec(),
        },
    );
    fail.error_text = Some("Card DECLINED by the bank".to_string());
    ck.commit("a failure with its text", fail).await?;
    ck.create("f/paused", "f").await?;
    operate(
        &ck,
        "pause",
        write("f/paused", pause("a", 1), "p"),
        OperatorOutcome::Applied,
    )
    .await?;
    ck.create("f/ended", "f").await?;
    operate(
        &ck,
        "terminate",
        write("f/ended", terminate("terminated by ops: declined"), "t"),
        OperatorOutcome::Applied,
    )
    .await?;

    let records = [
        ck.record("f/parent").await?,
        ck.record("f/child").await?,
        ck.record("f/failed").await?,
        ck.record("f/paused").await?,
        ck.record("f/ended").await?,
    ];
    let newest_created = records.iter().map(|r| r.created_at_ms).max().unwrap_or(0);
    let oldest_created = records.iter().map(|r| r.created_at_ms).min().unwrap_or(0);
    let newest_update = records.iter().map(|r| r.updated_at_ms).max().unwrap_or(0);
    let cases: Vec<(&str, RunQuery, Vec<&str>)> = vec![
        ("paused", RunQuery::new().paused(true), vec!["f/paused"]),
        (
            "not paused",
            RunQuery::new().paused(false),
            vec!["f/child", "f/ended", "f/failed", "f/parent"],
        ),
        (
            "parent f/parent",
            RunQuery::new().parent_id("f/parent"),
            vec!["f/child"],
        ),
        (
            "error contains `declined` (any case)",
            RunQuery::new().error_contains("declined"),
            vec!["f/ended", "f/failed"],
        ),
        (
            "error contains `bank`",
            RunQuery::new().error_contains("BANK"),
            vec!["f/failed"],
        ),
        (
            "error contains `nothing`",
            RunQuery::new().error_contains("nothing"),
            Vec::new(),
        ),
        (
            "created in [oldest, newest + 1)",
            RunQuery::new().created_between(Some(oldest_created), Some(newest_created + 1)),
            vec!["f/child", "f/ended", "f/failed", "f/parent", "f/paused"],
        ),
        (
            "created before the oldest",
            RunQuery::new().created_between(None, Some(oldest_created)),
            Vec::new(),
        ),
        (
            "created after the newest",
            RunQuery::new().created_between(Some(newest_created + 1), None),
            Vec::new(),
        ),
        (
            "updated after the newest change",
            RunQuery::new().updated_between(Some(newest_update + 1), None),
            Vec::new(),
        ),
        (
            "updated until after the newest change",
            RunQuery::new().updated_between(None, Some(newest_update + 1)),
            vec!["f/child", "f/ended", "f/failed", "f/parent", "f/paused"],
        ),
    ];
    for (what, query, expected) in cases {
        let page = ck
            .ok(format!("list_runs({what})"), ck.store.list_runs(&query))
            .await?;
        let found: Vec<&str> = page
            .runs
            .iter()
            .map(|run| run.workflow_id.as_str())
            .collect();
        ck.eq(format!("list_runs({what})"), &expected, &found)?;
    }
    Ok(CheckOutcome::Passed)
}

/// **Contract** (stores with leases): a paused run stays with its owner (renewals keep it, and
/// `owned_pauses` lists it for the owner) but is never claimed, even once its lease expired; once
/// resumed it is claimable again. A termination clears the owner: the old owner's fenced commits are
/// rejected as stale and its renewals no longer return the run.
pub async fn lease_pauses_and_terminations(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_pauses_and_terminations", store.clone());
    let Some(leases) = store.leases() else {
        return Ok(CheckOutcome::Skipped {
            reason:
                "the store has no leases (Store::leases() is None): one engine owns it at a time"
                    .to_string(),
        });
    };
    let owned = |id: &str| {
        let mut run = new_run(id, "lp");
        run.owner = Some(Lease {
            node: "a".to_string(),
            epoch: 1,
            duration_ms: 100,
        });
        run
    };
    ck.create_run(owned("lp/paused")).await?;
    ck.create_run(owned("lp/ended")).await?;
    operate(
        &ck,
        "pause",
        write("lp/paused", pause("ops", 1), "p"),
        OperatorOutcome::Applied,
    )
    .await?;
    let pauses = ck.ok("owned_pauses(`a`)", leases.owned_pauses("a")).await?;
    ck.eq("owned_pauses(`a`)", &vec!["lp/paused".to_string()], &pauses)?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let claims = ck
        .ok("claim_runs(`b`)", leases.claim_runs("b", 60_000, 10))
        .await?;
    let claimed: Vec<&str> = claims.iter().map(|c| c.workflow_id.as_str()).collect();
    ck.eq(
        "claim_runs(`b`) with a paused expired run",
        &vec!["lp/ended"],
        &claimed,
    )?;

    // Terminate `lp/ended`, now held by b: b's writes are fenced out.
    let epoch = claims.first().map_or(0, |claim| claim.epoch);
    operate(
        &ck,
        "terminate",
        write("lp/ended", terminate("stop"), "t"),
        OperatorOutcome::Applied,
    )
    .await?;
    let mut late = Commit::events("lp/ended", vec![completion(1, b"late")]);
    late.fence = Some(("b".to_string(), epoch));
    let error = ck.rejected(
        "a fenced commit to a terminated run",
        ck.store.commit(late).await,
    )?;
    ck.ensure(
        matches!(error, crate::store::StoreError::StaleLease { .. }),
        "a fenced commit to a terminated run",
        "StoreError::StaleLease",
        format!("{error:?}"),
    )?;
    let renewed = ck
        .ok("renew_leases(`b`)", leases.renew_leases("b", 60_000))
        .await?;
    ck.ensure(
        renewed.iter().all(|claim| claim.workflow_id != "lp/ended"),
        "renew_leases(`b`) after the termination",
        "without `lp/ended`",
        format!("{renewed:?}"),
    )?;

    operate(
        &ck,
        "resume",
        write("lp/paused", OperatorChange::Resume, "r"),
        OperatorOutcome::Applied,
    )
    .await?;
    let claims = ck
        .ok("claim_runs(`b`)", leases.claim_runs("b", 60_000, 10))
        .await?;
    let claimed: Vec<&str> = claims.iter().map(|c| c.workflow_id.as_str()).collect();
    ck.eq(
        "claim_runs(`b`) after the resume",
        &vec!["lp/paused"],
        &claimed,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** a run created with [`NewRun::paused`](crate::store::NewRun::paused) is paused from
/// the write that creates it, as if [`OperatorChange::Pause`] had been applied in the same
/// transaction: the record carries the pause, the audit event given with its first events is in its
/// history, its wake-ups (a past-due timer, a past execution deadline) are hidden from
/// `due_wakeups`, `list_runs` lists it as paused, a second pause is `AlreadyPaused` and a resume
/// shows its wake-ups again. With leases, its owner's `owned_pauses` lists it and no node claims it,
/// even once its lease expired. (An imported unfinished run is created this way: a store that
/// ignored the field would let an engine drive it before anyone resumed it.)
pub async fn create_run_paused(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("create_run_paused", store.clone());
    let id = "cp/held";
    let expected = PauseInfo {
        by: "import".to_string(),
        reason: "held from its creation".to_string(),
        at_ms: 7,
    };
    let mut run = new_run(id, "cp");
    run.events = vec![timer(1, 1_000), audit("held")];
    run.deadline_ms = Some(2_000);
    run.execution_timeout_ms = Some(1_000);
    run.paused = Some(expected.clone());
    if store.leases().is_some() {
        run.owner = Some(Lease {
            node: "a".to_string(),
            epoch: 1,
            duration_ms: 100,
        });
    }
    ck.create_run(run).await?;
    ck.create("cp/free", "cp").await?;

    let record = ck.record(id).await?;
    ck.eq(
        format!("the pause on `{id}` created paused"),
        &Some(expected),
        &record.paused,
    )?;
    ck.eq(
        format!("the state of `{id}` created paused"),
        &RunState::Running,
        &record.state,
    )?;
    ck.eq(
        format!("the audit events of `{id}` created paused"),
        &vec!["held".to_string()],
        &audits(&ck, id).await?,
    )?;
    ck.ensure(
        ck.wakeups_of(id).await?.is_empty(),
        format!("due_wakeups of `{id}` created paused"),
        "none (its past-due timer and deadline are hidden while it is paused)",
        "its wake-ups",
    )?;
    let page = ck
        .ok(
            "list_runs(paused)",
            ck.store.list_runs(&RunQuery::new().paused(true)),
        )
        .await?;
    let listed: Vec<&str> = page.runs.iter().map(|r| r.workflow_id.as_str()).collect();
    ck.eq("list_runs(paused)", &vec![id], &listed)?;
    ck.eq(
        "the pause on `cp/free`, created without one",
        &None,
        &ck.record("cp/free").await?.paused,
    )?;

    if let Some(leases) = store.leases() {
        let pauses = ck.ok("owned_pauses(`a`)", leases.owned_pauses("a")).await?;
        ck.eq("owned_pauses(`a`)", &vec![id.to_string()], &pauses)?;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let claims = ck
            .ok("claim_runs(`b`)", leases.claim_runs("b", 60_000, 10))
            .await?;
        ck.ensure(
            claims.iter().all(|claim| claim.workflow_id != id),
            format!("claim_runs(`b`) once the lease of `{id}` (created paused) expired"),
            format!("without `{id}`"),
            format!("{claims:?}"),
        )?;
    }

    operate(
        &ck,
        "pause",
        write(id, pause("ops", 8), "p"),
        OperatorOutcome::AlreadyPaused,
    )
    .await?;
    operate(
        &ck,
        "resume",
        write(id, OperatorChange::Resume, "r"),
        OperatorOutcome::Applied,
    )
    .await?;
    ck.eq(
        format!("the pause on resumed `{id}`"),
        &None,
        &ck.record(id).await?.paused,
    )?;
    ck.ensure(
        !ck.wakeups_of(id).await?.is_empty(),
        format!("due_wakeups of resumed `{id}`"),
        "its wake-up",
        "none",
    )?;
    ck.eq(
        format!("the audit events of resumed `{id}`"),
        &vec!["held".to_string(), "r".to_string()],
        &audits(&ck, id).await?,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `count_runs` counts, by state, every run matching the query's filters — the
/// same runs `list_runs` pages through — ignoring the query's `after` cursor and `limit`; `paused`
/// counts the matching runs an operator paused, and `total` is the sum of the states.
pub async fn count_runs_by_state(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("count_runs_by_state", store);
    for n in 0..5 {
        ck.create(&format!("count/a{n}"), "alpha").await?;
    }
    for n in 0..3 {
        let id = format!("count/b{n}");
        ck.create(&id, "beta").await?;
        ck.set_status(
            &id,
            StatusChange::Fail {
                error: b"e".to_vec(),
            },
        )
        .await?;
    }
    ck.create("count/c0", "beta").await?;
    ck.set_status(
        "count/c0",
        StatusChange::Complete {
            output: b"o".to_vec(),
        },
    )
    .await?;
    ck.create("other/p0", "alpha").await?;
    operate(
        &ck,
        "pause",
        write("other/p0", pause("op", 7), "p"),
        OperatorOutcome::Applied,
    )
    .await?;
    ck.create("other/t0", "alpha").await?;
    operate(
        &ck,
        "terminate",
        write("other/t0", terminate("Needle in the error"), "t"),
        OperatorOutcome::Applied,
    )
    .await?;

    let cases: [(&str, RunQuery); 6] = [
        ("every run", RunQuery::new()),
        (
            "every run, with a cursor and a page size of 1",
            RunQuery::new().after("count/z").limit(1),
        ),
        ("workflow alpha", RunQuery::new().workflow_name("alpha")),
        ("prefix count/", RunQuery::new().id_prefix("count/")),
        (
            "failed beta",
            RunQuery::new()
                .workflow_name("beta")
                .state(RunState::Failed),
        ),
        (
            "error text `needle`",
            RunQuery::new().error_contains("needle"),
        ),
    ];
    let expected = |running, completed, failed, terminated, paused| {
        let mut counts = crate::store::StatusCounts::default();
        counts.add(RunState::Running, running);
        counts.add(RunState::Completed, completed);
        counts.add(RunState::Failed, failed);
        counts.add(RunState::Terminated, terminated);
        counts.paused = paused;
        counts
    };
    let wanted = [
        expected(6, 1, 3, 1, 1),
        expected(6, 1, 3, 1, 1),
        expected(6, 0, 0, 1, 1),
        expected(5, 1, 3, 0, 0),
        expected(0, 0, 3, 0, 0),
        expected(0, 0, 0, 1, 0),
    ];
    for ((what, query), wanted) in cases.iter().zip(wanted) {
        let counts = ck
            .ok(format!("count_runs({what})"), ck.store.count_runs(query))
            .await?;
        ck.eq(format!("the counts of {what}"), &wanted, &counts)?;
    }
    Ok(CheckOutcome::Passed)
}
