//! Who may call the admin API, and from where: bearer tokens (compared in constant time), the
//! loopback `Host` check without tokens (DNS rebinding), read-only mode, and the cross-site defences
//! of mutating requests (JSON content type, `Origin` and `Sec-Fetch-Site`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::Token;
use super::errors::ApiError;
use super::server::AdminState;

/// The identity an action is recorded under: a token's identity, or `"local"` without tokens.
#[derive(Debug, Clone)]
pub(crate) struct Actor(pub(crate) Arc<str>);

impl Actor {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The identity of actions made without tokens (loopback only).
pub(crate) const LOCAL_ACTOR: &str = "local";

/// The one endpoint that needs no token: liveness.
const HEALTH_PATH: &str = "/api/v1/health";

/// Checks every request before it reaches a handler; records the caller's [`Actor`] in it.
pub(crate) async fn guard(
    State(state): State<Arc<AdminState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let mut response = match admit(&state, &request) {
        Ok(actor) => {
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    };
    // Answers are about live runs (never cached) and are JSON or event streams (never sniffed).
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn admit(state: &AdminState, request: &Request) -> Result<Actor, ApiError> {
    let headers = request.headers();
    let tokens = &state.config.tokens;
    let path = request.uri().path();
    let actor = if tokens.is_empty() {
        // Only loopback clients can reach the server; a page on another site could still make a
        // browser send requests to a name that resolves to 127.0.0.1 (DNS rebinding): its Host
        // header names that site.
        check_loopback_host(headers)?;
        Actor(Arc::from(LOCAL_ACTOR))
    } else if path == HEALTH_PATH || super::dashboard::is_public(request.method(), path) {
        Actor(Arc::from("anonymous"))
    } else if headers.contains_key(header::AUTHORIZATION) {
        authenticate(tokens, headers)?
    } else {
        // A browser of the dashboard: its session cookie.
        super::dashboard::session_cookie(headers)
            .and_then(|id| state.sessions.identity(id))
            .map(Actor)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "no token: send `Authorization: Bearer <token>` with a token configured on this server, or log in to the dashboard at /login",
                )
            })?
    };
    if is_mutating(request.method()) {
        check_same_origin(headers)?;
        // Read-only servers refuse every action, but a replay check (a POST that carries histories
        // and changes nothing) and logging in and out (which act on no run) are allowed.
        if state.config.read_only
            && path != super::history::REPLAY_CHECK_PATH
            && !super::dashboard::is_session_path(path)
        {
            return Err(ApiError::forbidden(
                "read_only",
                "the admin API is read-only: this server refuses every action (start it without `.read_only(true)` to allow them)",
            ));
        }
        check_json_content_type(headers)?;
    }
    Ok(actor)
}

/// Whether a request may change something (every method but GET, HEAD and OPTIONS).
fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Finds the token a request carries, comparing it with every configured secret in constant time.
fn authenticate(tokens: &[Token], headers: &HeaderMap) -> Result<Actor, ApiError> {
    let unauthorized = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{message}: send `Authorization: Bearer <token>` with a token configured on this server"
            ),
        )
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("no token"));
    };
    let value = value.as_bytes();
    let presented = match value.split_first_chunk::<7>() {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
        _ => return Err(unauthorized("not a bearer token")),
    };
    find_token(tokens, presented)
        .map(|token| Actor(Arc::from(token.identity.as_str())))
        .ok_or_else(|| unauthorized("unknown token"))
}

/// The configured token whose secret is `presented`: every secret is compared (no early exit),
/// each comparison in constant time.
pub(crate) fn find_token<'a>(tokens: &'a [Token], presented: &[u8]) -> Option<&'a Token> {
    let mut found: Option<&Token> = None;
    for token in tokens {
        if bool::from(token.secret.as_bytes().ct_eq(presented)) {
            found = Some(token);
        }
    }
    found
}

/// Refuses a request whose `Host` is not a loopback name or address.
fn check_loopback_host(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |host: &str| {
        ApiError::forbidden(
            "forbidden_host",
            format!(
                "the Host header `{host}` is not a loopback address; without a token this server answers only requests addressed to localhost, 127.0.0.1 or [::1]"
            ),
        )
    };
    let Some(host) = headers.get(header::HOST) else {
        return Err(refuse(""));
    };
    let host = host.to_str().map_err(|_| refuse("(not text)"))?;
    if is_loopback_host(host) {
        Ok(())
    } else {
        Err(refuse(&crate::limits::shortened(host)))
    }
}

/// Whether `host` (a Host header: name or address, optional port) names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => match rest.split_once(']') {
            Some((address, port))
                if port.is_empty() || port.strip_prefix(':').is_some_and(valid_port) =>
            {
                address
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok()
}

/// Refuses a mutating request that a browser marks as coming from another site.
fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let cross_site = |what: String| {
        ApiError::forbidden(
            "cross_site",
            format!("{what}: actions are accepted only from the same origin"),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(cross_site(format!(
                "the browser reports a {} request (Sec-Fetch-Site)",
                crate::limits::shortened(site)
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let same = match (authority, host) {
            (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
            _ => false,
        };
        if !same {
            return Err(cross_site(format!(
                "the request comes from origin `{}`, not from this server",
                crate::limits::shortened(origin)
            )));
        }
    }
    Ok(())
}

/// Refuses a mutating request whose body is not declared as JSON (a browser form cannot send that
/// without a CORS preflight, which this server never grants).
fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "actions take a JSON body: send `Content-Type: application/json` (and `{}` when there is nothing to say)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST:7070",
            "127.0.0.1",
            "127.0.0.1:7070",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:7070",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:7070",
            "localhost.evil.example",
            "10.0.0.1:7070",
            "127.0.0.1:notaport",
            "[::2]:7070",
            "[::1]x",
            "[::1]7070",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
