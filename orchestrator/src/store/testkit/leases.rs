//! Leases and fencing, for stores several engines share ([`LeaseStore`]). Every check here is skipped
//! for a store whose [`Store::leases`] is `None`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::support::{Ck, completion, join_failure, new_run, status_commit, timer};
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{
    Claim, Commit, CreateOutcome, Lease, LeaseStore, NewRun, SignalRecord, StatusChange, Store,
    StoreError,
};

/// A lease long enough never to expire during a check.
const LONG: i64 = 60_000;
/// A lease short enough to let expire, and how long to wait for that.
const SHORT: i64 = 200;
const PAST_SHORT: Duration = Duration::from_millis(450);

fn skipped() -> CheckOutcome {
    CheckOutcome::Skipped {
        reason: "the store has no leases (Store::leases() is None): one engine owns it at a time"
            .to_string(),
    }
}

async fn claim(
    ck: &Ck,
    leases: &dyn LeaseStore,
    node: &str,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claim>, ConformanceFailure> {
    let claims = ck
        .ok(
            format!("claim_runs(`{node}`, {lease_ms}, {limit})"),
            leases.claim_runs(node, lease_ms, limit),
        )
        .await?;
    ck.ensure(
        claims.len() <= limit,
        format!("claim_runs(`{node}`, {lease_ms}, {limit})"),
        format!("at most {limit} claims"),
        claims.len(),
    )?;
    let distinct: BTreeSet<&str> = claims.iter().map(|c| c.workflow_id.as_str()).collect();
    ck.ensure(
        distinct.len() == claims.len(),
        format!("claim_runs(`{node}`, {lease_ms}, {limit})"),
        "each run once",
        format!("{claims:?}"),
    )?;
    Ok(claims)
}

async fn renew(
    ck: &Ck,
    leases: &dyn LeaseStore,
    node: &str,
    lease_ms: i64,
) -> Result<Vec<Claim>, ConformanceFailure> {
    ck.ok(
        format!("renew_leases(`{node}`, {lease_ms})"),
        leases.renew_leases(node, lease_ms),
    )
    .await
}

/// The epoch `claims` hold for `id`, if they include it.
fn epoch_of(claims: &[Claim], id: &str) -> Option<i64> {
    claims
        .iter()
        .find(|claim| claim.workflow_id == id)
        .map(|claim| claim.epoch)
}

/// The epoch `claims` hold for `id`, which they must include.
fn claimed(ck: &Ck, what: &str, claims: &[Claim], id: &str) -> Result<i64, ConformanceFailure> {
    epoch_of(claims, id)
        .ok_or_else(|| ck.violation(what, format!("a claim of `{id}`"), format!("{claims:?}")))
}

/// Requires `claims` not to include `id`.
fn not_claimed(ck: &Ck, what: &str, claims: &[Claim], id: &str) -> Result<(), ConformanceFailure> {
    ck.ensure(
        epoch_of(claims, id).is_none(),
        what,
        format!("no claim of `{id}`"),
        format!("{claims:?}"),
    )
}

fn fenced(mut commit: Commit, node: &str, epoch: i64) -> Commit {
    commit.fence = Some((node.to_string(), epoch));
    commit
}

/// Requires `result` to be `StaleLease` naming the run, node and epoch.
fn stale<T: std::fmt::Debug>(
    ck: &Ck,
    what: &str,
    result: Result<T, StoreError>,
    id: &str,
    node: &str,
    epoch: i64,
) -> Result<(), ConformanceFailure> {
    let expected = StoreError::StaleLease {
        workflow_id: id.to_string(),
        node: node.to_string(),
        epoch,
    };
    match result {
        Err(error) if error == expected => Ok(()),
        other => Err(ck.violation(what, format!("Err({expected:?})"), format!("{other:?}"))),
    }
}

/// **Contract:** `claim_runs(node, lease_ms, limit)` claims up to `limit` running runs that nobody
/// owns, each at most once: a lone claimer gets exactly `limit` when more are free; claimers racing
/// on one store never get the same run, and together they claim every running run; finished runs
/// are never claimed; once all are owned, a claim gets nothing; `renew_leases` returns to each node
/// exactly the runs and epochs it claimed.
pub async fn lease_claims_disjoint(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_claims_disjoint", store);
    let Some(leases) = ck.store.leases() else {
        return Ok(skipped());
    };
    let total = 40;
    let ids: BTreeSet<String> = (0..total).map(|n| format!("claim/{n:02}")).collect();
    for n in 0..3 {
        let id = format!("claim/done-{n}");
        ck.create(&id, "claimed").await?;
        ck.set_status(
            &id,
            StatusChange::Complete {
                output: b"out".to_vec(),
            },
        )
        .await?;
    }
    for id in &ids {
        ck.create(id, "claimed").await?;
    }
    let mut owner: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let first = claim(&ck, leases, "node-limit", LONG, 3).await?;
    ck.eq(
        "the number of runs a lone claimer gets with limit 3",
        &3,
        &first.len(),
    )?;
    for c in first {
        owner.insert(c.workflow_id, ("node-limit".to_string(), c.epoch));
    }

    let claimers = 4;
    for round in 0..30 {
        let start = Arc::new(Barrier::new(claimers));
        let mut tasks = JoinSet::new();
        for n in 0..claimers {
            let store = ck.store.clone();
            let start = start.clone();
            let name = ck.name();
            tasks.spawn(async move {
                let ck = Ck::new(name, store);
                let node = format!("node-{n}");
                start.wait().await;
                let claims = match ck.store.leases() {
                    Some(leases) => claim(&ck, leases, &node, LONG, 5).await?,
                    None => Vec::new(),
                };
                Ok::<_, ConformanceFailure>((node, claims))
            });
        }
        let mut got = 0;
        while let Some(joined) = tasks.join_next().await {
            let (node, claims) = joined.map_err(|error| join_failure(ck.name(), error))??;
            for c in claims {
                got += 1;
                if let Some((other, _)) = owner.get(&c.workflow_id) {
                    return Err(ck.violation(
                        format!("claims of round {round} of {claimers} concurrent claimers"),
                        "each run claimed by one node",
                        format!("`{}` claimed by `{other}` and by `{node}`", c.workflow_id),
                    ));
                }
                owner.insert(c.workflow_id, (node.clone(), c.epoch));
            }
        }
        if got == 0 {
            break;
        }
    }
    let claimed_ids: BTreeSet<String> = owner.keys().cloned().collect();
    ck.eq(
        "the runs claimed by all claimers together",
        &ids,
        &claimed_ids,
    )?;

    let mut by_node: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
    for (id, (node, epoch)) in &owner {
        by_node.entry(node.clone()).or_default().push(Claim {
            workflow_id: id.clone(),
            epoch: *epoch,
        });
    }
    for (node, expected) in by_node {
        let mut found = renew(&ck, leases, &node, LONG).await?;
        found.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
        ck.eq(
            format!("renew_leases(`{node}`) (sorted)"),
            &expected,
            &found,
        )?;
    }
    let late = claim(&ck, leases, "node-late", LONG, 100).await?;
    ck.eq(
        "claim_runs once every running run is owned",
        &Vec::new(),
        &late,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** a lease that is not renewed expires: while it lasts no other node can claim the run;
/// once it has expired another node claims it with a greater epoch. From then on the old owner's
/// renewals no longer return the run, its fenced commits are `StaleLease`, and the new owner's fenced
/// commits apply.
pub async fn lease_takeover_epoch(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_takeover_epoch", store);
    let Some(leases) = ck.store.leases() else {
        return Ok(skipped());
    };
    let id = "lease-t";
    ck.create(id, "leased").await?;
    let claims = claim(&ck, leases, "node-a", SHORT, 10).await?;
    let old = claimed(&ck, "node-a's first claim", &claims, id)?;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    not_claimed(
        &ck,
        "node-b's claim while node-a's lease lasts",
        &claims,
        id,
    )?;

    tokio::time::sleep(PAST_SHORT).await;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    let new = claimed(
        &ck,
        "node-b's claim after node-a's lease expired",
        &claims,
        id,
    )?;
    ck.ensure(
        new > old,
        "the epoch of a run taken over after its lease expired",
        format!("greater than the previous epoch {old}"),
        new,
    )?;
    let renewed = renew(&ck, leases, "node-a", LONG).await?;
    not_claimed(
        &ck,
        "node-a's renewal after node-b took the run over",
        &renewed,
        id,
    )?;
    let claims = claim(&ck, leases, "node-a", LONG, 10).await?;
    not_claimed(
        &ck,
        "node-a's claim while node-b's lease lasts",
        &claims,
        id,
    )?;

    let commit = || Commit::events(id, vec![completion(1, b"step 1")]);
    let result = ck.store.commit(fenced(commit(), "node-a", old)).await;
    stale(
        &ck,
        "a commit fenced with the old owner's epoch",
        result,
        id,
        "node-a",
        old,
    )?;
    ck.commit(
        "fenced with the new owner's epoch",
        fenced(commit(), "node-b", new),
    )
    .await?;
    ck.eq(
        "history after the takeover",
        &vec![(1, super::support::KIND_COMPLETION, b"step 1".to_vec())],
        &ck.steps(id).await?,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `renew_leases` keeps a node's runs past their first lease (same epoch, nobody else
/// can claim them), including a run whose lease expired but that nobody claimed since (its owner is
/// unchanged: the node keeps it, same epoch), but not one another node claimed after it expired;
/// `release_run` makes a run
/// claimable at once (by another node, with a greater epoch), but only when the claim passed still
/// owns the run: a stale claim or another node's release changes nothing.
pub async fn lease_renew_and_release(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_renew_and_release", store);
    let Some(leases) = ck.store.leases() else {
        return Ok(skipped());
    };
    let id = "lease-r";
    let lease_ms = 400;
    ck.create(id, "leased").await?;
    let claims = claim(&ck, leases, "node-a", lease_ms, 10).await?;
    let epoch_a = claimed(&ck, "node-a's claim", &claims, id)?;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let renewed = renew(&ck, leases, "node-a", lease_ms).await?;
        ck.eq(
            format!("the epoch node-a's renewal {round} returns for `{id}`"),
            &Some(epoch_a),
            &epoch_of(&renewed, id),
        )?;
        let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
        not_claimed(
            &ck,
            "node-b's claim while node-a renews its lease",
            &claims,
            id,
        )?;
    }

    let claim_a = Claim {
        workflow_id: id.to_string(),
        epoch: epoch_a,
    };
    ck.ok(
        "release_run by node-a",
        leases.release_run("node-a", &claim_a),
    )
    .await?;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    let epoch_b = claimed(
        &ck,
        "node-b's claim right after node-a released the run",
        &claims,
        id,
    )?;
    ck.ensure(
        epoch_b > epoch_a,
        "the epoch of a run claimed after a release",
        format!("greater than the released epoch {epoch_a}"),
        epoch_b,
    )?;

    ck.ok(
        "a stale release_run by node-a",
        leases.release_run("node-a", &claim_a),
    )
    .await?;
    let claim_b = Claim {
        workflow_id: id.to_string(),
        epoch: epoch_b,
    };
    ck.ok(
        "release_run by node-c, which does not own the run",
        leases.release_run("node-c", &claim_b),
    )
    .await?;
    let claims = claim(&ck, leases, "node-d", LONG, 10).await?;
    not_claimed(
        &ck,
        "node-d's claim after releases by nodes that do not own the run",
        &claims,
        id,
    )?;
    let renewed = renew(&ck, leases, "node-b", LONG).await?;
    ck.eq(
        "the epoch node-b's renewal returns after releases by nodes that do not own the run",
        &Some(epoch_b),
        &epoch_of(&renewed, id),
    )?;

    let expired = "lease-r-expired";
    ck.create(expired, "leased").await?;
    let claims = claim(&ck, leases, "node-a", SHORT, 10).await?;
    let epoch_expired = claimed(&ck, "node-a's claim of a second run", &claims, expired)?;
    tokio::time::sleep(PAST_SHORT).await;
    let renewed = renew(&ck, leases, "node-a", LONG).await?;
    ck.eq(
        "the epoch node-a's late renewal returns for a run whose lease expired but nobody claimed",
        &Some(epoch_expired),
        &epoch_of(&renewed, expired),
    )?;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    not_claimed(
        &ck,
        "node-b's claim after node-a's late renewal",
        &claims,
        expired,
    )?;

    let taken = "lease-r-taken";
    ck.create(taken, "leased").await?;
    let claims = claim(&ck, leases, "node-a", SHORT, 10).await?;
    claimed(&ck, "node-a's claim of a third run", &claims, taken)?;
    tokio::time::sleep(PAST_SHORT).await;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    claimed(
        &ck,
        "node-b's claim of a run whose lease expired",
        &claims,
        taken,
    )?;
    let renewed = renew(&ck, leases, "node-a", LONG).await?;
    not_claimed(
        &ck,
        "node-a's renewal after node-b claimed its expired run",
        &renewed,
        taken,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** a commit with `fence: Some((node, epoch))` applies only while that pair owns the run;
/// otherwise — another node, a wrong epoch, the owner before a takeover, a run nobody owns — it fails
/// with `StoreError::StaleLease { workflow_id, node, epoch }` (not retryable) and writes nothing: no
/// event, wake-up, value, signal consumption or status change. The owner's fenced commit applies in
/// full.
pub async fn lease_fencing(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_fencing", store);
    let Some(leases) = ck.store.leases() else {
        return Ok(skipped());
    };
    let id = "fence";
    let keys = ["k"];
    ck.create(id, "fenced").await?;
    let signal = ck.signal(id, "s", b"payload").await?;
    let claims = claim(&ck, leases, "node-a", LONG, 10).await?;
    let epoch_a = claimed(&ck, "node-a's claim", &claims, id)?;
    ck.commit(
        "fenced by the owner",
        fenced(
            Commit::events(id, vec![completion(1, b"step 1")]),
            "node-a",
            epoch_a,
        ),
    )
    .await?;

    let full = || Commit {
        workflow_id: id.to_string(),
        events: vec![completion(2, b"step 2"), timer(3, 1_700_000_000_000)],
        consume_signal: Some(signal.id),
        status: Some(StatusChange::Complete {
            output: b"done".to_vec(),
        }),
        values: vec![("k".to_string(), b"v".to_vec())],
        run_no: None,
        fence: None,
        error_text: None,
    };
    let before = ck.snapshot(id, &keys).await?;
    for (what, node, epoch) in [
        (
            "a commit fenced by another node with the owner's epoch",
            "node-b",
            epoch_a,
        ),
        (
            "a commit fenced by the owner with a later epoch",
            "node-a",
            epoch_a + 1,
        ),
        (
            "a commit fenced by the owner with an earlier epoch",
            "node-a",
            epoch_a - 1,
        ),
    ] {
        let result = ck.store.commit(fenced(full(), node, epoch)).await;
        stale(&ck, what, result, id, node, epoch)?;
        ck.unchanged(what, id, &keys, &before).await?;
    }

    let claim_a = Claim {
        workflow_id: id.to_string(),
        epoch: epoch_a,
    };
    ck.ok(
        "release_run by node-a",
        leases.release_run("node-a", &claim_a),
    )
    .await?;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    let epoch_b = claimed(&ck, "node-b's claim after node-a released", &claims, id)?;
    let what = "a commit fenced by the previous owner after a takeover";
    let result = ck.store.commit(fenced(full(), "node-a", epoch_a)).await;
    stale(&ck, what, result, id, "node-a", epoch_a)?;
    ck.unchanged(what, id, &keys, &before).await?;

    ck.commit("fenced by the new owner", fenced(full(), "node-b", epoch_b))
        .await?;
    let after = ck.snapshot(id, &keys).await?;
    let record = ck.record(id).await?;
    ck.eq(
        "(state, output) after the owner's fenced commit",
        &(crate::store::RunState::Completed, Some(b"done".to_vec())),
        &(record.state, record.output),
    )?;
    ck.eq(
        "pending signals after the owner's fenced commit",
        &Vec::new(),
        &after.pending,
    )?;
    ck.eq(
        "values after the owner's fenced commit",
        &vec![("k".to_string(), Some(b"v".to_vec()))],
        &after.values,
    )?;
    ck.eq(
        "events after the owner's fenced commit",
        &3,
        &after.history.len(),
    )?;

    let free = "fence-unowned";
    ck.create(free, "fenced").await?;
    let before = ck.snapshot(free, &[]).await?;
    for epoch in [0, 1] {
        let what = format!("a commit fenced with epoch {epoch} to a run nobody owns");
        let commit = fenced(
            Commit::events(free, vec![completion(1, b"x")]),
            "node-a",
            epoch,
        );
        let result = ck.store.commit(commit).await;
        stale(&ck, &what, result, free, "node-a", epoch)?;
        ck.unchanged(&what, free, &[], &before).await?;
    }
    Ok(CheckOutcome::Passed)
}

/// **Contract:** a run created with `owner: Some(lease)` is owned by `lease.node` from the start, at
/// `lease.epoch`, for `lease.duration_ms`: no other node can claim it meanwhile, its creator's
/// renewals return it and its creator's fenced commits apply. A second `create_run` of the id with
/// another owner is `Existing` and gives that node nothing. When the creation lease expires without
/// renewal, another node claims the run with a greater epoch.
pub async fn lease_owner_at_creation(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_owner_at_creation", store);
    let Some(leases) = ck.store.leases() else {
        return Ok(skipped());
    };
    let owned = |id: &str, node: &str, duration_ms: i64| NewRun {
        owner: Some(Lease {
            node: node.to_string(),
            epoch: 1,
            duration_ms,
        }),
        ..new_run(id, "owned")
    };
    let id = "owned";
    ck.create_run(owned(id, "node-a", LONG)).await?;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    not_claimed(
        &ck,
        "node-b's claim of a run node-a created as its owner",
        &claims,
        id,
    )?;
    let renewed = renew(&ck, leases, "node-a", LONG).await?;
    ck.eq(
        "the epoch the creator's renewal returns for a run created with an owner",
        &Some(1),
        &epoch_of(&renewed, id),
    )?;
    ck.commit(
        "fenced by the creator",
        fenced(
            Commit::events(id, vec![completion(1, b"step 1")]),
            "node-a",
            1,
        ),
    )
    .await?;

    let what = "a second create_run with another owner";
    match ck
        .ok(what, ck.store.create_run(owned(id, "node-b", LONG)))
        .await?
    {
        CreateOutcome::Existing(_) => {}
        CreateOutcome::Created => {
            return Err(ck.violation(
                what,
                "CreateOutcome::Existing(..)",
                "CreateOutcome::Created",
            ));
        }
    }
    let renewed = renew(&ck, leases, "node-b", LONG).await?;
    not_claimed(
        &ck,
        "node-b's renewal after its create_run found the run",
        &renewed,
        id,
    )?;
    let result = ck
        .store
        .commit(fenced(
            Commit::events(id, vec![completion(2, b"x")]),
            "node-b",
            1,
        ))
        .await;
    stale(
        &ck,
        "a commit fenced by the second creator",
        result,
        id,
        "node-b",
        1,
    )?;

    let short = "owned-short";
    ck.create_run(owned(short, "node-a", SHORT)).await?;
    tokio::time::sleep(PAST_SHORT).await;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    let epoch = claimed(
        &ck,
        "node-b's claim after the creation lease expired",
        &claims,
        short,
    )?;
    ck.ensure(
        epoch > 1,
        "the epoch of a run taken over after its creation lease expired",
        "greater than 1",
        epoch,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `owned_signals(node, after_id)` returns the unconsumed signals of the running runs
/// `node` owns, with inbox id greater than `after_id`, oldest first, each with its run's id — never
/// another node's, an unowned run's, a consumed one or a finished run's. `owned_cancellations(node)`
/// returns `(workflow_id, reason)` for the running runs `node` owns that have a cancellation request.
pub async fn lease_owned_inbox(store: Arc<dyn Store>) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_owned_inbox", store);
    let Some(leases) = ck.store.leases() else {
        return Ok(skipped());
    };
    ck.create("inbox-1", "owned").await?;
    ck.create("inbox-2", "owned").await?;
    let claims = claim(&ck, leases, "node-a", LONG, 10).await?;
    let epoch_1 = claimed(&ck, "node-a's claim", &claims, "inbox-1")?;
    let epoch_2 = claimed(&ck, "node-a's claim", &claims, "inbox-2")?;
    ck.create("inbox-3", "owned").await?;
    let claims = claim(&ck, leases, "node-b", LONG, 10).await?;
    claimed(&ck, "node-b's claim", &claims, "inbox-3")?;
    ck.create("inbox-unowned", "owned").await?;

    let x1 = ck.signal("inbox-1", "x", b"x1").await?;
    let y1 = ck.signal("inbox-3", "y", b"y1").await?;
    let x2 = ck.signal("inbox-2", "x", b"x2").await?;
    ck.signal("inbox-unowned", "z", b"z").await?;
    let x3 = ck.signal("inbox-1", "x", b"x3").await?;

    let owned_signals = |node: &'static str, after_id: i64| {
        let ck = &ck;
        async move {
            ck.ok(
                format!("owned_signals(`{node}`, {after_id})"),
                leases.owned_signals(node, after_id),
            )
            .await
        }
    };
    let with_run = |pairs: &[(&str, &SignalRecord)]| -> Vec<(String, SignalRecord)> {
        pairs
            .iter()
            .map(|(id, signal)| ((*id).to_string(), (*signal).clone()))
            .collect()
    };
    ck.eq(
        "owned_signals(node-a, 0)",
        &with_run(&[("inbox-1", &x1), ("inbox-2", &x2), ("inbox-1", &x3)]),
        &owned_signals("node-a", 0).await?,
    )?;
    ck.eq(
        "owned_signals(node-a, id of the first signal)",
        &with_run(&[("inbox-2", &x2), ("inbox-1", &x3)]),
        &owned_signals("node-a", x1.id).await?,
    )?;
    ck.eq(
        "owned_signals(node-b, 0)",
        &with_run(&[("inbox-3", &y1)]),
        &owned_signals("node-b", 0).await?,
    )?;
    ck.eq(
        "owned_signals(node-c, 0)",
        &Vec::new(),
        &owned_signals("node-c", 0).await?,
    )?;

    let mut commit = fenced(
        Commit::events("inbox-2", vec![completion(1, b"got x2")]),
        "node-a",
        epoch_2,
    );
    commit.consume_signal = Some(x2.id);
    ck.commit("consuming x2", commit).await?;
    ck.eq(
        "owned_signals(node-a, 0) after x2 was consumed",
        &with_run(&[("inbox-1", &x1), ("inbox-1", &x3)]),
        &owned_signals("node-a", 0).await?,
    )?;

    let cancellations = |node: &'static str| {
        let ck = &ck;
        async move {
            let mut found = ck
                .ok(
                    format!("owned_cancellations(`{node}`)"),
                    leases.owned_cancellations(node),
                )
                .await?;
            found.sort();
            Ok::<_, ConformanceFailure>(found)
        }
    };
    ck.eq(
        "owned_cancellations(node-a) with no request",
        &Vec::new(),
        &cancellations("node-a").await?,
    )?;
    for (id, reason) in [
        ("inbox-2", "stop 2"),
        ("inbox-1", "stop 1"),
        ("inbox-unowned", "stop"),
    ] {
        ck.ok(
            format!("request_cancel(`{id}`)"),
            ck.store.request_cancel(id, reason),
        )
        .await?;
    }
    ck.eq(
        "owned_cancellations(node-a) (sorted)",
        &vec![
            ("inbox-1".to_string(), "stop 1".to_string()),
            ("inbox-2".to_string(), "stop 2".to_string()),
        ],
        &cancellations("node-a").await?,
    )?;
    ck.eq(
        "owned_cancellations(node-b)",
        &Vec::new(),
        &cancellations("node-b").await?,
    )?;

    let finish = fenced(
        status_commit(
            "inbox-1",
            StatusChange::Cancel {
                error: b"cancelled".to_vec(),
            },
        ),
        "node-a",
        epoch_1,
    );
    ck.commit("finishing inbox-1", finish).await?;
    ck.eq(
        "owned_signals(node-a, 0) after its run with pending signals finished",
        &Vec::new(),
        &owned_signals("node-a", 0).await?,
    )?;
    ck.eq(
        "owned_cancellations(node-a) after one of the runs finished",
        &vec![("inbox-2".to_string(), "stop 2".to_string())],
        &cancellations("node-a").await?,
    )?;
    Ok(CheckOutcome::Passed)
}

/// **Contract:** `lease_holder` reports the node, epoch and expiry of a run's lease (for inspection),
/// `None` for a run nobody owns or that does not exist; it follows takeovers.
pub async fn lease_holder_reported(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("lease_holder_reported", store);
    let Some(leases) = ck.store.leases() else {
        return Ok(skipped());
    };
    let none = ck
        .ok(
            "lease_holder of a missing run",
            leases.lease_holder("absent"),
        )
        .await?;
    ck.eq("lease_holder of a missing run", &None, &none)?;
    ck.create("held", "holding").await?;
    let unowned = ck
        .ok(
            "lease_holder of an unclaimed run",
            leases.lease_holder("held"),
        )
        .await?;
    ck.eq("lease_holder of an unclaimed run", &None, &unowned)?;
    let before = crate::clock::now_ms();
    claim(&ck, leases, "node-a", SHORT, 10).await?;
    let holder = ck
        .ok(
            "lease_holder after node-a's claim",
            leases.lease_holder("held"),
        )
        .await?;
    ck.ensure(
        holder.as_ref().is_some_and(|h| {
            h.node == "node-a"
                && h.epoch == 1
                && h.expires_at_ms
                    .is_some_and(|at| at >= before + SHORT - 60_000)
        }),
        "lease_holder after node-a's claim",
        "node-a, epoch 1, expiring after the claim",
        format!("{holder:?}"),
    )?;
    tokio::time::sleep(PAST_SHORT).await;
    claim(&ck, leases, "node-b", LONG, 10).await?;
    let holder = ck
        .ok(
            "lease_holder after node-b's takeover",
            leases.lease_holder("held"),
        )
        .await?;
    ck.ensure(
        holder
            .as_ref()
            .is_some_and(|h| h.node == "node-b" && h.epoch == 2),
        "lease_holder after node-b's takeover",
        "node-b, epoch 2",
        format!("{holder:?}"),
    )?;
    Ok(CheckOutcome::Passed)
}
