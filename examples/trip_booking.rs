//! A trip booking saga: book a flight, a hotel and a car; the car rental fails, so the hotel and the
//! flight are cancelled again, in reverse order, each step journaled.
//!
//! ```text
//! cargo run --example trip_booking
//! ```
//!
//! Kill it during the rollback and run it again: the rollback resumes, and a compensation that already
//! finished is not repeated.

use std::path::PathBuf;
use std::time::Duration;

use orchestrator::prelude::*;
use serde::{Deserialize, Serialize};

/// What the traveller asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trip {
    traveller: String,
    from: String,
    to: String,
}

/// Each provider call takes a moment, so the process can be killed in the middle of the saga.
const CALL: Duration = Duration::from_millis(700);

fn say(ctx: &ActivityContext, message: impl std::fmt::Display) {
    println!(
        "  [step {} · {}] {message}",
        ctx.step(),
        ctx.activity_name()
    );
}

/// Books a seat; returns the booking reference.
#[activity(retry(max_attempts = 3, backoff = "200ms..2s"))]
async fn book_flight(ctx: ActivityContext, trip: Trip) -> Result<String, ActivityError> {
    tokio::time::sleep(CALL).await;
    let reference = format!("FL-{}", ctx.idempotency_key().len() * 97);
    say(
        &ctx,
        format!("flight {} → {} booked: {reference}", trip.from, trip.to),
    );
    Ok(reference)
}

/// Cancels a flight booking.
#[activity(retry(max_attempts = 10, backoff = "200ms..5s"))]
async fn cancel_flight(ctx: ActivityContext, reference: String) -> Result<(), ActivityError> {
    tokio::time::sleep(CALL).await;
    say(&ctx, format!("flight {reference} cancelled, fare refunded"));
    Ok(())
}

/// Books a room; returns the booking reference.
#[activity(retry(max_attempts = 3, backoff = "200ms..2s"))]
async fn book_hotel(ctx: ActivityContext, trip: Trip) -> Result<String, ActivityError> {
    tokio::time::sleep(CALL).await;
    let reference = format!("HT-{}", trip.to.len() * 1013);
    say(&ctx, format!("hotel in {} booked: {reference}", trip.to));
    Ok(reference)
}

/// Cancels a hotel booking.
#[activity(retry(max_attempts = 10, backoff = "200ms..5s"))]
async fn cancel_hotel(ctx: ActivityContext, reference: String) -> Result<(), ActivityError> {
    tokio::time::sleep(CALL).await;
    say(&ctx, format!("hotel {reference} cancelled"));
    Ok(())
}

/// Rents a car. This provider has no cars left: the error is final, so the saga rolls back.
#[activity(retry(max_attempts = 3, backoff = "200ms..2s"))]
async fn rent_car(ctx: ActivityContext, trip: Trip) -> Result<String, ActivityError> {
    tokio::time::sleep(CALL).await;
    say(&ctx, format!("no cars left in {}", trip.to));
    Err(ActivityError::non_retryable(format!(
        "no cars available in {}",
        trip.to
    )))
}

/// The saga: each booking registers its cancellation right after it succeeds.
#[workflow]
async fn book_trip(ctx: WorkflowContext, trip: Trip) -> Result<String, WorkflowError> {
    let flight = ctx.call(book_flight, trip.clone()).await?;
    ctx.compensate_with(cancel_flight, flight.clone());
    let hotel = ctx.call(book_hotel, trip.clone()).await?;
    ctx.compensate_with(cancel_hotel, hotel.clone());
    // Fails: the engine runs cancel_hotel, then cancel_flight, then records the failure.
    let car = ctx.call(rent_car, trip.clone()).await?;
    Ok(format!(
        "{} is going to {}: {flight}, {hotel}, {car}",
        trip.traveller, trip.to
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut path = PathBuf::from("trip_booking.db");
    let mut fresh = false;
    for argument in std::env::args().skip(1) {
        match argument.as_str() {
            "--fresh" => fresh = true,
            other => path = PathBuf::from(other),
        }
    }
    if fresh {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    println!("journal: {}", path.display());
    let engine = Engine::builder()
        .sqlite(&path)
        .register(book_trip)
        .start()
        .await?;
    let trip = Trip {
        traveller: "Ada".to_string(),
        from: "London".to_string(),
        to: "Lisbon".to_string(),
    };
    let run = engine.start(book_trip, "trip-ada-lisbon", trip).await?;
    match run.result().await {
        Ok(summary) => println!("booked: {summary}"),
        Err(Error::WorkflowFailed { error, .. }) => {
            println!("trip not booked, everything rolled back: {error}");
            println!("status: {:?}", run.status().await?);
        }
        Err(other) => println!("trip not finished: {other}"),
    }
    engine.shutdown().await;
    Ok(())
}

/// The saga under the testing toolkit: virtual time (the providers' 700 ms calls take no real time),
/// the history as a value, a mock for the car rental.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use orchestrator::testing::TestEngine;

    use super::*;

    fn trip() -> Trip {
        Trip {
            traveller: "Ada".to_string(),
            from: "London".to_string(),
            to: "Lisbon".to_string(),
        }
    }

    async fn engine() -> TestEngine {
        TestEngine::builder()
            .register(book_trip)
            .register(book_flight)
            .register(cancel_flight)
            .register(book_hotel)
            .register(cancel_hotel)
            .register(rent_car)
            .start()
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn no_car_rolls_the_bookings_back_in_reverse_order() {
        let test = engine().await;
        let run = test.start(book_trip, "trip-1", trip()).await.unwrap();
        let error = run.result().await.unwrap_err();
        assert!(error.to_string().contains("no cars available"), "{error}");
        let history = test.history("trip-1").await.unwrap();
        assert_eq!(
            history.activities(),
            vec![
                "book_flight",
                "book_hotel",
                "rent_car",
                "cancel_hotel",
                "cancel_flight"
            ]
        );
        assert_eq!(
            history.compensations(),
            vec!["cancel_hotel", "cancel_flight"]
        );
        assert_eq!(history.attempts(3), 1, "a final error is not retried");
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_car_the_trip_is_booked_and_nothing_is_cancelled() {
        let test = engine().await;
        let car = test.mock(rent_car, |trip: Trip| async move {
            Ok(format!("CAR-{}", trip.to.len()))
        });
        let cancellations = test.mock(cancel_hotel, |_reference: String| async move { Ok(()) });
        let run = test.start(book_trip, "trip-2", trip()).await.unwrap();
        let summary = run.result().await.unwrap();
        assert!(summary.ends_with("CAR-6"), "{summary}");
        assert_eq!(car.calls(), 1);
        assert_eq!(cancellations.calls(), 0);
        assert!(
            test.history("trip-2")
                .await
                .unwrap()
                .compensations()
                .is_empty()
        );
        test.shutdown().await;
    }
}
