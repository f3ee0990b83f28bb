//! Writes the golden format-2 fixture `tests/fixtures/journal/format-2.hex`: the samples of
//! `orchestrator/src/journal/wire/samples.rs`, one per line as `<name> <hex bytes>`, encoded the way
//! format 2 encoded them (bincode over serde of the public types).
//!
//! It was run once on the code of format 2 (`main` at `cfca751`, before the wire types existed):
//!
//! ```text
//! git worktree add --detach /tmp/old cfca751
//! mkdir -p /tmp/old/orchestrator/src/journal/wire
//! cp orchestrator/src/journal/wire/samples.rs /tmp/old/orchestrator/src/journal/wire/
//! cp tests/bin/make_golden_format2.rs /tmp/old/tests/bin/   # plus a [[bin]] entry in tests/Cargo.toml
//! cd /tmp/old && cargo run -p orchestrator-tests --bin make_golden_format2 > format-2.hex
//! ```
//!
//! Built on the current code it prints what serde of the public types gives today, which is *not*
//! the journal format any more (that is `orchestrator::journal::encode_event_body`): never use it to
//! regenerate the fixture. The format-3 fixture is written by the ignored unit test
//! `journal::wire::golden_tests::write_format3_fixture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator::codec::Codec;
use orchestrator::journal::{EventBody, Interrupt, SideEffectKind};
use orchestrator::{ActivityError, NonDeterminismError, ParkReason, WorkflowError};

#[path = "../../orchestrator/src/journal/wire/samples.rs"]
mod samples;

fn main() {
    let codec = Codec::default();
    println!("# Golden journal fixture, event format 2: `<name> <hex>` per line.");
    println!(
        "# Written by tests/bin/make_golden_format2.rs on the code of format 2; never regenerate."
    );
    for (name, sample) in samples::format2_samples() {
        let bytes = match sample {
            samples::Sample::Event(body) => codec.encode(&body),
            samples::Sample::WorkflowError(error) => codec.encode(&error),
            samples::Sample::ParkReason(reason) => codec.encode(&reason),
        }
        .expect("encode a sample");
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        println!("{name} {hex}");
    }
}
