//! A new run's first poll happens before its creation, and what it records — with the start of the
//! first attempt of each activity it asks for — is written with the run's row (issue 12): a new
//! 1-activity run costs the creation and one commit (the completion with the outcome), a child run
//! the same. Counted through a [`HookedStore`] over a real SQLite store. A start of an existing id
//! writes nothing and runs nothing; a creation that fails runs nothing either.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use orchestrator::prelude::*;
use orchestrator::store::{SqliteStore, Store, StoreError};
use orchestrator_tests::store_hooks::{HookedStore, StoreCall, StoreHook};
use orchestrator_tests::{KIND_ATTEMPT_STARTED, TestDb, bump, count, finish, stop};

/// Counts the writes per workflow id: (creations, commits, events the creation carried).
#[derive(Default)]
struct WriteCounter {
    writes: Mutex<HashMap<String, (u32, u32, usize)>>,
    /// Fail the next creation (before it reaches the store).
    fail_next_create: Mutex<bool>,
}

impl WriteCounter {
    fn of(&self, id: &str) -> (u32, u32, usize) {
        self.writes
            .lock()
            .unwrap()
            .get(id)
            .copied()
            .unwrap_or_default()
    }
}

impl StoreHook for WriteCounter {
    fn before(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        if let StoreCall::CreateRun(_) = call
            && std::mem::take(&mut *self.fail_next_create.lock().unwrap())
        {
            return Some(StoreError::Closed);
        }
        None
    }

    fn after_ok(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        let mut writes = self.writes.lock().unwrap();
        match call {
            StoreCall::CreateRun(run) => {
                let entry = writes.entry(run.workflow_id.clone()).or_default();
                entry.0 += 1;
                entry.2 += run.events.len();
            }
            StoreCall::Commit(commit) => {
                writes.entry(commit.workflow_id.clone()).or_default().1 += 1;
            }
            _ => {}
        }
        None
    }
}

#[activity]
async fn tally(key: String) -> Result<u32, ActivityError> {
    Ok(u32::try_from(bump(&key)).unwrap_or(u32::MAX))
}

/// One activity.
#[workflow]
async fn one_step(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    ctx.call(tally, key).await
}

/// No step at all.
#[workflow]
async fn no_step(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n + 1)
}

/// One child, which runs one activity.
#[workflow]
async fn parent_of_one(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    let child_id = format!("{}/child", ctx.workflow_id());
    ctx.child(one_step, child_id, key).await
}

async fn engine(db: &TestDb) -> (Engine, Arc<WriteCounter>) {
    let counter = Arc::new(WriteCounter::default());
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(db.path()).await.unwrap());
    let store = Arc::new(HookedStore::new(sqlite, counter.clone()));
    let engine = Engine::builder()
        .store(store)
        .register(one_step)
        .register(no_step)
        .register(parent_of_one)
        .start()
        .await
        .unwrap();
    (engine, counter)
}

#[tokio::test]
async fn a_new_one_activity_run_makes_its_creation_and_one_commit() {
    let db = TestDb::new();
    let (engine, counter) = engine(&db).await;
    let run = engine
        .start(one_step, "single", "first-poll/single".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), 1);
    // The creation carries the first poll's records and the attempt's start; the one commit carries
    // the completion and the outcome.
    let (creations, commits, created_with) = counter.of("single");
    assert_eq!((creations, commits), (1, 1), "writes of a 1-activity run");
    assert!(
        created_with >= 1,
        "the creation carried the first poll's events"
    );
    let events = db.events("single");
    let starts = events
        .iter()
        .filter(|row| row.kind == KIND_ATTEMPT_STARTED)
        .count();
    assert_eq!(starts, 1, "the attempt's start is journaled: {events:?}");
    assert_eq!(count("first-poll/single"), 1);
    stop(engine).await;
}

#[tokio::test]
async fn a_child_run_is_created_with_its_first_poll() {
    let db = TestDb::new();
    let (engine, counter) = engine(&db).await;
    let run = engine
        .start(parent_of_one, "parent", "first-poll/child".to_string())
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), 1);
    let (creations, commits, created_with) = counter.of("parent/child");
    assert_eq!(
        (creations, commits),
        (1, 1),
        "writes of the 1-activity child"
    );
    assert!(
        created_with >= 1,
        "the child's creation carried its first poll"
    );
    assert_eq!(counter.of("parent").0, 1);
    stop(engine).await;
}

#[tokio::test]
async fn a_run_without_steps_completes() {
    let db = TestDb::new();
    let (engine, counter) = engine(&db).await;
    let run = engine.start(no_step, "quick", 41).await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 42);
    let (creations, commits, _) = counter.of("quick");
    assert_eq!(
        (creations, commits),
        (1, 1),
        "the creation, then the outcome"
    );
    stop(engine).await;
}

#[tokio::test]
async fn starting_an_existing_id_writes_nothing_and_runs_nothing() {
    let db = TestDb::new();
    let (engine, counter) = engine(&db).await;
    let key = "first-poll/existing".to_string();
    let run = engine.start(one_step, "twice", key.clone()).await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 1);
    let journal = db.events("twice");
    let again = engine.start(one_step, "twice", key.clone()).await.unwrap();
    assert_eq!(finish(&again).await.unwrap(), 1, "the first run's result");
    assert_eq!(count(&key), 1, "the activity ran once");
    // The second creation found the run (and wrote none of the events its first poll produced).
    let (creations, commits, _) = counter.of("twice");
    assert_eq!(
        (creations, commits),
        (2, 1),
        "the second start committed nothing"
    );
    let after = db.events("twice");
    assert_eq!(
        after.iter().map(|row| row.seq).collect::<Vec<_>>(),
        journal.iter().map(|row| row.seq).collect::<Vec<_>>(),
        "the journal is unchanged"
    );
    stop(engine).await;
}

#[tokio::test]
async fn a_failed_creation_runs_nothing_and_a_retry_runs_once() {
    let db = TestDb::new();
    let (engine, counter) = engine(&db).await;
    let key = "first-poll/failed-create".to_string();
    *counter.fail_next_create.lock().unwrap() = true;
    let refused = engine.start(one_step, "refused", key.clone()).await;
    assert!(
        matches!(refused, Err(orchestrator::Error::Store(_))),
        "{refused:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(count(&key), 0, "nothing ran: the run was not created");
    assert!(db.events("refused").is_empty());
    let run = engine
        .start(one_step, "refused", key.clone())
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), 1);
    assert_eq!(count(&key), 1);
    stop(engine).await;
}
