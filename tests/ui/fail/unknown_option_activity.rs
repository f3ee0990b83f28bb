use orchestrator::{ActivityError, activity};

#[activity(timout = "10s")]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
