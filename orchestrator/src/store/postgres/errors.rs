//! How PostgreSQL's (and the pool's) errors become [`StoreError`]s.
//!
//! The split that matters to callers is [`StoreError::is_retryable`]: serialization failures,
//! deadlocks, lock and statement timeouts, too many connections and lost connections are worth
//! retrying (`Busy` / `TooManyConnections` / `Io`); constraint violations are `Conflict`s (nothing of the transaction was
//! written); a full disk is `DiskFull`; damaged pages are `Corrupt`.

use std::error::Error as _;

use deadpool_postgres::{HookError, PoolError, TimeoutType};

use crate::store::StoreError;

/// Classifies a tokio-postgres error raised while doing `operation`.
pub(super) fn classify(operation: &'static str, error: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        let mut message = format!("{} (SQLSTATE {code})", db.message());
        if let Some(detail) = db.detail() {
            message.push_str(": ");
            message.push_str(detail);
        }
        return classify_code(operation, code, message);
    }
    let message = describe(error);
    if error.is_closed() || has_io_source(error) {
        return StoreError::Io { operation, message };
    }
    let text = error.to_string();
    if text.starts_with("error deserializing column")
        || text.starts_with("invalid column")
        || text.starts_with("query returned an unexpected number of columns")
    {
        StoreError::MalformedRow { operation, message }
    } else if text.starts_with("error connecting to server")
        || text.starts_with("timeout waiting for server")
        || text.starts_with("error communicating with the server")
    {
        StoreError::Io { operation, message }
    } else {
        StoreError::Backend { operation, message }
    }
}

/// Classifies a server error by its SQLSTATE `code`.
fn classify_code(operation: &'static str, code: &str, message: String) -> StoreError {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available, query_canceled (statement or
        // lock timeout): the same transaction may well succeed next time.
        "40001" | "40P01" | "55P03" | "57014" => StoreError::Busy { operation },
        // too_many_connections: its own error, since the fix is the configuration's.
        "53300" => StoreError::TooManyConnections { operation, message },
        // disk_full
        "53100" => StoreError::DiskFull { operation },
        // data_corrupted, index_corrupted
        "XX001" | "XX002" => StoreError::Corrupt { operation, message },
        // io_error, admin/crash shutdown, cannot_connect_now, database_dropped, idle session
        // timeouts (the server ended the session; its transaction was rolled back), the outcome of a
        // commit is unknown (the connection failed during it).
        "58030" | "57P01" | "57P02" | "57P03" | "57P04" | "57P05" | "25P03" | "40003" => {
            StoreError::Io { operation, message }
        }
        _ if code.starts_with("08") => StoreError::Io { operation, message },
        // Other insufficient-resources errors (out of memory, ...): transient.
        _ if code.starts_with("53") => StoreError::Io { operation, message },
        // integrity_constraint_violation: unique, foreign key, not null, check, exclusion.
        _ if code.starts_with("23") => StoreError::Conflict { operation, message },
        _ => StoreError::Backend { operation, message },
    }
}

/// Classifies an error of the connection pool.
pub(super) fn classify_pool(operation: &'static str, error: PoolError) -> StoreError {
    match error {
        PoolError::Timeout(TimeoutType::Wait) => StoreError::Busy { operation },
        PoolError::Timeout(kind) => StoreError::Io {
            operation,
            message: format!("timed out ({kind:?}) opening a PostgreSQL connection"),
        },
        PoolError::Backend(error) | PoolError::PostCreateHook(HookError::Backend(error)) => {
            classify(operation, &error)
        }
        PoolError::Closed => StoreError::Closed,
        other => StoreError::Backend {
            operation,
            message: other.to_string(),
        },
    }
}

/// The error's text with its causes, e.g. "error connecting to server: Connection refused".
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn has_io_source(error: &tokio_postgres::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Adds the operation to a tokio-postgres result.
pub(super) trait Context<T> {
    fn during(self, operation: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn during(self, operation: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| classify(operation, &error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_the_documented_variants() {
        let classify = |code: &str| classify_code("testing", code, String::from("m"));
        assert!(classify("40001").is_retryable());
        assert!(classify("40P01").is_retryable());
        assert!(classify("08006").is_retryable());
        assert!(classify("57P01").is_retryable());
        assert!(matches!(classify("23505"), StoreError::Conflict { .. }));
        assert!(matches!(classify("23503"), StoreError::Conflict { .. }));
        assert!(matches!(classify("53100"), StoreError::DiskFull { .. }));
        assert!(matches!(classify("XX001"), StoreError::Corrupt { .. }));
        assert!(matches!(classify("42P01"), StoreError::Backend { .. }));
        assert!(!classify("23505").is_retryable());
        let too_many = classify("53300");
        assert!(
            matches!(too_many, StoreError::TooManyConnections { .. }),
            "{too_many:?}"
        );
        assert!(too_many.is_retryable());
        let text = too_many.to_string();
        assert!(
            text.contains("pool size") && text.contains("max_connections"),
            "{text}"
        );
    }
}
