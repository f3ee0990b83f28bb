//! Commits: atomicity, event order, the one-completion rule, status changes, the `run_no` guard,
//! continue-as-new and published values.

use std::sync::Arc;

use super::support::{
    Ck, KIND_COMPLETION, KIND_NOTE, KIND_TIMER, completion, note, status_commit, status_name, timer,
};
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{Commit, RunState, StatusChange, Store};

/// A wake-up time far from any clock: the checks never wait for it.
const T0: i64 = 1_700_000_000_000;

/// **Contract:** a commit is all or nothing. When any part of it is rejected — its second event
/// completes an already completed step; its status change is not allowed from the run's state; its
/// signal was already consumed; its two events complete the same step — the store returns an error
/// and nothing of the commit is visible: no event, no consumed signal, no published value, no status
/// change, no wake-up. A commit to an unknown workflow id fails and leaves no trace. The same commit,
/// once valid, applies in full.
pub async fn commit_atomicity(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("commit_atomicity", store);
    let id = "atomic";
    let keys = ["k", "k2"];
    ck.create(id, "atomicity").await?;
    let consumed = ck.signal(id, "first", b"consumed by step 1").await?;
    let pending = ck.signal(id, "second", b"stays pending").await?;
    let mut baseline = Commit::events(id, vec![timer(5, T0 + 900), completion(1, b"step 1")]);
    baseline.consume_signal = Some(consumed.id);
    baseline.values = vec![("k".to_string(), b"v0".to_vec())];
    ck.commit("the baseline", baseline).await?;
    let before = ck.snapshot(id, &keys).await?;

    let full = |events| Commit {
        workflow_id: id.to_string(),
        events,
        consume_signal: Some(pending.id),
        status: Some(StatusChange::Complete {
            output: b"must not be stored".to_vec(),
        }),
        values: vec![
            ("k".to_string(), b"v1".to_vec()),
            ("k2".to_string(), b"new".to_vec()),
        ],
        run_no: None,
        fence: None,
        error_text: None,
    };

    let what = "a commit whose second event completes step 1 again";
    let result = ck
        .store
        .commit(full(vec![timer(2, T0 + 100), completion(1, b"again")]))
        .await;
    ck.conflict(what, result)?;
    ck.unchanged(what, id, &keys, &before).await?;

    let what = "a commit whose two events complete step 2";
    let result = ck
        .store
        .commit(full(vec![completion(2, b"a"), completion(2, b"b")]))
        .await;
    ck.conflict(what, result)?;
    ck.unchanged(what, id, &keys, &before).await?;

    let what = "a commit whose status change (Resume of a running run) is not allowed";
    let mut commit = full(vec![completion(2, b"step 2"), timer(3, T0 + 100)]);
    commit.status = Some(StatusChange::Resume);
    ck.conflict(what, ck.store.commit(commit).await)?;
    ck.unchanged(what, id, &keys, &before).await?;

    let what = "a commit consuming an already consumed signal";
    let mut commit = full(vec![completion(2, b"step 2"), timer(3, T0 + 100)]);
    commit.consume_signal = Some(consumed.id);
    ck.conflict(what, ck.store.commit(commit).await)?;
    ck.unchanged(what, id, &keys, &before).await?;

    let missing = "atomic-missing";
    let what = "a commit to an unknown workflow id";
    let mut commit = full(vec![completion(1, b"orphan"), timer(2, T0 + 100)]);
    commit.workflow_id = missing.to_string();
    commit.consume_signal = None;
    commit.status = None;
    let result = ck.store.commit(commit).await;
    ck.rejected(what, result)?;
    let nothing = super::support::Snapshot {
        record: None,
        history: Vec::new(),
        pending: Vec::new(),
        values: keys.iter().map(|key| ((*key).to_string(), None)).collect(),
        archived: Vec::new(),
        wakeups: Vec::new(),
    };
    ck.unchanged(what, missing, &keys, &nothing).await?;

    // The same commit, valid now, applies in full.
    let mut commit = full(vec![completion(2, b"step 2"), timer(3, T0 + 100)]);
    commit.status = None;
    ck.commit("the valid commit", commit).await?;
    let after = ck.snapshot(id, &keys).await?;
    ck.eq(
        "pending signals after a valid commit consumed one",
        &Vec::new(),
        &after.pending,
    )?;
    ck.eq(
        "published values after a valid commit",
        &vec![
            ("k".to_string(), Some(b"v1".to_vec())),
            ("k2".to_string(), Some(b"new".to_vec())),
        ],
        &after.values,
    )?;
    let steps: Vec<u32> = after.history.iter().map(|event| event.step).collect();
    ck.eq(
        "steps of the history after a valid commit",
        &vec![5, 1, 2, 3],
        &steps,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `history` returns a run's events exactly as committed — step, kind and payload
/// round-trip (an empty payload, a 1 MiB payload, step `u32::MAX`, kind `u16::MAX`) — in commit order
/// and, within a commit, in the order given, with strictly increasing `seq`; only that run's events,
/// however commits to several runs interleave.
pub async fn events_in_commit_order(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("events_in_commit_order", store);
    ck.create("order-a", "ordering").await?;
    ck.create("order-b", "ordering").await?;
    let mut expected_a = Vec::new();
    let mut expected_b = Vec::new();
    for i in 0..10u32 {
        let step = i + 1;
        let events = vec![
            note(step, KIND_NOTE, format!("a-{i}-note").as_bytes()),
            completion(step, format!("a-{i}-done").as_bytes()),
        ];
        expected_a.extend(events.iter().map(|e| (e.step, e.kind, e.payload.clone())));
        ck.commit(format!("commit {i}"), Commit::events("order-a", events))
            .await?;
        // Steps of `order-b` go backwards: order is the commit order, not the step order.
        let event = completion(100 - i, format!("b-{i}").as_bytes());
        expected_b.push((event.step, event.kind, event.payload.clone()));
        ck.commit(
            format!("commit {i}"),
            Commit::events("order-b", vec![event]),
        )
        .await?;
    }
    let odd = vec![
        note(11, KIND_NOTE, b""),
        note(11, KIND_TIMER, &[0xAB; 1 << 20]),
        note(11, u16::MAX, b"\0\xff\0"),
        completion(u32::MAX, b"last step"),
        note(11, KIND_NOTE, b"after the completion, in the same commit"),
    ];
    expected_a.extend(odd.iter().map(|e| (e.step, e.kind, e.payload.clone())));
    ck.commit("unusual events", Commit::events("order-a", odd))
        .await?;
    let found_a = ck.steps("order-a").await?;
    ck.ensure(
        found_a == expected_a,
        "history of `order-a` (step, kind, payload)",
        describe(&expected_a),
        describe(&found_a),
    )?;
    let found_b = ck.steps("order-b").await?;
    ck.ensure(
        found_b == expected_b,
        "history of `order-b` (step, kind, payload)",
        describe(&expected_b),
        describe(&found_b),
    )?;
    Ok(CheckOutcome::Passed)
}

/// Events for messages, with long payloads shortened.
fn describe(events: &[(u32, u16, Vec<u8>)]) -> String {
    let parts: Vec<String> = events
        .iter()
        .map(|(step, kind, payload)| {
            if payload.len() > 32 {
                format!("(step {step}, kind {kind}, {} bytes)", payload.len())
            } else {
                format!(
                    "(step {step}, kind {kind}, {:?})",
                    String::from_utf8_lossy(payload)
                )
            }
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// **Contract:** a step of a run has at most one completion event. A second completion of a step —
/// in a later commit or in the same one — is a `StoreError::Conflict` and the original stays; a step
/// may have any number of non-completion events; step 0 (the run itself) completes once too; the same
/// step of another run is independent.
pub async fn one_completion_per_step(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("one_completion_per_step", store);
    let id = "once";
    ck.create(id, "once").await?;
    ck.create("once-other", "once").await?;
    ck.commit(
        "completion of step 1",
        Commit::events(id, vec![completion(1, b"first")]),
    )
    .await?;
    let result = ck
        .store
        .commit(Commit::events(id, vec![completion(1, b"second")]))
        .await;
    ck.conflict("a second completion of step 1", result)?;
    for i in 0..3 {
        ck.commit(
            format!("non-completion event {i} of step 2"),
            Commit::events(id, vec![note(2, KIND_NOTE, b"attempt failed")]),
        )
        .await?;
    }
    ck.commit(
        "completion of step 2",
        Commit::events(id, vec![completion(2, b"done")]),
    )
    .await?;
    let result = ck
        .store
        .commit(Commit::events(id, vec![completion(2, b"again")]))
        .await;
    ck.conflict("a second completion of step 2", result)?;
    ck.commit(
        "completion of step 0",
        Commit::events(id, vec![completion(0, b"interrupted")]),
    )
    .await?;
    let result = ck
        .store
        .commit(Commit::events(id, vec![completion(0, b"again")]))
        .await;
    ck.conflict("a second completion of step 0", result)?;
    let result = ck
        .store
        .commit(Commit::events(
            id,
            vec![completion(3, b"x"), completion(3, b"y")],
        ))
        .await;
    ck.conflict("two completions of step 3 in one commit", result)?;
    ck.commit(
        "completion of step 1 of another run",
        Commit::events("once-other", vec![completion(1, b"other")]),
    )
    .await?;

    let note_event = (2, KIND_NOTE, b"attempt failed".to_vec());
    let expected = vec![
        (1, KIND_COMPLETION, b"first".to_vec()),
        note_event.clone(),
        note_event.clone(),
        note_event,
        (2, KIND_COMPLETION, b"done".to_vec()),
        (0, KIND_COMPLETION, b"interrupted".to_vec()),
    ];
    ck.eq("history of `once`", &expected, &ck.steps(id).await?)?;
    ck.eq(
        "history of `once-other`",
        &vec![(1, KIND_COMPLETION, b"other".to_vec())],
        &ck.steps("once-other").await?,
    )?;
    Ok(CheckOutcome::Passed)
}

fn finishing_changes() -> Vec<StatusChange> {
    vec![
        StatusChange::Complete {
            output: b"output".to_vec(),
        },
        StatusChange::Fail {
            error: b"failure".to_vec(),
        },
        StatusChange::Cancel {
            error: b"cancelled".to_vec(),
        },
        StatusChange::CompensationFail {
            error: b"rollback failed".to_vec(),
        },
    ]
}

/// The state, output and error a status change leaves.
fn expected_after(change: &StatusChange) -> (RunState, Option<Vec<u8>>, Option<Vec<u8>>) {
    match change {
        StatusChange::Complete { output } => (RunState::Completed, Some(output.clone()), None),
        StatusChange::Fail { error } => (RunState::Failed, None, Some(error.clone())),
        StatusChange::Cancel { error } => (RunState::Cancelled, None, Some(error.clone())),
        StatusChange::CompensationFail { error } => {
            (RunState::CompensationFailed, None, Some(error.clone()))
        }
        StatusChange::Park { reason } => (RunState::Parked, None, Some(reason.clone())),
        StatusChange::Resume | StatusChange::ContinueAsNew { .. } => {
            (RunState::Running, None, None)
        }
    }
}

/// **Contract:** a run finishes (Complete → `Completed` with its output; Fail, Cancel,
/// CompensationFail → `Failed`, `Cancelled`, `CompensationFailed` with their error) only from
/// running or parked, and once: every status change of a finished run — another finish, Park, Resume,
/// ContinueAsNew — is a `StoreError::Conflict` that changes nothing. Park records its reason as the
/// error; Resume applies only to a parked run (Resume of a running run is a `Conflict`), makes it
/// running and clears the park reason. A status change and events in one commit apply together.
pub async fn status_transitions(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("status_transitions", store);
    let park = StatusChange::Park {
        reason: b"park reason".to_vec(),
    };
    let mut all_changes = finishing_changes();
    all_changes.extend([
        park.clone(),
        StatusChange::Resume,
        StatusChange::ContinueAsNew {
            input: b"next".to_vec(),
            keep_runs: 1,
        },
    ]);
    for (n, change) in finishing_changes().into_iter().enumerate() {
        for from_parked in [false, true] {
            let id = format!("st-{n}-{}", if from_parked { "parked" } else { "running" });
            ck.create(&id, "status").await?;
            if from_parked {
                ck.set_status(&id, park.clone()).await?;
                check_state(&ck, &id, &park).await?;
            }
            let mut commit = status_commit(&id, change.clone());
            commit.events = vec![completion(1, b"last step")];
            ck.commit(format!("{} with an event", status_name(&change)), commit)
                .await?;
            check_state(&ck, &id, &change).await?;
            ck.eq(
                format!("history of `{id}` (events committed with the status change)"),
                &vec![(1, KIND_COMPLETION, b"last step".to_vec())],
                &ck.steps(&id).await?,
            )?;
            let before = ck.snapshot(&id, &[]).await?;
            for again in &all_changes {
                let what = format!(
                    "{} of a run finished by {}",
                    status_name(again),
                    status_name(&change)
                );
                let result = ck.store.commit(status_commit(&id, again.clone())).await;
                ck.conflict(&what, result)?;
                ck.unchanged(&what, &id, &[], &before).await?;
            }
        }
    }

    let id = "st-resume";
    ck.create(id, "status").await?;
    let before = ck.snapshot(id, &[]).await?;
    let what = "Resume of a running run";
    let result = ck
        .store
        .commit(status_commit(id, StatusChange::Resume))
        .await;
    ck.conflict(what, result)?;
    ck.unchanged(what, id, &[], &before).await?;
    ck.set_status(id, park.clone()).await?;
    check_state(&ck, id, &park).await?;
    ck.set_status(id, StatusChange::Resume).await?;
    check_state(&ck, id, &StatusChange::Resume).await?;
    ck.set_status(id, park.clone()).await?;
    ck.set_status(id, StatusChange::Resume).await?;
    check_state(&ck, id, &StatusChange::Resume).await?;
    Ok(CheckOutcome::Passed)
}

async fn check_state(ck: &Ck, id: &str, change: &StatusChange) -> Result<(), ConformanceFailure> {
    let record = ck.record(id).await?;
    ck.eq(
        format!(
            "(state, output, error) of `{id}` after {}",
            status_name(change)
        ),
        &expected_after(change),
        &(record.state, record.output, record.error),
    )
}

/// **Contract:** a commit with `run_no: Some(n)` applies only while the run is run `n` of its workflow
/// id. A stale `n` (the run continued as new since) or one that never existed is a
/// `StoreError::Conflict` that writes nothing — no event, value, signal consumption or status change;
/// the current `n` and `None` apply.
pub async fn run_no_guard(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("run_no_guard", store);
    let id = "guard";
    let keys = ["k"];
    ck.create(id, "guard").await?;
    let mut commit = Commit::events(id, vec![completion(1, b"run 0, step 1")]);
    commit.run_no = Some(0);
    ck.commit("run_no Some(0) to run 0", commit).await?;
    let signal = ck.signal(id, "s", b"payload").await?;

    let guarded = |run_no: i64| Commit {
        workflow_id: id.to_string(),
        events: vec![completion(2, b"stale"), timer(3, T0)],
        consume_signal: Some(signal.id),
        status: Some(StatusChange::Complete {
            output: b"stale".to_vec(),
        }),
        values: vec![("k".to_string(), b"stale".to_vec())],
        run_no: Some(run_no),
        fence: None,
        error_text: None,
    };
    let before = ck.snapshot(id, &keys).await?;
    let what = "a commit for run_no 1 while the run is run 0";
    ck.conflict(what, ck.store.commit(guarded(1)).await)?;
    ck.unchanged(what, id, &keys, &before).await?;

    let mut next = status_commit(
        id,
        StatusChange::ContinueAsNew {
            input: b"run 1".to_vec(),
            keep_runs: 1,
        },
    );
    next.run_no = Some(0);
    ck.commit("ContinueAsNew of run 0", next).await?;
    let record = ck.record(id).await?;
    ck.eq("run_no after continuing as new", &1, &record.run_no)?;

    let before = ck.snapshot(id, &keys).await?;
    let what = "a commit for run_no 0 after the run continued as new";
    ck.conflict(what, ck.store.commit(guarded(0)).await)?;
    ck.unchanged(what, id, &keys, &before).await?;

    let mut commit = Commit::events(id, vec![completion(1, b"run 1, step 1")]);
    commit.run_no = Some(1);
    ck.commit("run_no Some(1) to run 1", commit).await?;
    ck.commit(
        "run_no None",
        Commit::events(id, vec![completion(2, b"run 1, step 2")]),
    )
    .await?;
    ck.eq(
        "history of run 1",
        &vec![
            (1, KIND_COMPLETION, b"run 1, step 1".to_vec()),
            (2, KIND_COMPLETION, b"run 1, step 2".to_vec()),
        ],
        &ck.steps(id).await?,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `ContinueAsNew { input, keep_runs }` ends the current run and starts the next one of
/// the same workflow id in the same commit: the ended run (with the commit's own events) is archived
/// with its run number, name, input and event count; the run record gets `run_no + 1`, the new input,
/// state `Running`, no output or error; its history is empty, so step 1 can complete again; its
/// pending wake-ups are dropped; unconsumed signals stay in the inbox. Only the newest `keep_runs`
/// archived runs are kept (none for 0), oldest first.
pub async fn continue_as_new(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("continue_as_new", store);
    let id = "can";
    ck.create(id, "looping").await?;
    let first_input = ck.record(id).await?.input;
    let consumed = ck.signal(id, "tick", b"consumed").await?;
    let kept = ck.signal(id, "tick", b"kept").await?;
    let mut commit = Commit::events(
        id,
        vec![
            completion(1, b"one"),
            note(2, KIND_NOTE, b"note"),
            timer(3, T0),
        ],
    );
    commit.consume_signal = Some(consumed.id);
    ck.commit("steps of run 0", commit).await?;
    let mut last = status_commit(
        id,
        StatusChange::ContinueAsNew {
            input: b"input 1".to_vec(),
            keep_runs: 2,
        },
    );
    last.events = vec![completion(2, b"two")];
    ck.commit("ContinueAsNew with an event", last).await?;

    let record = ck.record(id).await?;
    ck.eq(
        "(run_no, input, state, output, error) after continuing as new",
        &(1, b"input 1".to_vec(), RunState::Running, None, None),
        &(
            record.run_no,
            record.input,
            record.state,
            record.output,
            record.error,
        ),
    )?;
    ck.eq(
        "workflow_name after continuing as new",
        "looping",
        record.workflow_name.as_str(),
    )?;
    ck.eq(
        "history after continuing as new",
        &Vec::new(),
        &ck.steps(id).await?,
    )?;
    ck.eq(
        "pending signals after continuing as new",
        &vec![kept.clone()],
        &ck.pending(id).await?,
    )?;
    ck.eq(
        "due wake-ups after continuing as new",
        &Vec::new(),
        &ck.wakeups_of(id).await?,
    )?;
    let archived = ck.ok("archived_runs", ck.store.archived_runs(id)).await?;
    let summary: Vec<_> = archived
        .iter()
        .map(|run| {
            (
                run.workflow_id.as_str(),
                run.run_no,
                run.workflow_name.as_str(),
                run.input.clone(),
                run.event_count,
            )
        })
        .collect();
    ck.eq(
        "archived runs (id, run_no, name, input, event count) after one continue-as-new",
        &vec![(id, 0, "looping", first_input, 4)],
        &summary,
    )?;
    for run in &archived {
        ck.ensure(
            run.ended_at_ms >= run.created_at_ms,
            "ended_at_ms of an archived run",
            format!(">= its created_at_ms ({})", run.created_at_ms),
            run.ended_at_ms,
        )?;
    }

    ck.commit(
        "step 1 of run 1",
        Commit::events(id, vec![completion(1, b"one again")]),
    )
    .await?;
    for n in 1..4i64 {
        let mut next = status_commit(
            id,
            StatusChange::ContinueAsNew {
                input: format!("input {}", n + 1).into_bytes(),
                keep_runs: 2,
            },
        );
        next.run_no = Some(n);
        ck.commit(format!("ContinueAsNew of run {n}"), next).await?;
    }
    let archived = ck.ok("archived_runs", ck.store.archived_runs(id)).await?;
    let summary: Vec<_> = archived
        .iter()
        .map(|run| (run.run_no, run.input.clone(), run.event_count))
        .collect();
    ck.eq(
        "archived runs (run_no, input, event count) of run 4 with keep_runs 2",
        &vec![(2, b"input 2".to_vec(), 0), (3, b"input 3".to_vec(), 0)],
        &summary,
    )?;
    ck.eq(
        "pending signals after four continue-as-new",
        &vec![kept],
        &ck.pending(id).await?,
    )?;

    let next = status_commit(
        id,
        StatusChange::ContinueAsNew {
            input: b"input 5".to_vec(),
            keep_runs: 0,
        },
    );
    ck.commit("ContinueAsNew with keep_runs 0", next).await?;
    let archived = ck.ok("archived_runs", ck.store.archived_runs(id)).await?;
    ck.eq("archived runs after keep_runs 0", &Vec::new(), &archived)?;
    ck.eq(
        "run_no after five continue-as-new",
        &5,
        &ck.record(id).await?.run_no,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** a commit's `values` are upserted per `(run, key)` in the same commit: a later commit
/// replaces a key's value and leaves the other keys; within one commit the last value for a key
/// wins; an empty value reads back as `Some(empty)`, an unknown key as `None`; values belong to one
/// run; they stay readable after the run finished.
pub async fn published_values(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("published_values", store);
    let id = "pub";
    ck.create(id, "publisher").await?;
    ck.create("pub-other", "publisher").await?;
    let mut commit = Commit::events(id, vec![note(1, KIND_NOTE, b"published")]);
    commit.values = vec![
        ("a".to_string(), b"1".to_vec()),
        ("b".to_string(), b"2".to_vec()),
    ];
    ck.commit("values a and b", commit).await?;
    ck.eq("value a", &Some(b"1".to_vec()), &ck.value(id, "a").await?)?;
    ck.eq("value b", &Some(b"2".to_vec()), &ck.value(id, "b").await?)?;
    ck.eq("value of an unknown key", &None, &ck.value(id, "c").await?)?;
    ck.eq(
        "value a of another run",
        &None,
        &ck.value("pub-other", "a").await?,
    )?;

    let mut commit = Commit::events(id, Vec::new());
    commit.values = vec![
        ("a".to_string(), b"3".to_vec()),
        ("c".to_string(), b"first".to_vec()),
        ("c".to_string(), b"last".to_vec()),
        ("empty".to_string(), Vec::new()),
    ];
    ck.commit("values without events", commit).await?;
    ck.eq(
        "value a after an upsert",
        &Some(b"3".to_vec()),
        &ck.value(id, "a").await?,
    )?;
    ck.eq(
        "value b after an upsert of a",
        &Some(b"2".to_vec()),
        &ck.value(id, "b").await?,
    )?;
    ck.eq(
        "value c, set twice in one commit",
        &Some(b"last".to_vec()),
        &ck.value(id, "c").await?,
    )?;
    ck.eq(
        "an empty value",
        &Some(Vec::new()),
        &ck.value(id, "empty").await?,
    )?;

    ck.set_status(
        id,
        StatusChange::Complete {
            output: b"done".to_vec(),
        },
    )
    .await?;
    ck.eq(
        "value a after the run completed",
        &Some(b"3".to_vec()),
        &ck.value(id, "a").await?,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** every stored event carries `recorded_at_ms`, the store's clock (ms since the Unix
/// epoch) when its commit was written: within the time of the call, and never decreasing along
/// the history (inspection shows step times from it).
pub async fn events_recorded_at(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("events_recorded_at", store);
    ck.create("timed", "timing").await?;
    let before = crate::clock::now_ms();
    ck.commit(
        "step 1",
        Commit::events("timed", vec![completion(1, b"one")]),
    )
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ck.commit(
        "step 2",
        Commit::events("timed", vec![completion(2, b"two")]),
    )
    .await?;
    let after = crate::clock::now_ms();
    let history = ck.history("timed").await?;
    // Clocks of a database server may differ a little from ours: allow a minute either way.
    for event in &history {
        ck.ensure(
            (before - 60_000..=after + 60_000).contains(&event.recorded_at_ms),
            format!("recorded_at_ms of event #{}", event.seq),
            format!("between {before} and {after} (± 1 min)"),
            event.recorded_at_ms,
        )?;
    }
    let times: Vec<i64> = history.iter().map(|e| e.recorded_at_ms).collect();
    ck.ensure(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "recorded_at_ms along the history",
        "never decreasing",
        format!("{times:?}"),
    )?;
    Ok(CheckOutcome::Passed)
}
