// Wrong options inside `retry(..)` are reported (each once); the activity keeps the default policy and
// stays usable, so calling it raises no further errors.
use orchestrator::{ActivityError, WorkflowContext, WorkflowError, activity, workflow};

#[activity(retry(max_attempts = 0, backof = "1s..2s"), name = "charge_card")]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

#[workflow]
pub async fn checkout(ctx: WorkflowContext, cents: u64) -> Result<u64, WorkflowError> {
    ctx.call(charge, cents).await
}

fn main() {}
