// A wrong workflow option is reported once: the workflow still expands (named after the function), so
// starting and registering it raise no further errors.
use orchestrator::{ActivityError, Engine, WorkflowContext, WorkflowError, activity, workflow};

#[activity]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

#[workflow(nme = "checkout")]
pub async fn checkout(ctx: WorkflowContext, cents: u64) -> Result<u64, WorkflowError> {
    ctx.call(charge, cents).await
}

pub async fn run() -> Result<u64, orchestrator::Error> {
    let engine = Engine::builder().in_memory().register(checkout).register(charge).start().await?;
    engine.start(checkout, "order-1", 5).await?.result().await
}

fn main() {}
