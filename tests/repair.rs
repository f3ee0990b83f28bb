//! The operator's repair verbs `Engine::retry` and `Engine::fork`, on a real SQLite file and (when
//! `ORCHESTRATOR_TEST_POSTGRES_URL` is set) on PostgreSQL with two nodes.
//!
//! Activities count their executions in a ledger keyed by the test's own key (see `bump`/`count`),
//! so "re-runs only the failed step" and "re-runs only steps >= N" are checked by counting what
//! really ran. Code changes ("a deploy") are simulated by counters the workflow code reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use orchestrator::codec::Codec;
use orchestrator::journal::{EventBody, OperatorAction};
use orchestrator::prelude::*;
use orchestrator::store::{PostgresOptions, PostgresStore, Store};
use orchestrator::{Fork, ParkReason, RunStatus};
use orchestrator_tests::pg_schema::PgSchema;
use orchestrator_tests::{TestDb, bump, count, finish, stop, wait_status};

/// Counts its executions under `key`.
#[activity]
async fn ledger(key: String) -> Result<String, ActivityError> {
    let n = bump(&key);
    Ok(format!("{key}#{n}"))
}

/// Counts its executions under `key`; fails (retryably) until `{key}/fixed` is bumped.
#[activity(retry(max_attempts = 2, backoff = "5ms..5ms", jitter = 0.0))]
async fn fragile(key: String) -> Result<String, ActivityError> {
    bump(&key);
    if count(&format!("{key}/fixed")) == 0 {
        return Err(ActivityError::retryable("the service is down"));
    }
    Ok(format!("{key} ok"))
}

/// Three steps; the second is fragile.
#[workflow]
async fn three_steps(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(ledger, format!("{key}/1")).await?;
    let b = ctx.call(fragile, format!("{key}/2")).await?;
    let c = ctx.call(ledger, format!("{key}/3")).await?;
    Ok(format!("{a}|{b}|{c}"))
}

/// Step 1 depends on the "deployed version" of `key` (`{key}/version`: 1 is a broken deploy that
/// calls another activity at step 1), then a signal, then step 3.
#[workflow]
async fn shifting(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let first = if count(&format!("{key}/version")) == 1 {
        ctx.call(ledger, format!("{key}/other")).await?
    } else {
        ctx.call(ledger, format!("{key}/1")).await?
    };
    let go: String = ctx.signal("go").await?;
    let last = ctx.call(ledger, format!("{key}/3")).await?;
    Ok(format!("{first}|{go}|{last}"))
}

/// Step 1 depends only on the key, step 2 on the quantity too.
#[workflow]
async fn priced(ctx: WorkflowContext, order: (String, u32)) -> Result<String, WorkflowError> {
    let (key, quantity) = order;
    let base = ctx.call(ledger, format!("{key}/base")).await?;
    let total = ctx
        .call(ledger, format!("{key}/quantity-{quantity}"))
        .await?;
    Ok(format!("{base}|{total}"))
}

/// A refund that fails (for good) until `{key}/fixed` is bumped.
#[activity(retry(max_attempts = 1))]
async fn refund(key: String) -> Result<(), ActivityError> {
    bump(&key);
    if count(&format!("{key}/fixed")) == 0 {
        return Err(ActivityError::non_retryable("the refund service is down"));
    }
    Ok(())
}

/// Always declines.
#[activity(retry(max_attempts = 1))]
async fn decline(key: String) -> Result<(), ActivityError> {
    bump(&key);
    Err(ActivityError::non_retryable("declined"))
}

/// A saga: charge (compensated by a refund), then a step that fails for good.
#[workflow]
async fn saga(ctx: WorkflowContext, key: String) -> Result<(), WorkflowError> {
    ctx.call(ledger, format!("{key}/charge")).await?;
    ctx.compensate_with(refund, format!("{key}/refund"));
    ctx.call(decline, format!("{key}/ship")).await?;
    Ok(())
}

/// Counts its executions under `key`, after `delay_ms`.
#[activity]
async fn slow_ledger(key: String, delay_ms: u64) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let n = bump(&key);
    Ok(format!("{key}#{n}"))
}

/// Step 1, then steps 2 (slow) and 3 (fast) concurrently, then step 4.
#[workflow]
async fn fan_out(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let a = ctx.call(ledger, format!("{key}/1")).await?;
    let (b, c) = futures::join!(
        ctx.call(slow_ledger, (format!("{key}/2"), 200)),
        ctx.call(slow_ledger, (format!("{key}/3"), 0)),
    );
    let d = ctx.call(ledger, format!("{key}/4")).await?;
    Ok(format!("{a}|{}|{}|{d}", b?, c?))
}

/// Step 1, then a signal wait with a short timeout.
#[workflow]
async fn impatient(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let first = ctx.call(ledger, format!("{key}/1")).await?;
    let answer: String = ctx
        .signal("answer")
        .timeout(Duration::from_millis(300))
        .await?;
    Ok(format!("{first}|{answer}"))
}

fn builder(db: &TestDb) -> orchestrator::EngineBuilder {
    db.builder()
        .register(three_steps)
        .register(shifting)
        .register(priced)
        .register(saga)
        .register(fan_out)
        .register(impatient)
        .register(slow_ledger)
        .register(ledger)
        .register(fragile)
        .register(refund)
        .register(decline)
}

/// A unique key per test, so the process-wide ledger counters do not mix.
fn key(test: &str) -> String {
    format!("repair/{test}/{:x}", fastrand::u64(..))
}

/// The operator annotations of a run, in journal order, with their actors.
async fn operator_actions(
    store: &Arc<dyn Store>,
    workflow_id: &str,
) -> Vec<(OperatorAction, String)> {
    store
        .history(workflow_id)
        .await
        .unwrap()
        .iter()
        .filter_map(
            |row| match Codec::default().decode::<EventBody>(&row.payload).unwrap() {
                EventBody::Operator { action, actor, .. } => {
                    assert_eq!(row.step, 0, "operator events are run-level");
                    Some((action, actor))
                }
                _ => None,
            },
        )
        .collect()
}

fn is_not_applicable(error: &Error, action: &str) -> bool {
    matches!(error, Error::NotApplicable { action: found, .. } if *found == action)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_failed_run_reruns_only_the_failed_step() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("failed");
    let run = engine.start(three_steps, "job", key.clone()).await.unwrap();
    let error = finish(&run).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::ActivityFailed {
                    step: 2,
                    attempts: 2,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(count(&format!("{key}/1")), 1);
    assert_eq!(count(&format!("{key}/2")), 2);

    bump(&format!("{key}/2/fixed"));
    engine.retry("job", "alice").await.unwrap();
    let output = finish(&run).await.unwrap();
    assert_eq!(output, format!("{key}/1#1|{key}/2 ok|{key}/3#1"));
    // Step 1 did not run again; step 2 ran once more (a fresh budget: the first attempt succeeded).
    assert_eq!(count(&format!("{key}/1")), 1);
    assert_eq!(count(&format!("{key}/2")), 3);
    assert_eq!(count(&format!("{key}/3")), 1);

    // The journal holds step 2's new outcome only (its failed attempts were superseded), and the
    // audit trail says who retried which step and what was dropped.
    // (Since event format 3 each attempt's start is journaled too: the new attempt 1's start, then its
    // completion.)
    let step_2: Vec<_> = db
        .events("job")
        .into_iter()
        .filter(|row| row.step == 2)
        .collect();
    assert_eq!(step_2.len(), 2, "{step_2:?}");
    assert!(matches!(
        &step_2[0].body,
        EventBody::ActivityAttemptStarted { attempt: 1, .. }
    ));
    assert!(matches!(
        &step_2[1].body,
        EventBody::ActivityCompleted {
            attempts: 1,
            result: Ok(_),
            ..
        }
    ));
    let actions = operator_actions(engine.store(), "job").await;
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(
        actions[0],
        (OperatorAction::Retried { step: 2 }, "alice".to_string())
    );
    match &actions[1].0 {
        OperatorAction::RetrySuperseded {
            state,
            error,
            dropped_events,
        } => {
            assert_eq!(state, "Failed");
            assert!(error.contains("the service is down"), "{error}");
            assert_eq!(
                *dropped_events, 4,
                "two attempt starts, the failed attempt and the failing completion"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_timed_out_signal_wait_waits_again_with_a_fresh_deadline() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("signal-timeout");
    let run = engine.start(impatient, "ask", key.clone()).await.unwrap();
    let error = finish(&run).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::WorkflowFailed {
                error: WorkflowError::SignalTimeout { step: 2, .. },
                ..
            }
        ),
        "{error:?}"
    );
    engine.retry("ask", "alice").await.unwrap();
    engine
        .signal("ask", "answer", "42".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), format!("{key}/1#1|42"));
    assert_eq!(count(&format!("{key}/1")), 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_retries_drive_the_run_once() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("concurrent");
    let run = engine.start(three_steps, "job", key.clone()).await.unwrap();
    finish(&run).await.unwrap_err();
    bump(&format!("{key}/2/fixed"));
    let (first, second) = tokio::join!(engine.retry("job", "a"), engine.retry("job", "b"));
    let outcomes = [first, second];
    assert_eq!(
        outcomes.iter().filter(|outcome| outcome.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|outcome| matches!(outcome, Err(error) if is_not_applicable(error, "retry"))),
        "{outcomes:?}"
    );
    finish(&run).await.unwrap();
    assert_eq!(count(&format!("{key}/2")), 3);
    assert_eq!(count(&format!("{key}/3")), 1);
    let retried = operator_actions(engine.store(), "job")
        .await
        .into_iter()
        .filter(|(action, _)| matches!(action, OperatorAction::Retried { .. }))
        .count();
    assert_eq!(retried, 1);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_parked_run_parks_it_again_until_the_code_is_fixed() {
    let db = TestDb::new();
    let key = key("parked");
    let engine = builder(&db).start().await.unwrap();
    engine.start(shifting, "shift", key.clone()).await.unwrap();
    orchestrator_tests::eventually("step 1 ran", || async { count(&format!("{key}/1")) == 1 })
        .await;
    stop(engine).await;

    // A broken deploy: step 1 now calls another activity. The restart parks the run.
    bump(&format!("{key}/version"));
    let engine = builder(&db).start().await.unwrap();
    let parked = wait_status(&engine, "shift", |status| {
        matches!(status, RunStatus::Parked(_))
    })
    .await;
    let RunStatus::Parked(reason) = parked else {
        unreachable!()
    };
    assert!(
        matches!(&reason, ParkReason::NonDeterminism(error) if error.step == 1),
        "{reason:?}"
    );

    // Retried on the same (unchanged) code: parked again, with the same error.
    engine.retry("shift", "alice").await.unwrap();
    let again = wait_status(&engine, "shift", |status| {
        !matches!(status, RunStatus::Running)
    })
    .await;
    assert_eq!(again, RunStatus::Parked(reason.clone()));
    assert_eq!(
        count(&format!("{key}/other")),
        0,
        "nothing ran past the divergence"
    );

    // The code is fixed (in this process: no restart); a retry replays the run and it goes on.
    bump(&format!("{key}/version"));
    engine.retry("shift", "bob").await.unwrap();
    wait_status(&engine, "shift", |status| {
        matches!(status, RunStatus::Running)
    })
    .await;
    engine
        .signal("shift", "go", "yes".to_string())
        .await
        .unwrap();
    let run = engine.handle(shifting, "shift").await.unwrap();
    let output = finish(&run).await.unwrap();
    assert_eq!(output, format!("{key}/1#1|yes|{key}/3#1"));
    assert_eq!(
        count(&format!("{key}/1")),
        1,
        "step 1 was replayed, not run again"
    );

    let actions = operator_actions(engine.store(), "shift").await;
    let retries: Vec<_> = actions
        .iter()
        .filter(|(action, _)| matches!(action, OperatorAction::Retried { .. }))
        .collect();
    assert_eq!(
        retries,
        [
            &(OperatorAction::Retried { step: 0 }, "alice".to_string()),
            &(OperatorAction::Retried { step: 0 }, "bob".to_string())
        ]
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_refuses_running_completed_and_unknown_runs() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("refusals");
    engine
        .start(shifting, "waiting", key.clone())
        .await
        .unwrap();
    let error = engine.retry("waiting", "alice").await.unwrap_err();
    assert!(is_not_applicable(&error, "retry"), "{error:?}");
    assert!(error.to_string().contains("running"), "{error}");

    bump(&format!("{key}/done/2/fixed"));
    let done = engine
        .start(three_steps, "done", format!("{key}/done"))
        .await
        .unwrap();
    finish(&done).await.unwrap();
    let error = engine.retry("done", "alice").await.unwrap_err();
    assert!(is_not_applicable(&error, "retry"), "{error:?}");
    assert!(matches!(
        engine.status("done").await.unwrap(),
        RunStatus::Completed
    ));

    let error = engine.retry("nobody", "alice").await.unwrap_err();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    // Refusals leave no audit trace.
    assert!(operator_actions(engine.store(), "done").await.is_empty());
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_a_failed_compensation_runs_that_compensation_again() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("compensation");
    let run = engine.start(saga, "saga", key.clone()).await.unwrap();
    finish(&run).await.unwrap_err();
    assert!(matches!(
        engine.status("saga").await.unwrap(),
        RunStatus::CompensationFailed(_)
    ));
    assert_eq!(count(&format!("{key}/refund")), 1);

    bump(&format!("{key}/refund/fixed"));
    engine.retry("saga", "alice").await.unwrap();
    let status = wait_status(&engine, "saga", |status| {
        !matches!(status, RunStatus::Running)
    })
    .await;
    // The rollback is complete; the run keeps its original failure.
    assert!(
        matches!(
            &status,
            RunStatus::Failed(WorkflowError::ActivityFailed { step: 2, .. })
        ),
        "{status:?}"
    );
    assert_eq!(count(&format!("{key}/charge")), 1);
    assert_eq!(count(&format!("{key}/ship")), 1);
    assert_eq!(count(&format!("{key}/refund")), 2);

    // Now the compensations have run: retrying forward would reuse the refunded charge. Refused.
    let error = engine.retry("saga", "alice").await.unwrap_err();
    assert!(is_not_applicable(&error, "retry"), "{error:?}");
    assert!(error.to_string().contains("fork"), "{error}");
    assert_eq!(count(&format!("{key}/refund")), 2);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_from_a_step_reruns_only_the_later_steps_and_leaves_the_source_untouched() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("fork");
    bump(&format!("{key}/2/fixed"));
    let source = engine
        .start(three_steps, "source", key.clone())
        .await
        .unwrap();
    let output = finish(&source).await.unwrap();
    let source_events = db.events("source");

    let fork = engine
        .fork("source", Fork::new(3, "copy").actor("alice"))
        .await
        .unwrap();
    assert_eq!(fork.workflow_id(), "copy");
    let copy = fork.typed(three_steps).await.unwrap();
    assert_eq!(
        finish(&copy).await.unwrap(),
        format!("{key}/1#1|{key}/2 ok|{key}/3#2")
    );
    assert_eq!(count(&format!("{key}/1")), 1);
    assert_eq!(count(&format!("{key}/2")), 1);
    assert_eq!(count(&format!("{key}/3")), 2);

    // The source: same outcome, same journal, plus the audit annotation.
    assert_eq!(finish(&source).await.unwrap(), output);
    let after: Vec<_> = db
        .events("source")
        .into_iter()
        .filter(|row| !matches!(row.body, EventBody::Operator { .. }))
        .collect();
    assert_eq!(after, source_events);
    assert_eq!(
        operator_actions(engine.store(), "source").await,
        [(
            OperatorAction::ForkedTo {
                new_id: "copy".to_string(),
                from_step: 3
            },
            "alice".to_string()
        )]
    );
    assert_eq!(
        operator_actions(engine.store(), "copy").await,
        [(
            OperatorAction::ForkedFrom {
                source_id: "source".to_string(),
                from_step: 3
            },
            "alice".to_string()
        )]
    );

    // The id is taken now.
    let error = engine
        .fork("source", Fork::new(2, "copy"))
        .await
        .unwrap_err();
    assert!(is_not_applicable(&error, "fork"), "{error:?}");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_copies_the_steps_before_n_even_when_they_completed_after_later_steps() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("concurrent-steps");
    let source = engine.start(fan_out, "fan", key.clone()).await.unwrap();
    finish(&source).await.unwrap();
    let completions: Vec<u32> = db
        .events("fan")
        .into_iter()
        .filter(|row| row.completion)
        .map(|row| row.step)
        .collect();
    assert_eq!(completions, [1, 3, 2, 4], "step 3 completed before step 2");

    // The prefix before step 3 holds step 2's completion (journaled after step 3's): step 2 is
    // replayed, step 3 and what follows run again.
    let fork = engine.fork("fan", Fork::new(3, "fan-3")).await.unwrap();
    let output = finish(&fork.typed(fan_out).await.unwrap()).await.unwrap();
    assert_eq!(output, format!("{key}/1#1|{key}/2#1|{key}/3#2|{key}/4#2"));
    assert_eq!(count(&format!("{key}/2")), 1);
    let copied: Vec<u32> = db
        .events("fan-3")
        .into_iter()
        .filter(|row| row.completion)
        .map(|row| row.step)
        .collect();
    assert_eq!(copied, [1, 2, 3, 4]);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_with_a_new_input() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("input");
    let source = engine
        .start(priced, "order", (key.clone(), 1_u32))
        .await
        .unwrap();
    finish(&source).await.unwrap();

    let fork = engine
        .fork(
            "order",
            Fork::new(2, "order-5")
                .actor("bob")
                .input((key.clone(), 5_u32)),
        )
        .await
        .unwrap();
    let output = finish(&fork.typed(priced).await.unwrap()).await.unwrap();
    assert_eq!(output, format!("{key}/base#1|{key}/quantity-5#1"));
    assert_eq!(
        count(&format!("{key}/base")),
        1,
        "step 1 was copied, not run again"
    );

    // An input that changes a copied step does not replay: refused, naming the step.
    let error = engine
        .fork(
            "order",
            Fork::new(2, "order-x").input(("another key".to_string(), 5_u32)),
        )
        .await
        .unwrap_err();
    assert!(is_not_applicable(&error, "fork"), "{error:?}");
    assert!(
        error.to_string().contains("nondeterminism at step 1"),
        "{error}"
    );
    // An input of another type does not decode.
    let error = engine
        .fork("order", Fork::new(2, "order-y").input(7_u8))
        .await
        .unwrap_err();
    assert!(is_not_applicable(&error, "fork"), "{error:?}");
    for refused in ["order-x", "order-y"] {
        assert!(engine.store().run(refused).await.unwrap().is_none());
    }
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_is_refused_when_the_prefix_no_longer_replays() {
    let db = TestDb::new();
    let engine = builder(&db).start().await.unwrap();
    let key = key("diverged");
    let source = engine.start(shifting, "shift", key.clone()).await.unwrap();
    engine
        .signal("shift", "go", "yes".to_string())
        .await
        .unwrap();
    finish(&source).await.unwrap();

    // A deploy changed step 1: a fork that copies it is refused, naming the step; one that copies
    // nothing is fine.
    bump(&format!("{key}/version"));
    let error = engine
        .fork("shift", Fork::new(3, "shift-2").actor("alice"))
        .await
        .unwrap_err();
    assert!(is_not_applicable(&error, "fork"), "{error:?}");
    assert!(
        error.to_string().contains("nondeterminism at step 1"),
        "{error}"
    );
    assert!(engine.store().run("shift-2").await.unwrap().is_none());
    assert!(operator_actions(engine.store(), "shift").await.is_empty());
    assert_eq!(
        count(&format!("{key}/other")),
        0,
        "the dry run executed nothing"
    );

    engine.fork("shift", Fork::new(1, "shift-3")).await.unwrap();
    wait_status(&engine, "shift-3", |status| {
        matches!(status, RunStatus::Running)
    })
    .await;
    orchestrator_tests::eventually("the fork ran step 1 on the new code", || async {
        count(&format!("{key}/other")) == 1
    })
    .await;
    stop(engine).await;
}

// PostgreSQL, two nodes.

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
        PgSchema::fresh("orch_repair", "PostgreSQL repair tests").map(TestSchema)
    }

    async fn node(&self, node: &str) -> Engine {
        let store = self.store(4).await;
        Engine::builder()
            .store(Arc::new(store))
            .node_id(node)
            .lease_duration(Duration::from_millis(1000))
            .shutdown_grace(Duration::from_secs(2))
            .register(three_steps)
            .register(ledger)
            .register(fragile)
            .start()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_fork_issued_on_a_node_not_holding_the_run_on_postgres() {
    let Some(db) = TestSchema::fresh() else {
        return;
    };
    let a = db.node("node-a").await;
    let b = db.node("node-b").await;
    let key = key("postgres");
    let run = a.start(three_steps, "pg-job", key.clone()).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), run.result())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, Error::WorkflowFailed { .. }), "{error:?}");
    assert_eq!(count(&format!("{key}/2")), 2);

    // Node b retries a run node a created and drove: the run becomes running and unowned, and
    // whichever node claims it first drives it, once.
    bump(&format!("{key}/2/fixed"));
    b.retry("pg-job", "carol").await.unwrap();
    let error = b.retry("pg-job", "carol").await.unwrap_err();
    assert!(is_not_applicable(&error, "retry"), "{error:?}");
    let output = tokio::time::timeout(Duration::from_secs(10), run.result())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output, format!("{key}/1#1|{key}/2 ok|{key}/3#1"));
    assert_eq!(count(&format!("{key}/1")), 1);
    assert_eq!(count(&format!("{key}/2")), 3);
    assert_eq!(count(&format!("{key}/3")), 1);
    assert_eq!(
        operator_actions(a.store(), "pg-job").await[0],
        (OperatorAction::Retried { step: 2 }, "carol".to_string())
    );

    // A fork from node a of the run, driven by a (which owns the new run from its creation).
    let fork = a
        .fork("pg-job", Fork::new(3, "pg-copy").actor("dave"))
        .await
        .unwrap();
    let copy = fork.typed(three_steps).await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), copy.result())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output, format!("{key}/1#1|{key}/2 ok|{key}/3#2"));
    assert_eq!(count(&format!("{key}/2")), 3);
    assert_eq!(
        operator_actions(b.store(), "pg-copy").await,
        [(
            OperatorAction::ForkedFrom {
                source_id: "pg-job".to_string(),
                from_step: 3
            },
            "dave".to_string()
        )]
    );
    stop(a).await;
    stop(b).await;
}

/// The store operations are one transaction each: a fork whose source annotation cannot be written
/// (no such source) creates nothing, and a rewind of a run no longer in the expected state changes
/// nothing.
async fn repairs_are_all_or_nothing(store: Arc<dyn Store>) {
    use orchestrator::store::{
        CreateOutcome, ForkRun, NewEvent, NewRun, Rewind, RewindOutcome, RunState,
    };
    let run = |id: &str| NewRun {
        workflow_id: id.to_string(),
        workflow_name: "three_steps".to_string(),
        input: vec![1],
        parent_id: None,
        deadline_ms: None,
        execution_timeout_ms: None,
        owner: None,
        events: Vec::new(),
        paused: None,
    };
    let event = NewEvent {
        step: 1,
        kind: 8,
        completion: false,
        payload: vec![0],
        wake_at_ms: None,
    };
    let error = store
        .fork_run(ForkRun {
            run: run("orphan"),
            events: vec![event.clone()],
            source_id: "missing".to_string(),
            source_events: vec![event.clone()],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, orchestrator::store::StoreError::Conflict { .. }),
        "{error:?}"
    );
    assert!(store.run("orphan").await.unwrap().is_none());
    assert!(store.history("orphan").await.unwrap().is_empty());

    assert!(matches!(
        store.create_run(run("live")).await.unwrap(),
        CreateOutcome::Created
    ));
    let rewind = Rewind {
        workflow_id: "live".to_string(),
        run_no: 0,
        expected_state: RunState::Failed,
        drop_seqs: Vec::new(),
        events: vec![event.clone()],
        wakeups: Vec::new(),
    };
    assert_eq!(
        store.rewind(rewind.clone()).await.unwrap(),
        RewindOutcome::Changed(RunState::Running)
    );
    assert!(store.history("live").await.unwrap().is_empty());
    let missing = Rewind {
        workflow_id: "missing".to_string(),
        ..rewind
    };
    assert_eq!(
        store.rewind(missing).await.unwrap(),
        RewindOutcome::NoSuchRun
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_repairs_are_all_or_nothing() {
    let db = TestDb::new();
    let store = orchestrator::store::SqliteStore::open(db.path())
        .await
        .unwrap();
    repairs_are_all_or_nothing(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_repairs_are_all_or_nothing() {
    let Some(db) = TestSchema::fresh() else {
        return;
    };
    let store = PostgresStore::connect_with(
        PostgresOptions::new(db.url.clone())
            .schema(db.name.clone())
            .pool_size(2),
    )
    .await
    .unwrap();
    repairs_are_all_or_nothing(Arc::new(store)).await;
}
