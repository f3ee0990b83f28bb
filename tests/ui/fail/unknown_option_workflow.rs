use orchestrator::{WorkflowContext, WorkflowError, workflow};

#[workflow(nmae = "checkout")]
pub async fn checkout(_ctx: WorkflowContext, order_id: String) -> Result<String, WorkflowError> {
    Ok(order_id)
}

fn main() {}
