//! Operator verbs with several nodes (issue 12 §2), on a real PostgreSQL shared by two engines (two
//! nodes in one process) under leases: `pause`, `resume` and `terminate` issued on the node that does
//! NOT hold the run take effect on the node that does.
//!
//! Needs `ORCHESTRATOR_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without it
//! each test prints a loud `SKIPPED` line and passes. Each test uses a fresh schema, dropped at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use orchestrator::codec::Codec;
use orchestrator::journal::{EventBody, OperatorAction};
use orchestrator::prelude::*;
use orchestrator::store::RunState;
use orchestrator_tests::pg_schema::PgSchema;
use orchestrator_tests::{bump, count, eventually, finish, gate_wait, open_gate, stop};
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
        PgSchema::fresh("orch_op", "multi-node operator tests").map(TestSchema)
    }

    /// An engine (a node) on this schema with a 1 s lease.
    async fn node(&self, node: &str) -> Engine {
        let store = self.store(8).await;
        Engine::builder()
            .store(Arc::new(store))
            .node_id(node)
            .lease_duration(Duration::from_secs(1))
            .shutdown_grace(Duration::from_secs(2))
            .register(steps)
            .register(step)
            .register(guarded)
            .register(blocked_charge)
            .register(refund)
            .start()
            .await
            .expect("start a node")
    }

    /// Who owns a run (the `owner` column).
    async fn owner(&self, workflow_id: &str) -> Option<String> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let sql = format!(
            "SELECT owner FROM \"{}\".runs WHERE workflow_id = $1",
            self.name
        );
        client
            .query_one(&sql, &[&workflow_id])
            .await
            .unwrap()
            .get(0)
    }
}

/// Counts its runs under `key/n`, sleeps 150 ms, returns `n`.
#[activity]
async fn step(key: String, n: u32) -> Result<u32, ActivityError> {
    bump(&format!("{key}/{n}"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    Ok(n)
}

/// Ten activity steps in a row; returns their sum (55).
#[workflow]
async fn steps(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    let mut sum = 0;
    for n in 1..=10 {
        sum += ctx.call(step, (key.clone(), n)).await?;
    }
    Ok(sum)
}

/// Counts its runs under `key/charge`, waits for the gate `key/gate`.
#[activity]
async fn blocked_charge(key: String) -> Result<u32, ActivityError> {
    bump(&format!("{key}/charge"));
    gate_wait(&format!("{key}/gate")).await;
    bump(&format!("{key}/charged"));
    Ok(1)
}

/// The compensation: counted under `key/refund`.
#[activity]
async fn refund(key: String) -> Result<(), ActivityError> {
    bump(&format!("{key}/refund"));
    Ok(())
}

/// Registers a refund, then charges (blocked until the test opens the gate).
#[workflow]
async fn guarded(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.compensate_with(refund, key.clone());
    ctx.call(blocked_charge, key).await
}

/// How many steps of `key`'s run have started so far.
fn started(key: &str) -> usize {
    (1..=10)
        .filter(|n| count(&format!("{key}/{n}")) > 0)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_and_resume_issued_on_the_other_node_take_effect_on_the_holder() {
    let Some(db) = TestSchema::fresh() else {
        return;
    };
    let a = db.node("node-a").await;
    let b = db.node("node-b").await;
    let (key, id) = ("nodes-pause", "nodes-pause-1");
    // Created on A: A holds it from the start.
    let run = a.start(steps, id, key.to_string()).await.unwrap();
    eventually("step 2 started on A", || async { started(key) >= 2 }).await;
    assert_eq!(db.owner(id).await.as_deref(), Some("node-a"));

    b.pause(id, "alice", "from node b").await.unwrap();
    // A learns it in its cluster loop, lets its step in flight finish, and gives the run back.
    eventually("A gave the paused run back", || async {
        db.owner(id).await.is_none()
    })
    .await;
    let frozen = started(key);
    let journaled = a.store().history(id).await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(started(key), frozen, "a step started while paused");
    assert_eq!(
        a.store().history(id).await.unwrap().len(),
        journaled,
        "the journal grew while paused"
    );
    assert!(frozen < 10, "the run finished before the pause took effect");
    assert_eq!(db.owner(id).await, None, "a paused run was claimed");
    assert!(matches!(a.status(id).await.unwrap(), RunStatus::Paused(_)));

    b.resume(id, "bob").await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 55);
    // Both actions are in the run's own history, with their actors.
    let audits: Vec<(OperatorAction, String)> = a
        .store()
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(
            |row| match Codec::default().decode::<EventBody>(&row.payload).unwrap() {
                EventBody::Operator { action, actor, .. } => Some((action, actor)),
                _ => None,
            },
        )
        .collect();
    assert_eq!(
        audits,
        vec![
            (
                OperatorAction::Paused {
                    reason: "from node b".to_string()
                },
                "alice".to_string()
            ),
            (OperatorAction::Resumed, "bob".to_string()),
        ]
    );
    for n in 1..=10 {
        assert_eq!(
            count(&format!("{key}/{n}")),
            1,
            "step {n} ran more than once"
        );
    }
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminate_issued_on_the_other_node_stops_the_holder_and_fences_its_late_result() {
    let Some(db) = TestSchema::fresh() else {
        return;
    };
    let a = db.node("node-a").await;
    let b = db.node("node-b").await;
    let (key, id) = ("nodes-term", "nodes-term-1");
    let run = a.start(guarded, id, key.to_string()).await.unwrap();
    eventually("the charge is running on A", || async {
        count("nodes-term/charge") == 1
    })
    .await;
    let before = b.store().history(id).await.unwrap().len();

    b.terminate(id, "carol", "fraud").await.unwrap();
    let result = finish(&run).await;
    assert!(
        matches!(&result, Err(Error::RunTerminated { actor, .. }) if actor == "carol"),
        "{result:?}"
    );
    // The charge that was in flight on A is let go: nothing of it reaches the journal.
    open_gate("nodes-term/gate");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        count("nodes-term/refund"),
        0,
        "terminate runs no compensation"
    );
    let record = b.store().run(id).await.unwrap().unwrap();
    assert_eq!(record.state, RunState::Terminated);
    assert_eq!(db.owner(id).await, None);
    let after = b.store().history(id).await.unwrap().len();
    assert_eq!(after, before + 1, "only the audit event was added");
    assert_eq!(a.resident_runs(), 0, "A still drives the terminated run");
    stop(a).await;
    stop(b).await;
}
