//! Continue-as-new (issue "workflow primitives" §7): `ctx.continue_as_new(workflow, input)` ends the run
//! and starts a fresh run of the same workflow id with an empty journal; earlier runs stay inspectable
//! (`engine.archived_runs`) or are pruned per `keep_continued_runs`; unconsumed signals carry over; a
//! 10,000-iteration loop keeps every run's journal bounded; the engine warns (once, through `tracing`)
//! when a run's history reaches the `history_warning` limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use orchestrator::codec::Codec;
use orchestrator::prelude::*;
use orchestrator_tests::{TestDb, bump, count, finish, stop};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

// ---------------------------------------------------------------------------------------------------
// Capturing the engine's warnings: a process-wide `tracing` subscriber (the engine logs from its own
// tasks, on any worker thread) that keeps every WARN and ERROR event with its fields.

/// The fields of one captured event, by name (the text is under `message`).
type Fields = BTreeMap<String, String>;

fn captured() -> &'static Mutex<Vec<Fields>> {
    static CAPTURED: OnceLock<Mutex<Vec<Fields>>> = OnceLock::new();
    CAPTURED.get_or_init(Mutex::default)
}

struct FieldsVisitor<'a>(&'a mut Fields);

impl Visit for FieldsVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

/// Keeps WARN and ERROR events; ignores spans.
struct Capture;

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        fields.insert("level".to_string(), event.metadata().level().to_string());
        event.record(&mut FieldsVisitor(&mut fields));
        captured()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(fields);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the capturing subscriber (once per test process).
fn capture_warnings() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Capture).expect("install the capturing subscriber");
    });
}

/// The captured WARN events about the history of `workflow_id`.
fn history_warnings(workflow_id: &str) -> Vec<Fields> {
    captured()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter(|fields| {
            fields.get("level").map(String::as_str) == Some("WARN")
                && fields.get("workflow_id").map(String::as_str) == Some(workflow_id)
                && fields
                    .get("message")
                    .is_some_and(|message| message.contains("history"))
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------------

/// A cheap activity: counts its executions under `key`.
#[activity]
async fn tick(key: String) -> Result<(), ActivityError> {
    bump(&key);
    Ok(())
}

/// Iterations per run of `long_loop`.
const PER_RUN: u64 = 100;

/// Counts to `target`: each run calls `tick` once and records `PER_RUN` side effects, then continues
/// as new with its progress.
#[workflow]
async fn long_loop(ctx: WorkflowContext, input: (String, u64, u64)) -> Result<u64, WorkflowError> {
    let (key, mut done, target) = input;
    ctx.call(tick, key.clone()).await?;
    for _ in 0..PER_RUN {
        done += ctx.side_effect(|| 1u64)?;
    }
    if done >= target {
        return Ok(done);
    }
    Err(ctx.continue_as_new(long_loop, (key, done, target)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_iteration_loop_keeps_every_run_journal_bounded() {
    capture_warnings();
    let db = TestDb::new();
    let key = "can-10k";
    let id = "can-10k-1";
    let keep = 10;
    // Per run: one activity's start and completion, and PER_RUN side effects.
    let per_run_events = i64::try_from(PER_RUN).unwrap() + 2;
    let engine = db
        .builder()
        .keep_continued_runs(keep)
        // A run reaching 150 events would be reported: none may.
        .history_warning(150)
        .register(long_loop)
        .start()
        .await
        .unwrap();
    let handle = engine
        .start(long_loop, id, (key.to_string(), 0, 10_000))
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), handle.result())
        .await
        .expect("10,000 iterations finish")
        .unwrap();
    assert_eq!(output, 10_000);
    assert_eq!(engine.status(id).await.unwrap(), RunStatus::Completed);
    // 100 runs: 99 continued as new, the last completed.
    assert_eq!(count(key), 100);
    assert_eq!(
        db.scalar("SELECT run_no FROM runs WHERE workflow_id = ?1", [id]),
        99
    );
    // The current run's journal is one run's worth, not 10,000 iterations.
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE workflow_id = ?1", [id]),
        per_run_events
    );
    // Exactly `keep` earlier runs are kept, the newest ones, each with a bounded journal.
    let archived = engine.archived_runs(id).await.unwrap();
    let run_nos: Vec<i64> = archived.iter().map(|run| run.run_no).collect();
    assert_eq!(run_nos, (89..=98).collect::<Vec<i64>>());
    for run in &archived {
        assert_eq!(run.event_count, per_run_events, "run {}", run.run_no);
    }
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM archived_runs WHERE workflow_id = ?1",
            [id]
        ),
        i64::from(keep)
    );
    assert_eq!(
        db.scalar(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM archived_events \
             WHERE workflow_id = ?1 GROUP BY run_no)",
            [id]
        ),
        per_run_events
    );
    assert_eq!(
        db.scalar(
            "SELECT count(DISTINCT run_no) FROM archived_events WHERE workflow_id = ?1",
            [id]
        ),
        i64::from(keep)
    );
    // No run ever reached the warning limit (the whole loop wrote 10,100 events).
    assert_eq!(history_warnings(id), Vec::<Fields>::new());
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Hops from `hop` to `last`, one run per hop, recording one side effect per run.
#[workflow]
async fn hopper(ctx: WorkflowContext, input: (u32, u32)) -> Result<u32, WorkflowError> {
    let (hop, last) = input;
    let seen = ctx.side_effect(|| hop)?;
    if seen == last {
        return Ok(seen);
    }
    Err(ctx.continue_as_new(hopper, (hop + 1, last)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_runs_are_inspectable_and_pruned_per_keep_continued_runs() {
    let db = TestDb::new();

    // Keep 10: both earlier runs are kept, with their inputs and journals.
    let engine = db
        .builder()
        .keep_continued_runs(10)
        .register(hopper)
        .start()
        .await
        .unwrap();
    let id = "can-inspect-1";
    let handle = engine.start(hopper, id, (0, 2)).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 2);
    let archived = engine.archived_runs(id).await.unwrap();
    assert_eq!(archived.len(), 2);
    for (expected_no, run) in archived.iter().enumerate() {
        let expected_no = i64::try_from(expected_no).unwrap();
        assert_eq!(run.workflow_id, id);
        assert_eq!(run.run_no, expected_no);
        assert_eq!(run.workflow_name, "hopper");
        let input: (u32, u32) = Codec::default().decode(&run.input).unwrap();
        assert_eq!(input, (u32::try_from(expected_no).unwrap(), 2));
        assert_eq!(run.event_count, 1);
        assert!(run.created_at_ms <= run.ended_at_ms);
        assert_eq!(
            db.scalar(
                "SELECT count(*) FROM archived_events WHERE workflow_id = ?1 AND run_no = ?2",
                rusqlite::params![id, expected_no]
            ),
            1
        );
    }
    assert!(archived[0].ended_at_ms <= archived[1].created_at_ms);
    assert!(engine.archived_runs("can-nobody").await.unwrap().is_empty());

    // Keep 10 with more runs than that would be pruned; keep 3 of 5 earlier runs here.
    stop(engine).await;
    let engine = db
        .builder()
        .keep_continued_runs(3)
        .register(hopper)
        .start()
        .await
        .unwrap();
    let id = "can-prune-1";
    let handle = engine.start(hopper, id, (0, 5)).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 5);
    let run_nos: Vec<i64> = engine
        .archived_runs(id)
        .await
        .unwrap()
        .iter()
        .map(|run| run.run_no)
        .collect();
    assert_eq!(run_nos, [2, 3, 4]);
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM archived_events WHERE workflow_id = ?1",
            [id]
        ),
        3
    );
    stop(engine).await;

    // Keep 0: nothing of the earlier runs is kept.
    let engine = db
        .builder()
        .keep_continued_runs(0)
        .register(hopper)
        .start()
        .await
        .unwrap();
    let id = "can-none-1";
    let handle = engine.start(hopper, id, (0, 3)).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), 3);
    assert!(engine.archived_runs(id).await.unwrap().is_empty());
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM archived_events WHERE workflow_id = ?1",
            [id]
        ),
        0
    );
    assert_eq!(
        db.scalar("SELECT run_no FROM runs WHERE workflow_id = ?1", [id]),
        3
    );
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Takes one `item` signal per run (the first run sleeps first, so every item is queued by then).
#[workflow]
async fn consumer(ctx: WorkflowContext, input: (u32, Vec<u32>)) -> Result<Vec<u32>, WorkflowError> {
    let (round, mut got) = input;
    if round == 0 {
        ctx.sleep(Duration::from_millis(50)).await?;
    }
    got.push(ctx.signal::<u32>("item").await?);
    if round == 2 {
        return Ok(got);
    }
    Err(ctx.continue_as_new(consumer, (round + 1, got)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconsumed_signals_carry_over_to_the_next_run() {
    let db = TestDb::new();
    let id = "can-signals-1";
    let engine = db.builder().register(consumer).start().await.unwrap();
    let handle = engine.start(consumer, id, (0, Vec::new())).await.unwrap();
    for item in [1u32, 2, 3] {
        engine.signal(id, "item", item).await.unwrap();
    }
    assert_eq!(finish(&handle).await.unwrap(), [1, 2, 3]);
    // Each consumed once: by step 2 of the first run, then by step 1 of each next run.
    let consumed: Vec<i64> = {
        let conn = db.conn();
        let mut statement = conn
            .prepare("SELECT consumed_by_step FROM signals WHERE workflow_id = ?1 ORDER BY id")
            .unwrap();
        statement
            .query_map([id], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(consumed, [2, 1, 1]);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Calls `tick` `n` times, one journaled completion each.
#[workflow]
async fn chatty(ctx: WorkflowContext, input: (String, u32)) -> Result<u32, WorkflowError> {
    let (key, n) = input;
    for _ in 0..n {
        ctx.call(tick, key.clone()).await?;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_warning_is_emitted_once_when_a_run_reaches_the_limit() {
    capture_warnings();
    let db = TestDb::new();
    let engine = db
        .builder()
        .history_warning(20)
        .register(chatty)
        .start()
        .await
        .unwrap();
    let big = engine
        .start(chatty, "can-warn-big", ("can-warn".to_string(), 30))
        .await
        .unwrap();
    // Each `tick` journals its attempt's start and its completion: 18 events for the small run.
    let small = engine
        .start(chatty, "can-warn-small", ("can-warn".to_string(), 9))
        .await
        .unwrap();
    assert_eq!(finish(&big).await.unwrap(), 30);
    assert_eq!(finish(&small).await.unwrap(), 9);
    let warnings = history_warnings("can-warn-big");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // The first commit holds tick 1's start; each later one a completion and the next start: the
    // count crosses 20 at 21.
    assert_eq!(warnings[0].get("events").map(String::as_str), Some("21"));
    assert_eq!(warnings[0].get("limit").map(String::as_str), Some("20"));
    assert_eq!(history_warnings("can-warn-small"), Vec::<Fields>::new());
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------

/// Takes one `item` per run, continuing as new until it has `total` of them.
#[workflow]
async fn collector_chain(
    ctx: WorkflowContext,
    input: (u32, Vec<u32>),
) -> Result<Vec<u32>, WorkflowError> {
    let (total, mut got) = input;
    got.push(ctx.signal::<u32>("item").await?);
    if got.len() == usize::try_from(total).unwrap() {
        return Ok(got);
    }
    Err(ctx.continue_as_new(collector_chain, (total, got)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_runs_resumes_at_its_current_run_after_a_restart() {
    let db = TestDb::new();
    let id = "can-restart-1";
    let build = || db.builder().register(collector_chain);
    let engine = build().start().await.unwrap();
    engine
        .start(collector_chain, id, (4, Vec::new()))
        .await
        .unwrap();
    engine.signal(id, "item", 1u32).await.unwrap();
    engine.signal(id, "item", 2u32).await.unwrap();
    orchestrator_tests::eventually("two runs are archived", || async {
        db.scalar("SELECT run_no FROM runs WHERE workflow_id = ?1", [id]) == 2
    })
    .await;
    stop(engine).await;

    let engine = build().start().await.unwrap();
    engine.signal(id, "item", 3u32).await.unwrap();
    engine.signal(id, "item", 4u32).await.unwrap();
    let handle = engine.handle(collector_chain, id).await.unwrap();
    assert_eq!(finish(&handle).await.unwrap(), [1, 2, 3, 4]);
    let run_nos: Vec<i64> = engine
        .archived_runs(id)
        .await
        .unwrap()
        .iter()
        .map(|run| run.run_no)
        .collect();
    assert_eq!(run_nos, [0, 1, 2]);
    stop(engine).await;
}
