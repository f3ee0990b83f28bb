//! Concurrent writers: no lost write, no duplicate, and exactly one winner of every race.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::support::{Ck, completion, join_failure, retrying, status_commit};
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{Commit, CreateOutcome, NewRun, SignalOutcome, StatusChange, Store, StoreError};

/// How many tasks write at once.
const TASKS: usize = 8;
/// How many commits each task makes to each of its runs.
const COMMITS: usize = 50;

/// Waits for every task; the first failure (a task's own, or its panic) wins.
async fn join<T: 'static>(
    ck: &Ck,
    mut tasks: JoinSet<Result<T, ConformanceFailure>>,
) -> Result<Vec<T>, ConformanceFailure> {
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result?),
            Err(error) => return Err(join_failure(ck.name(), error)),
        }
    }
    Ok(results)
}

/// **Contract:** concurrent writers lose nothing and duplicate nothing. Eight tasks each make 50
/// commits to a run of their own and 50 to one shared run (distinct steps), and 25 `send_signal`s each
/// to the shared run, all at once (retrying retryable errors as the engine does): every own run then
/// holds its 50 events in commit order; the shared run holds all 400 events, each step once, with
/// strictly increasing `seq` and each task's events in its commit order; its inbox holds all 200
/// signals with distinct ids, each task's in its send order.
pub async fn concurrent_writers(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("concurrent_writers", store);
    let shared = "conc-shared";
    ck.create(shared, "concurrent").await?;
    for t in 0..TASKS {
        ck.create(&format!("conc-{t}"), "concurrent").await?;
    }
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let store = ck.store.clone();
        let start = start.clone();
        let name = ck.name();
        tasks.spawn(async move {
            let ck = Ck::new(name, store);
            let own = format!("conc-{t}");
            start.wait().await;
            for i in 0..COMMITS {
                let payload = format!("{t}/{i}").into_bytes();
                let step = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let commit = Commit::events(&own, vec![completion(step, &payload)]);
                ck.ok(
                    format!("commit {i} to `{own}`"),
                    retrying(|| ck.store.commit(commit.clone())),
                )
                .await?;
                let step = u32::try_from(t * COMMITS + i + 1).unwrap_or(u32::MAX);
                let commit = Commit::events(shared, vec![completion(step, &payload)]);
                ck.ok(
                    format!("commit {i} of task {t} to `{shared}`"),
                    retrying(|| ck.store.commit(commit.clone())),
                )
                .await?;
            }
            let mut sent = Vec::new();
            for i in 0..COMMITS / 2 {
                let payload = format!("{t}/{i}").into_bytes();
                let outcome = ck
                    .ok(
                        format!("send_signal {i} of task {t}"),
                        retrying(|| ck.store.send_signal(shared, "tick", payload.clone())),
                    )
                    .await?;
                match outcome {
                    SignalOutcome::Queued(record) => sent.push(record.id),
                    other => {
                        return Err(ck.violation(
                            format!("send_signal {i} of task {t} to a running run"),
                            "SignalOutcome::Queued(..)",
                            format!("{other:?}"),
                        ));
                    }
                }
            }
            Ok((t, sent))
        });
    }
    let mut sent_ids = join(&ck, tasks).await?;
    sent_ids.sort_by_key(|(t, _)| *t);

    for t in 0..TASKS {
        let own = format!("conc-{t}");
        let expected: Vec<_> = (0..COMMITS)
            .map(|i| {
                let step = u32::try_from(i + 1).unwrap_or(u32::MAX);
                (
                    step,
                    super::support::KIND_COMPLETION,
                    format!("{t}/{i}").into_bytes(),
                )
            })
            .collect();
        ck.eq(
            format!("history of `{own}`"),
            &expected,
            &ck.steps(&own).await?,
        )?;
    }

    let history = ck.steps(shared).await?;
    ck.eq(
        "the number of events of the shared run",
        &(TASKS * COMMITS),
        &history.len(),
    )?;
    let mut by_step = BTreeMap::new();
    let mut next_of_task = [0usize; TASKS];
    for (step, _, payload) in &history {
        if by_step.insert(*step, payload.clone()).is_some() {
            return Err(ck.violation(
                "events of the shared run",
                "each step once",
                format!("step {step} twice"),
            ));
        }
        let index = usize::try_from(step.saturating_sub(1)).unwrap_or(usize::MAX);
        let (t, i) = (index / COMMITS, index % COMMITS);
        let Some(next) = next_of_task.get_mut(t) else {
            return Err(ck.violation(
                "events of the shared run",
                "only the committed steps",
                format!("step {step}"),
            ));
        };
        ck.ensure(
            *next == i && payload == format!("{t}/{i}").as_bytes(),
            format!("events of task {t} in the history of the shared run"),
            format!(
                "commit {} (step {}) next, in commit order",
                *next,
                t * COMMITS + *next + 1
            ),
            format!(
                "step {step} with payload {:?}",
                String::from_utf8_lossy(payload)
            ),
        )?;
        *next += 1;
    }

    let pending = ck.pending(shared).await?;
    ck.eq(
        "the number of pending signals of the shared run",
        &(TASKS * COMMITS / 2),
        &pending.len(),
    )?;
    for pair in pending.windows(2) {
        if let [a, b] = pair {
            ck.ensure(
                a.id < b.id,
                "inbox of the shared run",
                "distinct ids, oldest first",
                format!("id {} then id {}", a.id, b.id),
            )?;
        }
    }
    let payload_of: BTreeMap<i64, Vec<u8>> = pending
        .into_iter()
        .map(|signal| (signal.id, signal.payload))
        .collect();
    for (t, ids) in &sent_ids {
        for (i, id) in ids.iter().enumerate() {
            ck.eq(
                format!("payload of signal {i} of task {t} (id {id}) in the inbox"),
                &Some(format!("{t}/{i}").into_bytes()),
                &payload_of.get(id).cloned(),
            )?;
        }
        for pair in ids.windows(2) {
            if let [a, b] = pair {
                ck.ensure(
                    a < b,
                    format!("ids of the signals task {t} sent one after the other"),
                    "increasing",
                    format!("{a} then {b}"),
                )?;
            }
        }
    }
    Ok(CheckOutcome::Passed)
}

/// Runs `attempt(task)` on eight tasks released at once; returns each task's result.
async fn race<T, F, Fut>(
    ck: &Ck,
    attempt: F,
) -> Result<Vec<(usize, Result<T, StoreError>)>, ConformanceFailure>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let start = Arc::new(Barrier::new(TASKS));
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let start = start.clone();
        let call = attempt(ck.store.clone(), t);
        tasks.spawn(async move {
            start.wait().await;
            Ok((t, call.await))
        });
    }
    let mut results = join(ck, tasks).await?;
    results.sort_by_key(|(t, _)| *t);
    Ok(results)
}

/// Requires exactly one `Ok` and `Conflict` for the rest; returns the winner.
fn one_winner<T: std::fmt::Debug>(
    ck: &Ck,
    what: &str,
    results: &[(usize, Result<T, StoreError>)],
) -> Result<usize, ConformanceFailure> {
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, result)| result.is_ok())
        .map(|(t, _)| *t)
        .collect();
    let [winner] = winners[..] else {
        return Err(ck.violation(
            format!("{what}: tasks that succeeded"),
            "exactly one",
            format!("{} (tasks {winners:?})", winners.len()),
        ));
    };
    for (t, result) in results {
        if *t != winner && !matches!(result, Err(StoreError::Conflict { .. })) {
            return Err(ck.violation(
                format!("{what}: the result of losing task {t}"),
                "Err(StoreError::Conflict { .. })",
                format!("{result:?}"),
            ));
        }
    }
    Ok(winner)
}

/// **Contract:** when tasks race to do what may happen once, exactly one succeeds and the others get
/// `StoreError::Conflict` (after retrying retryable errors as the engine does), and only the winner's
/// write is stored. Raced here by eight tasks at once: completing the same step (20 rounds); consuming
/// the same signal, each with a different step's completion (10 rounds: the losers' events are not
/// written); finishing the same run. Eight concurrent `create_run`s of one id create it once: the
/// others get `Existing` with the winner's record.
pub async fn concurrent_races(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("concurrent_races", store);
    let id = "race";
    ck.create(id, "racing").await?;
    let mut expected = Vec::new();
    for round in 0..20u32 {
        let step = round + 1;
        let results = race(&ck, |store, t| async move {
            let commit = Commit::events(id, vec![completion(step, &[t as u8])]);
            retrying(|| store.commit(commit.clone())).await
        })
        .await?;
        let winner = one_winner(
            &ck,
            &format!("completing step {step} from eight tasks"),
            &results,
        )?;
        expected.push((step, super::support::KIND_COMPLETION, vec![winner as u8]));
    }
    ck.eq(
        "history after the completion races",
        &expected,
        &ck.steps(id).await?,
    )?;

    for round in 0..10u32 {
        let signal = ck
            .signal(id, "race", format!("signal {round}").as_bytes())
            .await?;
        let signal_id = signal.id;
        let results = race(&ck, |store, t| async move {
            let step = 1_000 + round * 8 + t as u32;
            let mut commit = Commit::events(id, vec![completion(step, b"got it")]);
            commit.consume_signal = Some(signal_id);
            retrying(|| store.commit(commit.clone())).await
        })
        .await?;
        let winner = one_winner(
            &ck,
            &format!("consuming signal {} from eight tasks", signal.id),
            &results,
        )?;
        expected.push((
            1_000 + round * 8 + winner as u32,
            super::support::KIND_COMPLETION,
            b"got it".to_vec(),
        ));
    }
    ck.eq(
        "history after the signal races (only the winners' events)",
        &expected,
        &ck.steps(id).await?,
    )?;
    ck.eq(
        "pending signals after the races",
        &Vec::new(),
        &ck.pending(id).await?,
    )?;

    let results = race(&ck, |store, t| async move {
        let commit = status_commit(
            id,
            StatusChange::Complete {
                output: vec![t as u8],
            },
        );
        retrying(|| store.commit(commit.clone())).await
    })
    .await?;
    let winner = one_winner(&ck, "completing the run from eight tasks", &results)?;
    ck.eq(
        "the output of the raced run",
        &Some(vec![winner as u8]),
        &ck.record(id).await?.output,
    )?;

    let created = "race-create";
    let results = race(&ck, |store, t| async move {
        let run = NewRun {
            input: vec![t as u8],
            ..super::support::new_run(created, "racing")
        };
        retrying(|| store.create_run(run.clone())).await
    })
    .await?;
    let mut winners = Vec::new();
    for (t, result) in &results {
        match result {
            Ok(CreateOutcome::Created) => winners.push(*t),
            Ok(CreateOutcome::Existing(_)) => {}
            Err(error) => {
                return Err(ck.violation(
                    format!("create_run of `{created}` by task {t}, racing"),
                    "Created or Existing",
                    format!("Err({error:?})"),
                ));
            }
        }
    }
    let [winner] = winners[..] else {
        return Err(ck.violation(
            "create_run of one id from eight tasks: tasks that got Created",
            "exactly one",
            format!("{winners:?}"),
        ));
    };
    let stored = ck.record(created).await?;
    ck.eq(
        "the input of the raced run",
        &vec![winner as u8],
        &stored.input,
    )?;
    for (t, result) in results {
        if let Ok(CreateOutcome::Existing(record)) = result {
            ck.eq(
                format!("the record task {t} got as Existing"),
                &stored,
                &*record,
            )?;
        }
    }
    Ok(CheckOutcome::Passed)
}
