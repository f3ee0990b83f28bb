use orchestrator::workflow;

#[workflow]
pub struct Checkout;

fn main() {}
