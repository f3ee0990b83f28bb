//! Read-only endpoints: liveness, readiness, the run list and one run.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::body::{QueryPairs, RunId};
use super::errors::ApiError;
use super::server::AdminState;
use crate::codec::Codec;
use crate::engine::RunStatus;
use crate::store::{RunPage, RunQuery, RunRecord, RunState};

/// The most runs one page lists.
pub(crate) const MAX_PAGE: usize = 1_000;

/// `GET /api/v1/health`: the server answers (no token needed).
pub(crate) async fn health() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

/// `GET /api/v1/ready`: `200` once every run unfinished at start has been resumed, `503` before
/// (and while shutting down).
pub(crate) async fn ready(State(state): State<Arc<AdminState>>) -> Result<Response, ApiError> {
    let engine = state.engine()?;
    if engine.is_recovered() && !engine.is_shutting_down() {
        Ok(Json(json!({ "status": "ready" })).into_response())
    } else {
        Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "recovering" })),
        )
            .into_response())
    }
}

/// `GET /api/v1/workflows`: the workflow types this engine has registered.
pub(crate) async fn workflows(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    Ok(Json(json!({ "workflows": engine.workflow_names() })))
}

/// `GET /api/v1/runs?status=..&type=..&id_prefix=..&after=..&limit=..`: one page of runs.
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let query = run_query(&pairs, &[])?;
    let engine = state.engine()?;
    let page = engine.list_runs(&query).await?;
    Ok(Json(page_json(&page, engine.codec())))
}

/// `GET /api/v1/runs/{id}`: everything known about one run (`Engine::describe`).
pub(crate) async fn describe(
    State(state): State<Arc<AdminState>>,
    RunId(id): RunId,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    Ok(Json(description(&engine, &id).await?))
}

/// `GET /api/v1/runs/{id}/timeline`: the run's step-by-step timeline, with its blocked-on line.
pub(crate) async fn timeline(
    State(state): State<Arc<AdminState>>,
    RunId(id): RunId,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    let description = engine.describe(&id).await?;
    Ok(Json(json!({
        "workflow_id": description.workflow_id,
        "state": description.state,
        "blocked_on": description.blocked_on,
        "blocked_on_text": description.blocked_on_text,
        "history_len": description.history_len,
        "timeline": description.timeline,
    })))
}

/// A run's description as JSON.
pub(crate) async fn description(engine: &crate::Engine, id: &str) -> Result<Value, ApiError> {
    let description = engine.describe(id).await?;
    serde_json::to_value(&description).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the run's description could not be serialized: {error}"),
        )
    })
}

/// The JSON of a page of runs: `{"runs": [..], "next": cursor or null}`.
pub(crate) fn page_json(page: &RunPage, codec: Codec) -> Value {
    json!({
        "runs": page.runs.iter().map(|run| summary(run, codec)).collect::<Vec<_>>(),
        "next": page.next,
    })
}

/// A run's row as JSON, with the field names of the run's own view (`Engine::describe`), its
/// payloads left out.
pub(crate) fn summary(run: &RunRecord, codec: Codec) -> Value {
    let error = match run.state {
        RunState::Running | RunState::Completed => None,
        _ => Some(match RunStatus::from_record(run, codec) {
            Ok(RunStatus::Failed(error))
            | Ok(RunStatus::Cancelled(error))
            | Ok(RunStatus::CompensationFailed(error)) => error.to_string(),
            Ok(RunStatus::Parked(reason)) => reason.to_string(),
            Ok(RunStatus::Terminated(termination)) => format!(
                "terminated by {}: {}",
                termination.actor, termination.reason
            ),
            Ok(_) => String::new(),
            Err(error) => format!("(undecodable: {error})"),
        }),
    };
    json!({
        "workflow_id": run.workflow_id,
        "workflow_name": run.workflow_name,
        "state": state_name(run.state),
        "run_no": run.run_no,
        "parent_id": run.parent_id,
        "outcome": error,
        "cancel_requested": run.cancel_reason,
        "paused": run.paused.as_ref().map(|pause| json!({
            "by": pause.by,
            "reason": pause.reason,
            "at_ms": pause.at_ms,
        })),
        "created_at_ms": run.created_at_ms,
        "updated_at_ms": run.updated_at_ms,
        "deadline_ms": run.deadline_ms,
    })
}

/// The name of a state in the API (`running`, `compensation_failed`, ...).
pub(crate) fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Completed => "completed",
        RunState::Failed => "failed",
        RunState::Parked => "parked",
        RunState::Cancelled => "cancelled",
        RunState::CompensationFailed => "compensation_failed",
        RunState::Terminated => "terminated",
    }
}

fn parse_state(name: &str) -> Option<RunState> {
    Some(match name {
        "running" => RunState::Running,
        "completed" => RunState::Completed,
        "failed" => RunState::Failed,
        "parked" => RunState::Parked,
        "cancelled" => RunState::Cancelled,
        "compensation_failed" => RunState::CompensationFailed,
        "terminated" => RunState::Terminated,
        _ => return None,
    })
}

/// The filters of a run list, from query parameters (or a bulk request's fields, as pairs):
/// `status` (repeatable, or comma-separated), `type`, `id_prefix`, `after`, `limit` (1 to 1,000).
/// Parameters not listed here nor in `extra` are refused, so a misspelt filter is not silently
/// ignored.
pub(crate) fn run_query(pairs: &[(String, String)], extra: &[&str]) -> Result<RunQuery, ApiError> {
    let mut query = RunQuery::new();
    for (key, value) in pairs {
        match key.as_str() {
            "status" => {
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let state = parse_state(name).ok_or_else(|| {
                        ApiError::bad_request(
                            "bad_query",
                            format!(
                                "unknown status `{}`; use running, completed, failed, parked, cancelled, compensation_failed or terminated",
                                crate::limits::shortened(name)
                            ),
                        )
                    })?;
                    query = query.state(state);
                }
            }
            "type" => query = query.workflow_name(value),
            "paused" => {
                let paused = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::bad_request(
                            "bad_query",
                            "`paused` is `true` or `false`",
                        ));
                    }
                };
                query = query.paused(paused);
            }
            "parent_id" => {
                crate::limits::check_workflow_id(value)?;
                query = query.parent_id(value);
            }
            "error_contains" => {
                if value.len() > crate::limits::MAX_NAME_BYTES {
                    return Err(ApiError::bad_request(
                        "bad_query",
                        "`error_contains` is longer than 1 KiB",
                    ));
                }
                query = query.error_contains(value);
            }
            "created_from_ms" | "created_until_ms" | "updated_from_ms" | "updated_until_ms" => {
                let ms: i64 = value.parse().map_err(|_| {
                    ApiError::bad_request(
                        "bad_query",
                        format!("`{key}` is a time in milliseconds since the Unix epoch"),
                    )
                })?;
                let (created, updated) = (
                    (query.created_from_ms, query.created_until_ms),
                    (query.updated_from_ms, query.updated_until_ms),
                );
                query = match key.as_str() {
                    "created_from_ms" => query.created_between(Some(ms), created.1),
                    "created_until_ms" => query.created_between(created.0, Some(ms)),
                    "updated_from_ms" => query.updated_between(Some(ms), updated.1),
                    _ => query.updated_between(updated.0, Some(ms)),
                };
            }
            "id_prefix" => {
                crate::limits::check_workflow_id(value)?;
                query = query.id_prefix(value);
            }
            "after" => {
                crate::limits::check_workflow_id(value)?;
                query = query.after(value);
            }
            "limit" => {
                let limit: usize = value.parse().map_err(|_| {
                    ApiError::bad_request(
                        "bad_query",
                        format!("`limit` must be a number from 1 to {MAX_PAGE}"),
                    )
                })?;
                query = query.limit(limit.clamp(1, MAX_PAGE));
            }
            other if extra.contains(&other) => {}
            other => {
                return Err(ApiError::bad_request(
                    "bad_query",
                    format!(
                        "unknown parameter `{}`; the filters are status, type, id_prefix, paused, parent_id, error_contains, created_from_ms, created_until_ms, updated_from_ms, updated_until_ms, after and limit",
                        crate::limits::shortened(other)
                    ),
                ));
            }
        }
    }
    Ok(query)
}
