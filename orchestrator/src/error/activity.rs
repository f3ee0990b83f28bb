//! The error an activity returns.

use std::fmt::{self, Display};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{Codec, CodecError};

/// Any error, boxed: what [`ActivityError`] converts from.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why one attempt of an activity failed.
///
/// An activity returns `Result<T, E>` where `E: Into<ActivityError>`. Whether the engine retries depends
/// on the error: [`ActivityError::NonRetryable`], [`ActivityError::Payload`] and failures made
/// non-retryable fail the step at once; every other error is retried according to the activity's
/// [`RetryPolicy`](crate::RetryPolicy) until its attempts run out.
///
/// # `?` works on any error
///
/// Every `std::error::Error + Send + Sync + 'static` (and `String`, `&str`, `Box<dyn Error + Send +
/// Sync>`, `anyhow::Error`) converts into a *retryable* `ActivityError`, so `?` needs no `map_err` in
/// an activity. [`ActivityResultExt`] marks a result as not worth retrying (`.non_retryable()?`) or gives
/// it a code the caller can match (`.failure("code")?`).
///
/// ```
/// use orchestrator::{ActivityError, ActivityResultExt};
///
/// fn parse_amount(text: &str) -> Result<u64, ActivityError> {
///     // A malformed amount will not parse better next time: fail the step now.
///     let cents: u64 = text.parse().non_retryable()?;
///     Ok(cents)
/// }
///
/// fn read_config(path: &str) -> Result<String, ActivityError> {
///     Ok(std::fs::read_to_string(path)?) // an I/O error: retried
/// }
///
/// assert!(!parse_amount("ten").unwrap_err().is_retryable());
/// assert!(read_config("/no/such/file").unwrap_err().is_retryable());
/// ```
///
/// # Business failures with a code
///
/// [`ActivityError::failure`] makes a non-retryable error with a stable code (and optionally typed
/// details, [`ActivityError::with_details`]). Both are journaled, so whoever awaits the run reads them
/// with [`Error::failure_code`](crate::Error::failure_code) and
/// [`Error::failure_details`](crate::Error::failure_details), even after a crash and replay.
///
/// ```
/// use orchestrator::ActivityError;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Declined { reason: String }
///
/// let error = ActivityError::failure("card_declined", "the issuer declined the card")
///     .with_details(&Declined { reason: "insufficient funds".into() });
/// assert_eq!(error.code(), Some("card_declined"));
/// assert!(!error.is_retryable());
/// let details: Declined = error.details().unwrap().unwrap();
/// assert_eq!(details.reason, "insufficient funds");
/// ```
///
/// # Not a `std::error::Error`
///
/// Like `anyhow::Error`, `ActivityError` does not implement `std::error::Error` itself: that is what
/// lets every error type convert into it with `?` (a blanket `From` would otherwise overlap with
/// `From<ActivityError> for ActivityError`). Where a `std::error::Error` is needed, use
/// [`ActivityError::into_error`]; converting that back gives the original `ActivityError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ActivityError {
    /// A failure worth retrying (network errors, timeouts of a dependency, 5xx answers).
    Retryable {
        /// What went wrong.
        message: String,
    },
    /// A failure that retrying cannot fix (validation errors, declined payments): fails the step now.
    NonRetryable {
        /// What went wrong.
        message: String,
    },
    /// The attempt ran past the activity's start-to-close timeout and was abandoned.
    Timeout {
        /// The configured start-to-close timeout.
        timeout: Duration,
    },
    /// The activity panicked; the panic was caught and counts as a failed, retryable attempt.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The activity's input or output could not be encoded or decoded; retrying cannot help.
    Payload {
        /// The codec's description of the problem.
        message: String,
    },
    /// A failure with a code the caller can match (see [`ActivityError::failure`]). Boxed, so that
    /// the error (and every `Result` carrying it) stays small.
    Failure(Box<ActivityFailure>),
}

/// The contents of [`ActivityError::Failure`]: a business failure with a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActivityFailure {
    /// A stable, machine-readable code, e.g. `card_declined`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Encoded details (see [`ActivityError::with_details`] and [`ActivityError::details`]).
    pub details: Option<Vec<u8>>,
    /// Whether the engine may try again (`false` unless made retryable).
    pub retryable: bool,
}

/// A coded failure.
fn coded(
    code: String,
    message: String,
    details: Option<Vec<u8>>,
    retryable: bool,
) -> ActivityError {
    ActivityError::Failure(Box::new(ActivityFailure {
        code,
        message,
        details,
        retryable,
    }))
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

    /// A business failure with a stable `code` the caller can match: it ends the step at once (make it
    /// retryable with [`ActivityError::retryable_failure`] if needed).
    pub fn failure(code: impl Into<String>, message: impl Display) -> Self {
        coded(code.into(), message.to_string(), None, false)
    }

    /// A failure with a `code`, like [`ActivityError::failure`], that the engine retries.
    pub fn retryable_failure(code: impl Into<String>, message: impl Display) -> Self {
        coded(code.into(), message.to_string(), None, true)
    }

    /// This failure with typed `details` attached, journaled with it and read back with
    /// [`ActivityError::details`]. Only a [`ActivityError::Failure`] carries details: on any other
    /// error this returns it unchanged. If the details cannot be encoded, the failure keeps no details
    /// and its message says why.
    #[must_use]
    pub fn with_details<T: Serialize + ?Sized>(self, details: &T) -> Self {
        match self {
            ActivityError::Failure(mut failure) => {
                match Codec::default().encode(details) {
                    Ok(bytes) => failure.details = Some(bytes),
                    Err(error) => {
                        failure.message = format!("{} (details dropped: {error})", failure.message);
                        failure.details = None;
                    }
                }
                ActivityError::Failure(failure)
            }
            other => other,
        }
    }

    /// The failure's code, if it was made with [`ActivityError::failure`].
    pub fn code(&self) -> Option<&str> {
        match self {
            ActivityError::Failure(failure) => Some(&failure.code),
            _ => None,
        }
    }

    /// The failure's details decoded as a `T`: `None` when it has none, `Err` when they are not a `T`.
    pub fn details<T: DeserializeOwned>(&self) -> Option<Result<T, CodecError>> {
        match self {
            ActivityError::Failure(failure) => failure
                .details
                .as_ref()
                .map(|bytes| Codec::default().decode(bytes)),
            _ => None,
        }
    }

    /// The same error, made non-retryable: the step fails at once with it.
    #[must_use]
    pub fn into_non_retryable(self) -> Self {
        match self {
            ActivityError::Failure(mut failure) => {
                failure.retryable = false;
                ActivityError::Failure(failure)
            }
            ActivityError::Retryable { message } | ActivityError::Panicked { message } => {
                ActivityError::NonRetryable { message }
            }
            timeout @ ActivityError::Timeout { .. } => ActivityError::NonRetryable {
                message: timeout.to_string(),
            },
            other => other,
        }
    }

    /// This error as a `std::error::Error`; converting the box back into an `ActivityError` (with `?`
    /// or `From`) returns this error unchanged.
    ///
    /// ```
    /// use orchestrator::ActivityError;
    ///
    /// let boxed = ActivityError::failure("card_declined", "declined").into_error();
    /// assert_eq!(boxed.to_string(), "card_declined: declined (not retryable)");
    /// assert_eq!(ActivityError::from(boxed).code(), Some("card_declined"));
    /// ```
    pub fn into_error(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        Box::new(AsStdError(self))
    }

    /// The same error with its message cut to at most `max` bytes (on a character boundary), so it
    /// fits the journal's payload limit; details larger than `max` are dropped.
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
            ActivityError::Failure(failure) => {
                let ActivityFailure {
                    code,
                    message,
                    details,
                    retryable,
                } = *failure;
                // Code, message and details share the budget: a third each at most.
                let third = max / 3;
                let (message, details) = match details {
                    Some(bytes) if bytes.len() > third => (
                        format!("{message} (details of {} bytes dropped)", bytes.len()),
                        None,
                    ),
                    details => (message, details),
                };
                coded(cut(code, third), cut(message, third), details, retryable)
            }
            other => other,
        }
    }

    /// Whether the engine may try this activity again after this error.
    pub fn is_retryable(&self) -> bool {
        match self {
            ActivityError::NonRetryable { .. } | ActivityError::Payload { .. } => false,
            ActivityError::Failure(failure) => failure.retryable,
            _ => true,
        }
    }
}

impl Display for ActivityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivityError::Retryable { message } => write!(f, "{message}"),
            ActivityError::NonRetryable { message } => write!(f, "{message} (not retryable)"),
            ActivityError::Timeout { timeout } => write!(f, "attempt timed out after {timeout:?}"),
            ActivityError::Panicked { message } => write!(f, "activity panicked: {message}"),
            ActivityError::Payload { message } => write!(f, "activity payload error: {message}"),
            ActivityError::Failure(failure) => {
                write!(f, "{}: {}", failure.code, failure.message)?;
                if !failure.retryable {
                    write!(f, " (not retryable)")?;
                }
                Ok(())
            }
        }
    }
}

/// Any error converts into a retryable `ActivityError` carrying its message (with the messages of its
/// sources appended), except a box made by [`ActivityError::into_error`], which converts back unchanged.
impl<E> From<E> for ActivityError
where
    E: Into<BoxError>,
{
    fn from(error: E) -> Self {
        let error: BoxError = error.into();
        match error.downcast::<AsStdError>() {
            Ok(wrapped) => wrapped.0,
            Err(error) => ActivityError::Retryable {
                message: chain(error.as_ref()),
            },
        }
    }
}

/// `error`'s message followed by its sources' (`read config: permission denied`), skipping sources
/// whose message the previous one already shows.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// An [`ActivityError`] as a `std::error::Error` (see [`ActivityError::into_error`]).
#[derive(Debug)]
struct AsStdError(ActivityError);

impl Display for AsStdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for AsStdError {}

/// Marks the error of a `Result` for the engine, inside an activity: `.non_retryable()?` fails the step
/// at once, `.failure("code")?` gives it a code the caller can match.
///
/// Implemented for every `Result<T, E>` whose error converts into [`ActivityError`] (any
/// `std::error::Error + Send + Sync + 'static`, strings, `ActivityError` itself).
///
/// ```
/// use orchestrator::{ActivityError, ActivityResultExt};
///
/// fn check_iban(iban: &str) -> Result<(), ActivityError> {
///     let digits: u128 = iban[4..].parse().failure("invalid_iban")?;
///     if digits == 0 {
///         return Err(ActivityError::failure("invalid_iban", "the account number is zero"));
///     }
///     Ok(())
/// }
///
/// let error = check_iban("DE00x").unwrap_err();
/// assert_eq!(error.code(), Some("invalid_iban"));
/// assert!(!error.is_retryable());
/// ```
pub trait ActivityResultExt<T> {
    /// The result with its error made non-retryable: the step fails at once.
    fn non_retryable(self) -> Result<T, ActivityError>;

    /// The result with its error turned into a non-retryable [`ActivityError::failure`] with `code`
    /// (the error's message is kept).
    fn failure(self, code: impl Into<String>) -> Result<T, ActivityError>;
}

impl<T, E: Into<ActivityError>> ActivityResultExt<T> for Result<T, E> {
    fn non_retryable(self) -> Result<T, ActivityError> {
        self.map_err(|error| error.into().into_non_retryable())
    }

    fn failure(self, code: impl Into<String>) -> Result<T, ActivityError> {
        self.map_err(|error| match error.into() {
            ActivityError::Failure(mut failure) => {
                failure.code = code.into();
                failure.retryable = false;
                ActivityError::Failure(failure)
            }
            ActivityError::Retryable { message } | ActivityError::NonRetryable { message } => {
                ActivityError::failure(code, message)
            }
            other => ActivityError::failure(code, other),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the ledger")]
    struct Outer(#[source] std::io::Error);

    fn io_error() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied")
    }

    #[test]
    fn foreign_errors_convert_retryable_with_their_sources() {
        fn read() -> Result<(), ActivityError> {
            Err(Outer(io_error()))?;
            Ok(())
        }
        let error = read().unwrap_err();
        assert!(error.is_retryable());
        assert_eq!(error.to_string(), "reading the ledger: permission denied");
    }

    #[test]
    fn strings_convert_retryable() {
        assert_eq!(
            ActivityError::from("busy"),
            ActivityError::retryable("busy")
        );
        assert_eq!(
            ActivityError::from(String::from("busy")),
            ActivityError::retryable("busy")
        );
    }

    #[test]
    fn into_error_round_trips() {
        let error = ActivityError::failure("x", "y").with_details(&7_u32);
        assert_eq!(ActivityError::from(error.clone().into_error()), error);
    }

    #[test]
    fn non_retryable_keeps_the_code_and_message() {
        let result: Result<(), _> = Err(ActivityError::retryable_failure(
            "rate_limited",
            "slow down",
        ));
        let error = result.non_retryable().unwrap_err();
        assert_eq!(error.code(), Some("rate_limited"));
        assert!(!error.is_retryable());
        let result: Result<(), _> = Err(io_error());
        assert_eq!(
            result.non_retryable().unwrap_err(),
            ActivityError::non_retryable("permission denied")
        );
    }

    #[test]
    fn failure_codes_keep_the_message() {
        let result: Result<(), _> = Err(io_error());
        let error = result.failure("forbidden").unwrap_err();
        assert_eq!(
            error.to_string(),
            "forbidden: permission denied (not retryable)"
        );
    }

    #[test]
    fn oversized_details_are_dropped_when_clamped() {
        let error = ActivityError::failure("big", "m")
            .with_details(&vec![0_u8; 4096])
            .clamped(1024);
        assert_eq!(error.code(), Some("big"));
        assert!(error.details::<Vec<u8>>().is_none());
        assert!(error.to_string().contains("dropped"), "{error}");
    }

    #[test]
    fn details_of_another_type_are_an_error() {
        let error = ActivityError::failure("x", "y").with_details("text");
        assert!(error.details::<u64>().unwrap().is_err());
        assert!(ActivityError::retryable("z").details::<u64>().is_none());
    }
}
