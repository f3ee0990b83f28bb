//! The type catalog: which Rust type each journaled payload was encoded from, so a payload can be shown
//! as JSON (bincode is not self-describing) and JSON can be turned back into a payload.
//!
//! Workflow inputs and outputs come from registration; activity inputs and outputs from registration
//! or from the first `ctx.call` in this process; signal payloads and published state from the first
//! `ctx.signal::<T>` / `ctx.set_state::<T>` of a workflow type in this process, or declared on the
//! builder ([`EngineBuilder::signal_type`](crate::EngineBuilder::signal_type),
//! [`EngineBuilder::state_type`](crate::EngineBuilder::state_type)).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::codec::{Codec, CodecError};
use crate::definition::{Activity, Payload, Workflow};

type ToJson = fn(&Codec, &[u8]) -> Result<serde_json::Value, String>;
type FromJson = fn(&Codec, serde_json::Value) -> Result<Vec<u8>, String>;

/// One payload type, erased: decodes its bytes to JSON and encodes JSON to its bytes.
#[derive(Clone, Copy)]
pub(crate) struct PayloadType {
    pub(crate) type_name: &'static str,
    to_json: ToJson,
    from_json: FromJson,
}

impl std::fmt::Debug for PayloadType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.type_name)
    }
}

impl PayloadType {
    pub(crate) fn of<T: Payload>() -> Self {
        PayloadType {
            type_name: std::any::type_name::<T>(),
            to_json: to_json::<T>,
            from_json: from_json::<T>,
        }
    }

    /// The payload decoded with this type and re-encoded as JSON.
    pub(crate) fn render(self, codec: &Codec, bytes: &[u8]) -> Result<serde_json::Value, String> {
        (self.to_json)(codec, bytes)
    }

    /// `value` read as this type and encoded for the journal.
    pub(crate) fn parse(self, codec: &Codec, value: serde_json::Value) -> Result<Vec<u8>, String> {
        (self.from_json)(codec, value)
    }
}

fn to_json<T: Payload>(codec: &Codec, bytes: &[u8]) -> Result<serde_json::Value, String> {
    let value: T = codec
        .decode(bytes)
        .map_err(|error: CodecError| error.to_string())?;
    serde_json::to_value(&value).map_err(|error| error.to_string())
}

fn from_json<T: Payload>(codec: &Codec, value: serde_json::Value) -> Result<Vec<u8>, String> {
    let value: T = serde_json::from_value(value).map_err(|error| {
        format!(
            "JSON does not match `{}`: {error}",
            std::any::type_name::<T>()
        )
    })?;
    codec.encode(&value).map_err(|error| error.to_string())
}

/// The input and output types of a workflow or an activity.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signature {
    pub(crate) input: PayloadType,
    pub(crate) output: PayloadType,
}

impl Signature {
    pub(crate) fn workflow<W: Workflow>() -> Self {
        Signature {
            input: PayloadType::of::<W::Input>(),
            output: PayloadType::of::<W::Output>(),
        }
    }

    pub(crate) fn activity<A: Activity>() -> Self {
        Signature {
            input: PayloadType::of::<A::Input>(),
            output: PayloadType::of::<A::Output>(),
        }
    }
}

/// What an activity is known as: its types and its attempt budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActivityEntry {
    pub(crate) signature: Signature,
    pub(crate) max_attempts: u32,
}

impl ActivityEntry {
    pub(crate) fn of<A: Activity>() -> Self {
        ActivityEntry {
            signature: Signature::activity::<A>(),
            max_attempts: A::options().retry.max_attempts,
        }
    }
}

/// Payload types by workflow type, then name.
type Keyed = HashMap<String, HashMap<String, PayloadType>>;

fn lookup(table: &Keyed, workflow: &str, name: &str) -> Option<PayloadType> {
    table
        .get(workflow)
        .and_then(|names| names.get(name))
        .copied()
}

#[derive(Debug, Default)]
struct Tables {
    workflows: HashMap<String, Signature>,
    activities: HashMap<String, ActivityEntry>,
    /// By workflow type, then signal name.
    signals: Keyed,
    /// By workflow type, then key.
    states: Keyed,
    /// Activities registered as compensations, by name.
    compensations: std::collections::HashSet<String>,
}

/// The engine's type catalog (see the module documentation). Learning is idempotent: the first type
/// seen for a key stays.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    tables: RwLock<Tables>,
}

impl Catalog {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn learn_workflow<W: Workflow>(&self) {
        if self.read().workflows.contains_key(W::NAME) {
            return;
        }
        self.write()
            .workflows
            .entry(W::NAME.to_string())
            .or_insert_with(Signature::workflow::<W>);
    }

    pub(crate) fn learn_activity<A: Activity>(&self) {
        if self.read().activities.contains_key(A::NAME) {
            return;
        }
        self.write()
            .activities
            .entry(A::NAME.to_string())
            .or_insert_with(ActivityEntry::of::<A>);
    }

    pub(crate) fn learn_compensation<A: Activity>(&self) {
        self.learn_activity::<A>();
        if self.read().compensations.contains(A::NAME) {
            return;
        }
        self.write().compensations.insert(A::NAME.to_string());
    }

    pub(crate) fn learn_signal<T: Payload>(&self, workflow: &str, name: &str) {
        self.learn_keyed::<T>(
            workflow,
            name,
            |tables| &mut tables.signals,
            |tables| &tables.signals,
        );
    }

    pub(crate) fn learn_state<T: Payload>(&self, workflow: &str, key: &str) {
        self.learn_keyed::<T>(
            workflow,
            key,
            |tables| &mut tables.states,
            |tables| &tables.states,
        );
    }

    /// Learns `T` for (`workflow`, `name`) unless known: a read lock and no allocation when known
    /// (the common case: every `ctx.signal` / `ctx.set_state` call passes here).
    fn learn_keyed<T: Payload>(
        &self,
        workflow: &str,
        name: &str,
        table_mut: fn(&mut Tables) -> &mut Keyed,
        table: fn(&Tables) -> &Keyed,
    ) {
        if lookup(table(&self.read()), workflow, name).is_some() {
            return;
        }
        table_mut(&mut self.write())
            .entry(workflow.to_string())
            .or_default()
            .entry(name.to_string())
            .or_insert_with(PayloadType::of::<T>);
    }

    pub(crate) fn workflow(&self, name: &str) -> Option<Signature> {
        self.read().workflows.get(name).copied()
    }

    pub(crate) fn activity(&self, name: &str) -> Option<ActivityEntry> {
        self.read().activities.get(name).copied()
    }

    pub(crate) fn is_compensation(&self, name: &str) -> bool {
        self.read().compensations.contains(name)
    }

    pub(crate) fn signal(&self, workflow: &str, name: &str) -> Option<PayloadType> {
        lookup(&self.read().signals, workflow, name)
    }

    pub(crate) fn state(&self, workflow: &str, key: &str) -> Option<PayloadType> {
        lookup(&self.read().states, workflow, key)
    }
}
