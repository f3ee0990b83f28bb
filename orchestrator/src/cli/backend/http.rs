//! A running service's admin API, over HTTP (`--url`): the way to act on runs that a live process
//! owns.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Client, Method, StatusCode, Url};
use serde_json::{Map, Value};

use super::{Action, Backend, Progress, Sink, Watched};
use crate::cli::exit::{CliError, Exit};

/// The largest answer read, in bytes (a run description is bounded well below this).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// The largest live event kept while it is being received.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// The admin API of one service.
pub(crate) struct Http {
    base: Url,
    token: Option<String>,
    /// For requests, with the configured timeout.
    client: Client,
    /// For live streams (no overall timeout).
    streams: Client,
}

impl Http {
    /// A client of the admin API at `url` (`http://host:port`, any path prefix kept).
    pub(crate) fn new(
        url: &str,
        token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, CliError> {
        let mut base = Url::parse(url).map_err(|error| {
            CliError::usage(format!(
                "--url `{}` is not a URL ({error}); e.g. --url http://127.0.0.1:7070",
                crate::limits::shortened(url)
            ))
        })?;
        if base.scheme() != "http" {
            return Err(CliError::usage(format!(
                "--url `{}`: only http:// is supported (the admin API binds loopback by default; put a TLS-terminating proxy in front for anything else and reach it over an SSH tunnel or from the same host)",
                crate::limits::shortened(url)
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if let Some(token) = &token
            && (token.is_empty() || token.chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(CliError::usage(
                "the token is empty or contains spaces or control characters",
            ));
        }
        let build = |timeout: Option<Duration>| {
            // No redirects: the token is for this server only.
            let mut builder = Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none());
            if let Some(timeout) = timeout {
                builder = builder.timeout(timeout);
            }
            builder.build().map_err(|error| {
                CliError::internal(format!("cannot build the HTTP client: {error}"))
            })
        };
        Ok(Http {
            base,
            token,
            client: build(Some(timeout))?,
            streams: build(None)?,
        })
    }

    /// `api/v1/{segments...}`, each segment percent-encoded (ids may hold `/`, quotes, anything).
    fn url(&self, segments: &[&str]) -> Result<Url, CliError> {
        let mut url = self
            .base
            .join("api/v1")
            .map_err(|error| CliError::usage(format!("--url cannot take the API path: {error}")))?;
        url.path_segments_mut()
            .map_err(|()| CliError::usage("--url cannot be a base URL (use http://host:port)"))?
            .extend(segments);
        Ok(url)
    }

    fn request(&self, client: &Client, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = client.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and reads its JSON answer (an error answer becomes a [`CliError`]).
    async fn call(&self, method: Method, url: Url, body: Option<Value>) -> Result<Value, CliError> {
        let mut request = self.request(&self.client, method, url);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = response.status();
        let bytes = read_bounded(response)
            .await
            .map_err(|error| self.unreachable(&error))?;
        answer(status, &bytes)
    }

    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        let what = if error.is_timeout() {
            "did not answer in time"
        } else if error.is_connect() {
            "cannot be reached"
        } else {
            "failed"
        };
        CliError::new(
            Exit::Unavailable,
            "unreachable",
            format!("the admin API at {} {what}: {error}", self.base),
        )
        .hint(
            "check that the service runs with its admin API (EngineBuilder::admin) on that address",
        )
    }
}

/// Reads a body up to [`MAX_ANSWER`] bytes.
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > MAX_ANSWER {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The JSON of a successful answer, or the error it carries.
fn answer(status: StatusCode, bytes: &[u8]) -> Result<Value, CliError> {
    let value: Option<Value> = serde_json::from_slice(bytes).ok();
    if status.is_success() {
        return value.ok_or_else(|| {
            CliError::internal(format!(
                "the admin API answered {status} with a body that is not JSON"
            ))
        });
    }
    let error = value.as_ref().and_then(|value| value.get("error"));
    let code = error
        .and_then(|error| error.get("code"))
        .and_then(Value::as_str);
    let message = error
        .and_then(|error| error.get("message"))
        .and_then(Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) => Err(CliError::from_api(code, message)),
        _ => Err(CliError::internal(format!(
            "the admin API answered {status} without an error description (is --url an orchestrator admin API?)"
        ))),
    }
}

#[async_trait]
impl Backend for Http {
    async fn list(&self, pairs: &[(String, String)]) -> Result<Value, CliError> {
        let mut url = self.url(&["runs"])?;
        url.query_pairs_mut().extend_pairs(pairs);
        self.call(Method::GET, url, None).await
    }

    async fn describe(&self, id: &str) -> Result<Value, CliError> {
        let url = self.url(&["runs", id])?;
        self.call(Method::GET, url, None).await
    }

    async fn act(&self, id: &str, action: &Action) -> Result<Value, CliError> {
        let url = self.url(&["runs", id, action.verb()])?;
        self.call(Method::POST, url, Some(action.body())).await
    }

    async fn bulk(
        &self,
        verb: &str,
        fields: Map<String, Value>,
        _progress: Box<Progress>,
    ) -> Result<Value, CliError> {
        // One request: the service reports when it is done (the caller shows a spinner meanwhile).
        let url = self.url(&["bulk", verb])?;
        self.call(Method::POST, url, Some(Value::Object(fields)))
            .await
    }

    async fn export(&self, id: &str) -> Result<Value, CliError> {
        let url = self.url(&["runs", id, "export"])?;
        self.call(Method::GET, url, None).await
    }

    async fn import(&self, body: Map<String, Value>) -> Result<Value, CliError> {
        let url = self.url(&["import"])?;
        self.call(Method::POST, url, Some(Value::Object(body)))
            .await
    }

    async fn replay_check(&self, body: Map<String, Value>) -> Result<Value, CliError> {
        let url = self.url(&["replay-check"])?;
        self.call(Method::POST, url, Some(Value::Object(body)))
            .await
    }

    async fn watch(
        &self,
        watched: &Watched,
        _interval: Duration,
        sink: &mut Sink<'_>,
    ) -> Result<(), CliError> {
        let url = match watched {
            Watched::Run(id) => self.url(&["runs", id, "stream"])?,
            Watched::List(pairs) => {
                let mut url = self.url(&["stream", "runs"])?;
                url.query_pairs_mut().extend_pairs(pairs);
                url
            }
        };
        let mut response = self
            .request(&self.streams, Method::GET, url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = read_bounded(response)
                .await
                .map_err(|error| self.unreachable(&error))?;
            return answer(status, &bytes).map(|_| ());
        }
        let mut parser = EventParser::default();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok(()),
                Err(error) => return Err(self.unreachable(&error)),
            };
            for (name, data) in parser.feed(&chunk)? {
                let data: Value = serde_json::from_str(&data).map_err(|error| {
                    CliError::internal(format!("a live event is not JSON: {error}"))
                })?;
                let gone = name == "gone";
                if !sink(&name, data)? || gone {
                    return Ok(());
                }
            }
        }
    }
}

/// Splits a Server-Sent Events byte stream into `(event name, data)` pairs.
#[derive(Debug, Default)]
struct EventParser {
    buffer: Vec<u8>,
    name: String,
    data: String,
}

impl EventParser {
    fn feed(&mut self, chunk: &[u8]) -> Result<Vec<(String, String)>, CliError> {
        self.buffer.extend_from_slice(chunk);
        if self.buffer.len() + self.data.len() > MAX_EVENT {
            return Err(CliError::internal("a live event is larger than 16 MiB"));
        }
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let name = if self.name.is_empty() {
                        "message".to_string()
                    } else {
                        std::mem::take(&mut self.name)
                    };
                    events.push((name, std::mem::take(&mut self.data)));
                }
                self.name.clear();
                continue;
            }
            if line.starts_with(':') {
                continue; // a keep-alive comment
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "event" => self.name = value.to_string(),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut parser = EventParser::default();
        assert!(
            parser
                .feed(b": keep-alive\n\nevent: run\nid: 1\nda")
                .unwrap()
                .is_empty()
        );
        let events = parser
            .feed(b"ta: {\"a\":1}\n\nevent: gone\ndata: {}\n\n")
            .unwrap();
        assert_eq!(
            events,
            vec![
                ("run".to_string(), "{\"a\":1}".to_string()),
                ("gone".to_string(), "{}".to_string())
            ]
        );
    }

    #[test]
    fn ids_are_percent_encoded() {
        let http = Http::new("http://127.0.0.1:7070", None, Duration::from_secs(1)).unwrap();
        let url = http.url(&["runs", "a/b \"c\"?#"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/api/v1/runs/a%2Fb%20%22c%22%3F%23"
        );
        assert!(Http::new("ftp://x", None, Duration::from_secs(1)).is_err());
        assert!(Http::new("not a url", None, Duration::from_secs(1)).is_err());
    }
}
