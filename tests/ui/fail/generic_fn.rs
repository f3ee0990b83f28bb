use orchestrator::{ActivityError, activity};

#[activity]
pub async fn echo<T: Send + 'static>(value: T) -> Result<T, ActivityError> {
    Ok(value)
}

fn main() {}
