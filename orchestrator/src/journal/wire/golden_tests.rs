//! Golden fixtures: the committed bytes of every event kind and every error and park-reason variant,
//! per format version (`tests/fixtures/journal/format-N.hex`), must decode to the samples' values
//! through the wire types, and the samples must encode to exactly those bytes. Reordering or
//! inserting a wire variant (or encoding a public type directly again) fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::codec::{Codec, CodecError};
use crate::error::{ActivityError, NonDeterminismError, ParkReason, WorkflowError};
use crate::journal::{EventBody, Interrupt, OperatorAction, SideEffectKind};

#[path = "samples.rs"]
mod samples;

use samples::Sample;

/// The samples of format 3: format 2's, plus kinds 15 and 16 (every operator action).
fn format3_samples() -> Vec<(String, Sample)> {
    let mut samples = samples::format2_samples();
    samples.push((
        "event/15_activity_attempt_started".to_string(),
        Sample::Event(EventBody::ActivityAttemptStarted {
            name: "charge".into(),
            input_fingerprint: 7,
            attempt: 2,
            started_at_ms: 1_700_000_000_250,
        }),
    ));
    let actions = [
        (
            "paused",
            OperatorAction::Paused {
                reason: "investigating".into(),
            },
        ),
        ("resumed", OperatorAction::Resumed),
        ("retried", OperatorAction::Retried { step: 3 }),
        (
            "terminated",
            OperatorAction::Terminated {
                reason: "duplicate".into(),
            },
        ),
        (
            "forked_from",
            OperatorAction::ForkedFrom {
                source_id: "order-1".into(),
                from_step: 4,
            },
        ),
        (
            "forked_to",
            OperatorAction::ForkedTo {
                new_id: "order-1b".into(),
                from_step: 4,
            },
        ),
        (
            "retry_superseded",
            OperatorAction::RetrySuperseded {
                state: "Failed".into(),
                error: "boom".into(),
                dropped_events: 2,
            },
        ),
    ];
    for (name, action) in actions {
        samples.push((
            format!("event/16_operator_{name}"),
            Sample::Event(EventBody::Operator {
                action,
                actor: "alice".into(),
                at_ms: 1_700_000_000_900,
            }),
        ));
    }
    samples
}

fn fixture_path(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/journal")
        .join(format!("format-{version}.hex"))
}

fn encode(sample: &Sample) -> Result<Vec<u8>, CodecError> {
    let codec = Codec::default();
    match sample {
        Sample::Event(body) => super::encode_body(&codec, body),
        Sample::WorkflowError(error) => super::encode_workflow_error(&codec, error),
        Sample::ParkReason(reason) => super::encode_park_reason(&codec, reason),
    }
}

fn decode_like(sample: &Sample, bytes: &[u8]) -> Result<Sample, CodecError> {
    let codec = Codec::default();
    Ok(match sample {
        Sample::Event(_) => Sample::Event(super::decode_body(&codec, bytes)?),
        Sample::WorkflowError(_) => {
            Sample::WorkflowError(super::decode_workflow_error(&codec, bytes)?)
        }
        Sample::ParkReason(_) => Sample::ParkReason(super::decode_park_reason(&codec, bytes)?),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

/// The fixture of `version`: name → bytes.
fn read_fixture(version: u32) -> BTreeMap<String, Vec<u8>> {
    let path = fixture_path(version);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, bytes) = line.split_once(' ').expect("`<name> <hex>`");
            (name.to_string(), unhex(bytes))
        })
        .collect()
}

fn check(version: u32, samples: Vec<(String, Sample)>) {
    let fixture = read_fixture(version);
    let names: Vec<&String> = samples.iter().map(|(name, _)| name).collect();
    assert_eq!(
        fixture.keys().collect::<Vec<_>>(),
        {
            let mut sorted = names.clone();
            sorted.sort();
            sorted
        },
        "format-{version}.hex holds exactly the samples"
    );
    for (name, sample) in &samples {
        let bytes = &fixture[name];
        assert_eq!(
            &decode_like(sample, bytes).unwrap_or_else(|error| panic!("{name}: {error}")),
            sample,
            "format-{version}.hex `{name}` decodes to its sample"
        );
        assert_eq!(
            hex(&encode(sample).unwrap()),
            hex(bytes),
            "`{name}` encodes today exactly as format {version} did: a journaled enum's variants \
             were reordered or inserted (append only)"
        );
    }
}

#[test]
fn format_2_fixture_decodes_and_encodes_identically() {
    check(2, samples::format2_samples());
}

#[test]
fn format_3_fixture_decodes_and_encodes_identically() {
    check(3, format3_samples());
}

#[test]
fn the_format_3_fixture_has_every_event_kind() {
    let kinds: std::collections::BTreeSet<u16> = format3_samples()
        .iter()
        .filter_map(|(_, sample)| match sample {
            Sample::Event(body) => Some(body.kind()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, (1..=16).collect());
}

/// Writes `tests/fixtures/journal/format-3.hex`. Run on purpose only, when format 3 is current and
/// the fixture is new: `cargo test -p orchestrator --lib write_format3_fixture -- --ignored`.
#[test]
#[ignore = "writes the committed golden fixture; run on purpose only"]
fn write_format3_fixture() {
    assert_eq!(
        crate::journal::FORMAT_VERSION,
        3,
        "only format 3 writes format-3.hex"
    );
    let mut text = String::from(
        "# Golden journal fixture, event format 3: `<name> <hex>` per line.\n\
         # Written by the ignored test journal::wire::golden_tests::write_format3_fixture; never regenerate.\n",
    );
    for (name, sample) in format3_samples() {
        text.push_str(&format!("{name} {}\n", hex(&encode(&sample).unwrap())));
    }
    std::fs::write(fixture_path(3), text).unwrap();
}
