//! The child process of the repair crash test (`tests/repair_crash.rs`).
//!
//! Usage: `repair_worker <db path> <log path> <mode> <runs>`, with mode:
//! - `prepare`: starts `runs` runs `run-<i>` whose step 2 fails for good, waits until all failed,
//!   prints `PREPARED`, shuts down.
//! - `repair`: prints `READY`, then retries each `run-<i>` and forks it from step 2 as `fork-<i>`
//!   (step 2 still fails), printing `REPAIRED <i>` after each; it is SIGKILLed along the way.
//! - `fixed`: step 2 now succeeds; retries every failed `run-<i>` and `fork-<i>`, waits until all
//!   of them completed, prints `FINISHED <count>`, shuts down.
//!
//! Every activity execution appends `<activity> <workflow id>` to the log with a single `write(2)`
//! on an `O_APPEND` file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::{Fork, RunStatus};

static LOG: OnceLock<PathBuf> = OnceLock::new();
static FIXED: AtomicBool = AtomicBool::new(false);

fn log_line(line: &str) {
    let path = LOG.get().expect("the log path is set in main");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the log");
    let bytes = format!("{line}\n");
    let written = file.write(bytes.as_bytes()).expect("append to the log");
    assert_eq!(written, bytes.len());
}

#[activity]
async fn first(ctx: ActivityContext, id: String) -> Result<u64, ActivityError> {
    log_line(&format!("first {}", ctx.workflow_id()));
    Ok(id.len() as u64)
}

#[activity(retry(max_attempts = 2, backoff = "1ms..1ms", jitter = 0.0))]
async fn second(ctx: ActivityContext, id: String) -> Result<u64, ActivityError> {
    log_line(&format!("second {}", ctx.workflow_id()));
    if FIXED.load(Ordering::Acquire) {
        Ok(id.len() as u64 * 10)
    } else {
        Err(ActivityError::retryable("the service is down"))
    }
}

#[workflow]
async fn repaired(ctx: WorkflowContext, id: String) -> Result<u64, WorkflowError> {
    let a = ctx.call(first, id.clone()).await?;
    let b = ctx.call(second, id).await?;
    Ok(a + b)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, log, mode, runs] = args.as_slice() else {
        panic!("usage: repair_worker <db> <log> <mode> <runs>");
    };
    LOG.set(PathBuf::from(log)).unwrap();
    let runs: usize = runs.parse().unwrap();
    FIXED.store(mode == "fixed", Ordering::Release);
    let engine = Engine::builder()
        .sqlite(db)
        .register(repaired)
        .register(first)
        .register(second)
        .start()
        .await
        .unwrap();
    engine.recovered().await;
    let mut out = std::io::stdout();
    match mode.as_str() {
        "prepare" => {
            for i in 0..runs {
                let run = engine
                    .start(repaired, format!("run-{i}"), format!("input-{i}"))
                    .await
                    .unwrap();
                assert!(run.result().await.is_err());
            }
            writeln!(out, "PREPARED").unwrap();
        }
        "repair" => {
            writeln!(out, "READY").unwrap();
            for i in 0..runs {
                engine.retry(&format!("run-{i}"), "operator").await.unwrap();
                engine
                    .fork(
                        &format!("run-{i}"),
                        Fork::new(2, format!("fork-{i}")).actor("operator"),
                    )
                    .await
                    .unwrap();
                writeln!(out, "REPAIRED {i}").unwrap();
            }
            // Wait for the kill.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        "fixed" => {
            let mut ids: Vec<String> = (0..runs).map(|i| format!("run-{i}")).collect();
            for i in 0..runs {
                if engine.status(&format!("fork-{i}")).await.is_ok() {
                    ids.push(format!("fork-{i}"));
                }
            }
            for id in &ids {
                // Runs left running by the killed process are resumed by the recovery.
                if let RunStatus::Failed(_) = engine.status(id).await.unwrap() {
                    engine.retry(id, "operator").await.unwrap();
                }
            }
            for id in &ids {
                let run = engine.handle(repaired, id.as_str()).await.unwrap();
                let mut outcome = tokio::time::timeout(Duration::from_secs(10), run.result())
                    .await
                    .expect("the run finishes");
                // Attempts cut short by the kills count toward `second`'s budget (event format 3):
                // a run left running may fail at once with no attempts left. Retry it once more.
                if let Err(Error::WorkflowFailed { error, .. }) = &outcome
                    && error.to_string().contains("cut short")
                {
                    engine.retry(id, "operator").await.unwrap();
                    outcome = tokio::time::timeout(Duration::from_secs(10), run.result())
                        .await
                        .expect("the run finishes");
                }
                let output = outcome.unwrap_or_else(|error| panic!("{id}: {error}"));
                assert_eq!(output, 7 + 70, "{id}");
            }
            writeln!(out, "FINISHED {}", ids.len()).unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
    out.flush().unwrap();
    engine.shutdown().await;
}
