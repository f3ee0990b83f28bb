//! The journal: the events of a run, how they are encoded, and the indexed [`History`] replay reads.

#[cfg(test)]
mod compat_tests;
mod event;
mod history;

pub use event::{Event, EventBody, Interrupt, OperatorAction, SideEffectKind};
pub use history::History;

use crate::codec::{Codec, CodecError};
use crate::error::ParkReason;
use crate::store::{NewEvent, StoredEvent};

/// The version of the event encoding, stored in the database (see `docs/journal.md`).
pub const FORMAT_VERSION: u32 = 2;

/// Encodes an event for the store.
pub(crate) fn encode_event(codec: &Codec, event: &Event) -> Result<NewEvent, CodecError> {
    // Events are framed by the codec's ceiling, not the user payload limit: an event holds a payload
    // that already passed the limit, plus a few bytes of framing.
    let framing = Codec::new(codec.limit().saturating_add(4096));
    let wake_at_ms = match &event.body {
        EventBody::TimerStarted { fire_at_ms } => Some(*fire_at_ms),
        EventBody::SignalWaitStarted { deadline_ms, .. } => Some(*deadline_ms),
        _ => None,
    };
    Ok(NewEvent {
        step: event.step,
        kind: event.body.kind(),
        completion: event.body.is_completion(),
        payload: framing.encode(&event.body)?,
        wake_at_ms,
    })
}

/// Decodes stored events into a history, or says why the journal cannot be trusted.
pub(crate) fn decode_history(codec: &Codec, rows: &[StoredEvent]) -> Result<History, ParkReason> {
    History::new(decode_events(codec, rows)?)
}

/// Decodes stored events, in order (one event per row), or says why the journal cannot be trusted.
pub(crate) fn decode_events(codec: &Codec, rows: &[StoredEvent]) -> Result<Vec<Event>, ParkReason> {
    let framing = Codec::new(codec.limit().saturating_add(4096));
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let body: EventBody =
            framing
                .decode(&row.payload)
                .map_err(|error| ParkReason::CorruptJournal {
                    message: format!("event #{} (step {}): {error}", row.seq, row.step),
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
        events.push(Event {
            step: row.step,
            body,
        });
    }
    Ok(events)
}
