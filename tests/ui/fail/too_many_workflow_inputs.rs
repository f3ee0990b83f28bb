use orchestrator::{WorkflowContext, WorkflowError, workflow};

#[workflow]
pub async fn checkout(
    _ctx: WorkflowContext,
    order_id: String,
    cents: u64,
    express: bool,
) -> Result<String, WorkflowError> {
    Ok(format!("{order_id}{cents}{express}"))
}

fn main() {}
