//! The PostgreSQL journal store (`orchestrator::store::PostgresStore`) against a real server: the engine
//! on top of it, restarts, the journal's semantics (the same as the SQLite store's), leases, fencing and
//! schema versioning.
//!
//! The server comes from `ORCHESTRATOR_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`). Without it every test prints a loud `SKIPPED` line and
//! passes. Each test works in a fresh PostgreSQL schema with a random name, dropped afterwards (even
//! when the test fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::store::{
    CancelOutcome, Claim, Commit, CreateOutcome, Lease, LeaseStore, NewEvent, NewRun,
    PostgresOptions, PostgresStore, RunQuery, RunState, SignalOutcome, StatusChange, Store,
    StoreError,
};
use orchestrator_tests::pg_schema::PgSchema;
use orchestrator_tests::{KIND_ACTIVITY_COMPLETED, bump, count, eventually, finish, now_ms, stop};
use tokio_postgres::NoTls;

/// A fresh schema on the test server (see `orchestrator_tests::pg_schema`).
struct TestSchema(PgSchema);

impl std::ops::Deref for TestSchema {
    type Target = PgSchema;
    fn deref(&self) -> &PgSchema {
        &self.0
    }
}

impl TestSchema {
    fn fresh() -> Option<Self> {
        PgSchema::fresh("orch_test", "PostgreSQL store tests").map(TestSchema)
    }

    fn options(&self) -> PostgresOptions {
        self.0.options(8)
    }

    /// A store (a "node") on this schema; each call opens its own pool.
    async fn store(&self) -> PostgresStore {
        self.0.store(8).await
    }

    /// `SELECT count(*) FROM <schema>.<table> WHERE <condition>`.
    async fn count(&self, table: &str, condition: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM \"{}\".{table} WHERE {condition}",
            self.name
        );
        self.raw().await.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// A run's row as the leases see it, for failure messages.
    async fn describe_run(&self, workflow_id: &str) -> String {
        let sql = format!(
            "SELECT state, owner, lease_epoch, \
             lease_expires_at_ms - (extract(epoch from clock_timestamp()) * 1000)::bigint, \
             (SELECT count(*) FROM \"{0}\".events e WHERE e.workflow_id = r.workflow_id) \
             FROM \"{0}\".runs r WHERE workflow_id = $1",
            self.name
        );
        match self.raw().await.query_opt(&sql, &[&workflow_id]).await {
            Ok(Some(row)) => format!(
                "state={} owner={:?} epoch={} lease_left_ms={:?} events={}",
                row.get::<_, i32>(0),
                row.get::<_, Option<String>>(1),
                row.get::<_, i64>(2),
                row.get::<_, Option<i64>>(3),
                row.get::<_, i64>(4)
            ),
            Ok(None) => "no such run".to_string(),
            Err(error) => format!("could not read the run: {error}"),
        }
    }
}

/// `let db = schema!();` — a fresh schema, or return from the test (skipped) without a server.
macro_rules! schema {
    () => {
        match TestSchema::fresh() {
            Some(schema) => schema,
            None => return,
        }
    };
}

fn new_run(id: &str) -> NewRun {
    NewRun {
        workflow_id: id.to_string(),
        workflow_name: "pg_test".to_string(),
        input: vec![1, 2, 3],
        parent_id: None,
        deadline_ms: None,
        execution_timeout_ms: None,
        owner: None,
        events: Vec::new(),
        paused: None,
    }
}

fn owned_run(id: &str, node: &str, lease_ms: i64) -> NewRun {
    NewRun {
        owner: Some(Lease {
            node: node.to_string(),
            epoch: 1,
            duration_ms: lease_ms,
        }),
        ..new_run(id)
    }
}

fn event(step: u32, completion: bool, payload: &[u8]) -> NewEvent {
    NewEvent {
        step,
        kind: 1,
        completion,
        payload: payload.to_vec(),
        wake_at_ms: None,
    }
}

fn fenced(id: &str, node: &str, epoch: i64, events: Vec<NewEvent>) -> Commit {
    Commit {
        fence: Some((node.to_string(), epoch)),
        ..Commit::events(id, events)
    }
}

fn leases(store: &PostgresStore) -> &dyn LeaseStore {
    store.leases().expect("the PostgreSQL store has leases")
}

// ---------------------------------------------------------------------------------------------------
// The engine on PostgreSQL.

/// Counts its executions under `key`.
#[activity]
async fn pg_counted(key: String) -> Result<String, ActivityError> {
    let n = bump(&key);
    Ok(format!("{key}#{n}"))
}

/// An activity, a durable sleep, published state, a signal, another activity.
#[workflow]
async fn pg_checkout(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let first = ctx.call(pg_counted, format!("{key}/first")).await?;
    ctx.set_state("stage", &"charged".to_string())?;
    ctx.sleep(Duration::from_millis(50)).await?;
    let approval: String = ctx.signal("approval").await?;
    let second = ctx.call(pg_counted, format!("{key}/second")).await?;
    Ok(format!("{first}|{approval}|{second}"))
}

fn engine_builder(store: PostgresStore) -> orchestrator::EngineBuilder {
    Engine::builder()
        .store(Arc::new(store))
        .register(pg_checkout)
        .register(pg_counted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_runs_a_workflow_to_completion_on_postgres() {
    let db = schema!();
    let engine = engine_builder(db.store().await).start().await.unwrap();
    let key = format!("pg-full-{}", db.name);
    let run = engine
        .start(pg_checkout, "order-1", key.clone())
        .await
        .unwrap();
    let stage: String = engine.wait_state("order-1", "stage").await.unwrap();
    assert_eq!(stage, "charged");
    engine
        .signal("order-1", "approval", "yes".to_string())
        .await
        .unwrap();
    let output = finish(&run).await.unwrap();
    assert_eq!(output, format!("{key}/first#1|yes|{key}/second#1"));
    assert!(matches!(
        engine.status("order-1").await.unwrap(),
        orchestrator::RunStatus::Completed
    ));
    stop(engine).await;

    let store = db.store().await;
    let record = store.run("order-1").await.unwrap().unwrap();
    assert_eq!(record.state, RunState::Completed);
    let history = store.history("order-1").await.unwrap();
    assert!(history.len() >= 5, "{history:?}");
    assert!(history.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert!(store.pending_signals("order-1").await.unwrap().is_empty());
    assert_eq!(db.count("wakeups", "true").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_schema_resumes_the_run() {
    let db = schema!();
    let key = format!("pg-restart-{}", db.name);
    let engine = engine_builder(db.store().await).start().await.unwrap();
    engine
        .start(pg_checkout, "order-2", key.clone())
        .await
        .unwrap();
    let store = db.store().await;
    eventually("step 1 is journaled", || async {
        store
            .history("order-2")
            .await
            .unwrap()
            .iter()
            .any(|event| event.kind == KIND_ACTIVITY_COMPLETED)
    })
    .await;
    stop(engine).await;
    assert_eq!(count(&format!("{key}/first")), 1);

    // A new engine (a new node, a new pool) on the same schema picks the run up.
    let engine = engine_builder(db.store().await).start().await.unwrap();
    engine
        .signal("order-2", "approval", "later".to_string())
        .await
        .unwrap();
    let run = engine.handle(pg_checkout, "order-2").await.unwrap();
    let resumed_at = std::time::Instant::now();
    // Up to 15 s: room for the default 10 s lease to run out should the old node still hold the run.
    let Ok(output) = tokio::time::timeout(Duration::from_secs(15), run.result()).await else {
        panic!(
            "the resumed run did not finish: {}",
            db.describe_run("order-2").await
        );
    };
    let output = output.unwrap();
    eprintln!("resumed run finished in {:?}", resumed_at.elapsed());
    assert_eq!(output, format!("{key}/first#1|later|{key}/second#1"));
    assert_eq!(
        count(&format!("{key}/first")),
        1,
        "a journaled step ran again"
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Leases and fencing.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_overlap() {
    let db = schema!();
    let store = db.store().await;
    for i in 0..100 {
        store
            .create_run(new_run(&format!("claim-{i:03}")))
            .await
            .unwrap();
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = Vec::new();
    for n in 0..4 {
        let node_store = db.store().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let node = format!("node-{n}");
            let mut mine = Vec::new();
            barrier.wait().await;
            loop {
                let claims = leases(&node_store)
                    .claim_runs(&node, 60_000, 7)
                    .await
                    .unwrap();
                if claims.is_empty() {
                    break;
                }
                mine.extend(claims.into_iter().map(|claim| (node.clone(), claim)));
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut all: Vec<(String, Claim)> = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let ids: HashSet<&str> = all
        .iter()
        .map(|(_, claim)| claim.workflow_id.as_str())
        .collect();
    assert_eq!(all.len(), 100, "claims: {}", all.len());
    assert_eq!(ids.len(), 100, "a run was claimed twice");
    assert!(all.iter().all(|(_, claim)| claim.epoch == 1));
    let per_node: BTreeMap<&str, usize> = all.iter().fold(BTreeMap::new(), |mut map, (node, _)| {
        *map.entry(node.as_str()).or_default() += 1;
        map
    });
    eprintln!("claims per node: {per_node:?}");
    // The table agrees with what each node was told.
    let raw = db.raw().await;
    for (node, claim) in &all {
        let row = raw
            .query_one(
                &format!(
                    "SELECT owner, lease_epoch FROM \"{}\".runs WHERE workflow_id = $1",
                    db.name
                ),
                &[&claim.workflow_id],
            )
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, Option<String>>(0).as_deref(),
            Some(node.as_str())
        );
        assert_eq!(row.get::<_, i64>(1), 1);
    }
    // Nothing is left to claim while the leases hold.
    assert!(
        leases(&store)
            .claim_runs("node-late", 60_000, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_claimable_and_increments_the_epoch() {
    let db = schema!();
    let store = db.store().await;
    assert!(matches!(
        store
            .create_run(owned_run("exp-1", "node-a", 300))
            .await
            .unwrap(),
        CreateOutcome::Created
    ));
    // Held: nobody else can claim it.
    assert!(
        leases(&store)
            .claim_runs("node-b", 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A holder's commit under epoch 1 is fine.
    store
        .commit(fenced("exp-1", "node-a", 1, vec![event(1, true, b"a1")]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Expired but not taken over: the old holder may still write.
    store
        .commit(fenced("exp-1", "node-a", 1, vec![event(2, true, b"a2")]))
        .await
        .unwrap();
    let claims = leases(&store)
        .claim_runs("node-b", 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        claims,
        vec![Claim {
            workflow_id: "exp-1".to_string(),
            epoch: 2
        }]
    );
    // Now the old holder is fenced off, and the new one writes.
    let stale = store
        .commit(fenced("exp-1", "node-a", 1, vec![event(3, true, b"a3")]))
        .await
        .unwrap_err();
    assert_eq!(
        stale,
        StoreError::StaleLease {
            workflow_id: "exp-1".to_string(),
            node: "node-a".to_string(),
            epoch: 1
        }
    );
    assert!(!stale.is_retryable());
    store
        .commit(fenced("exp-1", "node-b", 2, vec![event(3, true, b"b3")]))
        .await
        .unwrap();
    let payloads: Vec<Vec<u8>> = store
        .history("exp-1")
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.payload)
        .collect();
    assert_eq!(
        payloads,
        vec![b"a1".to_vec(), b"a2".to_vec(), b"b3".to_vec()]
    );
    // The same node claiming its own expired lease also moves the epoch on.
    store
        .create_run(owned_run("exp-2", "node-a", 50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let claims = leases(&store)
        .claim_runs("node-a", 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        claims,
        vec![Claim {
            workflow_id: "exp-2".to_string(),
            epoch: 2
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_commit_with_a_stale_epoch_writes_nothing() {
    let db = schema!();
    let store = db.store().await;
    store.create_run(new_run("fence-1")).await.unwrap();
    let claim = leases(&store)
        .claim_runs("node-a", 60_000, 1)
        .await
        .unwrap();
    assert_eq!(claim[0].epoch, 1);
    leases(&store)
        .release_run("node-a", &claim[0])
        .await
        .unwrap();
    let taken = leases(&store)
        .claim_runs("node-b", 60_000, 1)
        .await
        .unwrap();
    assert_eq!(taken[0].epoch, 2);
    let SignalOutcome::Queued(signal) = store
        .send_signal("fence-1", "go", b"payload".to_vec())
        .await
        .unwrap()
    else {
        panic!("signal not queued");
    };

    // Everything a commit can do, under node-a's lost epoch.
    let mut timer = event(1, false, b"timer");
    timer.wake_at_ms = Some(now_ms() + 60_000);
    let commit = Commit {
        workflow_id: "fence-1".to_string(),
        events: vec![timer, event(2, true, b"done")],
        consume_signal: Some(signal.id),
        status: Some(StatusChange::Complete {
            output: b"out".to_vec(),
        }),
        values: vec![("k".to_string(), b"v".to_vec())],
        run_no: Some(0),
        fence: Some(("node-a".to_string(), 1)),
        error_text: None,
    };
    let error = store.commit(commit.clone()).await.unwrap_err();
    assert!(matches!(error, StoreError::StaleLease { .. }), "{error:?}");
    // The right node with the wrong epoch is stale too.
    let error = store
        .commit(Commit {
            fence: Some(("node-b".to_string(), 1)),
            ..commit.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::StaleLease { .. }), "{error:?}");
    // And a fence on a run that does not exist.
    let error = store
        .commit(fenced(
            "fence-none",
            "node-b",
            2,
            vec![event(1, true, b"x")],
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::StaleLease { .. }), "{error:?}");

    assert!(store.history("fence-1").await.unwrap().is_empty());
    assert_eq!(store.value("fence-1", "k").await.unwrap(), None);
    assert_eq!(
        store.pending_signals("fence-1").await.unwrap(),
        vec![signal]
    );
    assert_eq!(
        store.run("fence-1").await.unwrap().unwrap().state,
        RunState::Running
    );
    assert_eq!(db.count("wakeups", "true").await, 0);

    // The owner's identical commit goes through.
    store
        .commit(Commit {
            fence: Some(("node-b".to_string(), 2)),
            ..commit
        })
        .await
        .unwrap();
    assert_eq!(store.history("fence-1").await.unwrap().len(), 2);
    assert_eq!(
        store.run("fence-1").await.unwrap().unwrap().state,
        RunState::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_takeover_racing_fenced_commits_cuts_the_old_owner_off_cleanly() {
    let db = schema!();
    let store_a = db.store().await;
    let store_b = db.store().await;
    store_a
        .create_run(owned_run("race-1", "node-a", 100))
        .await
        .unwrap();
    // Node A keeps writing (never renewing); node B claims as soon as the lease expires.
    let writer = tokio::spawn(async move {
        let mut written = Vec::new();
        for step in 1..=10_000_u32 {
            let payload = format!("a{step}").into_bytes();
            match store_a
                .commit(fenced(
                    "race-1",
                    "node-a",
                    1,
                    vec![event(step, true, &payload)],
                ))
                .await
            {
                Ok(()) => written.push(payload),
                Err(StoreError::StaleLease { .. }) => return (written, step),
                Err(other) => panic!("{other:?}"),
            }
        }
        panic!("node A was never cut off");
    });
    let claim = loop {
        let claims = leases(&store_b)
            .claim_runs("node-b", 60_000, 1)
            .await
            .unwrap();
        if let Some(claim) = claims.into_iter().next() {
            break claim;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(claim.epoch, 2);
    let (written, cut_at) = writer.await.unwrap();
    // B writes the step A could not.
    store_b
        .commit(fenced(
            "race-1",
            "node-b",
            2,
            vec![event(cut_at, true, b"b")],
        ))
        .await
        .unwrap();
    let history: Vec<Vec<u8>> = store_b
        .history("race-1")
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.payload)
        .collect();
    // Exactly A's acknowledged writes, then B's: nothing lost, nothing extra.
    let mut expected = written;
    expected.push(b"b".to_vec());
    assert_eq!(history, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completions_of_one_step_record_exactly_one() {
    let db = schema!();
    let store = Arc::new(db.store().await);
    store.create_run(new_run("dup-1")).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..8_u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(Commit {
                    values: vec![(format!("writer-{n}"), vec![n])],
                    ..Commit::events("dup-1", vec![event(1, true, &[n])])
                })
                .await
        }));
    }
    let mut ok = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(()) => ok.push(n),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(ok.len(), 1, "{ok:?}");
    let winner = u8::try_from(ok[0]).unwrap();
    let history = store.history("dup-1").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].payload, vec![winner]);
    // Only the winner's values were written.
    for n in 0..8_u8 {
        let value = store.value("dup-1", &format!("writer-{n}")).await.unwrap();
        assert_eq!(value.is_some(), n == winner);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_keeps_ownership() {
    const LEASE: i64 = 1_000;
    let db = schema!();
    let store = db.store().await;
    let other = db.store().await;
    store.create_run(new_run("renew-1")).await.unwrap();
    store.create_run(new_run("renew-2")).await.unwrap();
    let claims = leases(&store)
        .claim_runs("node-a", LEASE, 10)
        .await
        .unwrap();
    assert_eq!(claims.len(), 2);
    // Renew well past the original lease: node-b never gets the runs.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let renewed = leases(&store).renew_leases("node-a", LEASE).await.unwrap();
        assert_eq!(renewed, claims, "renewal keeps the same runs and epochs");
        assert!(
            leases(&other)
                .claim_runs("node-b", LEASE, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // Another node's renewal renews nothing.
    assert!(
        leases(&other)
            .renew_leases("node-b", LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // A finished run is no longer renewed.
    store
        .commit(Commit {
            status: Some(StatusChange::Complete { output: vec![] }),
            ..fenced("renew-2", "node-a", 1, vec![])
        })
        .await
        .unwrap();
    let renewed = leases(&store).renew_leases("node-a", LEASE).await.unwrap();
    assert_eq!(renewed, vec![claims[0].clone()]);
    // Stop renewing: the lease runs out; node-b takes the run, and node-a's renewal no longer has it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let taken = leases(&other)
        .claim_runs("node-b", LEASE, 10)
        .await
        .unwrap();
    assert_eq!(
        taken,
        vec![Claim {
            workflow_id: "renew-1".to_string(),
            epoch: 2
        }]
    );
    assert!(
        leases(&store)
            .renew_leases("node-a", LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_makes_a_run_claimable_at_once() {
    let db = schema!();
    let store = db.store().await;
    store
        .create_run(owned_run("rel-1", "node-a", 60_000))
        .await
        .unwrap();
    let held = Claim {
        workflow_id: "rel-1".to_string(),
        epoch: 1,
    };
    // Releasing with someone else's name or an old epoch does nothing.
    leases(&store).release_run("node-b", &held).await.unwrap();
    leases(&store)
        .release_run(
            "node-a",
            &Claim {
                epoch: 0,
                ..held.clone()
            },
        )
        .await
        .unwrap();
    assert!(
        leases(&store)
            .claim_runs("node-b", 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    leases(&store).release_run("node-a", &held).await.unwrap();
    let taken = leases(&store)
        .claim_runs("node-b", 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        taken,
        vec![Claim {
            workflow_id: "rel-1".to_string(),
            epoch: 2
        }]
    );
    // The releaser's writes are now stale.
    let error = store
        .commit(fenced("rel-1", "node-a", 1, vec![event(1, true, b"x")]))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::StaleLease { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_signals_and_cancellations_follow_ownership() {
    let db = schema!();
    let store = db.store().await;
    store
        .create_run(owned_run("own-a", "node-a", 60_000))
        .await
        .unwrap();
    store
        .create_run(owned_run("own-b", "node-b", 60_000))
        .await
        .unwrap();
    store.create_run(new_run("own-none")).await.unwrap();
    let mut sent = Vec::new();
    for id in ["own-a", "own-b", "own-none", "own-a"] {
        match store
            .send_signal(id, "s", id.as_bytes().to_vec())
            .await
            .unwrap()
        {
            SignalOutcome::Queued(signal) => sent.push((id.to_string(), signal)),
            other => panic!("{other:?}"),
        }
    }
    let mine = leases(&store).owned_signals("node-a", 0).await.unwrap();
    assert_eq!(mine, vec![sent[0].clone(), sent[3].clone()]);
    let after = leases(&store)
        .owned_signals("node-a", sent[0].1.id)
        .await
        .unwrap();
    assert_eq!(after, vec![sent[3].clone()]);
    // Consumed signals are no longer listed.
    store
        .commit(Commit {
            consume_signal: Some(sent[0].1.id),
            ..fenced("own-a", "node-a", 1, vec![event(1, true, b"got")])
        })
        .await
        .unwrap();
    assert_eq!(
        leases(&store).owned_signals("node-a", 0).await.unwrap(),
        vec![sent[3].clone()]
    );

    assert_eq!(
        store.request_cancel("own-a", "first").await.unwrap(),
        CancelOutcome::Requested
    );
    assert_eq!(
        store.request_cancel("own-a", "second").await.unwrap(),
        CancelOutcome::Requested
    );
    store.request_cancel("own-none", "x").await.unwrap();
    assert_eq!(
        leases(&store).owned_cancellations("node-a").await.unwrap(),
        vec![("own-a".to_string(), "first".to_string())]
    );
    assert!(
        leases(&store)
            .owned_cancellations("node-b")
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------------
// Journal semantics (as the SQLite store's).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_semantics_match_the_sqlite_store() {
    let db = schema!();
    let store = db.store().await;

    // create_run is idempotent on the id.
    assert!(matches!(
        store.create_run(new_run("j-1")).await.unwrap(),
        CreateOutcome::Created
    ));
    match store.create_run(new_run("j-1")).await.unwrap() {
        CreateOutcome::Existing(run) => {
            assert_eq!(run.workflow_id, "j-1");
            assert_eq!(run.input, vec![1, 2, 3]);
            assert_eq!(run.state, RunState::Running);
            assert_eq!(run.run_no, 0);
        }
        other => panic!("{other:?}"),
    }

    // One completion per step: a second one is a Conflict and nothing of that commit is written.
    store
        .commit(Commit::events(
            "j-1",
            vec![event(1, false, b"start"), event(1, true, b"done")],
        ))
        .await
        .unwrap();
    let error = store
        .commit(Commit {
            values: vec![("k".to_string(), b"v".to_vec())],
            ..Commit::events(
                "j-1",
                vec![event(2, true, b"two"), event(1, true, b"again")],
            )
        })
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(store.history("j-1").await.unwrap().len(), 2);
    assert_eq!(store.value("j-1", "k").await.unwrap(), None);
    // A commit to an unknown run is a Conflict.
    let error = store
        .commit(Commit::events("j-none", vec![event(1, true, b"x")]))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");

    // Values upsert.
    for value in [b"v1", b"v2"] {
        store
            .commit(Commit {
                values: vec![("k".to_string(), value.to_vec())],
                ..Commit::events("j-1", vec![])
            })
            .await
            .unwrap();
    }
    assert_eq!(store.value("j-1", "k").await.unwrap(), Some(b"v2".to_vec()));

    // Signals: queued in order, consumed once.
    let SignalOutcome::Queued(first) = store.send_signal("j-1", "a", b"1".to_vec()).await.unwrap()
    else {
        panic!()
    };
    let SignalOutcome::Queued(second) = store.send_signal("j-1", "b", b"2".to_vec()).await.unwrap()
    else {
        panic!()
    };
    assert!(first.id < second.id);
    assert_eq!(
        store.send_signal("j-none", "a", vec![]).await.unwrap(),
        SignalOutcome::NoSuchRun
    );
    store
        .commit(Commit {
            consume_signal: Some(first.id),
            ..Commit::events("j-1", vec![event(3, true, b"got a")])
        })
        .await
        .unwrap();
    let error = store
        .commit(Commit {
            consume_signal: Some(first.id),
            ..Commit::events("j-1", vec![event(4, true, b"got a again")])
        })
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");
    assert_eq!(store.pending_signals("j-1").await.unwrap(), vec![second]);
    assert_eq!(store.history("j-1").await.unwrap().len(), 3);

    // The run_no guard.
    let error = store
        .commit(Commit {
            run_no: Some(1),
            ..Commit::events("j-1", vec![event(5, true, b"x")])
        })
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");

    // Conditional transitions: Resume only from parked, Park only from running, finish once.
    let status = |status: StatusChange| Commit {
        status: Some(status),
        ..Commit::events("j-1", vec![])
    };
    assert!(matches!(
        store
            .commit(status(StatusChange::Resume))
            .await
            .unwrap_err(),
        StoreError::Conflict { .. }
    ));
    store
        .commit(status(StatusChange::Park {
            reason: b"why".to_vec(),
        }))
        .await
        .unwrap();
    assert!(matches!(
        store
            .commit(status(StatusChange::Park { reason: vec![] }))
            .await
            .unwrap_err(),
        StoreError::Conflict { .. }
    ));
    let parked = store.run("j-1").await.unwrap().unwrap();
    assert_eq!(parked.state, RunState::Parked);
    assert_eq!(parked.error, Some(b"why".to_vec()));
    assert_eq!(store.unfinished_runs().await.unwrap().len(), 1);
    store.commit(status(StatusChange::Resume)).await.unwrap();
    store
        .commit(status(StatusChange::Fail {
            error: b"boom".to_vec(),
        }))
        .await
        .unwrap();
    assert!(matches!(
        store
            .commit(status(StatusChange::Complete { output: vec![] }))
            .await
            .unwrap_err(),
        StoreError::Conflict { .. }
    ));
    let failed = store.run("j-1").await.unwrap().unwrap();
    assert_eq!(failed.state, RunState::Failed);
    assert_eq!(failed.error, Some(b"boom".to_vec()));
    assert!(store.unfinished_runs().await.unwrap().is_empty());
    assert_eq!(
        store.send_signal("j-1", "late", vec![]).await.unwrap(),
        SignalOutcome::RunFinished
    );
    assert_eq!(
        store.request_cancel("j-1", "late").await.unwrap(),
        CancelOutcome::RunFinished
    );
    assert_eq!(
        store.request_cancel("j-none", "x").await.unwrap(),
        CancelOutcome::NoSuchRun
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_archives_and_keeps_the_newest_runs() {
    let db = schema!();
    let store = db.store().await;
    store.create_run(new_run("can-1")).await.unwrap();
    let mut timer = event(1, false, b"timer");
    timer.wake_at_ms = Some(1_000);
    for round in 0..4_i64 {
        store
            .commit(Commit::events(
                "can-1",
                vec![timer.clone(), event(2, true, b"step")],
            ))
            .await
            .unwrap();
        store
            .commit(Commit {
                status: Some(StatusChange::ContinueAsNew {
                    input: vec![u8::try_from(round).unwrap()],
                    keep_runs: 2,
                }),
                run_no: Some(round),
                ..Commit::events("can-1", vec![])
            })
            .await
            .unwrap();
    }
    let run = store.run("can-1").await.unwrap().unwrap();
    assert_eq!(run.run_no, 4);
    assert_eq!(run.input, vec![3]);
    assert_eq!(run.state, RunState::Running);
    assert!(store.history("can-1").await.unwrap().is_empty());
    let archived = store.archived_runs("can-1").await.unwrap();
    assert_eq!(
        archived.iter().map(|run| run.run_no).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(archived.iter().all(|run| run.event_count == 2));
    assert_eq!(db.count("archived_events", "true").await, 4);
    assert_eq!(db.count("wakeups", "true").await, 0);
    // A stale write for an earlier run is refused.
    let error = store
        .commit(Commit {
            run_no: Some(3),
            ..Commit::events("can-1", vec![event(1, true, b"late")])
        })
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_and_listing() {
    let db = schema!();
    let store = db.store().await;
    for (id, name) in [
        ("w-a", "alpha"),
        ("w-b", "beta"),
        ("w-c", "alpha"),
        ("x-d", "alpha"),
    ] {
        store
            .create_run(NewRun {
                workflow_name: name.to_string(),
                deadline_ms: (id == "w-c").then_some(500),
                ..new_run(id)
            })
            .await
            .unwrap();
    }
    let wake = |step: u32, at: i64| NewEvent {
        wake_at_ms: Some(at),
        ..event(step, false, b"wait")
    };
    store
        .commit(Commit::events("w-a", vec![wake(1, 300), wake(2, 100)]))
        .await
        .unwrap();
    store
        .commit(Commit::events("w-b", vec![wake(1, 200)]))
        .await
        .unwrap();
    // Completing step 2 of w-a removes its wake-up.
    store
        .commit(Commit::events("w-a", vec![event(2, true, b"fired")]))
        .await
        .unwrap();
    let due = store.due_wakeups(1_000, 10).await.unwrap();
    let due: Vec<(&str, i64)> = due
        .iter()
        .map(|wakeup| (wakeup.workflow_id.as_str(), wakeup.at_ms))
        .collect();
    assert_eq!(due, vec![("w-b", 200), ("w-a", 300), ("w-c", 500)]);
    assert_eq!(store.due_wakeups(250, 10).await.unwrap().len(), 1);
    assert_eq!(store.due_wakeups(1_000, 2).await.unwrap().len(), 2);
    // A finished run is not woken.
    store
        .commit(Commit {
            status: Some(StatusChange::Complete { output: vec![] }),
            ..Commit::events("w-b", vec![])
        })
        .await
        .unwrap();
    assert_eq!(store.due_wakeups(1_000, 10).await.unwrap().len(), 2);

    // list_runs: filters and cursor pagination, ordered by id.
    let ids = |page: &orchestrator::store::RunPage| {
        page.runs
            .iter()
            .map(|run| run.workflow_id.clone())
            .collect::<Vec<_>>()
    };
    let page = store.list_runs(&RunQuery::new().limit(2)).await.unwrap();
    assert_eq!(ids(&page), vec!["w-a", "w-b"]);
    assert_eq!(page.next.as_deref(), Some("w-b"));
    let page = store
        .list_runs(&RunQuery::new().limit(2).after("w-b"))
        .await
        .unwrap();
    assert_eq!(ids(&page), vec!["w-c", "x-d"]);
    assert_eq!(page.next, None);
    let page = store
        .list_runs(&RunQuery::new().workflow_name("alpha").id_prefix("w-"))
        .await
        .unwrap();
    assert_eq!(ids(&page), vec!["w-a", "w-c"]);
    let page = store
        .list_runs(&RunQuery::new().state(RunState::Completed))
        .await
        .unwrap();
    assert_eq!(ids(&page), vec!["w-b"]);
    let page = store
        .list_runs(
            &RunQuery::new()
                .state(RunState::Completed)
                .state(RunState::Running)
                .id_prefix("x"),
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), vec!["x-d"]);
    // A prefix with LIKE wildcards is taken literally.
    let page = store
        .list_runs(&RunQuery::new().id_prefix("w_"))
        .await
        .unwrap();
    assert!(page.runs.is_empty());
}

// ---------------------------------------------------------------------------------------------------
// Schema versioning and bad configuration.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_versioned_and_a_newer_one_is_refused() {
    let db = schema!();
    // Several nodes connecting at once migrate once.
    let connects = (0..4).map(|_| PostgresStore::connect_with(db.options()));
    for store in futures::future::join_all(connects).await {
        store.unwrap();
    }
    let raw = db.raw().await;
    let version: String = raw
        .query_one(
            &format!(
                "SELECT value FROM \"{}\".orchestrator_meta WHERE key = 'schema_version'",
                db.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, "2");
    raw.execute(
        &format!(
            "UPDATE \"{}\".orchestrator_meta SET value = '99' WHERE key = 'schema_version'",
            db.name
        ),
        &[],
    )
    .await
    .unwrap();
    let error = PostgresStore::connect_with(db.options()).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 2
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_a_clear_error() {
    let db = schema!();
    let error = PostgresStore::connect_with(db.options().schema("Bad\"Name"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("schema name"), "{error}");

    // A schema that already has a `runs` table of someone else's is refused, untouched.
    let raw = db.raw().await;
    raw.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".runs (id INT)",
        db.name
    ))
    .await
    .unwrap();
    let error = PostgresStore::connect_with(db.options()).await.unwrap_err();
    assert!(
        matches!(error, StoreError::ForeignDatabase { tables: 1, .. }),
        "{error:?}"
    );

    // Nothing listens on port 1: a retryable I/O error, not a hang or a panic.
    let error = PostgresStore::connect_with(
        PostgresOptions::new("postgres://postgres@127.0.0.1:1/test")
            .connect_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

/// The key=value connection string of `url` with another user.
fn url_as_user(url: &str, user: &str) -> String {
    let config: tokio_postgres::Config = url.parse().expect("a valid test URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the test URL must name a TCP host, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config.get_dbname().unwrap_or("postgres");
    format!("host={host} port={port} dbname={dbname} user={user}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections_is_its_own_error_saying_what_to_change() {
    let db = schema!();
    // A role allowed one connection: the server answers a second with SQLSTATE 53300, as it does
    // when `max_connections` is reached (without exhausting the shared test server).
    let role = format!("orch_limited_{:016x}", fastrand::u64(..));
    let admin = db.raw().await;
    admin
        .batch_execute(&format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 1"))
        .await
        .unwrap();
    let url = url_as_user(&db.url, &role);
    let (holder, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    let holding = tokio::spawn(async move {
        let _ = connection.await;
    });

    let error = PostgresStore::connect_with(PostgresOptions::new(url).schema(db.name.clone()))
        .await
        .unwrap_err();

    drop(holder);
    let _ = holding.await;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
    // (Matched by name so this test also compiles, and fails, against a store without the variant.)
    assert!(
        format!("{error:?}").starts_with("TooManyConnections"),
        "{error:?}"
    );
    assert!(error.is_retryable(), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("pool size") && text.contains("max_connections"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_not_starved_by_the_nodes_own_busy_pool() {
    let db = schema!();
    // One pooled connection, which a commit waiting on a lock will hold; no lock timeout, so it
    // holds it as long as the lock is held.
    let store = PostgresStore::connect_with(
        db.options()
            .pool_size(1)
            .lock_timeout(None)
            .acquire_timeout(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    store
        .create_run(owned_run("busy-row", "node-z", 60_000))
        .await
        .unwrap();
    store
        .create_run(owned_run("kept", "node-a", 60_000))
        .await
        .unwrap();

    // Another session locks `busy-row` (a run of another node) and keeps its transaction open.
    let mut raw = db.raw().await;
    let locker = raw.transaction().await.unwrap();
    locker
        .execute(
            &format!(
                "SELECT 1 FROM \"{}\".runs WHERE workflow_id = 'busy-row' FOR UPDATE",
                db.name
            ),
            &[],
        )
        .await
        .unwrap();
    let committing = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .commit(fenced("busy-row", "node-z", 1, vec![event(1, false, b"x")]))
                .await
        })
    };
    // The commit now holds the only pooled connection, waiting for the lock.
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND query LIKE '%\"{}\".runs%FOR UPDATE%'",
        db.name
    );
    let observer = db.raw().await;
    eventually("the commit waits for the row lock", || async {
        observer
            .query_one(&waiting, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;

    // Renewal does not need the pool: it answers, and keeps the run nobody else locks.
    let renewed = tokio::time::timeout(
        Duration::from_secs(30),
        leases(&store).renew_leases("node-a", 60_000),
    )
    .await
    .expect("renewal answers");
    locker.rollback().await.unwrap();
    committing.await.unwrap().unwrap();
    let renewed = renewed.expect("renewal succeeds while the pool is busy");
    assert!(
        renewed.iter().any(|claim| claim.workflow_id == "kept"),
        "{renewed:?}"
    );
}

/// SIGSTOPs `child` until it is frozen inside a transaction on `schema` (its session shows as
/// `idle in transaction`); `false` if that never happened in many tries.
async fn freeze_mid_commit(
    child: &std::process::Child,
    observer: &tokio_postgres::Client,
    schema: &str,
) -> bool {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    let frozen = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' \
         AND query LIKE '%\"{schema}\".%'"
    );
    for _ in 0..200 {
        // SAFETY: `kill(2)` on our own child, not reaped before the test ends.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count: i64 = observer.query_one(&frozen, &[]).await.unwrap().get(0);
        if count == 1 {
            return true;
        }
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(10..60))).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_frozen_mid_commit_blocks_takeover_for_about_a_lease_not_thirty_seconds() {
    use std::io::BufRead as _;
    let db = schema!();
    let id = "frozen-run";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_commit_looper"))
        .args([db.url.as_str(), db.name.as_str(), id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn commit_looper");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY");
    // Let a few commits through, then freeze the process inside one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let observer = db.raw().await;
    let frozen = freeze_mid_commit(&child, &observer, &db.name).await;
    let stopped = std::time::Instant::now();
    assert!(frozen, "commit_looper never froze inside a transaction");

    // Its 1 s lease expired long ago; only its row lock keeps another node from claiming the run.
    let store = db.store().await;
    let claimed = loop {
        let claims = leases(&store)
            .claim_runs("node-t", 60_000, 10)
            .await
            .unwrap();
        if claims.iter().any(|claim| claim.workflow_id == id) {
            break stopped.elapsed();
        }
        if stopped.elapsed() > Duration::from_secs(60) {
            break stopped.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    println!("frozen mid-commit: takeover after {claimed:?}");
    // The store's sessions end an idle transaction after 5 s (the server's default: never; this
    // store's former default: 30 s). Generous for a loaded machine, far below 30 s.
    assert!(
        claimed < Duration::from_secs(20),
        "the run was claimable only {claimed:?} after its owner froze mid-commit"
    );
}
