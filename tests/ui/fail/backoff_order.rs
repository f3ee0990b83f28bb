use orchestrator::{ActivityError, activity};

#[activity(retry(initial_backoff = "1m", max_backoff = "30s"))]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
