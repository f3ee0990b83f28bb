//! Extractors that turn hostile input into JSON errors: request bodies (size limit, JSON), run ids
//! in paths, and query strings.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::errors::ApiError;
use super::server::AdminState;

/// A JSON request body of at most the configured size. An empty body reads as `{}`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Arc<AdminState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AdminState>) -> Result<Self, ApiError> {
        let limit = state.config.body_limit;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over this server's limit of {limit} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        let mut stream = request.into_body().into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| {
                ApiError::bad_request(
                    "unreadable_body",
                    format!("the request body could not be read: {error}"),
                )
            })?;
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: serde_json::Value = serde_json::from_slice(text).map_err(|error| {
            ApiError::bad_request("malformed_json", format!("the body is not JSON: {error}"))
        })?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|error| {
                ApiError::bad_request(
                    "invalid_body",
                    format!("the body does not fit this endpoint: {error}"),
                )
            })
    }
}

/// A workflow id taken from the path (percent-decoded, so `a%2Fb` is the run `a/b`), within the
/// engine's identifier limits.
#[derive(Debug)]
pub(crate) struct RunId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request(
                    "bad_id",
                    format!("the workflow id in the path is not valid: {rejection}"),
                )
            })?;
        crate::limits::check_workflow_id(&id)?;
        Ok(RunId(id))
    }
}

/// The query string as key/value pairs (repeated keys kept), so filters can be checked by name.
#[derive(Debug)]
pub(crate) struct QueryPairs(pub(crate) Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request(
                    "bad_query",
                    format!("the query string is not valid: {rejection}"),
                )
            })?;
        Ok(QueryPairs(pairs))
    }
}
