//! Error classification: what the engine retries and what it does not.

use std::sync::Arc;

use super::support::{Ck, completion, status_commit};
use super::{CheckOutcome, ConformanceFailure};
use crate::store::{Commit, StatusChange, Store, StoreError};

/// Every error variant, with whether it is retryable.
fn classification() -> Vec<(StoreError, bool)> {
    let text = || "message".to_string();
    vec![
        (StoreError::Busy { operation: "op" }, true),
        (
            StoreError::TooManyConnections {
                operation: "op",
                message: text(),
            },
            true,
        ),
        (
            StoreError::Io {
                operation: "op",
                message: text(),
            },
            true,
        ),
        (StoreError::NotADatabase { path: text() }, false),
        (StoreError::EngineRunning { path: text() }, false),
        (
            StoreError::ForeignDatabase {
                path: text(),
                application_id: 1,
                tables: 1,
            },
            false,
        ),
        (
            StoreError::SchemaTooNew {
                found: 9,
                supported: 3,
            },
            false,
        ),
        (StoreError::DiskFull { operation: "op" }, false),
        (StoreError::ReadOnly { operation: "op" }, false),
        (
            StoreError::SchemaTooOld {
                found: 1,
                supported: 4,
            },
            false,
        ),
        (
            StoreError::Corrupt {
                operation: "op",
                message: text(),
            },
            false,
        ),
        (
            StoreError::Conflict {
                operation: "op",
                message: text(),
            },
            false,
        ),
        (
            StoreError::StaleLease {
                workflow_id: text(),
                node: text(),
                epoch: 1,
            },
            false,
        ),
        (
            StoreError::MalformedRow {
                operation: "op",
                message: text(),
            },
            false,
        ),
        (
            StoreError::Backend {
                operation: "op",
                message: text(),
            },
            false,
        ),
        (StoreError::Closed, false),
    ]
}

/// **Contract:** [`StoreError::is_retryable`] is true exactly for transient failures (`Busy`, `Io`),
/// which the engine retries; and a store reports a contract violation as a non-retryable
/// `StoreError::Conflict` — a second completion of a step, a second consumption of a signal, a second
/// finish, a stale `run_no` — so the engine never retries a write that can only fail again. A commit to
/// an unknown run fails with a non-retryable error too.
pub async fn error_classification(
    store: Arc<dyn Store>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let ck = Ck::new("error_classification", store);
    for (error, retryable) in classification() {
        ck.eq(
            format!("is_retryable() of {error:?}"),
            &retryable,
            &error.is_retryable(),
        )?;
    }

    let id = "errors";
    ck.create(id, "errors").await?;
    let signal = ck.signal(id, "s", b"x").await?;
    let mut commit = Commit::events(id, vec![completion(1, b"step 1")]);
    commit.consume_signal = Some(signal.id);
    ck.commit("step 1, consuming a signal", commit).await?;

    let mut violations: Vec<(&str, Commit)> = vec![
        (
            "a second completion of step 1",
            Commit::events(id, vec![completion(1, b"again")]),
        ),
        ("a second consumption of a signal", {
            let mut commit = Commit::events(id, vec![completion(2, b"again")]);
            commit.consume_signal = Some(signal.id);
            commit
        }),
        ("a commit for a run_no that is not the run's", {
            let mut commit = Commit::events(id, vec![completion(2, b"stale")]);
            commit.run_no = Some(7);
            commit
        }),
    ];
    ck.set_status(
        id,
        StatusChange::Complete {
            output: b"out".to_vec(),
        },
    )
    .await?;
    violations.push((
        "a second finish",
        status_commit(
            id,
            StatusChange::Fail {
                error: b"err".to_vec(),
            },
        ),
    ));
    for (what, commit) in violations {
        let result = ck.store.commit(commit).await;
        ck.conflict(what, result.clone())?;
        if let Err(error) = result {
            ck.eq(
                format!("is_retryable() of the error of {what}"),
                &false,
                &error.is_retryable(),
            )?;
        }
    }
    let result = ck
        .store
        .commit(Commit::events(
            "errors-unknown",
            vec![completion(1, b"orphan")],
        ))
        .await;
    let error = ck.rejected("a commit to an unknown run", result)?;
    ck.ensure(
        !error.is_retryable(),
        "the error of a commit to an unknown run",
        "a non-retryable error",
        format!("{error:?}"),
    )?;
    Ok(CheckOutcome::Passed)
}
