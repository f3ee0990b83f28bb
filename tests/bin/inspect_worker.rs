//! The child process of `tests/inspect_crash.rs`.
//!
//! Usage: `inspect_worker <db path>`: starts run `crash-inspect`, whose only activity prints
//! `STARTED <attempt>` and then hangs until the process is SIGKILLed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;

use orchestrator::prelude::*;

#[activity(retry(max_attempts = 3, backoff = "1ms..1ms", jitter = 0.0))]
async fn effect(ctx: ActivityContext, order: u64) -> Result<u64, ActivityError> {
    let mut out = std::io::stdout();
    writeln!(out, "STARTED {}", ctx.attempt()).unwrap();
    out.flush().unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(order)
}

#[workflow]
async fn crashes(ctx: WorkflowContext, order: u64) -> Result<u64, WorkflowError> {
    ctx.call(effect, order).await
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, db] = args.as_slice() else {
        panic!("usage: inspect_worker <db>");
    };
    let engine = Engine::builder()
        .sqlite(db)
        .register(crashes)
        .register(effect)
        .start()
        .await
        .unwrap();
    engine.start(crashes, "crash-inspect", 42).await.unwrap();
    // Wait for the kill.
    tokio::time::sleep(Duration::from_secs(600)).await;
}
