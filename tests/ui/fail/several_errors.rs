use orchestrator::{ActivityError, activity};

#[activity(retry(max_attempts = 3, jitter = 2.0), timeout = "soon")]
pub fn charge<T>(cents: T) -> Result<T, ActivityError> {
    Ok(cents)
}

fn main() {}
