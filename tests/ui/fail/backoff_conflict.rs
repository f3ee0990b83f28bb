use orchestrator::{ActivityError, activity};

#[activity(retry(backoff = "200ms..30s", max_backoff = "1m"))]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
