//! Workflows shared by the CLI tests (`tests/cli.rs`), the journal-owning child process
//! (`bin/cli_owner.rs`) and the test ops binary (`bin/ops_cli.rs`). Steered across processes by
//! files: `charge` fails for good until the file named in its input exists.

use std::time::Duration;

use orchestrator::EngineBuilder;
use orchestrator::prelude::*;

/// Charges an order: fails (not retryable) until the file `fix_file` exists.
#[activity(retry(max_attempts = 2, backoff = "1ms..1ms", jitter = 0.0))]
pub async fn charge(fix_file: String) -> Result<String, ActivityError> {
    if std::path::Path::new(&fix_file).exists() {
        Ok("charged".to_string())
    } else {
        Err(ActivityError::retryable("card processor down"))
    }
}

/// Reserves stock (always works).
#[activity]
pub async fn reserve(order: String) -> Result<u32, ActivityError> {
    Ok(u32::try_from(order.len()).unwrap_or(u32::MAX))
}

/// Reserves, then charges.
#[workflow]
pub async fn checkout(ctx: WorkflowContext, fix_file: String) -> Result<String, WorkflowError> {
    ctx.call(reserve, fix_file.clone()).await?;
    ctx.call(charge, fix_file).await
}

/// `checkout` as a later deploy changed it: it charges before it reserves (so the histories of
/// `checkout` no longer replay: nondeterminism at step 1).
#[workflow(name = "checkout")]
pub async fn checkout_v2(ctx: WorkflowContext, fix_file: String) -> Result<String, WorkflowError> {
    let charged = ctx.call(charge, fix_file.clone()).await?;
    ctx.call(reserve, fix_file).await?;
    Ok(charged)
}

/// Waits for the signal `approve` (a bool) for an hour.
#[workflow]
pub async fn approval(ctx: WorkflowContext, amount: u64) -> Result<bool, WorkflowError> {
    let approved: bool = ctx
        .signal("approve")
        .timeout(Duration::from_secs(3600))
        .await?;
    Ok(approved && amount < 1_000)
}

/// Sleeps for an hour.
#[workflow]
pub async fn sleeper(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(3600)).await
}

/// Starts a `sleeper` child and waits for it.
#[workflow]
pub async fn parent(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    let id = format!("{}/child", ctx.workflow_id());
    ctx.child(sleeper, id, ()).await
}

/// Every workflow and activity above (`checkout`, not `checkout_v2`), and the signal's type.
pub fn register(builder: EngineBuilder) -> EngineBuilder {
    others(builder.register(checkout))
}

/// The same, with `checkout_v2` as `checkout` (the changed code).
pub fn register_changed(builder: EngineBuilder) -> EngineBuilder {
    others(builder.register(checkout_v2))
}

fn others(builder: EngineBuilder) -> EngineBuilder {
    builder
        .register(charge)
        .register(reserve)
        .register(approval)
        .register(sleeper)
        .register(parent)
        .signal_type::<_, bool>(approval, "approve")
}
