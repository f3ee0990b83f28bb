//! The child process of `tests/crash_primitives.rs`: runs one workflow built on a durable primitive
//! (a saga rollback, child workflows, a `select`) against an SQLite journal until it finishes, and is
//! SIGKILLed at random moments along the way.
//!
//! Usage: `primitives_worker <scenario> <db path> <run-log path> <workflow id>`, where `<scenario>` is
//! one of:
//!
//! - `rollback`: [`saga`] books four steps (each registering a compensation), then a fifth step fails
//!   with a non-retryable error; the four compensations run in reverse order, each taking 15–35 ms.
//!   Prints `RESULT failed <error>`.
//! - `children`: [`fan_out`] starts ten child workflows one after the other ([`child_sum`], two short
//!   activities each) and sums their outputs. Prints `RESULT <sum>`.
//! - `select`: [`racer`] runs twenty rounds of `select2` between two activities of similar duration;
//!   each round's winner feeds the next round's input. Prints `RESULT <acc> <winners>` where
//!   `<winners>` holds one `0`/`1` per round.
//!
//! It starts the engine on the journal (which resumes the runs a previous incarnation left unfinished),
//! starts the run (idempotent on the id), prints `READY`, waits for the outcome and prints `RESULT ..`.
//! Every activity attempt appends `start <workflow id> <step> <label> <pid>` to the run log when it
//! begins and `end <workflow id> <step> <label> <pid>` when it is about to return, each with a single
//! `write(2)` on an `O_APPEND` file, so a SIGKILL never leaves half a line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use orchestrator::Either;
use orchestrator::prelude::*;
use tokio::sync::Notify;

/// The steps booked before the failing one.
const BOOKINGS: u32 = 4;
/// Child workflows started by [`fan_out`].
const CHILDREN: u32 = 10;
/// Rounds of [`racer`].
const ROUNDS: u32 = 20;
/// [`racer`]'s starting accumulator.
const SEED: u64 = 11;

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

/// Logs `<what> <workflow id> <step> <label> <pid>`.
fn log_event(what: &str, ctx: &ActivityContext, label: &str) {
    log_line(&format!(
        "{what} {} {} {label} {}",
        ctx.workflow_id(),
        ctx.step(),
        std::process::id()
    ));
}

// ---------------------------------------------------------------------------------------------------
// rollback

/// A forward saga step: fast, so that most kills land in the rollback.
// Attempts cut short by a kill count toward the retry budget (event format 3): a large one.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn book(ctx: ActivityContext, i: u32) -> Result<u32, ActivityError> {
    log_event("start", &ctx, &format!("book-{i}"));
    log_event("end", &ctx, &format!("book-{i}"));
    Ok(i)
}

/// The step that fails for good and triggers the rollback.
// Attempts cut short by a kill count toward the retry budget (event format 3): a large one.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn reserve_fail(ctx: ActivityContext, i: u32) -> Result<u32, ActivityError> {
    log_event("start", &ctx, &format!("fail-{i}"));
    log_event("end", &ctx, &format!("fail-{i}"));
    Err(ActivityError::non_retryable("no room left"))
}

/// A compensation: slow (15–35 ms) to widen the window for a kill; its end line is `comp-<i>`.
// Attempts cut short by a kill count toward the retry budget (event format 3): a large one.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn unbook(ctx: ActivityContext, i: u32) -> Result<u32, ActivityError> {
    log_event("start", &ctx, &format!("comp-{i}"));
    tokio::time::sleep(Duration::from_millis(fastrand::u64(15..=35))).await;
    log_event("end", &ctx, &format!("comp-{i}"));
    Ok(i)
}

/// Books four steps, registering `unbook(i)` after each, then fails at step 5.
#[workflow]
async fn saga(ctx: WorkflowContext, bookings: u32) -> Result<u32, WorkflowError> {
    for i in 1..=bookings {
        ctx.call(book, i).await?;
        ctx.compensate_with(unbook, i);
    }
    ctx.call(reserve_fail, bookings + 1).await?;
    Ok(bookings)
}

// ---------------------------------------------------------------------------------------------------
// children

/// One activity of a child: 2–6 ms, returns `10 i + k`.
// Attempts cut short by a kill count toward the retry budget (event format 3): a large one.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn child_step(ctx: ActivityContext, i: u32, k: u32) -> Result<u64, ActivityError> {
    let label = format!("child-{i}-{k}");
    log_event("start", &ctx, &label);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(2..=6))).await;
    log_event("end", &ctx, &label);
    Ok(u64::from(i) * 10 + u64::from(k))
}

/// A child: two activities, returns `20 i + 3`.
#[workflow]
async fn child_sum(ctx: WorkflowContext, i: u32) -> Result<u64, WorkflowError> {
    let a = ctx.call(child_step, (i, 1)).await?;
    let b = ctx.call(child_step, (i, 2)).await?;
    Ok(a + b)
}

/// Starts `children` children one after the other (ids `<parent id>/child-<i>`) and sums their outputs.
#[workflow]
async fn fan_out(ctx: WorkflowContext, children: u32) -> Result<u64, WorkflowError> {
    let mut sum = 0;
    for i in 1..=children {
        let id = format!("{}/child-{i}", ctx.workflow_id());
        sum += ctx.child(child_sum, id, i).await?;
    }
    Ok(sum)
}

// ---------------------------------------------------------------------------------------------------
// select

/// Per (workflow id, round): how many branches have arrived at the meeting point, and a wake-up.
type Meetings = Mutex<HashMap<(String, u32), Arc<(Mutex<u32>, Notify)>>>;

/// Waits (up to 30 ms) until both branches of the round have arrived, so that they return together and
/// the select sees two completed branches.
async fn meet(workflow_id: &str, round: u32) {
    static MEETINGS: OnceLock<Meetings> = OnceLock::new();
    let meeting = MEETINGS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap()
        .entry((workflow_id.to_string(), round))
        .or_default()
        .clone();
    let notified = meeting.1.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let arrived = {
        let mut arrived = meeting.0.lock().unwrap();
        *arrived += 1;
        *arrived
    };
    if arrived >= 2 {
        meeting.1.notify_waiters();
    } else {
        let _ = tokio::time::timeout(Duration::from_millis(30), notified).await;
    }
}

/// What branch `a` returns in round `round`.
fn value_a(round: u32, acc: u64) -> u64 {
    acc.wrapping_mul(31).wrapping_add(u64::from(round))
}

/// What branch `b` returns in round `round`.
fn value_b(round: u32, acc: u64) -> u64 {
    acc.wrapping_mul(37).wrapping_add(1000 + u64::from(round))
}

/// Branch 0 of a round: 2–6 ms, then waits for its rival.
// Attempts cut short by a kill count toward the retry budget (event format 3): a large one.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn branch_a(ctx: ActivityContext, round: u32, acc: u64) -> Result<u64, ActivityError> {
    let label = format!("a-{round}");
    log_event("start", &ctx, &label);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(2..=6))).await;
    meet(ctx.workflow_id(), round).await;
    log_event("end", &ctx, &label);
    Ok(value_a(round, acc))
}

/// Branch 1 of a round: 2–6 ms, then waits for its rival.
// Attempts cut short by a kill count toward the retry budget (event format 3): a large one.
#[activity(retry(max_attempts = 1000, backoff = "1ms..1ms"))]
async fn branch_b(ctx: ActivityContext, round: u32, acc: u64) -> Result<u64, ActivityError> {
    let label = format!("b-{round}");
    log_event("start", &ctx, &label);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(2..=6))).await;
    meet(ctx.workflow_id(), round).await;
    log_event("end", &ctx, &label);
    Ok(value_b(round, acc))
}

/// `rounds` selects between `branch_a` and `branch_b`; the winner's output is the next round's input.
/// Returns the final accumulator and the winners (`0`/`1` per round).
#[workflow]
async fn racer(ctx: WorkflowContext, rounds: u32) -> Result<(u64, String), WorkflowError> {
    let mut acc = SEED;
    let mut winners = String::new();
    for round in 1..=rounds {
        let a = ctx.call(branch_a, (round, acc));
        let b = ctx.call(branch_b, (round, acc));
        match ctx.select2(a, b).await {
            Either::Left(value) => {
                acc = value?;
                winners.push('0');
            }
            Either::Right(value) => {
                acc = value?;
                winners.push('1');
            }
        }
    }
    Ok((acc, winners))
}

// ---------------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(scenario), Some(db), Some(run_log), Some(id)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        eprintln!(
            "usage: primitives_worker <rollback|children|select> <db path> <run-log path> <workflow id>"
        );
        std::process::exit(2);
    };
    let scenario = scenario.into_string().expect("the scenario is UTF-8");
    let id = id.into_string().expect("the workflow id is UTF-8");
    RUN_LOG
        .set(PathBuf::from(run_log))
        .expect("the run log is set once");

    let engine = Engine::builder()
        .sqlite(PathBuf::from(db))
        .register(saga)
        .register(book)
        .register(reserve_fail)
        .register(unbook)
        .register(fan_out)
        .register(child_sum)
        .register(child_step)
        .register(racer)
        .register(branch_a)
        .register(branch_b)
        .start()
        .await
        .expect("start the engine");
    match scenario.as_str() {
        "rollback" => {
            let run = engine
                .start(saga, id, BOOKINGS)
                .await
                .expect("start (or find) the run");
            println!("READY");
            match run.result().await {
                Err(Error::WorkflowFailed { error, .. }) => println!("RESULT failed {error}"),
                other => panic!("the saga ended with {other:?}, not a failure"),
            }
        }
        "children" => {
            let run = engine
                .start(fan_out, id, CHILDREN)
                .await
                .expect("start (or find) the run");
            println!("READY");
            let sum = run.result().await.expect("the parent's result");
            println!("RESULT {sum}");
        }
        "select" => {
            let run = engine
                .start(racer, id, ROUNDS)
                .await
                .expect("start (or find) the run");
            println!("READY");
            let (acc, winners) = run.result().await.expect("the racer's result");
            println!("RESULT {acc} {winners}");
        }
        other => {
            eprintln!("unknown scenario `{other}`");
            std::process::exit(2);
        }
    }
    engine.shutdown().await;
}
