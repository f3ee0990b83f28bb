//! The wake-up index: timers, signal deadlines and execution deadlines of runs not in memory.

use std::sync::Arc;

use super::support::{Ck, completion, status_commit, timer};
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{Commit, NewRun, StatusChange, Store, Wakeup};

/// A time far from any clock: the check passes `before_ms` explicitly and never waits.
const T0: i64 = 1_700_000_000_000;

/// **Contract:** `due_wakeups(before_ms, limit)` lists running runs with a pending wake-up at or
/// before `before_ms` — an event's `wake_at_ms` whose step has no completion yet, or the run's
/// execution deadline — each run once at its earliest such time, earliest first, at most `limit` of
/// them. A step's completion removes its wake-up (the run's next one, if any, takes over); a run that
/// finishes or continues as new drops all of them; a finished run's deadline does not count. A parked
/// run is not listed (it waits for an operator, not a timer), but its wake-ups survive: once resumed it
/// is listed again. (Both shipped stores list running runs only, though the trait's documentation says
/// "unfinished".)
pub async fn due_wakeups(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("due_wakeups", store);
    let with_deadline = |id: &str, at: i64| NewRun {
        deadline_ms: Some(at),
        execution_timeout_ms: Some(1_000),
        ..super::support::new_run(id, "timers")
    };
    ck.create("w-timers", "timers").await?;
    ck.commit(
        "two timers",
        Commit::events("w-timers", vec![timer(1, T0 + 500), timer(2, T0 + 300)]),
    )
    .await?;
    ck.create_run(with_deadline("w-deadline", T0 + 100)).await?;
    ck.create_run(with_deadline("w-both", T0 + 700)).await?;
    ck.commit(
        "a timer before the deadline",
        Commit::events("w-both", vec![timer(1, T0 + 200)]),
    )
    .await?;
    ck.create("w-future", "timers").await?;
    ck.commit(
        "a late timer",
        Commit::events("w-future", vec![timer(1, T0 + 5_000)]),
    )
    .await?;
    ck.create("w-none", "timers").await?;
    ck.commit(
        "no timer",
        Commit::events("w-none", vec![completion(1, b"done")]),
    )
    .await?;
    ck.create_run(with_deadline("w-finished", T0 + 50)).await?;
    ck.commit(
        "a timer",
        Commit::events("w-finished", vec![timer(1, T0 + 60)]),
    )
    .await?;
    ck.set_status(
        "w-finished",
        StatusChange::Complete {
            output: b"out".to_vec(),
        },
    )
    .await?;

    let due = |ids: &[(&str, i64)]| -> Vec<Wakeup> {
        ids.iter()
            .map(|(id, at)| Wakeup {
                workflow_id: (*id).to_string(),
                at_ms: T0 + at,
            })
            .collect()
    };
    let all = [("w-deadline", 100), ("w-both", 200), ("w-timers", 300)];
    let cases: [(i64, usize, Vec<Wakeup>); 7] = [
        (T0 + 1_000, 100, due(&all)),
        (T0 + 299, 100, due(&all[..2])),
        (T0 + 300, 100, due(&all)),
        (T0 + 1_000, 2, due(&all[..2])),
        (T0 + 1_000, 1, due(&all[..1])),
        (T0 + 99, 100, Vec::new()),
        (
            T0 + 10_000,
            100,
            due(&[all[0], all[1], all[2], ("w-future", 5_000)]),
        ),
    ];
    for (before_ms, limit, expected) in cases {
        let found = ck
            .ok(
                format!("due_wakeups(T0 + {}, {limit})", before_ms - T0),
                ck.store.due_wakeups(before_ms, limit),
            )
            .await?;
        ck.eq(
            format!("due_wakeups(T0 + {}, {limit})", before_ms - T0),
            &expected,
            &found,
        )?;
    }

    let later = |what: &str, id: &str, expected: Vec<Wakeup>| {
        let what = format!("wake-ups of `{id}` after {what}");
        let id = id.to_string();
        let ck = &ck;
        async move {
            let found = ck.wakeups_of(&id).await?;
            ck.eq(what, &expected, &found)
        }
    };
    ck.commit(
        "step 2 fired",
        Commit::events("w-timers", vec![completion(2, b"fired")]),
    )
    .await?;
    later(
        "its earliest timer fired",
        "w-timers",
        due(&[("w-timers", 500)]),
    )
    .await?;
    ck.commit(
        "step 1 fired",
        Commit::events("w-timers", vec![completion(1, b"fired")]),
    )
    .await?;
    later("both timers fired", "w-timers", Vec::new()).await?;
    ck.set_status(
        "w-deadline",
        StatusChange::Fail {
            error: b"timed out".to_vec(),
        },
    )
    .await?;
    later("it failed", "w-deadline", Vec::new()).await?;
    ck.set_status(
        "w-both",
        StatusChange::Complete {
            output: b"out".to_vec(),
        },
    )
    .await?;
    later("it completed", "w-both", Vec::new()).await?;

    ck.create("w-parked", "timers").await?;
    ck.commit(
        "a timer",
        Commit::events("w-parked", vec![timer(1, T0 + 400)]),
    )
    .await?;
    ck.set_status(
        "w-parked",
        StatusChange::Park {
            reason: b"operator".to_vec(),
        },
    )
    .await?;
    later("it was parked", "w-parked", Vec::new()).await?;
    ck.set_status("w-parked", StatusChange::Resume).await?;
    later("a park and resume", "w-parked", due(&[("w-parked", 400)])).await?;

    ck.create("w-continued", "timers").await?;
    ck.commit(
        "a timer",
        Commit::events("w-continued", vec![timer(1, T0 + 450)]),
    )
    .await?;
    ck.commit(
        "ContinueAsNew",
        status_commit(
            "w-continued",
            StatusChange::ContinueAsNew {
                input: b"next".to_vec(),
                keep_runs: 1,
            },
        ),
    )
    .await?;
    later("it continued as new", "w-continued", Vec::new()).await?;
    Ok(CheckOutcome::Passed)
}
