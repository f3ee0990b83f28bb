//! The operator's repair verbs that rewrite a run's journal: [`Engine::retry`] (drive a failed or
//! parked run again, on the current code) and [`Engine::fork`] (a new run from a prefix of another
//! run's journal). Each is one store transaction carrying its audit annotation
//! ([`EventBody::Operator`]), so it survives a crash at any point and is recorded in the run's own
//! history. See `docs/operations.md`.

mod fork;
mod retry;

pub use fork::Fork;

use super::Engine;
use crate::clock::now_ms;
use crate::error::Error;
use crate::journal::{Event, EventBody, OperatorAction, encode_event};
use crate::store::NewEvent;

impl Engine {
    /// Encodes an operator annotation (step 0) by `actor`, timed now.
    pub(crate) fn operator_event(
        &self,
        action: OperatorAction,
        actor: &str,
    ) -> Result<NewEvent, Error> {
        let event = Event {
            step: 0,
            body: EventBody::Operator {
                action,
                actor: actor.to_string(),
                at_ms: now_ms(),
            },
        };
        Ok(encode_event(&self.codec(), &event)?)
    }
}

/// The refusal of an operator action.
fn not_applicable(workflow_id: &str, action: &'static str, reason: impl Into<String>) -> Error {
    Error::NotApplicable {
        workflow_id: workflow_id.to_string(),
        action,
        reason: reason.into(),
    }
}
