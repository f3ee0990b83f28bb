use orchestrator::{WorkflowContext, WorkflowError, workflow};

#[workflow(retry(max_attempts = 3))]
pub async fn checkout(_ctx: WorkflowContext, order_id: String) -> Result<String, WorkflowError> {
    Ok(order_id)
}

fn main() {}
