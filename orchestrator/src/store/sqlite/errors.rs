//! How SQLite's errors become [`StoreError`]s.

use rusqlite::ErrorCode;

use crate::store::StoreError;

/// Classifies a rusqlite error raised while doing `operation`.
pub(super) fn classify(operation: &'static str, error: rusqlite::Error) -> StoreError {
    let message = error.to_string();
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy { operation },
        Some(ErrorCode::DiskFull) => StoreError::DiskFull { operation },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt { operation, message },
        Some(ErrorCode::NotADatabase) => StoreError::Corrupt {
            operation,
            message: format!("not a database: {message}"),
        },
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => {
            StoreError::Io { operation, message }
        }
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict { operation, message },
        _ => match error {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => {
                StoreError::MalformedRow { operation, message }
            }
            _ => StoreError::Backend { operation, message },
        },
    }
}

/// Adds the operation to a rusqlite result.
pub(super) trait Context<T> {
    fn during(self, operation: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn during(self, operation: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| classify(operation, error))
    }
}
