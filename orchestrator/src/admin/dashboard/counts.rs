//! The dashboard's counts: runs by state for a run list's filters, and per workflow type.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::admin::body::QueryPairs;
use crate::admin::errors::ApiError;
use crate::admin::runs::{run_query, summary};
use crate::admin::server::AdminState;
use crate::store::{RunQuery, RunState};

/// How far back the workflows page looks for recent failures.
const RECENT_MS: i64 = 24 * 60 * 60 * 1000;

/// The most recent failures listed per workflow type.
const RECENT_FAILURES: usize = 5;

/// `GET /api/v1/counts?filters`: how many runs match the filters of `GET /api/v1/runs`, by state
/// (`after` and `limit` are accepted and ignored).
pub(crate) async fn counts(
    State(state): State<Arc<AdminState>>,
    QueryPairs(pairs): QueryPairs,
) -> Result<Json<Value>, ApiError> {
    let query = run_query(&pairs, &[])?;
    let engine = state.engine()?;
    let counts = engine.count_runs(&query).await?;
    Ok(Json(json!({ "counts": counts })))
}

/// `GET /api/v1/workflows/summary`: each registered workflow type with its runs counted by state,
/// how many failed (or were parked) in the last 24 hours, and a few of those.
pub(crate) async fn workflows(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.engine()?;
    let since = crate::clock::now_ms().saturating_sub(RECENT_MS);
    let mut types = Vec::new();
    for name in engine.workflow_names() {
        let counts = engine
            .count_runs(&RunQuery::new().workflow_name(name))
            .await?;
        let failures = RunQuery::new()
            .workflow_name(name)
            .state(RunState::Failed)
            .state(RunState::CompensationFailed)
            .state(RunState::Parked)
            .updated_between(Some(since), None);
        let recent = engine.count_runs(&failures).await?;
        let listed = engine
            .list_runs(&failures.limit(RECENT_FAILURES))
            .await?
            .runs
            .iter()
            .map(|run| summary(run, engine.codec()))
            .collect::<Vec<_>>();
        types.push(json!({
            "name": name,
            "counts": counts,
            "failed_last_24h": recent.total,
            "recent_failures": listed,
        }));
    }
    Ok(Json(json!({ "workflows": types })))
}
