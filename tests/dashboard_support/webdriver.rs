//! A small W3C WebDriver client over HTTP (JSON), enough to drive a headless Chromium through
//! chromedriver: navigate, find, click, type, read text, run a script.
//!
//! [`Browser::start`] returns `None` (after printing a loud SKIPPED line) when `chromium` or
//! `chromedriver` is missing; `.ci/run` installs both. Override the paths with `CHROMIUM` and
//! `CHROMEDRIVER`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long to wait for a page condition before failing.
pub(crate) const PAGE_PATIENCE: Duration = Duration::from_secs(15);

/// An element of the page.
#[derive(Debug, Clone)]
pub(crate) struct Element(String);

/// A headless Chromium session, with the chromedriver it talks through (killed on drop).
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
}

fn find_binary(variable: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(variable) {
        let path = PathBuf::from(path);
        return path.exists().then_some(path);
    }
    candidates
        .iter()
        .map(Path::new)
        .find(|path| path.exists())
        .map(Path::to_path_buf)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or returns `None` with a SKIPPED line
    /// when they are not installed.
    pub(crate) async fn start(test: &str) -> Option<Browser> {
        let chromium = find_binary(
            "CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = find_binary("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            eprintln!(
                "\n*** SKIPPED {test}: chromium and chromedriver are not installed \
                 (apt-get install -y chromium chromium-driver; .ci/run installs them) ***\n"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("chromedriver {} does not start: {error}", driver.display())
            });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready {
                let status: Value = response.json_value().await;
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready in 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.to_string_lossy(),
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--no-proxy-server", "--window-size=1400,1000", "--disable-extensions",
                    ],
                },
            }},
        });
        let answer: Value = http
            .post(format!("{base}/session"))
            .header("content-type", "application/json")
            .body(capabilities.to_string())
            .send()
            .await
            .expect("chromedriver answers")
            .json_value()
            .await;
        let Some(session) = answer["value"]["sessionId"].as_str() else {
            panic!("chromium did not start: {answer}");
        };
        Some(Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver: child,
        })
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|error| error.to_string())?;
        let ok = response.status().is_success();
        let answer = response.json_value().await;
        if ok {
            Ok(answer["value"].clone())
        } else {
            Err(format!(
                "{}: {}",
                answer["value"]["error"].as_str().unwrap_or("error"),
                answer["value"]["message"].as_str().unwrap_or("")
            ))
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|error| panic!("WebDriver POST {path}: {error}"))
    }

    /// Opens `url` and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The page's address.
    pub(crate) async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching a CSS selector now.
    pub(crate) async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .unwrap_or_else(|error| panic!("finding `{css}`: {error}"));
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|id| Element(id.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for an element matching `css` to be present and displayed.
    pub(crate) async fn wait(&self, css: &str) -> Element {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            for element in self.find_all(css).await {
                if self.displayed(&element).await {
                    return element;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no displayed `{css}` within {PAGE_PATIENCE:?}; the page says:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the text of the first element matching `css` satisfies `accept`; returns it.
    pub(crate) async fn wait_text(
        &self,
        css: &str,
        what: &str,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + PAGE_PATIENCE;
        let mut last = String::new();
        loop {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                // The element may be replaced between finding and reading it.
                if let Ok(text) = self
                    .command(
                        reqwest::Method::GET,
                        &format!("/element/{}/text", element.0),
                        None,
                    )
                    .await
                {
                    last = text.as_str().unwrap_or_default().to_string();
                    if accept(&last) {
                        return last;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never showed {what} within {PAGE_PATIENCE:?}; last text: `{last}`"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `script` (a function body returning a value) returns `true`.
    pub(crate) async fn wait_script(&self, what: &str, script: &str) {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            if self.script(script).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {PAGE_PATIENCE:?}; the page says:\n{}",
                self.page_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether an element is displayed.
    pub(crate) async fn displayed(&self, element: &Element) -> bool {
        self.command(
            reqwest::Method::GET,
            &format!("/element/{}/displayed", element.0),
            None,
        )
        .await
        .map(|value| value == Value::Bool(true))
        .unwrap_or(false)
    }

    /// Waits for `css` and clicks it (again if the page replaced it meanwhile: live parts of the
    /// page are redrawn).
    pub(crate) async fn click_on(&self, css: &str) {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            let element = self.wait(css).await;
            let clicked = self
                .command(
                    reqwest::Method::POST,
                    &format!("/element/{}/click", element.0),
                    Some(json!({})),
                )
                .await;
            match clicked {
                Ok(_) => return,
                Err(error) if error.contains("stale element") && Instant::now() < deadline => {}
                Err(error) => panic!("clicking `{css}`: {error}"),
            }
        }
    }

    /// Clears an input and types `text` into it.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let element = self.wait(css).await;
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await;
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// The visible text of the first element matching `css`.
    pub(crate) async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            let element = self.wait(css).await;
            let text = self
                .command(
                    reqwest::Method::GET,
                    &format!("/element/{}/text", element.0),
                    None,
                )
                .await;
            match text {
                Ok(text) => return text.as_str().unwrap_or_default().to_string(),
                Err(error) if error.contains("stale element") && Instant::now() < deadline => {}
                Err(error) => panic!("text of `{css}`: {error}"),
            }
        }
    }

    /// The whole page's visible text.
    pub(crate) async fn page_text(&self) -> String {
        match self
            .command(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({ "script": "return document.body ? document.body.innerText : ''", "args": [] })),
            )
            .await
        {
            Ok(text) => text.as_str().unwrap_or_default().to_string(),
            Err(error) => format!("(unreadable: {error})"),
        }
    }

    /// Saves a PNG of the window as `name`.png under `$ORCHESTRATOR_DASHBOARD_SCREENSHOTS`, when
    /// that variable names a directory (to look at the pages a test drove); otherwise nothing.
    pub(crate) async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("ORCHESTRATOR_DASHBOARD_SCREENSHOTS") else {
            return;
        };
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|error| panic!("screenshot: {error}"));
        let png = decode_base64(data.as_str().unwrap_or_default());
        let path = Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub(crate) async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// Runs `script` (a function body whose last argument is the callback) and returns what it
    /// passes to the callback.
    pub(crate) async fn script_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": [] }))
            .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (chromedriver then closes Chromium), then stops chromedriver.
        end_session(&self.session);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Sends `DELETE {session}` over a plain blocking socket (drop cannot await); errors are ignored.
fn end_session(session: &str) {
    use std::io::{Read, Write};
    let Some((authority, path)) = session
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return;
    };
    let Ok(mut socket) = std::net::TcpStream::connect(authority) else {
        return;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
    let request =
        format!("DELETE /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if socket.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
    }
}

/// Reads a response body as JSON (`null` when it is not JSON).
trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let text = self.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// Decodes standard base64 (the screenshot's encoding); invalid characters are skipped.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0_u32, 0);
    for sextet in text.bytes().filter_map(value) {
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xFF) as u8);
        }
    }
    out
}
