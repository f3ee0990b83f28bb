//! Where the CLI finds runs: a running service's admin API ([`http`]) or a journal opened directly
//! ([`journal`]), behind one trait that speaks the admin API's JSON, so both print the same.

pub(crate) mod http;
pub(crate) mod journal;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::exit::CliError;

/// An action on one run, as the admin API's request bodies describe it.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Signal {
        name: String,
        payload: Value,
    },
    Cancel {
        reason: Option<String>,
    },
    Pause {
        reason: Option<String>,
    },
    Resume,
    Retry,
    Terminate {
        reason: Option<String>,
    },
    Fork {
        from_step: u32,
        new_id: String,
        input: Option<Value>,
    },
}

impl Action {
    /// The verb's name (the admin API's path segment).
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            Action::Signal { .. } => "signal",
            Action::Cancel { .. } => "cancel",
            Action::Pause { .. } => "pause",
            Action::Resume => "resume",
            Action::Retry => "retry",
            Action::Terminate { .. } => "terminate",
            Action::Fork { .. } => "fork",
        }
    }

    /// The request body.
    pub(crate) fn body(&self) -> Value {
        let with_reason = |reason: &Option<String>| match reason {
            Some(reason) => serde_json::json!({ "reason": reason }),
            None => serde_json::json!({}),
        };
        match self {
            Action::Signal { name, payload } => {
                serde_json::json!({ "name": name, "payload": payload })
            }
            Action::Cancel { reason } | Action::Pause { reason } | Action::Terminate { reason } => {
                with_reason(reason)
            }
            Action::Resume | Action::Retry => serde_json::json!({}),
            Action::Fork {
                from_step,
                new_id,
                input,
            } => {
                let mut body = serde_json::json!({ "from_step": from_step, "new_id": new_id });
                if let Some(input) = input {
                    body["input"] = input.clone();
                }
                body
            }
        }
    }
}

/// What a live watch follows.
#[derive(Debug, Clone)]
pub(crate) enum Watched {
    /// One run: events `run` (its description) and `gone`.
    Run(String),
    /// The run list with these filters: events `runs` (a page).
    List(Vec<(String, String)>),
}

/// Called with each live event (`run`, `runs`, `gone`, `error`) and its data; `Ok(false)` stops.
pub(crate) type Sink<'a> = dyn FnMut(&str, Value) -> Result<bool, CliError> + Send + 'a;

/// Reports a bulk action's progress: (matched, done so far).
pub(crate) type Progress = dyn Fn(u64, u64) + Send + Sync;

/// One way of reaching runs. Every answer is the admin API's JSON for the same request.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// `GET /api/v1/runs?pairs`: `{"runs": [...], "next": ...}`.
    async fn list(&self, pairs: &[(String, String)]) -> Result<Value, CliError>;
    /// `GET /api/v1/runs/{id}`: the run's description.
    async fn describe(&self, id: &str) -> Result<Value, CliError>;
    /// `POST /api/v1/runs/{id}/{verb}`.
    async fn act(&self, id: &str, action: &Action) -> Result<Value, CliError>;
    /// `POST /api/v1/bulk/{verb}` with the filters and options as fields.
    async fn bulk(
        &self,
        verb: &str,
        fields: Map<String, Value>,
        progress: Box<Progress>,
    ) -> Result<Value, CliError>;
    /// Follows `watched` live, calling `sink` with each change until it returns `false`, the run is
    /// gone, or the stream ends.
    async fn watch(
        &self,
        watched: &Watched,
        interval: Duration,
        sink: &mut Sink<'_>,
    ) -> Result<(), CliError>;
    /// `GET /api/v1/runs/{id}/export`: the run's export document.
    async fn export(&self, id: &str) -> Result<Value, CliError>;
    /// `POST /api/v1/import` `{"export", "new_id"}`: `{"workflow_id", ...}`.
    async fn import(&self, body: Map<String, Value>) -> Result<Value, CliError>;
    /// `POST /api/v1/replay-check` `{"exports"} | {"ids"} | {"where"}`: the report.
    async fn replay_check(&self, body: Map<String, Value>) -> Result<Value, CliError>;
    /// A note printed after an action that this backend leaves to another process.
    fn after_action_note(&self, _action: &Action) -> Option<String> {
        None
    }
    /// Releases what the backend holds (an engine, a journal's ownership).
    async fn close(&self) {}
}
