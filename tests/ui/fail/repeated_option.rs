use orchestrator::{ActivityError, activity};

#[activity(name = "charge", timeout = "10s", name = "charge_v2")]
pub async fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
