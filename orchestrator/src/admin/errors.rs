//! The admin API's errors: a status code and `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::store::StoreError;

/// An error answered to an admin API request.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    /// A stable, machine-readable code (`not_found`, `unauthorized`, ...).
    pub(crate) code: &'static str,
    /// What went wrong and what to do, for a person.
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub(crate) fn not_found_route() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_endpoint",
            "no such endpoint; the endpoints are listed in docs/operations.md (Admin HTTP API)",
        )
    }

    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take this method (actions are POST, views are GET)",
        )
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError::of(&error)
    }
}

impl ApiError {
    /// The answer to an engine error.
    pub(crate) fn of(error: &Error) -> Self {
        let message = error.to_string();
        let (status, code) = match error {
            Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Error::RunFinished { .. } => (StatusCode::CONFLICT, "run_finished"),
            Error::NotApplicable { .. } => (StatusCode::CONFLICT, "not_applicable"),
            Error::WorkflowIdConflict { .. } => (StatusCode::CONFLICT, "workflow_id_conflict"),
            Error::UnregisteredWorkflow { .. } => (StatusCode::CONFLICT, "unregistered_workflow"),
            Error::InvalidIdentifier { .. } => (StatusCode::BAD_REQUEST, "invalid_identifier"),
            Error::Codec(_) | Error::InvalidJson { .. } => (StatusCode::BAD_REQUEST, "bad_payload"),
            Error::Export(_) => (StatusCode::BAD_REQUEST, "bad_export"),
            Error::UnknownPayloadType { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown_payload_type")
            }
            Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::Store(store) if store.is_retryable() => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            Error::Store(StoreError::Closed) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::warn!(%error, "admin API request failed");
        }
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"orchestrator\""),
            );
        }
        response
    }
}
