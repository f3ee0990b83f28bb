//! The wire form of [`ActivityError`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ActivityError, ActivityFailure};

/// [`ActivityError`] as journaled. Append-only: a variant's index is its encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireActivityError {
    /// 0
    Retryable { message: String },
    /// 1
    NonRetryable { message: String },
    /// 2
    Timeout { timeout: Duration },
    /// 3
    Panicked { message: String },
    /// 4
    Payload { message: String },
    /// 5 (format 2, release 0.3)
    Failure(Box<WireActivityFailure>),
}

/// [`ActivityFailure`] as journaled: fields in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireActivityFailure {
    code: String,
    message: String,
    details: Option<Vec<u8>>,
    retryable: bool,
}

impl From<&ActivityError> for WireActivityError {
    fn from(error: &ActivityError) -> Self {
        match error {
            ActivityError::Retryable { message } => WireActivityError::Retryable {
                message: message.clone(),
            },
            ActivityError::NonRetryable { message } => WireActivityError::NonRetryable {
                message: message.clone(),
            },
            ActivityError::Timeout { timeout } => WireActivityError::Timeout { timeout: *timeout },
            ActivityError::Panicked { message } => WireActivityError::Panicked {
                message: message.clone(),
            },
            ActivityError::Payload { message } => WireActivityError::Payload {
                message: message.clone(),
            },
            ActivityError::Failure(failure) => {
                WireActivityError::Failure(Box::new(WireActivityFailure {
                    code: failure.code.clone(),
                    message: failure.message.clone(),
                    details: failure.details.clone(),
                    retryable: failure.retryable,
                }))
            }
        }
    }
}

impl From<WireActivityError> for ActivityError {
    fn from(error: WireActivityError) -> Self {
        match error {
            WireActivityError::Retryable { message } => ActivityError::Retryable { message },
            WireActivityError::NonRetryable { message } => ActivityError::NonRetryable { message },
            WireActivityError::Timeout { timeout } => ActivityError::Timeout { timeout },
            WireActivityError::Panicked { message } => ActivityError::Panicked { message },
            WireActivityError::Payload { message } => ActivityError::Payload { message },
            WireActivityError::Failure(failure) => {
                let WireActivityFailure {
                    code,
                    message,
                    details,
                    retryable,
                } = *failure;
                ActivityError::Failure(Box::new(ActivityFailure {
                    code,
                    message,
                    details,
                    retryable,
                }))
            }
        }
    }
}
