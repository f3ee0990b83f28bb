//! Exported histories over the admin API: export one run, import one, and replay-check histories
//! (exported ones sent in the body, or stored ones by id or filters) on the service's own code.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::auth::Actor;
use super::body::{JsonBody, RunId};
use super::errors::ApiError;
use super::server::AdminState;
use crate::engine::Engine;
use crate::export::{ImportOptions, RunExport};
use crate::replay::{ReplayReport, ReplaySource};

/// The replay-check endpoint: a POST that changes nothing (served by read-only servers too).
pub(crate) const REPLAY_CHECK_PATH: &str = "/api/v1/replay-check";

/// The most stored runs one replay-check request names by id.
pub(crate) const MAX_REPLAY_IDS: usize = 1_000;

/// `GET /api/v1/runs/{id}/export`: the run's history as an export document (see `docs/journal.md`,
/// "Exported histories").
pub(crate) async fn export(
    State(state): State<Arc<AdminState>>,
    RunId(id): RunId,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    Ok(Json(export_json(&engine, &id).await?))
}

/// A run's export as JSON.
pub(crate) async fn export_json(engine: &Engine, id: &str) -> Result<Value, ApiError> {
    let export = engine.export_run(id).await?;
    serde_json::to_value(&export).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the export could not be serialized: {error}"),
        )
    })
}

/// `POST /api/v1/import` `{"export": {...}, "new_id": ".."}`: recreates an exported run (an
/// unfinished one paused) and answers `201` with its id.
pub(crate) async fn import(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let engine = state.engine()?;
    let id = import_body(&engine, body).await?;
    tracing::info!(actor = actor.as_str(), workflow_id = %crate::limits::shortened(&id), "admin API import");
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "workflow_id": id, "action": "import", "actor": actor.as_str(), "done": true }),
        ),
    ))
}

/// Checks and applies an import request; returns the new run's id. Shared with the CLI's journal
/// backend.
pub(crate) async fn import_body(
    engine: &Engine,
    mut body: Map<String, Value>,
) -> Result<String, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_body", message);
    let export = body
        .remove("export")
        .ok_or_else(|| invalid("the body needs `export`: a run export document".to_string()))?;
    let new_id = match body.remove("new_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err(invalid("`new_id` is a string".to_string())),
    };
    if let Some(key) = body.keys().next() {
        return Err(invalid(format!(
            "unknown field `{}`; an import takes `export` and `new_id`",
            crate::limits::shortened(key)
        )));
    }
    let export = parse_export(&export)?;
    let mut options = ImportOptions::new();
    if let Some(id) = new_id {
        crate::limits::check_workflow_id(&id)?;
        options = options.new_id(id);
    }
    Ok(engine.import_run(export, options).await?)
}

/// An export document, through its bounded and validated parser.
fn parse_export(value: &Value) -> Result<RunExport, ApiError> {
    let text = value.to_string();
    RunExport::from_json(text.as_bytes())
        .map_err(|error| ApiError::bad_request("bad_export", error.to_string()))
}

/// `POST /api/v1/replay-check` `{"exports": [...]} | {"ids": [...]} | {"where": {filters}}`: replays
/// the histories on this service's code, executing nothing, and answers the report (`200` whether
/// or not every history replays: see `ok` and each run's `outcome`).
pub(crate) async fn replay_check(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    let source = replay_source(&engine, body).await?;
    tracing::info!(actor = actor.as_str(), "admin API replay check");
    let report = engine.replay_check(source).await?;
    Ok(Json(report_json(&report)?))
}

/// What a replay-check request replays. Shared with the CLI's journal backend.
pub(crate) async fn replay_source(
    engine: &Engine,
    mut body: Map<String, Value>,
) -> Result<ReplaySource, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_body", message);
    let exports = body.remove("exports");
    let ids = body.remove("ids");
    let filters = body.remove("where");
    if let Some(key) = body.keys().next() {
        return Err(invalid(format!(
            "unknown field `{}`; a replay check takes `exports`, `ids` or `where`",
            crate::limits::shortened(key)
        )));
    }
    match (exports, ids, filters) {
        (Some(Value::Array(documents)), None, None) => {
            let exports = documents
                .iter()
                .map(parse_export)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ReplaySource::Exports(exports))
        }
        (None, Some(Value::Array(ids)), None) => {
            if ids.len() > MAX_REPLAY_IDS {
                return Err(invalid(format!(
                    "at most {MAX_REPLAY_IDS} ids per request (use `where` for more)"
                )));
            }
            let mut exports = Vec::with_capacity(ids.len());
            for id in &ids {
                let Value::String(id) = id else {
                    return Err(invalid("`ids` holds workflow ids (strings)".to_string()));
                };
                crate::limits::check_workflow_id(id)?;
                exports.push(engine.export_run(id).await?);
            }
            Ok(ReplaySource::Exports(exports))
        }
        (None, None, Some(Value::Object(filters))) => {
            let mut pairs = Vec::new();
            for (key, value) in filters {
                let values = match value {
                    Value::Array(values) if key == "status" => values,
                    other => vec![other],
                };
                for value in values {
                    let text = match value {
                        Value::String(text) => text,
                        Value::Bool(flag) => flag.to_string(),
                        Value::Number(number) => number.to_string(),
                        _ => {
                            return Err(invalid(format!(
                                "the filter `{}` takes a string, number or boolean",
                                crate::limits::shortened(&key)
                            )));
                        }
                    };
                    pairs.push((key.clone(), text));
                }
            }
            let query = super::runs::run_query(&pairs, &[])
                .map_err(|error| invalid(error.message))?;
            Ok(ReplaySource::EngineStore(query))
        }
        _ => Err(invalid(
            "give exactly one of `exports` (an array of export documents), `ids` (an array of workflow ids) or `where` (the filters of GET /api/v1/runs)".to_string(),
        )),
    }
}

/// A replay report as JSON, with `ok` (every history replays) and the counts.
pub(crate) fn report_json(report: &ReplayReport) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(report).map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the report could not be serialized: {error}"),
        )
    })?;
    value["ok"] = Value::Bool(report.is_ok());
    value["checked"] = report.runs.len().into();
    value["failing"] = report.failures().count().into();
    value["nondeterministic"] = report.nondeterministic().count().into();
    Ok(value)
}
