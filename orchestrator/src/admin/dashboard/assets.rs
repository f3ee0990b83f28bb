//! The dashboard's files, compiled into the binary, served with strict security headers: a
//! `Content-Security-Policy` allowing only this server's own scripts and styles (no inline
//! script, no other origin), no framing, no referrer.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::admin::errors::ApiError;

/// The policy of every dashboard file.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page shell: the same for every page, whose script picks the view from the path.
const SHELL: &str = include_str!("assets/index.html");

/// The files under `/assets/`: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    ("app.js", JS, include_str!("assets/app.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("dom.js", JS, include_str!("assets/dom.js")),
    ("runs.js", JS, include_str!("assets/runs.js")),
    ("run.js", JS, include_str!("assets/run.js")),
    ("gantt.js", JS, include_str!("assets/gantt.js")),
    ("payload.js", JS, include_str!("assets/payload.js")),
    ("workflows.js", JS, include_str!("assets/workflows.js")),
    ("login.js", JS, include_str!("assets/login.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// `GET /`, `/runs/{id}`, `/workflows`, `/login`: the page shell.
pub(crate) async fn page() -> Response {
    with_headers(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], SHELL).into_response())
}

/// `GET /assets/{file}`: one embedded file.
pub(crate) async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, content) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_asset",
                format!(
                    "the dashboard has no file `{}`",
                    crate::limits::shortened(&file)
                ),
            )
        })?;
    Ok(with_headers(
        ([(header::CONTENT_TYPE, *content_type)], *content).into_response(),
    ))
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shell loads only files that exist, and no asset holds markup that would run inline.
    #[test]
    fn the_shell_references_embedded_assets_only() {
        for (name, _, content) in ASSETS {
            assert!(!content.is_empty(), "{name}");
            assert!(!content.contains("innerHTML"), "{name} uses innerHTML");
            assert!(!content.contains("eval("), "{name} uses eval");
        }
        assert!(!SHELL.contains("<script>"), "inline script in the shell");
        for reference in ["/assets/app.css", "/assets/app.js"] {
            assert!(SHELL.contains(reference), "{reference}");
        }
        for (name, _, content) in ASSETS {
            for line in content.lines() {
                if let Some(rest) = line.trim().strip_prefix("import ") {
                    let module = rest
                        .rsplit("'./")
                        .next()
                        .unwrap_or("")
                        .trim_end_matches("';");
                    assert!(
                        ASSETS.iter().any(|(other, _, _)| *other == module),
                        "{name} imports `{module}`, which is not embedded"
                    );
                }
            }
        }
    }
}
