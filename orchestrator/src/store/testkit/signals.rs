//! The signal inbox and cancellation requests.

use std::sync::Arc;

use super::support::{Ck, KIND_COMPLETION, completion, describe_signals};
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{CancelOutcome, Commit, SignalOutcome, StatusChange, Store};

/// **Contract:** `send_signal` queues a signal to a running or parked run and returns it
/// (`SignalOutcome::Queued`, with its name and payload); to an unknown workflow id it returns
/// `NoSuchRun` and to a finished run (completed, failed, cancelled, compensation failed)
/// `RunFinished`, queuing nothing.
pub async fn signal_send_outcomes(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("signal_send_outcomes", store);
    let outcome = ck
        .ok(
            "send_signal to an unknown run",
            ck.store.send_signal("nobody", "s", b"x".to_vec()),
        )
        .await?;
    ck.eq(
        "send_signal to an unknown run",
        &SignalOutcome::NoSuchRun,
        &outcome,
    )?;
    ck.eq(
        "pending signals of an unknown run",
        &Vec::new(),
        &ck.pending("nobody").await?,
    )?;

    ck.create("sig-running", "signals").await?;
    ck.signal("sig-running", "approval", b"yes").await?;
    ck.create("sig-parked", "signals").await?;
    ck.set_status(
        "sig-parked",
        StatusChange::Park {
            reason: b"operator".to_vec(),
        },
    )
    .await?;
    let parked = ck.signal("sig-parked", "approval", b"later").await?;
    ck.eq(
        "pending signals of a parked run",
        &vec![parked],
        &ck.pending("sig-parked").await?,
    )?;

    let finishes = [
        StatusChange::Complete {
            output: b"out".to_vec(),
        },
        StatusChange::Fail {
            error: b"err".to_vec(),
        },
        StatusChange::Cancel {
            error: b"cancelled".to_vec(),
        },
        StatusChange::CompensationFail {
            error: b"rollback".to_vec(),
        },
    ];
    for (n, finish) in finishes.into_iter().enumerate() {
        let id = format!("sig-finished-{n}");
        ck.create(&id, "signals").await?;
        let earlier = ck.signal(&id, "early", b"before the end").await?;
        ck.set_status(&id, finish.clone()).await?;
        let what = format!(
            "send_signal to a run finished by {}",
            super::support::status_name(&finish)
        );
        let outcome = ck
            .ok(
                what.clone(),
                ck.store.send_signal(&id, "late", b"after the end".to_vec()),
            )
            .await?;
        ck.eq(&what, &SignalOutcome::RunFinished, &outcome)?;
        ck.eq(
            format!("pending signals of `{id}` after {what}"),
            &vec![earlier],
            &ck.pending(&id).await?,
        )?;
    }
    Ok(CheckOutcome::Passed)
}

/// **Contract:** signals to one run are delivered in the order they were sent: inbox ids strictly
/// increase, and `pending_signals` returns the unconsumed ones oldest first, with their names and
/// payloads (an empty one, a 64 KiB one) — only that run's, however sends to several runs
/// interleave; consuming one from the middle leaves the others in order.
pub async fn signal_inbox_order(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("signal_inbox_order", store);
    ck.create("inbox-a", "signals").await?;
    ck.create("inbox-b", "signals").await?;
    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    for i in 0..6usize {
        let payload_a = match i {
            2 => Vec::new(),
            4 => vec![0x5A; 64 * 1024],
            _ => format!("a-{i}").into_bytes(),
        };
        sent_a.push(
            ck.signal("inbox-a", &format!("a{}", i % 2), &payload_a)
                .await?,
        );
        sent_b.push(
            ck.signal("inbox-b", "b", format!("b-{i}").as_bytes())
                .await?,
        );
    }
    for (id, sent) in [("inbox-a", &sent_a), ("inbox-b", &sent_b)] {
        for pair in sent.windows(2) {
            if let [a, b] = pair {
                ck.ensure(
                    a.id < b.id,
                    format!("inbox ids of signals sent one after the other to `{id}`"),
                    "strictly increasing ids",
                    format!("id {} then id {}", a.id, b.id),
                )?;
            }
        }
        let pending = ck.pending(id).await?;
        ck.ensure(
            &pending == sent,
            format!("pending signals of `{id}` (id, name, payload size)"),
            describe_signals(sent),
            describe_signals(&pending),
        )?;
    }
    let middle = sent_a.remove(3);
    let mut commit = Commit::events("inbox-a", vec![completion(1, b"received")]);
    commit.consume_signal = Some(middle.id);
    ck.commit("consuming a signal from the middle", commit)
        .await?;
    let pending = ck.pending("inbox-a").await?;
    ck.ensure(
        pending == sent_a,
        "pending signals of `inbox-a` after consuming the fourth (id, name, payload size)",
        describe_signals(&sent_a),
        describe_signals(&pending),
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** a signal is consumed at most once, atomically with the commit that records its
/// receipt. A commit with `consume_signal` removes it from `pending_signals`; consuming it again, or
/// consuming another run's signal, is a `StoreError::Conflict` and the commit's events are not
/// written; when the commit fails for another reason (a duplicate completion), the signal stays
/// pending.
pub async fn signal_consumed_exactly_once(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("signal_consumed_exactly_once", store);
    let id = "once-sig";
    let other = "once-sig-other";
    ck.create(id, "signals").await?;
    ck.create(other, "signals").await?;
    let s1 = ck.signal(id, "s", b"one").await?;
    let s2 = ck.signal(id, "s", b"two").await?;
    let o1 = ck.signal(other, "s", b"other's").await?;
    let receive = |step: u32, signal: i64| {
        let mut commit = Commit::events(id, vec![completion(step, b"received")]);
        commit.consume_signal = Some(signal);
        commit
    };

    ck.commit("consuming s1 at step 1", receive(1, s1.id))
        .await?;
    ck.eq(
        "pending after consuming s1",
        &vec![s2.clone()],
        &ck.pending(id).await?,
    )?;
    let received = vec![(1, KIND_COMPLETION, b"received".to_vec())];

    let before = ck.snapshot(id, &[]).await?;
    let what = "consuming s1 a second time";
    ck.conflict(what, ck.store.commit(receive(2, s1.id)).await)?;
    ck.unchanged(what, id, &[], &before).await?;

    let what = "consuming another run's signal";
    ck.conflict(what, ck.store.commit(receive(2, o1.id)).await)?;
    ck.unchanged(what, id, &[], &before).await?;
    ck.eq(
        "pending signals of the other run after a commit tried to consume its signal",
        &vec![o1],
        &ck.pending(other).await?,
    )?;

    let what = "consuming s2 in a commit that completes step 1 again";
    ck.conflict(what, ck.store.commit(receive(1, s2.id)).await)?;
    ck.unchanged(what, id, &[], &before).await?;

    ck.commit("consuming s2 at step 2", receive(2, s2.id))
        .await?;
    ck.eq(
        "pending after consuming s2",
        &Vec::new(),
        &ck.pending(id).await?,
    )?;
    let mut expected = received;
    expected.push((2, KIND_COMPLETION, b"received".to_vec()));
    ck.eq(
        "history after consuming both signals",
        &expected,
        &ck.steps(id).await?,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `request_cancel` records a cancellation request on a running or parked run
/// (`CancelOutcome::Requested`, the reason in `RunRecord::cancel_reason`) without changing its state;
/// the first reason wins (a later request is `Requested` and keeps it); an unknown workflow id is
/// `NoSuchRun`; a finished run is `RunFinished` and records nothing.
pub async fn request_cancel(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("request_cancel", store);
    let outcome = ck
        .ok(
            "request_cancel of an unknown run",
            ck.store.request_cancel("nobody", "why"),
        )
        .await?;
    ck.eq(
        "request_cancel of an unknown run",
        &CancelOutcome::NoSuchRun,
        &outcome,
    )?;

    ck.create("cancel-running", "cancel").await?;
    ck.create("cancel-parked", "cancel").await?;
    ck.set_status(
        "cancel-parked",
        StatusChange::Park {
            reason: b"operator".to_vec(),
        },
    )
    .await?;
    for id in ["cancel-running", "cancel-parked"] {
        let state = ck.record(id).await?.state;
        for reason in ["first reason", "second reason"] {
            let outcome = ck
                .ok(
                    format!("request_cancel(`{id}`, `{reason}`)"),
                    ck.store.request_cancel(id, reason),
                )
                .await?;
            ck.eq(
                format!("request_cancel(`{id}`, `{reason}`)"),
                &CancelOutcome::Requested,
                &outcome,
            )?;
            let record = ck.record(id).await?;
            ck.eq(
                format!("(cancel_reason, state) of `{id}` after requesting `{reason}`"),
                &(Some("first reason".to_string()), state),
                &(record.cancel_reason, record.state),
            )?;
        }
    }

    ck.create("cancel-finished", "cancel").await?;
    ck.set_status(
        "cancel-finished",
        StatusChange::Complete {
            output: b"done".to_vec(),
        },
    )
    .await?;
    let outcome = ck
        .ok(
            "request_cancel of a finished run",
            ck.store.request_cancel("cancel-finished", "late"),
        )
        .await?;
    ck.eq(
        "request_cancel of a finished run",
        &CancelOutcome::RunFinished,
        &outcome,
    )?;
    ck.eq(
        "cancel_reason of a finished run after request_cancel",
        &None,
        &ck.record("cancel-finished").await?.cancel_reason,
    )?;
    Ok(CheckOutcome::Passed)
}
