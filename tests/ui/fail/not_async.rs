use orchestrator::{ActivityError, activity};

#[activity]
pub fn charge(cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
