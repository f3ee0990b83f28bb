use orchestrator::{WorkflowError, workflow};

#[workflow]
pub async fn checkout(order_id: String) -> Result<String, WorkflowError> {
    Ok(order_id)
}

fn main() {}
