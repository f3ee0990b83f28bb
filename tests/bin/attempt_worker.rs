//! The child process of `tests/attempt_starts.rs`: runs one activity step whose attempts can be made
//! to hang (so the test can SIGKILL the process while an attempt runs).
//!
//! Usage: `attempt_worker <db path> <workflow id> <once|limited>`. `once`: the activity has the
//! default policy (3 attempts); `limited`: 2 attempts. Each attempt prints `ATTEMPT <n>` as it
//! begins; if the file `<db path>.hang` exists it then hangs, else it returns its attempt number.
//! Prints `READY` once the run is started (or found), then `RESULT <n>` or `FAILED <error>`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use orchestrator::prelude::*;

static HANG_FILE: OnceLock<PathBuf> = OnceLock::new();

async fn effect(ctx: &ActivityContext) -> u32 {
    println!("ATTEMPT {}", ctx.attempt());
    if HANG_FILE.get().is_some_and(|path| path.exists()) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    ctx.attempt()
}

/// The default retry policy (3 attempts).
#[activity]
async fn effect_once(ctx: ActivityContext, _input: u32) -> Result<u32, ActivityError> {
    Ok(effect(&ctx).await)
}

/// Two attempts at most.
#[activity(retry(max_attempts = 2, backoff = "1ms..1ms"))]
async fn effect_limited(ctx: ActivityContext, _input: u32) -> Result<u32, ActivityError> {
    Ok(effect(&ctx).await)
}

#[workflow]
async fn once(ctx: WorkflowContext, input: u32) -> Result<u32, WorkflowError> {
    ctx.call(effect_once, input).await
}

#[workflow]
async fn limited(ctx: WorkflowContext, input: u32) -> Result<u32, WorkflowError> {
    ctx.call(effect_limited, input).await
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, id, mode] = args.as_slice() else {
        eprintln!("usage: attempt_worker <db path> <workflow id> <once|limited>");
        std::process::exit(2);
    };
    HANG_FILE
        .set(PathBuf::from(format!("{db}.hang")))
        .expect("set once");
    let engine = Engine::builder()
        .sqlite(PathBuf::from(db))
        .register(once)
        .register(limited)
        .register(effect_once)
        .register(effect_limited)
        .start()
        .await
        .expect("start the engine");
    let result = if mode == "limited" {
        let run = engine.start(limited, id.clone(), 1).await.expect("start");
        println!("READY");
        run.result().await
    } else {
        let run = engine.start(once, id.clone(), 1).await.expect("start");
        println!("READY");
        run.result().await
    };
    match result {
        Ok(value) => println!("RESULT {value}"),
        Err(error) => println!("FAILED {error}"),
    }
    engine.shutdown().await;
}
