//! Browser sessions: the login page trades a configured token for a random session id, kept in
//! memory and carried by an `HttpOnly; SameSite=Strict` cookie, so a browser acts as the token's
//! identity without ever holding the token in script.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::admin::auth::{Actor, find_token};
use crate::admin::body::JsonBody;
use crate::admin::errors::ApiError;
use crate::admin::server::AdminState;

/// The cookie that carries a session id.
pub(crate) const COOKIE: &str = "orchestrator_session";

/// How long a session lasts after its login.
const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The most sessions kept at once; a login beyond it ends the oldest.
const MAX_SESSIONS: usize = 1_024;

/// Random bytes in a session id.
const SESSION_ID_BYTES: usize = 32;

/// The live sessions of one admin server (lost when it stops: people log in again).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: Mutex<Vec<Session>>,
}

#[derive(Debug)]
struct Session {
    id: String,
    identity: Arc<str>,
    expires: Instant,
}

impl Sessions {
    /// Opens a session for `identity` and returns its id, or `None` when the system has no
    /// randomness to offer.
    fn open(&self, identity: &str) -> Option<String> {
        let mut bytes = [0_u8; SESSION_ID_BYTES];
        getrandom::fill(&mut bytes).ok()?;
        let id: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|session| session.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            sessions.remove(0);
        }
        sessions.push(Session {
            id: id.clone(),
            identity: Arc::from(identity),
            expires: now + SESSION_TTL,
        });
        Some(id)
    }

    /// The identity of a live session, its id compared in constant time with every session's.
    pub(crate) fn identity(&self, presented: &str) -> Option<Arc<str>> {
        let now = Instant::now();
        let sessions = self.lock();
        let mut found = None;
        for session in sessions.iter() {
            if bool::from(session.id.as_bytes().ct_eq(presented.as_bytes()))
                && session.expires > now
            {
                found = Some(session.identity.clone());
            }
        }
        found
    }

    fn close(&self, presented: &str) {
        self.lock()
            .retain(|session| !bool::from(session.id.as_bytes().ct_eq(presented.as_bytes())));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Session>> {
        // A panic while holding the lock leaves a valid list.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The session id a request's cookies carry, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The body of `POST /api/v1/session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    /// A token configured on the server.
    token: String,
}

/// `POST /api/v1/session` `{"token": ".."}`: checks the token and sets the session cookie.
pub(crate) async fn login(
    State(state): State<Arc<AdminState>>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let tokens = &state.config.tokens;
    if tokens.is_empty() {
        return Ok(
            Json(json!({ "identity": crate::admin::auth::LOCAL_ACTOR, "session": false }))
                .into_response(),
        );
    }
    let token = find_token(tokens, body.token.trim().as_bytes()).ok_or_else(|| {
        tracing::warn!("admin dashboard login with an unknown token");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token: paste a token configured on this server",
        )
    })?;
    let id = state.sessions.open(&token.identity).ok_or_else(|| {
        ApiError::unavailable("the system has no randomness for a session id; try again")
    })?;
    tracing::info!(actor = %token.identity, "admin dashboard login");
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut response = Json(json!({ "identity": token.identity, "session": true })).into_response();
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|_| ApiError::unavailable("the session cookie could not be written"))?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /api/v1/session/logout` `{}`: ends the session and clears its cookie.
pub(crate) async fn logout(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.sessions.close(id);
    }
    let mut response = Json(json!({ "session": false })).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "orchestrator_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

/// `GET /api/v1/session`: who the caller is and what this server lets them do.
pub(crate) async fn whoami(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
) -> Json<serde_json::Value> {
    Json(json!({
        "identity": actor.as_str(),
        "read_only": state.config.read_only,
        "tokens": !state.config.tokens.is_empty(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_resolve_and_close() {
        let sessions = Sessions::default();
        let id = sessions.open("alice").expect("randomness");
        assert_eq!(id.len(), SESSION_ID_BYTES * 2);
        assert_eq!(sessions.identity(&id).as_deref(), Some("alice"));
        let other = sessions.open("bob").expect("randomness");
        assert_ne!(id, other);
        assert_eq!(sessions.identity(&other).as_deref(), Some("bob"));
        for wrong in ["", "x", &id[..id.len() - 1], &format!("{id}0")] {
            assert!(sessions.identity(wrong).is_none(), "`{wrong}`");
        }
        sessions.close(&id);
        assert!(sessions.identity(&id).is_none());
        assert_eq!(sessions.identity(&other).as_deref(), Some("bob"));
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.open("first").expect("randomness");
        for _ in 0..MAX_SESSIONS {
            sessions.open("later").expect("randomness");
        }
        assert!(sessions.identity(&first).is_none(), "the oldest was ended");
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        assert_eq!(session_cookie(&headers), None);
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; orchestrator_session_x=no"),
        );
        assert_eq!(session_cookie(&headers), None);
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=b; orchestrator_session=abc123 ; c=d"),
        );
        assert_eq!(session_cookie(&headers), Some("abc123"));
    }
}
