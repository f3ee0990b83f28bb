//! `crate = "..."` points the generated code at a renamed or re-exported orchestrator.

use orchestrator as orch;

mod reexport {
    pub use orchestrator as inner;
}

#[orch::activity(crate = "orch", retry(max_attempts = 2))]
pub async fn ping(n: u32) -> Result<u32, orch::ActivityError> {
    Ok(n + 1)
}

#[orch::workflow(crate = "crate::reexport::inner", name = "pinger")]
pub async fn pinger(ctx: orch::WorkflowContext, n: u32) -> Result<u32, orch::WorkflowError> {
    ctx.call(ping, n).await
}

fn main() {
    use orch::{Activity, Workflow};
    assert_eq!(<ping as Activity>::options().retry.max_attempts, 2);
    assert_eq!(<pinger as Workflow>::NAME, "pinger");
}
