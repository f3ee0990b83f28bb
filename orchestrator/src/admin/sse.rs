//! Live updates over Server-Sent Events: one run (`GET /api/v1/runs/{id}/stream`) or a run list
//! (`GET /api/v1/stream/runs?filters`). Each stream re-reads the store every `sse_poll_interval` and
//! sends an event when what it watches changed (a run's event then carries its `Engine::describe`),
//! so it sees runs that other nodes drive too. The first event is the current state. Streams are
//! bounded (`max_streams`) and end when the server stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::body::{QueryPairs, RunId};
use super::errors::ApiError;
use super::runs::{page_json, run_query, summary};
use super::server::AdminState;
use crate::engine::Engine;
use crate::error::Error;
use crate::store::RunQuery;

/// What a stream watches.
enum Watched {
    Run(String),
    List(RunQuery),
}

/// One live stream's state, carried from event to event.
struct Watch {
    state: Arc<AdminState>,
    watched: Watched,
    /// Held for the stream's life: one of the server's stream slots.
    _permit: OwnedSemaphorePermit,
    /// What the last event showed (to send only changes).
    last: Option<String>,
    started: bool,
    ended: bool,
    sequence: u64,
}

type EventStream = Sse<
    axum::response::sse::KeepAliveStream<
        std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>,
    >,
>;

/// `GET /api/v1/runs/{id}/stream`: events `run` (the run, whenever it changed) and `gone`.
pub(crate) async fn run_stream(
    State(state): State<Arc<AdminState>>,
    RunId(id): RunId,
) -> Result<EventStream, ApiError> {
    let engine = state.engine()?;
    engine.run_record(&id).await?;
    open(state, Watched::Run(id))
}

/// `GET /api/v1/stream/runs?filters`: events `runs` (the page, whenever it changed).
pub(crate) async fn list_stream(
    State(state): State<Arc<AdminState>>,
    QueryPairs(pairs): QueryPairs,
) -> Result<EventStream, ApiError> {
    let query = run_query(&pairs, &[])?;
    open(state, Watched::List(query))
}

fn open(state: Arc<AdminState>, watched: Watched) -> Result<EventStream, ApiError> {
    let permit = state.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!(
                "this server already serves {} live streams (its `max_streams`); close one or try again later",
                state.config.max_streams
            ),
        )
    })?;
    let interval = state.config.sse_poll_interval;
    let watch = Watch {
        state,
        watched,
        _permit: permit,
        last: None,
        started: false,
        ended: false,
        sequence: 0,
    };
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        let event = watch.next_event().await?;
        Some((Ok(event), watch))
    });
    // Comments keep idle connections alive and let a closed client free its slot soon.
    let keep_alive = (interval * 4).clamp(Duration::from_secs(1), Duration::from_secs(15));
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)))
}

impl Watch {
    /// Waits for the next change and returns its event; `None` ends the stream.
    async fn next_event(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let mut stop = self.state.stop.clone();
        loop {
            if self.started {
                tokio::select! {
                    _ = tokio::time::sleep(self.state.config.sse_poll_interval) => {}
                    _ = stop.wait_for(|stop| *stop) => return None,
                }
            }
            self.started = true;
            if *stop.borrow() {
                return None;
            }
            let engine = self.state.engine().ok()?;
            let (name, data) = match self.read(&engine).await {
                Ok(data) => (self.kind(), data),
                Err(Error::NotFound { .. }) => {
                    self.ended = true;
                    ("gone", serde_json::json!({ "status": "gone" }))
                }
                Err(error) => {
                    let error = ApiError::from(error);
                    (
                        "error",
                        serde_json::json!({ "error": { "code": error.code, "message": error.message } }),
                    )
                }
            };
            let text = data.to_string();
            if self.last.as_deref() == Some(text.as_str()) {
                continue;
            }
            self.last = Some(text);
            // A run's event carries its whole description, read once it changed.
            let (name, data) = match (&self.watched, name) {
                (Watched::Run(id), "run") => match super::runs::description(&engine, id).await {
                    Ok(description) => ("run", description),
                    Err(error) => (
                        "error",
                        serde_json::json!({ "error": { "code": error.code, "message": error.message } }),
                    ),
                },
                (_, name) => (name, data),
            };
            self.sequence += 1;
            return Some(
                Event::default()
                    .event(name)
                    .id(self.sequence.to_string())
                    .data(data.to_string()),
            );
        }
    }

    fn kind(&self) -> &'static str {
        match self.watched {
            Watched::Run(_) => "run",
            Watched::List(_) => "runs",
        }
    }

    /// What the stream watches now, as a fingerprint (compared to send only changes).
    async fn read(&self, engine: &Engine) -> Result<Value, Error> {
        match &self.watched {
            Watched::Run(id) => {
                let record = engine.run_record(id).await?;
                let store = engine.store();
                let history = store.history(id).await?;
                let pending = store.pending_signals(id).await?;
                let mut data = summary(&record, engine.codec());
                data["journal_events"] = history.len().into();
                data["last_event_seq"] = history.last().map(|event| event.seq).into();
                data["pending_signals"] = pending.len().into();
                Ok(data)
            }
            Watched::List(query) => {
                let page = engine.list_runs(query).await?;
                Ok(page_json(&page, engine.codec()))
            }
        }
    }
}
