//! The child process of the pause-survives-a-crash test (`tests/operator.rs`): starts a run that
//! sleeps 300 ms, pauses it, prints `PAUSED`, and waits to be SIGKILLed.
//!
//! Usage: `operator_worker <db path> <workflow id>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use orchestrator::prelude::*;

/// Sleeps 300 ms, then returns `seed + 1` (the same workflow as the test's).
#[workflow]
async fn paused_in_a_crash(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_millis(300)).await?;
    Ok(seed + 1)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(db), Some(id)) = (args.next(), args.next()) else {
        eprintln!("usage: operator_worker <db path> <workflow id>");
        std::process::exit(2);
    };
    let id = id.into_string().expect("the workflow id is UTF-8");
    let engine = Engine::builder()
        .sqlite(PathBuf::from(db))
        .register(paused_in_a_crash)
        .start()
        .await
        .expect("start the engine");
    engine
        .start(paused_in_a_crash, id.as_str(), 5)
        .await
        .expect("start the run");
    engine
        .pause(&id, "worker", "before the crash")
        .await
        .expect("pause the run");
    println!("PAUSED");
    // Killed here.
    tokio::time::sleep(Duration::from_secs(3600)).await;
}
