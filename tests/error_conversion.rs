//! Issue 13 item 4: `?` converts any error in an activity (retryable by default), `.non_retryable()`
//! fails the step at once, and business failures keep their code and typed details through the
//! journal, so the caller matches `Error::failure_code()` — also from a restarted engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use orchestrator::prelude::*;
use orchestrator_tests::{TestDb, bump, count, finish, stop};
use serde::{Deserialize, Serialize};

/// A foreign error type, as a user's HTTP or database client would return.
#[derive(Debug)]
struct GatewayDown;

impl std::fmt::Display for GatewayDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payment gateway unreachable")
    }
}

impl std::error::Error for GatewayDown {}

fn call_gateway() -> Result<u64, GatewayDown> {
    Err(GatewayDown)
}

/// `?` on the foreign error: retried until the attempts run out.
#[activity(retry(max_attempts = 3, backoff = "5ms..5ms", jitter = 0.0))]
async fn flaky_gateway(key: String) -> Result<u64, ActivityError> {
    bump(&key);
    let id = call_gateway()?;
    Ok(id)
}

/// `.non_retryable()?` on a parse error: one attempt only.
#[activity(retry(max_attempts = 5, backoff = "5ms..5ms"))]
async fn parse_amount(key: String) -> Result<u64, ActivityError> {
    bump(&key);
    let cents: u64 = "twelve".parse().non_retryable()?;
    Ok(cents)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Declined {
    reason: String,
    retry_after_days: u32,
}

/// A business failure with a code and typed details.
#[activity(retry(max_attempts = 5, backoff = "5ms..5ms"))]
async fn charge(key: String) -> Result<u64, ActivityError> {
    bump(&key);
    Err(
        ActivityError::failure("card_declined", "the issuer declined the card").with_details(
            &Declined {
                reason: "insufficient funds".into(),
                retry_after_days: 3,
            },
        ),
    )
}

#[workflow]
async fn pay(ctx: WorkflowContext, input: (u8, String)) -> Result<u64, WorkflowError> {
    let (which, key) = input;
    match which {
        0 => ctx.call(flaky_gateway, key).await,
        1 => ctx.call(parse_amount, key).await,
        2 => ctx.call(charge, key).await,
        _ => {
            known_method(which)?; // a `&str` error converts into `WorkflowError`
            Ok(0)
        }
    }
}

fn known_method(which: u8) -> Result<(), &'static str> {
    match which {
        0..=2 => Ok(()),
        _ => Err("no such payment method"),
    }
}

async fn start_engine(db: &TestDb) -> Engine {
    db.builder()
        .register(pay)
        .register(flaky_gateway)
        .register(parse_amount)
        .register(charge)
        .start()
        .await
        .unwrap()
}

fn activity_error(error: &Error) -> &ActivityError {
    match error {
        Error::WorkflowFailed {
            error: WorkflowError::ActivityFailed { error, .. },
            ..
        } => error,
        other => panic!("expected a failed activity, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_error_converts_with_question_mark_and_is_retried() {
    let db = TestDb::new();
    let engine = start_engine(&db).await;
    let run = engine
        .start(pay, "conv-foreign", (0, "conv-foreign".to_string()))
        .await
        .unwrap();
    let error = finish(&run).await.unwrap_err();
    assert_eq!(count("conv-foreign"), 3, "every attempt was made");
    assert_eq!(
        activity_error(&error),
        &ActivityError::retryable("payment gateway unreachable")
    );
    assert_eq!(error.failure_code(), None);
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_fails_the_step_after_one_attempt() {
    let db = TestDb::new();
    let engine = start_engine(&db).await;
    let run = engine
        .start(pay, "conv-parse", (1, "conv-parse".to_string()))
        .await
        .unwrap();
    let error = finish(&run).await.unwrap_err();
    assert_eq!(count("conv-parse"), 1);
    let activity_error = activity_error(&error);
    assert!(!activity_error.is_retryable());
    assert!(
        activity_error.to_string().contains("invalid digit"),
        "{activity_error}"
    );
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_code_and_its_details_survive_the_journal_and_a_restart() {
    let db = TestDb::new();
    let engine = start_engine(&db).await;
    let id = "conv-declined";
    let run = engine
        .start(pay, id, (2, "conv-declined".to_string()))
        .await
        .unwrap();
    let error = finish(&run).await.unwrap_err();
    assert_eq!(count("conv-declined"), 1, "a failure is not retried");
    assert_eq!(error.failure_code(), Some("card_declined"));
    stop(engine).await;

    // A new engine reads the outcome from the journal only.
    let engine = start_engine(&db).await;
    let run = engine.handle(pay, id).await.unwrap();
    let error = finish(&run).await.unwrap_err();
    assert_eq!(error.failure_code(), Some("card_declined"));
    let details: Declined = error.failure_details().unwrap().unwrap();
    assert_eq!(
        details,
        Declined {
            reason: "insufficient funds".into(),
            retry_after_days: 3
        }
    );
    match engine.status(id).await.unwrap() {
        RunStatus::Failed(error) => assert_eq!(error.failure_code(), Some("card_declined")),
        other => panic!("expected a failed run, got {other:?}"),
    }
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_converts_into_a_workflow_error() {
    let db = TestDb::new();
    let engine = start_engine(&db).await;
    let run = engine
        .start(pay, "conv-string", (9, String::new()))
        .await
        .unwrap();
    match finish(&run).await.unwrap_err() {
        Error::WorkflowFailed { error, .. } => {
            assert_eq!(error, WorkflowError::failed("no such payment method"))
        }
        other => panic!("expected a failed run, got {other:?}"),
    }
    stop(engine).await;
}
