use orchestrator::{WorkflowContext, workflow};

#[derive(Debug)]
pub struct MyError;

#[workflow]
pub async fn checkout(_ctx: WorkflowContext, order_id: String) -> Result<String, MyError> {
    Ok(order_id)
}

fn main() {}
