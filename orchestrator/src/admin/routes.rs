//! The admin API's routes, all under `/api/v1/`, behind the [`guard`](super::auth::guard).

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use super::errors::ApiError;
use super::server::AdminState;
use super::{actions, auth, dashboard, history, runs, sse};

/// Every endpoint; anything else is a JSON `404` (`405` for a known path with another method).
pub(crate) fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/api/v1/health", get(runs::health))
        .route("/api/v1/ready", get(runs::ready))
        .route("/api/v1/workflows", get(runs::workflows))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/stream/runs", get(sse::list_stream))
        .route("/api/v1/runs/{id}", get(runs::describe))
        .route("/api/v1/runs/{id}/timeline", get(runs::timeline))
        .route("/api/v1/runs/{id}/stream", get(sse::run_stream))
        .route("/api/v1/runs/{id}/signal", post(actions::signal))
        .route("/api/v1/runs/{id}/cancel", post(actions::cancel))
        .route("/api/v1/runs/{id}/retry", post(actions::retry))
        .route("/api/v1/runs/{id}/pause", post(actions::pause))
        .route("/api/v1/runs/{id}/resume", post(actions::resume))
        .route("/api/v1/runs/{id}/terminate", post(actions::terminate))
        .route("/api/v1/bulk/{verb}", post(actions::bulk))
        .route("/api/v1/runs/{id}/fork", post(actions::fork))
        .route("/api/v1/runs/{id}/export", get(history::export))
        .route("/api/v1/import", post(history::import))
        .route(history::REPLAY_CHECK_PATH, post(history::replay_check))
        // The web dashboard: its pages, assets, sessions and counts.
        .merge(dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found_route()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
