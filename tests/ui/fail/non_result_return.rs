use orchestrator::{WorkflowContext, workflow};

#[workflow]
pub async fn checkout(_ctx: WorkflowContext, order_id: String) -> Option<String> {
    Some(order_id)
}

fn main() {}
