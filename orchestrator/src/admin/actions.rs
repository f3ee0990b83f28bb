//! Mutating endpoints: signal, cancel, the repair verbs and their bulk forms. Each records the
//! caller's identity (its token's, or `"local"`) as the actor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Actor;
use super::body::{JsonBody, RunId};
use super::errors::ApiError;
use super::server::AdminState;
use crate::engine::Fork;

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
        let workflow = engine.workflow(&source.workflow_name).ok_or_else(|| {
            ApiError::from(crate::error::Error::UnregisteredWorkflow {
                name: source.workflow_name.clone(),
            })
        })?;
        let encoded = workflow
            .encode_input_json(input, &engine.codec())
            .map_err(|message| ApiError::bad_request("bad_payload", message))?;
        fork = fork.encoded_input(encoded);
    }
    audit(&actor, "fork", &id);
    let handle = engine.fork(&id, fork).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": handle.workflow_id(),
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
    Json(json!({ "id": id, "action": action, "actor": actor.as_str(), "done": true }))
}
