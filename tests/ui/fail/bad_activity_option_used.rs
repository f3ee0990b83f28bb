// A wrong activity option is reported once: the activity still expands (with the default timeout), so
// its uses in a workflow and in the engine's builder raise no further errors.
use orchestrator::{ActivityError, Engine, WorkflowContext, WorkflowError, activity, workflow};

#[activity(timeout = "soon")]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

#[workflow]
pub async fn checkout(ctx: WorkflowContext, cents: u64) -> Result<u64, WorkflowError> {
    ctx.call(charge, cents).await
}

pub async fn run() -> Result<u64, orchestrator::Error> {
    let engine = Engine::builder().in_memory().register(checkout).register(charge).start().await?;
    engine.start(checkout, "order-1", 5).await?.result().await
}

fn main() {}
