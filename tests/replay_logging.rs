//! Issue 13 item 8: a workflow's log lines are emitted once across a crash-and-replay when the
//! subscriber is wrapped in `SkipReplayed`, and `ctx.is_replaying()` says when code re-runs. The
//! restart is real: the engine is shut down and a new one opens the same SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;
use std::sync::{Mutex, OnceLock};

use orchestrator::logging::SkipReplayed;
use orchestrator::prelude::*;
use orchestrator_tests::{KIND_ACTIVITY_COMPLETED, TestDb, bump, count, eventually, finish, stop};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The `marker` field of every event the subscriber was given.
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

struct Marker(Option<String>);

impl Visit for Marker {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "marker" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn Debug) {}
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut marker = Marker(None);
        event.record(&mut marker);
        if let Some(marker) = marker.0 {
            CAPTURED.lock().unwrap().push(marker);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn captured(marker: &str) -> usize {
    CAPTURED
        .lock()
        .unwrap()
        .iter()
        .filter(|m| *m == marker)
        .count()
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        tracing::subscriber::set_global_default(SkipReplayed::new(Capture)).unwrap();
    });
}

#[activity]
async fn fetch(n: u32) -> Result<u32, ActivityError> {
    Ok(n + 1)
}

/// Logs around a journaled activity and a signal wait; counts how often each line actually ran.
#[workflow]
async fn chatty(ctx: WorkflowContext, key: String) -> Result<u32, WorkflowError> {
    bump(&format!("{key}/before"));
    if ctx.is_replaying() {
        bump(&format!("{key}/replaying-before"));
    }
    tracing::info!(marker = "before", "fetching");
    let n = ctx.call(fetch, 1).await?;
    bump(&format!("{key}/between"));
    tracing::info!(marker = "between", n, "fetched once, fetching again");
    let n = ctx.call(fetch, n).await?;
    // Lines after the last journaled completion ran before the crash, but nothing recorded that: they
    // would print again (see `orchestrator::logging`), so this one comes after the wait.
    let go: u32 = ctx.signal("go").await?;
    if ctx.is_replaying() {
        bump(&format!("{key}/replaying-after"));
    }
    tracing::info!(marker = "after", go, "done");
    Ok(n + go)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_log_lines_are_emitted_once_across_a_restart() {
    install();
    let db = TestDb::new();
    let key = "replay-log";
    let id = "replay-log-1";
    let engine = db
        .builder()
        .register(chatty)
        .register(fetch)
        .start()
        .await
        .unwrap();
    engine.start(chatty, id, key.to_string()).await.unwrap();
    eventually("both fetches are journaled", || async {
        db.count_kind(id, KIND_ACTIVITY_COMPLETED) == 2
    })
    .await;
    stop(engine).await;

    // A new engine on the same file replays the run up to its wait, then it finishes.
    let engine = db
        .builder()
        .register(chatty)
        .register(fetch)
        .start()
        .await
        .unwrap();
    let run = engine.handle(chatty, id).await.unwrap();
    run.signal("go", 40u32).await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 43);
    stop(engine).await;

    // The code before and between ran again on replay...
    assert_eq!(count(&format!("{key}/before")), 2);
    assert_eq!(count(&format!("{key}/between")), 2);
    assert_eq!(
        count(&format!("{key}/replaying-before")),
        1,
        "the replay knew it replayed"
    );
    assert_eq!(
        count(&format!("{key}/replaying-after")),
        0,
        "live code is not replaying"
    );
    // ...but each line was logged once.
    assert_eq!(captured("before"), 1);
    assert_eq!(captured("between"), 1);
    assert_eq!(captured("after"), 1);
}
