//! The journal's wire types: private, append-only mirrors of the public payloads that are journaled
//! ([`EventBody`] and the enums it embeds, [`WorkflowError`], [`ActivityError`](crate::ActivityError),
//! [`ParkReason`]).
//!
//! bincode encodes an enum variant by its index, so the order of a journaled enum's variants *is* the
//! journal format. The public types are free to gain, reorder or rename variants; these types are not:
//! a variant is only ever appended (and documented with the format version that added it), and every
//! conversion is written out by hand, so a new public variant does not compile until it has a wire
//! variant. Every encode and decode of journal data goes through here (events, the `error` column of
//! a failed, cancelled or parked run); `tests/fixtures/journal/` holds golden bytes per format version.

mod activity;
mod event;
mod workflow;

#[cfg(test)]
mod golden_tests;

use crate::codec::{Codec, CodecError};
use crate::error::{ParkReason, WorkflowError};
use crate::journal::EventBody;

pub(crate) use event::WireEventBody;
pub(crate) use workflow::{WireParkReason, WireWorkflowError};

/// Encodes an event body in the journal format.
pub(crate) fn encode_body(codec: &Codec, body: &EventBody) -> Result<Vec<u8>, CodecError> {
    codec.encode(&WireEventBody::from(body))
}

/// Decodes an event body written in any supported journal format.
pub(crate) fn decode_body(codec: &Codec, bytes: &[u8]) -> Result<EventBody, CodecError> {
    codec
        .decode::<WireEventBody<'static>>(bytes)
        .map(EventBody::from)
}

/// Encodes the error a run ended with, for its `error` column (also inside `RunFinished` events).
pub(crate) fn encode_workflow_error(
    codec: &Codec,
    error: &WorkflowError,
) -> Result<Vec<u8>, CodecError> {
    codec.encode(&WireWorkflowError::from(error))
}

/// Decodes a run's `error` column (failed, cancelled, compensation failed).
pub(crate) fn decode_workflow_error(
    codec: &Codec,
    bytes: &[u8],
) -> Result<WorkflowError, CodecError> {
    codec
        .decode::<WireWorkflowError>(bytes)
        .map(WireWorkflowError::into_public)
}

/// Encodes why a run was parked, for its `error` column.
pub(crate) fn encode_park_reason(
    codec: &Codec,
    reason: &ParkReason,
) -> Result<Vec<u8>, CodecError> {
    codec.encode(&WireParkReason::from(reason))
}

/// Decodes a parked run's `error` column.
pub(crate) fn decode_park_reason(codec: &Codec, bytes: &[u8]) -> Result<ParkReason, CodecError> {
    codec.decode::<WireParkReason>(bytes).map(ParkReason::from)
}
