//! The child process of the crash test (`tests/crash.rs`): runs a 20-step workflow against an SQLite
//! journal until it completes, and is SIGKILLed at random moments along the way.
//!
//! Usage: `crash_worker <db path> <run-log path> <workflow id>`.
//!
//! It starts the engine on the journal (which resumes the run if a previous incarnation left it
//! unfinished), starts the run (idempotent on the id: a restart gets the existing run), prints
//! `READY`, waits for the result and prints `RESULT <value>`. Every activity attempt appends
//! `start <i> <pid>` to the run log when it begins and `end <i> <pid>` when it is about to return, each
//! line with a single `write(2)` on an `O_APPEND` file, so a SIGKILL never leaves half a line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use orchestrator::prelude::*;

/// How many activity calls the workflow makes.
const STEPS: u32 = 20;

/// The run log the activities append to (set once in `main`).
static RUN_LOG: OnceLock<PathBuf> = OnceLock::new();

/// Appends one line to the run log with a single write call.
fn log_line(line: &str) {
    let path = RUN_LOG.get().expect("the run log path is set in main");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the run log");
    let bytes = format!("{line}\n");
    let written = file.write(bytes.as_bytes()).expect("append to the run log");
    assert_eq!(written, bytes.len(), "a run-log line was written partially");
}

/// One step: logs its start, sleeps 5–40 ms to widen the window for a kill, logs its end, and returns
/// `acc * 31 + i` (wrapping) — a pure function of its input, apart from the log. Attempts cut short
/// by a kill count toward the retry budget, and one step may be killed many times: hence the budget.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn step_activity(i: u32, acc: u64) -> Result<u64, ActivityError> {
    let pid = std::process::id();
    log_line(&format!("start {i} {pid}"));
    tokio::time::sleep(Duration::from_millis(fastrand::u64(5..=40))).await;
    log_line(&format!("end {i} {pid}"));
    Ok(acc.wrapping_mul(31).wrapping_add(u64::from(i)))
}

/// Twenty sequential activity calls, each fed the previous one's output.
#[workflow]
async fn twenty_steps(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let mut acc = seed;
    for i in 1..=STEPS {
        acc = ctx.call(step_activity, (i, acc)).await?;
    }
    Ok(acc)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(db), Some(run_log), Some(id)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: crash_worker <db path> <run-log path> <workflow id>");
        std::process::exit(2);
    };
    let id = id.into_string().expect("the workflow id is UTF-8");
    RUN_LOG
        .set(PathBuf::from(run_log))
        .expect("the run log is set once");

    let engine = Engine::builder()
        .sqlite(PathBuf::from(db))
        .register(twenty_steps)
        .register(step_activity)
        .start()
        .await
        .expect("start the engine");
    let run = engine
        .start(twenty_steps, id, 7)
        .await
        .expect("start (or find) the run");
    println!("READY");
    let result = run.result().await.expect("the run's result");
    println!("RESULT {result}");
    engine.shutdown().await;
}
