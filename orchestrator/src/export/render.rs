//! The human-readable side of an export: events and payloads as JSON, through the type catalog.

use serde_json::Value;

use crate::codec::Codec;
use crate::inspect::{Catalog, Rendered};
use crate::journal::EventBody;

/// What an export renders payloads with: the exporting engine's catalog, if any.
#[derive(Clone, Copy)]
pub(crate) struct Renderer<'a> {
    pub(crate) codec: Codec,
    pub(crate) catalog: Option<&'a Catalog>,
    pub(crate) workflow_name: &'a str,
}

impl Renderer<'_> {
    fn payload(&self, ty: Option<crate::inspect::catalog::PayloadType>, bytes: &[u8]) -> Rendered {
        Rendered::payload(&self.codec, ty, bytes)
    }

    pub(crate) fn input(&self, bytes: &[u8]) -> Rendered {
        let ty = self
            .catalog
            .and_then(|catalog| catalog.workflow(self.workflow_name))
            .map(|signature| signature.input);
        self.payload(ty, bytes)
    }

    pub(crate) fn output(&self, bytes: &[u8]) -> Rendered {
        let ty = self
            .catalog
            .and_then(|catalog| catalog.workflow(self.workflow_name))
            .map(|signature| signature.output);
        self.payload(ty, bytes)
    }

    pub(crate) fn signal(&self, name: &str, bytes: &[u8]) -> Rendered {
        let ty = self
            .catalog
            .and_then(|catalog| catalog.signal(self.workflow_name, name));
        self.payload(ty, bytes)
    }

    /// The event as JSON (`{"<Kind>": {fields}}`), its payload bytes replaced by their rendering.
    pub(crate) fn event(&self, body: &EventBody) -> Value {
        let mut value = serde_json::to_value(body).unwrap_or(Value::Null);
        let replacement = match body {
            EventBody::ActivityCompleted {
                name,
                result: Ok(bytes),
                ..
            } => {
                let ty = self
                    .catalog
                    .and_then(|catalog| catalog.activity(name))
                    .map(|entry| entry.signature.output);
                Some(("/ActivityCompleted/result/Ok", self.payload(ty, bytes)))
            }
            EventBody::SignalReceived { name, payload, .. } => {
                Some(("/SignalReceived/payload", self.signal(name, payload)))
            }
            EventBody::StatePublished { key, value } => {
                let ty = self
                    .catalog
                    .and_then(|catalog| catalog.state(self.workflow_name, key));
                Some(("/StatePublished/value", self.payload(ty, value)))
            }
            EventBody::SideEffect { value, .. } => {
                Some(("/SideEffect/value", self.payload(None, value)))
            }
            EventBody::RunFinished {
                result: Ok(bytes), ..
            } => Some(("/RunFinished/result/Ok", self.payload(None, bytes))),
            _ => None,
        };
        if let Some((pointer, rendered)) = replacement
            && let Some(slot) = value.pointer_mut(pointer)
        {
            *slot = serde_json::to_value(rendered).unwrap_or(Value::Null);
        }
        value
    }
}

/// The name of an event kind, for people.
pub(crate) fn kind_name(body: &EventBody) -> &'static str {
    match body {
        EventBody::ActivityCompleted { .. } => "ActivityCompleted",
        EventBody::ActivityAttemptFailed { .. } => "ActivityAttemptFailed",
        EventBody::TimerStarted { .. } => "TimerStarted",
        EventBody::TimerFired => "TimerFired",
        EventBody::SignalWaitStarted { .. } => "SignalWaitStarted",
        EventBody::SignalReceived { .. } => "SignalReceived",
        EventBody::SignalTimedOut { .. } => "SignalTimedOut",
        EventBody::SideEffect { .. } => "SideEffect",
        EventBody::ChildStarted { .. } => "ChildStarted",
        EventBody::RunFinished { .. } => "RunFinished",
        EventBody::Interrupted { .. } => "Interrupted",
        EventBody::StatePublished { .. } => "StatePublished",
        EventBody::PatchMarker { .. } => "PatchMarker",
        EventBody::SelectWinner { .. } => "SelectWinner",
        EventBody::ActivityAttemptStarted { .. } => "ActivityAttemptStarted",
        EventBody::Operator { .. } => "Operator",
    }
}
