use orchestrator::{ActivityError, activity};

#[activity(timeout = "10 seconds")]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
