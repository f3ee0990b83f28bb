//! Seeded mutation fuzzing of journal decoding: corrupted, truncated and random bytes must decode to a
//! value or a typed error — never a panic, a hang or an unbounded allocation.
//!
//! CI runs a bounded smoke run; set `ORCHESTRATOR_FUZZ_ITERATIONS` (and optionally
//! `ORCHESTRATOR_FUZZ_SEED`) for a longer run. A failure prints the seed and iteration to reproduce.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use orchestrator::codec::Codec;
use orchestrator::journal::{Event, EventBody, History, Interrupt, SideEffectKind};
use orchestrator::{ActivityError, WorkflowError};

fn iterations() -> u64 {
    std::env::var("ORCHESTRATOR_FUZZ_ITERATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000)
}

fn seed() -> u64 {
    std::env::var("ORCHESTRATOR_FUZZ_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0x0bad_5eed)
}

fn text(rng: &mut fastrand::Rng) -> String {
    let len = rng.usize(0..24);
    (0..len).map(|_| rng.char(..)).collect()
}

fn bytes(rng: &mut fastrand::Rng) -> Vec<u8> {
    let len = rng.usize(0..64);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// A random, valid event body of every kind.
fn body(rng: &mut fastrand::Rng) -> EventBody {
    match rng.u8(0..14) {
        0 => EventBody::ActivityCompleted {
            name: text(rng),
            input_fingerprint: rng.u64(..),
            attempts: rng.u32(..),
            result: if rng.bool() {
                Ok(bytes(rng))
            } else {
                Err(ActivityError::retryable(text(rng)))
            },
        },
        1 => EventBody::ActivityAttemptFailed {
            name: text(rng),
            input_fingerprint: rng.u64(..),
            attempt: rng.u32(..),
            error: ActivityError::non_retryable(text(rng)),
            retry_at_ms: rng.i64(..),
        },
        2 => EventBody::TimerStarted {
            fire_at_ms: rng.i64(..),
        },
        3 => EventBody::TimerFired,
        4 => EventBody::SignalWaitStarted {
            name: text(rng),
            deadline_ms: rng.i64(..),
        },
        5 => EventBody::SignalReceived {
            name: text(rng),
            signal_id: rng.i64(..),
            payload: bytes(rng),
        },
        6 => EventBody::SignalTimedOut { name: text(rng) },
        7 => EventBody::SideEffect {
            kind: SideEffectKind::Uuid,
            value: bytes(rng),
        },
        8 => EventBody::ChildStarted {
            workflow_name: text(rng),
            child_id: text(rng),
        },
        9 => EventBody::RunFinished {
            workflow_id: text(rng),
            result: Err(WorkflowError::ChildFailed {
                workflow_id: text(rng),
                error: Box::new(WorkflowError::failed(text(rng))),
            }),
        },
        10 => EventBody::Interrupted {
            interrupt: Interrupt::Cancelled { reason: text(rng) },
        },
        11 => EventBody::StatePublished {
            key: text(rng),
            value: bytes(rng),
        },
        12 => EventBody::PatchMarker {
            change_id: text(rng),
        },
        _ => EventBody::SelectWinner {
            winner: rng.u32(..),
        },
    }
}

/// Flips, truncates, extends, splices or replaces `input`.
fn mutate(rng: &mut fastrand::Rng, mut input: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.usize(1..4) {
        match rng.u8(0..5) {
            0 if !input.is_empty() => {
                let at = rng.usize(..input.len());
                input[at] ^= 1 << rng.u8(0..8);
            }
            1 if !input.is_empty() => input.truncate(rng.usize(..input.len())),
            2 => {
                let at = rng.usize(..=input.len());
                input.insert(at, rng.u8(..));
            }
            3 if !input.is_empty() => {
                // A huge length prefix where a small one was: must not allocate it.
                let at = rng.usize(..input.len());
                input.splice(
                    at..at,
                    [0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00],
                );
            }
            _ => input = bytes(rng),
        }
    }
    input
}

#[test]
fn corrupted_event_bytes_decode_or_fail_cleanly() {
    let codec = Codec::default();
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let (mut decoded, mut rejected) = (0_u64, 0_u64);
    for iteration in 0..iterations() {
        let original = body(&mut rng);
        let encoded = codec.encode(&original).unwrap();
        // The valid bytes round-trip exactly.
        assert_eq!(codec.decode::<EventBody>(&encoded).unwrap(), original);
        let corrupted = mutate(&mut rng, encoded);
        let outcome = std::panic::catch_unwind(|| codec.decode::<EventBody>(&corrupted));
        match outcome {
            Ok(Ok(_)) => decoded += 1,
            Ok(Err(_)) => rejected += 1,
            Err(_) => {
                panic!("decoding panicked: seed {seed}, iteration {iteration}, bytes {corrupted:?}")
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "fuzz-decode events seed={seed} iterations={} decoded={decoded} rejected={rejected} elapsed_ms={}",
        iterations(),
        elapsed.as_millis()
    );
    assert!(
        rejected > 0,
        "mutations never produced invalid bytes: the fuzzer is broken"
    );
    assert!(
        elapsed < Duration::from_secs(120),
        "decoding is too slow: {elapsed:?}"
    );
}

#[test]
fn corrupted_histories_are_indexed_or_refused_cleanly() {
    let codec = Codec::default();
    let seed = seed() ^ 0x5eed;
    let mut rng = fastrand::Rng::with_seed(seed);
    for iteration in 0..iterations() / 10 {
        let events: Vec<Event> = (0..rng.usize(0..20))
            .map(|_| Event {
                step: rng.u32(0..8),
                body: body(&mut rng),
            })
            .collect();
        let encoded = codec.encode(&events).unwrap();
        let corrupted = mutate(&mut rng, encoded);
        let outcome = std::panic::catch_unwind(|| {
            codec
                .decode::<Vec<Event>>(&corrupted)
                .map(|events| History::new(events).map(|history| history.len()))
        });
        assert!(
            outcome.is_ok(),
            "a history panicked: seed {seed}, iteration {iteration}, bytes {corrupted:?}"
        );
    }
}

#[test]
fn random_bytes_never_decode_into_an_oversized_value() {
    let codec = Codec::new(1024);
    let mut rng = fastrand::Rng::with_seed(seed() ^ 0xa110c);
    for _ in 0..iterations() / 10 {
        let junk: Vec<u8> = (0..rng.usize(0..2048)).map(|_| rng.u8(..)).collect();
        if let Ok(value) = codec.decode::<Vec<u8>>(&junk) {
            assert!(value.len() <= junk.len());
        }
        assert!(codec.decode::<Vec<EventBody>>(&junk).is_err() || junk.len() <= 1024);
    }
}
