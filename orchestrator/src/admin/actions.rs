//! Mutating endpoints: signal, cancel, the repair verbs and their bulk forms. Each records the
//! caller's identity (its token's, or `"local"`) as the actor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Actor;
use super::body::{JsonBody, RunId};
use super::errors::ApiError;
use super::server::AdminState;

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
