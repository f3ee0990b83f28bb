//! Issue 12 §1: `Engine::describe` explains any run from the store alone — what it is blocked on,
//! its step-by-step timeline, and its payloads as JSON — against a real SQLite file (and PostgreSQL
//! with two nodes when `ORCHESTRATOR_TEST_POSTGRES_URL` is set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use orchestrator::inspect::{
    AttemptOutcome, BlockedOn, Rendered, RunDescription, StepKind, StepStatus,
};
use orchestrator::prelude::*;
use orchestrator::store::{PostgresOptions, PostgresStore, RunState};
use orchestrator_tests::{TestDb, eventually, finish, gate_wait, now_ms, open_gate, stop};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    sku: String,
}

#[activity(retry(max_attempts = 5, backoff = "1h..2h", jitter = 0.0))]
async fn charge_card(cents: u64) -> Result<String, ActivityError> {
    Err(ActivityError::retryable(format!(
        "card declined for {cents}"
    )))
}

#[workflow]
async fn pays(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    ctx.call(charge_card, order.id).await
}

/// Fails attempt 1 at once, then holds attempt 2 at a gate.
#[activity(retry(max_attempts = 3, backoff = "1ms..1ms", jitter = 0.0))]
async fn slow_second(ctx: ActivityContext, key: String) -> Result<u32, ActivityError> {
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable("first attempt fails"));
    }
    gate_wait(&key).await;
    Ok(ctx.attempt())
}

#[workflow]
async fn runs_slowly(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(slow_second, key).await
}

#[workflow]
async fn sleeps(ctx: WorkflowContext, hours: u64) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(hours * 3600)).await
}

#[workflow]
async fn approves(ctx: WorkflowContext, amount: u64) -> Result<bool, WorkflowError> {
    ctx.set_state("amount", &amount)?;
    let approved: bool = ctx
        .signal("approval")
        .timeout(Duration::from_secs(3600))
        .await?;
    Ok(approved)
}

#[workflow]
async fn ships(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    let label: String = ctx.signal("label").await?;
    Ok(format!("{}:{label}", order.sku))
}

#[workflow]
async fn fulfils(ctx: WorkflowContext, order: Order) -> Result<String, WorkflowError> {
    let child = format!("{}/ship", ctx.workflow_id());
    ctx.child(ships, child, order).await
}

#[activity]
async fn reserve(sku: String) -> Result<String, ActivityError> {
    Ok(format!("res-{sku}"))
}

#[activity]
async fn release(reservation: String) -> Result<(), ActivityError> {
    let _ = reservation;
    Ok(())
}

#[activity]
async fn ship_parcel(sku: String) -> Result<(), ActivityError> {
    Err(ActivityError::non_retryable(format!(
        "no courier for {sku}"
    )))
}

#[workflow]
async fn saga(ctx: WorkflowContext, sku: String) -> Result<(), WorkflowError> {
    let reservation = ctx.call(reserve, sku.clone()).await?;
    ctx.compensate_with(release, reservation);
    ctx.call(ship_parcel, sku).await
}

#[activity]
async fn alpha(n: u64) -> Result<u64, ActivityError> {
    Ok(n + 1)
}

#[activity]
async fn bravo(n: u64) -> Result<u64, ActivityError> {
    Ok(n + 2)
}

#[workflow(name = "versioned")]
async fn versioned_v1(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let a = ctx.call(alpha, n).await?;
    let go: bool = ctx.signal("go").await?;
    Ok(if go { a } else { 0 })
}

#[workflow(name = "versioned")]
async fn versioned_v2(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let b = ctx.call(bravo, n).await?;
    let go: bool = ctx.signal("go").await?;
    Ok(if go { b } else { 0 })
}

/// Describes `id` until `check` holds (runs progress in the background).
async fn describe_until(
    engine: &Engine,
    id: &str,
    what: &str,
    check: impl Fn(&RunDescription) -> bool,
) -> RunDescription {
    let check = &check;
    eventually(what, || async move {
        engine.describe(id).await.is_ok_and(|d| check(&d))
    })
    .await;
    engine.describe(id).await.unwrap()
}

/// Whether `blocked_on` says the run's workflow type is not registered here: at once, or once the
/// engine's recovery parked the run for it.
fn unknown_type(blocked_on: &BlockedOn) -> bool {
    match blocked_on {
        BlockedOn::UnknownWorkflowType { .. } => true,
        BlockedOn::Parked { message } => message.contains("is not registered with this engine"),
        _ => false,
    }
}

/// The description survives a JSON round trip unchanged (it is sent over the admin API).
fn assert_json_round_trip(description: &RunDescription) {
    let text = serde_json::to_string(description).unwrap();
    let back: RunDescription = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, description);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_activity_names_its_attempt_budget_next_time_and_last_error() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(pays)
        .register(charge_card)
        .start()
        .await
        .unwrap();
    let order = Order {
        id: 1999,
        sku: "mug".into(),
    };
    let before = now_ms();
    engine.start(pays, "pay-1", order).await.unwrap();
    let d = describe_until(&engine, "pay-1", "the first failure", |d| {
        matches!(d.blocked_on, BlockedOn::ActivityRetry { .. })
    })
    .await;
    match &d.blocked_on {
        BlockedOn::ActivityRetry {
            name,
            step,
            next_attempt,
            max_attempts,
            next_attempt_at_ms,
            last_error,
        } => {
            assert_eq!(name, "charge_card");
            assert_eq!((*step, *next_attempt, *max_attempts), (1, 2, Some(5)));
            assert!(
                *next_attempt_at_ms >= before + 3_500_000,
                "{next_attempt_at_ms}"
            );
            assert!(
                last_error.contains("card declined for 1999"),
                "{last_error}"
            );
        }
        other => panic!("{other:?}"),
    }
    let line = d.blocked_on.to_string();
    assert!(
        line.starts_with("activity `charge_card` step 1, attempt 2 of 5, next attempt at 20")
            && line.contains("Z (last error: ")
            && line.contains("card declined for 1999"),
        "{line}"
    );
    assert_eq!(d.blocked_on_text, line);
    assert_eq!(d.state, RunState::Running);
    assert_eq!(d.input, Rendered::Json(json!({"id": 1999, "sku": "mug"})));
    let step = &d.timeline.steps[0];
    assert_eq!(
        (step.kind, step.status, step.name.as_deref()),
        (
            StepKind::Activity,
            StepStatus::Retrying,
            Some("charge_card")
        )
    );
    assert_eq!(step.attempts.len(), 1);
    assert_eq!(step.attempts[0].outcome, AttemptOutcome::Failed);
    assert!(step.attempts[0].ended_at_ms.unwrap() >= before);
    assert_json_round_trip(&d);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_activity_attempt_is_named_with_its_number() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(runs_slowly)
        .register(slow_second)
        .start()
        .await
        .unwrap();
    let key = "inspect-running";
    let run = engine
        .start(runs_slowly, "slow-1", key.to_string())
        .await
        .unwrap();
    let d = describe_until(&engine, "slow-1", "attempt 2 running", |d| {
        matches!(d.blocked_on, BlockedOn::ActivityRunning { attempt: 2, .. })
    })
    .await;
    let line = d.blocked_on.to_string();
    assert!(
        line.starts_with("running activity `slow_second` step 1 attempt 2 since 20"),
        "{line}"
    );
    assert_eq!(d.timeline.steps[0].status, StepStatus::Running);
    open_gate(key);
    assert_eq!(finish(&run).await.unwrap(), 2);
    let d = engine.describe("slow-1").await.unwrap();
    assert_eq!(
        d.blocked_on,
        BlockedOn::Finished {
            state: RunState::Completed
        }
    );
    assert_eq!(d.output, Some(Rendered::Json(json!(2))));
    assert_eq!(d.outcome.as_deref(), Some("completed"));
    assert!(d.finished_at_ms.is_some());
    let step = &d.timeline.steps[0];
    assert_eq!(step.status, StepStatus::Completed);
    assert_eq!(step.output, Some(Rendered::Json(json!(2))));
    let outcomes: Vec<_> = step.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Failed, AttemptOutcome::Succeeded]
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_and_signal_deadlines_are_named_with_their_times_and_state_is_rendered() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(sleeps)
        .register(approves)
        .start()
        .await
        .unwrap();
    let before = now_ms();
    engine.start(sleeps, "nap-1", 2).await.unwrap();
    let d = describe_until(&engine, "nap-1", "the timer", |d| {
        matches!(d.blocked_on, BlockedOn::Timer { .. })
    })
    .await;
    let BlockedOn::Timer { step, fire_at_ms } = d.blocked_on else {
        unreachable!()
    };
    assert_eq!(step, 1);
    // The engine's clock (monotonic, anchored once to the wall clock) may read a millisecond or so
    // behind the test's wall clock: allow a second either side of "two hours from now".
    assert!(
        (before + 7_199_000..before + 7_300_000).contains(&fire_at_ms),
        "fire_at_ms {fire_at_ms}, started at {before}"
    );
    assert!(d.blocked_on.to_string().starts_with("timer until 20"));
    assert_eq!(d.timeline.steps[0].fire_at_ms, Some(fire_at_ms));

    let run = engine.start(approves, "ok-1", 700).await.unwrap();
    let d = describe_until(&engine, "ok-1", "the signal wait", |d| {
        matches!(d.blocked_on, BlockedOn::Signal { .. })
    })
    .await;
    match &d.blocked_on {
        BlockedOn::Signal {
            name,
            step,
            deadline_ms,
        } => {
            assert_eq!((name.as_str(), *step), ("approval", 2));
            assert!(*deadline_ms >= before + 3_599_000);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        d.blocked_on
            .to_string()
            .starts_with("signal `approval` (deadline 20"),
        "{}",
        d.blocked_on
    );
    assert_eq!(d.published_state.len(), 1);
    assert_eq!(d.published_state[0].key, "amount");
    assert_eq!(d.published_state[0].value, Rendered::Json(json!(700)));
    engine.signal("ok-1", "approval", true).await.unwrap();
    assert!(finish(&run).await.unwrap());
    let d = engine.describe("ok-1").await.unwrap();
    let received = &d.timeline.steps[1];
    assert_eq!(received.kind, StepKind::Signal);
    assert_eq!(received.output, Some(Rendered::Json(json!(true))));
    assert!(received.ended_at_ms >= received.started_at_ms);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_is_blocked_on_its_child_and_lists_it() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(fulfils)
        .register(ships)
        .start()
        .await
        .unwrap();
    let order = Order {
        id: 42,
        sku: "lamp".into(),
    };
    let run = engine.start(fulfils, "order-42", order).await.unwrap();
    let d = describe_until(&engine, "order-42", "the child wait", |d| {
        matches!(d.blocked_on, BlockedOn::Child { .. })
    })
    .await;
    assert_eq!(
        d.blocked_on.to_string(),
        "child `order-42/ship` (ships, step 1)"
    );
    assert_eq!(d.children.len(), 1);
    assert_eq!(d.children[0].workflow_id, "order-42/ship");
    assert_eq!(d.children[0].step, Some(1));
    assert_eq!(d.children[0].state, Some(RunState::Running));
    let child = engine.describe("order-42/ship").await.unwrap();
    assert_eq!(child.parent_id.as_deref(), Some("order-42"));
    // A signal without deadline journals nothing until it arrives.
    assert_eq!(
        child.blocked_on,
        BlockedOn::Unjournaled { pending_signals: 0 }
    );
    engine
        .signal("order-42/ship", "label", "L-1".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), "lamp:L-1");
    let d = engine.describe("order-42").await.unwrap();
    assert_eq!(
        d.timeline.steps[0].output,
        Some(Rendered::Json(json!("lamp:L-1")))
    );
    assert_eq!(d.children[0].state, Some(RunState::Completed));
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_timeline_marks_the_compensation_after_the_failure() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(saga)
        .register(reserve)
        .register(release)
        .register(ship_parcel)
        .start()
        .await
        .unwrap();
    let run = engine
        .start(saga, "saga-1", "sofa".to_string())
        .await
        .unwrap();
    assert!(finish(&run).await.is_err());
    let d = engine.describe("saga-1").await.unwrap();
    assert_eq!(d.state, RunState::Failed);
    assert!(
        d.outcome
            .as_deref()
            .unwrap()
            .contains("no courier for sofa"),
        "{:?}",
        d.outcome
    );
    let steps: Vec<_> = d
        .timeline
        .steps
        .iter()
        .map(|s| (s.step, s.name.clone().unwrap(), s.status, s.compensation))
        .collect();
    assert_eq!(
        steps,
        [
            (1, "reserve".to_string(), StepStatus::Completed, false),
            (2, "ship_parcel".to_string(), StepStatus::Failed, false),
            (3, "release".to_string(), StepStatus::Completed, true),
        ]
    );
    assert_eq!(
        d.timeline.steps[0].output,
        Some(Rendered::Json(json!("res-sofa")))
    );
    assert!(
        d.timeline.steps[1]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("no courier")
    );
    assert_eq!(
        d.blocked_on,
        BlockedOn::Finished {
            state: RunState::Failed
        }
    );
    assert!(d.to_string().contains("[compensation]"), "{d}");
    assert_json_round_trip(&d);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_parked_for_nondeterminism_says_so_naming_the_step() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(versioned_v1)
        .register(alpha)
        .start()
        .await
        .unwrap();
    engine.start(versioned_v1, "ver-1", 5).await.unwrap();
    // Completed, not just started: the attempt's start is journaled first, and a step that only
    // started replays as nothing (no nondeterminism to find).
    describe_until(&engine, "ver-1", "step 1 done", |d| {
        d.timeline.steps.len() == 1 && d.timeline.steps[0].status == StepStatus::Completed
    })
    .await;
    stop(engine).await;

    let engine = db
        .builder()
        .register(versioned_v2)
        .register(bravo)
        .start()
        .await
        .unwrap();
    let d = describe_until(&engine, "ver-1", "the park", |d| {
        d.state == RunState::Parked
    })
    .await;
    let line = d.blocked_on.to_string();
    assert!(
        line.starts_with("parked: ")
            && line.contains("step 1")
            && line.contains("alpha")
            && line.contains("bravo"),
        "{line}"
    );
    assert_eq!(d.outcome.as_deref(), line.strip_prefix("parked: "));
    // `alpha` is not known to this engine: its output shows opaquely, never as an error.
    assert!(matches!(
        d.timeline.steps[0].output,
        Some(Rendered::Opaque { size: 1, .. })
    ));
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_types_and_corrupt_bytes_render_opaque_and_never_fail_the_view() {
    let db = TestDb::new();
    let engine = db.builder().register(approves).start().await.unwrap();
    let run = engine.start(approves, "opaque-1", 5).await.unwrap();
    describe_until(&engine, "opaque-1", "the signal wait", |d| {
        matches!(d.blocked_on, BlockedOn::Signal { .. })
    })
    .await;
    stop(engine).await;
    drop(run);

    // An engine that knows none of these types (and so cannot drive the run).
    let engine = db.builder().start().await.unwrap();
    let d = engine.describe("opaque-1").await.unwrap();
    assert!(unknown_type(&d.blocked_on), "{:?}", d.blocked_on);
    match &d.input {
        Rendered::Opaque {
            size,
            hex_prefix,
            note,
        } => {
            assert_eq!((*size, hex_prefix.as_str()), (1, "05"));
            assert!(note.contains("not known"), "{note}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        d.published_state[0].value,
        Rendered::Opaque { .. }
    ));
    stop(engine).await;

    // Back on the right code: a signal whose bytes do not decode as its declared type waits in the
    // inbox (the workflow never waits for it), shown opaquely.
    let engine = db
        .builder()
        .register(approves)
        .signal_type::<_, u64>(approves, "extra")
        .start()
        .await
        .unwrap();
    engine
        .signal("opaque-1", "extra", "not a number".to_string())
        .await
        .unwrap();
    let d = engine.describe("opaque-1").await.unwrap();
    match &d.pending_signals[0].payload {
        Rendered::Opaque { size, note, .. } => {
            assert_eq!(*size, 13);
            assert!(note.contains("does not decode as `u64`"), "{note}");
        }
        other => panic!("{other:?}"),
    }
    stop(engine).await;

    // Corrupt one journal row: the view still comes back and names the row.
    let conn = db.conn();
    conn.execute(
        "UPDATE events SET payload = x'ffffffff' WHERE workflow_id = 'opaque-1' AND step = 1",
        [],
    )
    .unwrap();
    drop(conn);
    let engine = db.builder().start().await.unwrap();
    let d = engine.describe("opaque-1").await.unwrap();
    assert_eq!(d.timeline.undecodable.len(), 1);
    assert_eq!(d.timeline.undecodable[0].step, 1);
    assert!(
        d.timeline.undecodable[0]
            .message
            .contains("corrupt journal")
    );
    assert!(matches!(
        engine.describe("no-such-run").await,
        Err(Error::NotFound { .. })
    ));
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_json_converts_through_the_catalog_and_refuses_unknown_types() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(ships)
        .signal_type::<_, String>(ships, "label")
        .start()
        .await
        .unwrap();
    let order = Order {
        id: 1,
        sku: "pen".into(),
    };
    let run = engine.start(ships, "json-1", order).await.unwrap();
    let unknown = engine
        .signal_json("json-1", "gift_note", json!("hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, Error::UnknownPayloadType { what } if what.contains("gift_note") && what.contains("ships")),
        "{unknown}"
    );
    let invalid = engine
        .signal_json("json-1", "label", json!({"not": "a string"}))
        .await
        .unwrap_err();
    assert!(matches!(invalid, Error::InvalidJson { .. }), "{invalid}");
    // Neither reached the inbox.
    assert!(
        engine
            .describe("json-1")
            .await
            .unwrap()
            .pending_signals
            .is_empty()
    );
    engine
        .signal_json("json-1", "label", json!("L-9"))
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), "pen:L-9");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_run_is_described_from_the_store() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(approves)
        .evict_after(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    engine.start(approves, "evicted-1", 3).await.unwrap();
    eventually("the run leaves memory", || async {
        engine.resident_runs() == 0
    })
    .await;
    let d = engine.describe("evicted-1").await.unwrap();
    assert!(matches!(d.blocked_on, BlockedOn::Signal { ref name, .. } if name == "approval"));
    assert_eq!(d.input, Rendered::Json(json!(3)));
    stop(engine).await;
}

/// Fails until `{key}/fixed` is bumped.
#[activity(retry(max_attempts = 2, backoff = "1ms..1ms", jitter = 0.0))]
async fn flaky_until_fixed(key: String) -> Result<String, ActivityError> {
    if orchestrator_tests::count(&format!("{key}/fixed")) == 0 {
        return Err(ActivityError::retryable("the service is down"));
    }
    Ok(format!("{key} ok"))
}

#[workflow]
async fn repaired(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    ctx.call(flaky_until_fixed, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retry_is_audited_in_the_timeline() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(repaired)
        .register(flaky_until_fixed)
        .start()
        .await
        .unwrap();
    let key = "inspect-retry";
    let run = engine
        .start(repaired, "fix-1", key.to_string())
        .await
        .unwrap();
    assert!(finish(&run).await.is_err());
    let failed = engine.describe("fix-1").await.unwrap();
    assert_eq!(failed.state, RunState::Failed);
    assert_eq!(failed.timeline.steps[0].attempts.len(), 2);
    assert!(failed.operator_actions.is_empty());

    orchestrator_tests::bump(&format!("{key}/fixed"));
    engine.retry("fix-1", "alice").await.unwrap();
    let d = describe_until(&engine, "fix-1", "the retried run completes", |d| {
        d.state == RunState::Completed
    })
    .await;
    assert_eq!(d.output, Some(Rendered::Json(json!("inspect-retry ok"))));
    let lines: Vec<String> = d
        .operator_actions
        .iter()
        .map(|event| event.what.to_string())
        .collect();
    assert!(
        lines
            .iter()
            .any(|line| line == "retried by alice from step 1"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("retry by alice superseded a")),
        "{lines:?}"
    );
    assert_eq!(d.timeline.run_events.len(), d.operator_actions.len());
    assert_eq!(d.timeline.steps[0].status, StepStatus::Completed);
    assert!(d.to_string().contains("retried by alice"), "{d}");
    stop(engine).await;
}

#[workflow]
async fn long_history(ctx: WorkflowContext, steps: u32) -> Result<u64, WorkflowError> {
    let mut sum = 0u64;
    for i in 0..steps {
        sum = sum.wrapping_add(ctx.random_u64());
        if i % 500 == 0 {
            ctx.set_state("progress", &i)?;
        }
    }
    let _: bool = ctx.signal("done").await?;
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_is_described_within_bounds() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .durability(orchestrator::Durability::Normal)
        .register(long_history)
        .start()
        .await
        .unwrap();
    let steps = 6_000u32;
    engine.start(long_history, "long-1", steps).await.unwrap();
    let d = describe_until(&engine, "long-1", "every step journaled", |d| {
        d.history_len >= steps as usize
    })
    .await;
    let started = std::time::Instant::now();
    let d2 = engine.describe("long-1").await.unwrap();
    let took = started.elapsed();
    let json = serde_json::to_string(&d2).unwrap();
    println!(
        "describe of {} events: {took:?}, {} steps listed, {} bytes of JSON",
        d2.history_len,
        d2.timeline.steps.len(),
        json.len()
    );
    assert!(d.timeline.truncated);
    assert_eq!(
        d.timeline.steps.len(),
        orchestrator::inspect::MAX_TIMELINE_STEPS
    );
    assert_eq!(d.published_state[0].value, Rendered::Json(json!(5_500)));
    assert!(took < Duration::from_secs(5), "{took:?}");
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_terminate_show_in_blocked_on_and_the_audit() {
    let db = TestDb::new();
    let engine = db.builder().register(approves).start().await.unwrap();
    engine.start(approves, "op-1", 8).await.unwrap();
    describe_until(&engine, "op-1", "the signal wait", |d| {
        matches!(d.blocked_on, BlockedOn::Signal { .. })
    })
    .await;
    engine.pause("op-1", "alice", "incident 7").await.unwrap();
    let d = engine.describe("op-1").await.unwrap();
    assert_eq!(d.blocked_on.to_string(), "paused by alice: incident 7");
    let pause = d.paused.clone().unwrap();
    assert_eq!(
        (pause.by.as_str(), pause.reason.as_str()),
        ("alice", "incident 7")
    );
    assert_eq!(d.operator_actions.len(), 1);
    assert_eq!(
        d.operator_actions[0].what.to_string(),
        "paused by alice: incident 7"
    );

    engine.resume("op-1", "bob").await.unwrap();
    let d = engine.describe("op-1").await.unwrap();
    assert_eq!(d.paused, None);
    assert!(
        matches!(d.blocked_on, BlockedOn::Signal { .. }),
        "{}",
        d.blocked_on
    );
    assert_eq!(d.operator_actions[1].what.to_string(), "resumed by bob");

    engine
        .terminate("op-1", "carol", "duplicate order")
        .await
        .unwrap();
    let d = describe_until(&engine, "op-1", "the termination", |d| {
        d.state == RunState::Terminated
    })
    .await;
    assert_eq!(
        d.blocked_on,
        BlockedOn::Finished {
            state: RunState::Terminated
        }
    );
    assert_eq!(d.blocked_on.to_string(), "nothing: the run was terminated");
    assert_eq!(
        d.outcome.as_deref(),
        Some("terminated by carol: duplicate order")
    );
    assert!(d.finished_at_ms.is_some());
    let lines: Vec<String> = d
        .operator_actions
        .iter()
        .map(|e| e.what.to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "paused by alice: incident 7",
            "resumed by bob",
            "terminated by carol: duplicate order"
        ]
    );
    assert_json_round_trip(&d);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_2_journals_are_described_without_attempt_starts() {
    let db = TestDb::new();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/journal/format2_schema4.db"
        ),
        db.path(),
    )
    .unwrap();
    // An engine that drives none of the fixture's runs: the view comes from the store alone.
    let engine = db.builder().start().await.unwrap();
    for (id, workflow, _, what) in orchestrator_tests::format2_journal::RUNS {
        let d = engine.describe(id).await.unwrap();
        assert_eq!(&d.workflow_name, workflow, "{id}");
        assert!(
            d.timeline.undecodable.is_empty(),
            "{id} ({what}): {:?}",
            d.timeline.undecodable
        );
        for step in &d.timeline.steps {
            for attempt in &step.attempts {
                assert_eq!(
                    attempt.started_at_ms, None,
                    "{id}: format 2 has no attempt starts"
                );
                assert!(!attempt.cut_short_by_crash, "{id}: {attempt:?}");
            }
        }
    }
    let failed = engine.describe("f2-failed").await.unwrap();
    assert_eq!(failed.state, RunState::Failed);
    assert!(failed.outcome.unwrap().contains("f2_decline"));
    let retry = engine.describe("f2-retry").await.unwrap();
    assert!(unknown_type(&retry.blocked_on), "{:?}", retry.blocked_on);
    assert_eq!(
        retry.timeline.steps[0].attempts[0].outcome,
        AttemptOutcome::Failed
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL: a node that does not hold the run describes it, naming the holder.

const URL_VAR: &str = "ORCHESTRATOR_TEST_POSTGRES_URL";

async fn postgres_engine(url: &str, schema: &str, node: &str) -> Engine {
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema(schema).pool_size(4))
        .await
        .unwrap();
    Engine::builder()
        .store(Arc::new(store))
        .node_id(node)
        .lease_duration(Duration::from_secs(30))
        .register(approves)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_another_node_describes_a_run_and_names_its_lease_holder() {
    let Ok(url) = std::env::var(URL_VAR) else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {URL_VAR} is not set (the PostgreSQL describe test did not run)"
        );
        return;
    };
    let schema = format!("inspect_{}", fastrand::u64(..));
    let a = postgres_engine(&url, &schema, "node-a").await;
    a.start(approves, "pg-1", 9).await.unwrap();
    let b = postgres_engine(&url, &schema, "node-b").await;
    let d = describe_until(&b, "pg-1", "the signal wait on node a", |d| {
        matches!(d.blocked_on, BlockedOn::Signal { .. })
    })
    .await;
    let lease = d.lease.clone().expect("a lease holder");
    assert_eq!(lease.node, "node-a");
    assert!(lease.expires_at_ms.unwrap() > now_ms());
    assert_eq!(d.input, Rendered::Json(json!(9)));
    assert!(d.timeline.steps.iter().all(|s| s.started_at_ms.is_some()));
    stop(b).await;
    stop(a).await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
