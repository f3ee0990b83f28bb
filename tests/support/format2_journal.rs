//! The workflows of the format-2 fixture journal `tests/fixtures/journal/format2_schema4.db`.
//!
//! This file is compiled twice: by the generator (`tests/bin/make_format2_fixture.rs`), which was run
//! once against the code of `main` *before* event format 3 (schema 4, format 2), and by the test that
//! replays the fixture on the current code (`tests/journal_format.rs`). It therefore uses only public
//! API that both versions have. Every activity counts its executions under `<activity>/<input>`, so
//! the test can tell a journaled outcome (no execution) from one that ran again.
//!
//! Do not change what these workflows do: the fixture's journals were recorded by this code.

use std::time::Duration;

use orchestrator::prelude::*;

use crate::bump;

/// The signal the waiting runs expect.
pub const GO: &str = "go";
/// How long the fixture's signal waits last: long enough never to expire.
pub const WAIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Doubles its input.
#[activity]
pub async fn f2_double(x: u64) -> Result<u64, ActivityError> {
    bump(&format!("f2_double/{x}"));
    Ok(x * 2)
}

/// Fails its first attempt (retryable), then returns its input plus the attempt number. The backoff
/// (2 s) is long enough for the generator to stop while the retry is pending.
#[activity(retry(max_attempts = 3, backoff = "2s..2s", jitter = 0.0))]
pub async fn f2_flaky(ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    bump(&format!("f2_flaky/{x}"));
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable(format!("transient {x}")));
    }
    Ok(x + u64::from(ctx.attempt()))
}

/// Declines with a coded failure carrying details.
#[activity]
pub async fn f2_decline(x: u64) -> Result<u64, ActivityError> {
    bump(&format!("f2_decline/{x}"));
    Err(ActivityError::failure("declined", format!("amount {x} declined")).with_details(&x))
}

/// Doubles `x`, publishes it as `doubled`, then waits (with a deadline) for the signal `go`.
#[workflow]
pub async fn f2_wait_signal(ctx: WorkflowContext, x: u64) -> Result<String, WorkflowError> {
    let doubled = ctx.call(f2_double, x).await?;
    ctx.set_state("doubled", &doubled)?;
    let word: String = ctx.signal(GO).timeout(WAIT).await?;
    Ok(format!("{x} doubled is {doubled}, then {word}"))
}

/// Retries `f2_flaky`.
#[workflow]
pub async fn f2_retry(ctx: WorkflowContext, x: u64) -> Result<String, WorkflowError> {
    let value = ctx.call(f2_flaky, x).await?;
    Ok(format!("{x} flaky gave {value}"))
}

/// Records side effects, sleeps for a second and a half, then doubles `x`.
#[workflow]
pub async fn f2_timer(ctx: WorkflowContext, x: u64) -> Result<String, WorkflowError> {
    let started = ctx.now();
    let _ = ctx.random_u64();
    ctx.sleep(Duration::from_millis(1500)).await?;
    let doubled = ctx.call(f2_double, x).await?;
    let later = ctx.now() >= started;
    Ok(format!("{x} after a timer: {doubled} ({later})"))
}

/// Runs `f2_wait_signal` as a child `<own id>/child` and reports its output.
#[workflow]
pub async fn f2_parent(ctx: WorkflowContext, x: u64) -> Result<String, WorkflowError> {
    let child_id = format!("{}/child", ctx.workflow_id());
    let said = ctx.child(f2_wait_signal, child_id, x).await?;
    Ok(format!("child said: {said}"))
}

/// Calls `f2_decline`, so it fails with a coded activity failure.
#[workflow]
pub async fn f2_fail(ctx: WorkflowContext, x: u64) -> Result<String, WorkflowError> {
    let value = ctx.call(f2_decline, x).await?;
    Ok(format!("{value}"))
}

/// Registers every workflow and activity of the fixture.
pub fn register(builder: orchestrator::EngineBuilder) -> orchestrator::EngineBuilder {
    builder
        .register(f2_double)
        .register(f2_flaky)
        .register(f2_decline)
        .register(f2_wait_signal)
        .register(f2_retry)
        .register(f2_timer)
        .register(f2_parent)
        .register(f2_fail)
}

/// The runs of the fixture: id, workflow, input, and where the generator left it.
pub const RUNS: &[(&str, &str, u64, &str)] = &[
    (
        "f2-signal",
        "f2_wait_signal",
        11,
        "waits for `go` after a completed activity and a published state",
    ),
    (
        "f2-retry",
        "f2_retry",
        12,
        "attempt 1 failed, attempt 2 due (retry pending)",
    ),
    ("f2-timer", "f2_timer", 13, "two side effects, timer armed"),
    (
        "f2-parent",
        "f2_parent",
        14,
        "child `f2-parent/child` started; the child waits for `go`",
    ),
    ("f2-done", "f2_wait_signal", 15, "completed"),
    (
        "f2-failed",
        "f2_fail",
        16,
        "failed with a coded activity failure",
    ),
    (
        "f2-cancelled",
        "f2_wait_signal",
        17,
        "cancelled while waiting for `go`",
    ),
];
