//! Mutating endpoints: signal, cancel, the repair verbs and their bulk forms. Each records the
//! caller's identity (its token's, or `"local"`) as the actor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Actor;
use super::body::{JsonBody, RunId};
use super::errors::ApiError;
use super::server::AdminState;
use crate::engine::{BulkAction, BulkOptions, Fork};

/// The body of `POST /api/v1/runs/{id}/cancel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// Why (the workflow sees it in `WorkflowError::Cancelled`).
    reason: Option<String>,
}

/// `POST /api/v1/runs/{id}/cancel` `{"reason": ".."}`: cancels the run (its compensations run).
pub(crate) async fn cancel(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    RunId(id): RunId,
    JsonBody(body): JsonBody<CancelBody>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    let reason = body
        .reason
        .unwrap_or_else(|| format!("cancelled by {} through the admin API", actor.as_str()));
    audit(&actor, "cancel", &id);
    engine.cancel(&id, &reason).await?;
    Ok(done(&actor, "cancel", &id))
}

/// The body of an action that takes a reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    /// Why (recorded in the run's audit event).
    reason: Option<String>,
}

fn reason_or_default(reason: Option<String>, actor: &Actor, verb: &str) -> String {
    reason.unwrap_or_else(|| format!("{verb} by {} through the admin API", actor.as_str()))
}

/// `POST /api/v1/runs/{id}/pause` `{"reason": ".."}`: the run starts no new step or attempt until
/// resumed (see `Engine::pause`).
pub(crate) async fn pause(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    RunId(id): RunId,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    let reason = reason_or_default(body.reason, &actor, "paused");
    audit(&actor, "pause", &id);
    engine.pause(&id, actor.as_str(), &reason).await?;
    Ok(done(&actor, "pause", &id))
}

/// `POST /api/v1/runs/{id}/resume` `{}`: lifts a pause (see `Engine::resume`).
pub(crate) async fn resume(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    RunId(id): RunId,
    JsonBody(NoParameters {}): JsonBody<NoParameters>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    audit(&actor, "resume", &id);
    engine.resume(&id, actor.as_str()).await?;
    Ok(done(&actor, "resume", &id))
}

/// `POST /api/v1/runs/{id}/terminate` `{"reason": ".."}`: ends the run at once, without
/// compensations (see `Engine::terminate`).
pub(crate) async fn terminate(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    RunId(id): RunId,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    let reason = reason_or_default(body.reason, &actor, "terminated");
    audit(&actor, "terminate", &id);
    engine.terminate(&id, actor.as_str(), &reason).await?;
    Ok(done(&actor, "terminate", &id))
}

/// `POST /api/v1/bulk/{verb}` `{filters.., "dry_run": bool, "limit": n, "reason": ".."}`: applies
/// `pause`, `resume`, `retry`, `terminate` or `cancel` to every run the filters match (those of
/// `GET /api/v1/runs`, as JSON fields) and returns the report (see `Engine::bulk`).
pub(crate) async fn bulk(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Path(verb): Path<String>,
    body: Result<JsonBody<serde_json::Map<String, Value>>, ApiError>,
) -> Result<Json<Value>, ApiError> {
    if !matches!(
        verb.as_str(),
        "pause" | "resume" | "retry" | "terminate" | "cancel"
    ) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_endpoint",
            format!(
                "no bulk verb `{}`; the bulk verbs are pause, resume, retry, terminate and cancel",
                crate::limits::shortened(&verb)
            ),
        ));
    }
    let JsonBody(fields) = body?;
    let request = bulk_request(&verb, fields, actor.as_str())?;
    let dry_run = request.options.is_dry_run();
    let engine = state.engine()?;
    tracing::info!(actor = actor.as_str(), action = %verb, dry_run, "admin API bulk action");
    let report = engine
        .bulk(&request.query, request.action, request.options)
        .await?;
    Ok(Json(bulk_report_json(&verb, actor.as_str(), &report)))
}

/// A bulk request checked: what it matches, what it does, how.
pub(crate) struct BulkRequest {
    pub(crate) query: crate::store::RunQuery,
    pub(crate) action: BulkAction,
    pub(crate) options: BulkOptions,
}

/// Checks the body of `POST /api/v1/bulk/{verb}` (`verb` already checked): `dry_run`, `limit`,
/// `reason` and the list filters. Shared with the CLI's direct journal backend.
pub(crate) fn bulk_request(
    verb: &str,
    mut fields: serde_json::Map<String, Value>,
    actor: &str,
) -> Result<BulkRequest, ApiError> {
    let actor = Actor(Arc::from(actor));
    let invalid = |message: String| ApiError::bad_request("invalid_body", message);
    let dry_run = match fields.remove("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(dry_run)) => dry_run,
        Some(_) => return Err(invalid("`dry_run` is true or false".to_string())),
    };
    let limit = match fields.remove("limit") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().filter(|limit| *limit > 0).ok_or_else(|| {
            invalid("`limit` is the most runs to act on, a positive integer".to_string())
        })?),
    };
    let reason = match fields.remove("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(reason)) => Some(reason),
        Some(_) => return Err(invalid("`reason` is a string".to_string())),
    };
    // The filters, as the list endpoint's query parameters.
    let mut pairs = Vec::new();
    for (key, value) in fields {
        let mut push = |value: &Value| -> Result<(), ApiError> {
            let text = match value {
                Value::String(text) => text.clone(),
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
            Ok(())
        };
        match &value {
            Value::Array(values) if key == "status" => {
                for value in values {
                    push(value)?;
                }
            }
            value => push(value)?,
        }
    }
    let query = super::runs::run_query(&pairs, &[]).map_err(|error| invalid(error.message))?;
    let action = match verb {
        "pause" => BulkAction::Pause {
            reason: reason_or_default(reason, &actor, "paused"),
        },
        "resume" => BulkAction::Resume,
        "retry" => BulkAction::Retry,
        "terminate" => BulkAction::Terminate {
            reason: reason_or_default(reason, &actor, "terminated"),
        },
        _ => BulkAction::Cancel {
            reason: reason_or_default(reason, &actor, "cancelled"),
        },
    };
    let mut options = BulkOptions::new(actor.as_str()).dry_run(dry_run);
    if let Some(limit) = limit {
        options = options.limit(limit);
    }
    Ok(BulkRequest {
        query,
        action,
        options,
    })
}

/// The answer to a bulk action: its report as JSON.
pub(crate) fn bulk_report_json(verb: &str, actor: &str, report: &crate::BulkReport) -> Value {
    json!({
        "action": verb,
        "actor": actor,
        "dry_run": report.dry_run,
        "matched": report.matched,
        "applied": report.applied,
        "skipped": report.skipped,
        "failed": report.failed,
        "first_ids": report.first_ids,
        "problems": report.problems.iter().map(|problem| {
            let error = ApiError::of(&problem.error);
            json!({ "workflow_id": problem.workflow_id, "code": error.code, "message": error.message })
        }).collect::<Vec<_>>(),
        "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The body of `POST /api/v1/runs/{id}/signal`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignalBody {
    /// The signal's name.
    name: String,
    /// Its payload, as JSON of the signal's type (`null` when absent).
    #[serde(default)]
    payload: Value,
}

/// `POST /api/v1/runs/{id}/signal` `{"name": "..", "payload": ..}`: sends a signal, its JSON payload
/// converted through the signal's type in the engine's catalog (see `Engine::signal_json`).
pub(crate) async fn signal(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    RunId(id): RunId,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    audit(&actor, "signal", &id);
    engine.signal_json(&id, &body.name, body.payload).await?;
    Ok(done(&actor, "signal", &id))
}

/// The body of an action that takes no parameters (`{}`, or empty).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParameters {}

/// `POST /api/v1/runs/{id}/retry` `{}`: drives a failed, parked or compensation-failed run again on
/// the current code (see `Engine::retry`).
pub(crate) async fn retry(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    RunId(id): RunId,
    JsonBody(NoParameters {}): JsonBody<NoParameters>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    audit(&actor, "retry", &id);
    engine.retry(&id, actor.as_str()).await?;
    Ok(done(&actor, "retry", &id))
}

/// The body of `POST /api/v1/runs/{id}/fork`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForkBody {
    /// The first step not copied (1: copy nothing).
    from_step: u32,
    /// The new run's workflow id.
    new_id: String,
    /// A replacement workflow input, as JSON of the workflow's input type.
    input: Option<Value>,
}

/// `POST /api/v1/runs/{id}/fork` `{"from_step": N, "new_id": "..", "input": ..}`: a new run replaying
/// the source's journal before step N, then live (see `Engine::fork`). `201` with the new id.
pub(crate) async fn fork(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    RunId(id): RunId,
    JsonBody(body): JsonBody<ForkBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let engine = state.engine()?;
    crate::limits::check_workflow_id(&body.new_id)?;
    let mut fork = Fork::new(body.from_step, body.new_id.clone()).actor(actor.as_str());
    if let Some(input) = body.input {
        let source = engine.run_record(&id).await?;
        if engine.workflow(&source.workflow_name).is_none() {
            return Err(crate::error::Error::UnregisteredWorkflow {
                name: source.workflow_name,
            }
            .into());
        }
        fork = fork.encoded_input(engine.input_from_json(&source.workflow_name, input)?);
    }
    audit(&actor, "fork", &id);
    let handle = engine.fork(&id, fork).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "workflow_id": handle.workflow_id(),
            "forked_from": id,
            "from_step": body.from_step,
            "action": "fork",
            "actor": actor.as_str(),
            "done": true,
        })),
    ))
}

/// Logs an action with its actor (the journal records it too where the engine's verb takes one).
fn audit(actor: &Actor, action: &str, id: &str) {
    tracing::info!(
        actor = actor.as_str(),
        action,
        workflow_id = %crate::limits::shortened(id),
        "admin API action"
    );
}

/// The answer to an action that was applied.
fn done(actor: &Actor, action: &str, id: &str) -> Json<Value> {
    Json(json!({ "workflow_id": id, "action": action, "actor": actor.as_str(), "done": true }))
}
