//! Criterion micro-benches of orchestrator: replay of an N-event history and journal encode/decode.
//!
//! ```sh
//! cargo bench -p orchestrator-benches --bench micro              # all of them
//! cargo bench -p orchestrator-benches --bench micro -- codec     # a filter
//! ```
//!
//! - `replay/N`: an engine starts on a journal of N completed no-op activity steps (a fresh copy of it
//!   each time) and replays it; timed from `EngineBuilder::start` until the run asks for its first step
//!   past the journal. Reported per journal and, through the throughput, per event.
//! - `history_index/N`: indexing N decoded events for replay (`journal::History::new`).
//! - `journal_codec/*`: encoding and decoding a journal event (`journal::EventBody`, through
//!   `codec::Codec`, as the engine does) for a no-op activity's completion and one carrying 1 KiB.
//! - `payload_codec/*`: encoding and decoding a typical user payload (an order).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use orchestrator::codec::Codec;
use orchestrator::journal::{Event, EventBody, History};
use orchestrator_benches::{Mode, build_replay_journal, copy_journal, noop_name, replay_once};
use serde::{Deserialize, Serialize};

/// Numbers the copies of the replay journals.
static COPIES: AtomicUsize = AtomicUsize::new(0);

fn replay(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    let dir = tempfile::Builder::new()
        .prefix("orch-micro-")
        .tempdir()
        .expect("create a temporary directory");
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for steps in [100u32, 1_000, 10_000] {
        let template = dir.path().join(format!("template-{steps}.db"));
        let events = runtime
            .block_on(build_replay_journal(&template, steps, Mode::Full))
            .expect("build the replay journal");
        group.throughput(Throughput::Elements(events));
        group.bench_with_input(BenchmarkId::from_parameter(steps), &steps, |b, _| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    // A name never used before: the previous engine's SQLite threads may still hold
                    // their (deleted) file open for a moment after shutdown, and a new file under the
                    // same name would confuse them with its `-shm`.
                    let copy = COPIES.fetch_add(1, Ordering::Relaxed);
                    let path = dir.path().join(format!("replay-{steps}-{copy}.db"));
                    copy_journal(&template, &path).expect("copy the replay journal");
                    total += runtime
                        .block_on(replay_once(&path, Mode::Full))
                        .expect("replay the journal");
                    for suffix in ["", "-wal", "-shm"] {
                        let mut file = path.clone().into_os_string();
                        file.push(suffix);
                        let _ = std::fs::remove_file(file);
                    }
                }
                total
            });
        });
    }
    group.finish();
}

fn completion(result: Vec<u8>) -> EventBody {
    EventBody::ActivityCompleted {
        name: noop_name().to_string(),
        input_fingerprint: 0xaf63_bd4c_8601_b7df,
        attempts: 1,
        result: Ok(result),
    }
}

fn history_index(c: &mut Criterion) {
    let codec = Codec::default();
    let output = codec.encode(&7u32).expect("encode an output");
    let mut group = c.benchmark_group("history_index");
    for steps in [100u32, 1_000, 10_000] {
        let events: Vec<Event> = (1..=steps)
            .map(|step| Event {
                step,
                body: completion(output.clone()),
            })
            .collect();
        group.throughput(Throughput::Elements(u64::from(steps)));
        group.bench_with_input(BenchmarkId::from_parameter(steps), &events, |b, events| {
            b.iter_batched(
                || events.clone(),
                |events| History::new(events).expect("a valid history"),
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn journal_codec(c: &mut Criterion) {
    let codec = Codec::default();
    let mut group = c.benchmark_group("journal_codec");
    let cases = [
        (
            "noop_completion",
            completion(codec.encode(&7u32).expect("encode")),
        ),
        (
            "completion_1KiB",
            completion(codec.encode(&vec![0xA5u8; 1024]).expect("encode")),
        ),
    ];
    for (name, body) in cases {
        let bytes = codec.encode(&body).expect("encode an event");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| codec.encode(black_box(&body)).expect("encode"));
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| {
                codec
                    .decode::<EventBody>(black_box(&bytes))
                    .expect("decode")
            });
        });
    }
    group.finish();
}

/// A typical workflow input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    customer: String,
    amount_cents: u64,
    currency: String,
    items: Vec<(String, u32)>,
}

fn payload_codec(c: &mut Criterion) {
    let codec = Codec::default();
    let order = Order {
        id: "order-2026-000042".to_string(),
        customer: "customer-7f3a9c".to_string(),
        amount_cents: 129_900,
        currency: "EUR".to_string(),
        items: (0..5).map(|i| (format!("sku-{i:05}"), i + 1)).collect(),
    };
    let bytes = codec.encode(&order).expect("encode an order");
    let mut group = c.benchmark_group("payload_codec");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode/order", |b| {
        b.iter(|| codec.encode(black_box(&order)).expect("encode"));
    });
    group.bench_function("decode/order", |b| {
        b.iter(|| codec.decode::<Order>(black_box(&bytes)).expect("decode"));
    });
    group.finish();
}

// What `criterion_group!`/`criterion_main!` expand to, written out (the macro's `pub fn` has no docs).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    journal_codec(&mut criterion);
    payload_codec(&mut criterion);
    history_index(&mut criterion);
    replay(&mut criterion);
    criterion.final_summary();
}
