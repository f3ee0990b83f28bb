use orchestrator::{ActivityError, activity};

#[activity(retry(jitter = 1.5))]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
