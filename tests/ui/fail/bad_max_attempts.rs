use orchestrator::{ActivityError, activity};

#[activity(retry(max_attempts = 0))]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
