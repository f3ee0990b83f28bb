//! The journal: the events of a run, how they are encoded, and the indexed [`History`] replay reads.

#[cfg(test)]
mod compat_tests;
mod event;
mod history;
mod wire;

pub use event::{Event, EventBody, Interrupt, OperatorAction, SideEffectKind};
pub use history::History;
pub(crate) use wire::{
    decode_park_reason, decode_workflow_error, encode_park_reason, encode_workflow_error,
};

use crate::codec::{Codec, CodecError};
use crate::error::ParkReason;
use crate::store::{NewEvent, StoredEvent};

/// The version of the event encoding, stored in the database (see `docs/journal.md`). Format 3 adds
/// event kinds 15 (`ActivityAttemptStarted`) and 16 (`Operator`); a format-2 journal is a valid
/// format-3 journal.
pub const FORMAT_VERSION: u32 = 3;

/// The largest event body [`decode_event_body`] accepts: the payload ceiling plus framing.
fn framing(codec: &Codec) -> Codec {
    // Events are framed by the codec's ceiling, not the user payload limit: an event holds a payload
    // that already passed the limit, plus a few bytes of framing.
    Codec::new(codec.limit().saturating_add(4096))
}

/// Encodes an event body exactly as the journal stores it (the `payload` column), through the
/// journal's wire format (see `docs/journal.md`).
pub fn encode_event_body(body: &EventBody) -> Result<Vec<u8>, CodecError> {
    wire::encode_body(&framing(&Codec::new(crate::codec::MAX_PAYLOAD_LIMIT)), body)
}

/// Decodes the `error` column of a failed, cancelled or compensation-failed run (any supported
/// format version).
pub fn decode_run_error(bytes: &[u8]) -> Result<crate::error::WorkflowError, CodecError> {
    wire::decode_workflow_error(&Codec::new(crate::codec::MAX_PAYLOAD_LIMIT), bytes)
}

/// Decodes the `error` column of a parked run (any supported format version).
pub fn decode_run_park_reason(bytes: &[u8]) -> Result<ParkReason, CodecError> {
    wire::decode_park_reason(&Codec::new(crate::codec::MAX_PAYLOAD_LIMIT), bytes)
}

/// Decodes an event body from the journal's `payload` column, written in any supported format
/// version (2 or 3).
///
/// ```
/// use orchestrator::journal::{EventBody, decode_event_body, encode_event_body};
///
/// let body = EventBody::TimerStarted { fire_at_ms: 1_700_000_000_000 };
/// let bytes = encode_event_body(&body)?;
/// assert_eq!(decode_event_body(&bytes)?, body);
/// # Ok::<(), orchestrator::codec::CodecError>(())
/// ```
pub fn decode_event_body(bytes: &[u8]) -> Result<EventBody, CodecError> {
    wire::decode_body(
        &framing(&Codec::new(crate::codec::MAX_PAYLOAD_LIMIT)),
        bytes,
    )
}

/// Encodes an event for the store.
pub(crate) fn encode_event(codec: &Codec, event: &Event) -> Result<NewEvent, CodecError> {
    let framing = framing(codec);
    let wake_at_ms = match &event.body {
        EventBody::TimerStarted { fire_at_ms } => Some(*fire_at_ms),
        EventBody::SignalWaitStarted { deadline_ms, .. } => Some(*deadline_ms),
        _ => None,
    };
    Ok(NewEvent {
        step: event.step,
        kind: event.body.kind(),
        completion: event.body.is_completion(),
        payload: wire::encode_body(&framing, &event.body)?,
        wake_at_ms,
    })
}

/// Decodes one stored event, checking it against its row's kind and step.
pub(crate) fn decode_event(codec: &Codec, row: &StoredEvent) -> Result<EventBody, ParkReason> {
    let body = wire::decode_body(&framing(codec), &row.payload).map_err(|error| {
        ParkReason::CorruptJournal {
            message: format!("event #{} (step {}): {error}", row.seq, row.step),
        }
    })?;
    if body.kind() != row.kind || (row.step == 0) != body.is_run_level() {
        return Err(ParkReason::CorruptJournal {
            message: format!(
                "event #{} claims kind {} at step {} but holds a kind {} event",
                row.seq,
                row.kind,
                row.step,
                body.kind()
            ),
        });
    }
    Ok(body)
}

/// Decodes stored events into a history, or says why the journal cannot be trusted.
pub(crate) fn decode_history(codec: &Codec, rows: &[StoredEvent]) -> Result<History, ParkReason> {
    History::new(decode_events(codec, rows)?)
}

/// Decodes stored events, in order (one event per row), or says why the journal cannot be trusted.
pub(crate) fn decode_events(codec: &Codec, rows: &[StoredEvent]) -> Result<Vec<Event>, ParkReason> {
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        events.push(Event {
            step: row.step,
            body: decode_event(codec, row)?,
        });
    }
    Ok(events)
}
