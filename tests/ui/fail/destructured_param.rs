use orchestrator::{ActivityError, activity};

#[activity]
pub async fn add((a, b): (u64, u64)) -> Result<u64, ActivityError> {
    Ok(a + b)
}

fn main() {}
