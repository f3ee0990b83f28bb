//! The error an activity returns.

use std::fmt::Display;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why one attempt of an activity failed.
///
/// An activity returns `Result<T, E>` where `E: Into<ActivityError>`. Whether the engine retries depends
/// on the variant: [`ActivityError::NonRetryable`] fails the step at once; every other variant is retried
/// according to the activity's [`RetryPolicy`](crate::RetryPolicy) until its attempts run out.
///
/// ```
/// use orchestrator::ActivityError;
///
/// let transient = ActivityError::retryable("connection reset");
/// let fatal = ActivityError::non_retryable("card declined");
/// assert!(transient.is_retryable());
/// assert!(!fatal.is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ActivityError {
    /// A failure worth retrying (network errors, timeouts of a dependency, 5xx answers).
    #[error("{message}")]
    Retryable {
        /// What went wrong.
        message: String,
    },
    /// A failure that retrying cannot fix (validation errors, declined payments): fails the step now.
    #[error("{message} (not retryable)")]
    NonRetryable {
        /// What went wrong.
        message: String,
    },
    /// The attempt ran past the activity's start-to-close timeout and was abandoned.
    #[error("attempt timed out after {timeout:?}")]
    Timeout {
        /// The configured start-to-close timeout.
        timeout: Duration,
    },
    /// The activity panicked; the panic was caught and counts as a failed, retryable attempt.
    #[error("activity panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The activity's input or output could not be encoded or decoded; retrying cannot help.
    #[error("activity payload error: {message}")]
    Payload {
        /// The codec's description of the problem.
        message: String,
    },
}

impl ActivityError {
    /// A failure that the engine retries according to the activity's retry policy.
    pub fn retryable(message: impl Display) -> Self {
        ActivityError::Retryable {
            message: message.to_string(),
        }
    }

    /// A failure that ends the step at once, whatever attempts remain.
    pub fn non_retryable(message: impl Display) -> Self {
        ActivityError::NonRetryable {
            message: message.to_string(),
        }
    }

    /// The same error with its message cut to at most `max` bytes (on a character boundary), so it
    /// fits the journal's payload limit.
    pub(crate) fn clamped(self, max: usize) -> Self {
        fn cut(message: String, max: usize) -> String {
            if message.len() <= max {
                return message;
            }
            let mut end = max.saturating_sub(32);
            while end > 0 && !message.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}… ({} bytes cut)", &message[..end], message.len() - end)
        }
        match self {
            ActivityError::Retryable { message } => ActivityError::Retryable {
                message: cut(message, max),
            },
            ActivityError::NonRetryable { message } => ActivityError::NonRetryable {
                message: cut(message, max),
            },
            ActivityError::Panicked { message } => ActivityError::Panicked {
                message: cut(message, max),
            },
            ActivityError::Payload { message } => ActivityError::Payload {
                message: cut(message, max),
            },
            other => other,
        }
    }

    /// Whether the engine may try this activity again after this error.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ActivityError::NonRetryable { .. } | ActivityError::Payload { .. }
        )
    }
}

impl From<std::io::Error> for ActivityError {
    fn from(error: std::io::Error) -> Self {
        ActivityError::retryable(error)
    }
}

impl From<String> for ActivityError {
    fn from(message: String) -> Self {
        ActivityError::Retryable { message }
    }
}

impl From<&str> for ActivityError {
    fn from(message: &str) -> Self {
        ActivityError::retryable(message)
    }
}
