//! The web dashboard: pages for the run list, one run (with its Gantt timeline) and the workflow
//! types, served from assets compiled into the binary (plain HTML, CSS and JavaScript modules: no
//! build step, no CDN). Every page is a static shell that loads its data from the admin API, so
//! the API's rules hold: loopback without a token, a login trading a token for a session cookie
//! otherwise, read-only mode, and the cross-site defences of actions.

mod assets;
mod counts;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};

use super::server::AdminState;

pub(crate) use session::{Sessions, session_cookie};

/// The dashboard's routes (merged into the admin API's router, behind its guard).
pub(crate) fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/", get(assets::page))
        .route("/runs/{*id}", get(assets::page))
        .route("/workflows", get(assets::page))
        .route("/login", get(assets::page))
        .route("/assets/{file}", get(assets::asset))
        .route("/api/v1/counts", get(counts::counts))
        .route("/api/v1/workflows/summary", get(counts::workflows))
        .route("/api/v1/session", get(session::whoami).post(session::login))
        .route("/api/v1/session/logout", post(session::logout))
}

/// Whether a request needs no credentials: the page shells and assets (they hold no data) and
/// the login itself.
pub(crate) fn is_public(method: &Method, path: &str) -> bool {
    if *method == Method::POST {
        return path == "/api/v1/session";
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    matches!(path, "/" | "/workflows" | "/login")
        || path.starts_with("/runs/")
        || path.starts_with("/assets/")
}

/// Whether `path` logs in or out (allowed on a read-only server).
pub(crate) fn is_session_path(path: &str) -> bool {
    matches!(path, "/api/v1/session" | "/api/v1/session/logout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_page_shells_assets_and_the_login_are_public() {
        for path in ["/", "/workflows", "/login", "/runs/a%2Fb", "/assets/app.js"] {
            assert!(is_public(&Method::GET, path), "GET {path}");
            assert!(!is_public(&Method::POST, path), "POST {path}");
        }
        assert!(is_public(&Method::POST, "/api/v1/session"));
        for path in [
            "/api/v1/session",
            "/api/v1/runs",
            "/api/v1/counts",
            "/api/v1/workflows/summary",
            "/api/v1/runs/x/stream",
            "/runsx",
            "/assetsx",
        ] {
            assert!(!is_public(&Method::GET, path), "GET {path}");
        }
        assert!(!is_public(&Method::DELETE, "/"));
        assert!(!is_public(&Method::POST, "/api/v1/session/logout"));
    }
}
