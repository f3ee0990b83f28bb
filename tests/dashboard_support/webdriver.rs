//! A thin adapter over [`fantoccini`] (a maintained WebDriver client) that drives a headless
//! Chromium through chromedriver: navigate, find, click, type, read text, run a script, and the
//! bounded waits the dashboard tests need.
//!
//! [`Browser::start`] returns `None` (after printing a loud SKIPPED line) when `chromium` or
//! `chromedriver` is missing; `.ci/run` installs both. Override the paths with `CHROMIUM` and
//! `CHROMEDRIVER`. fantoccini is built without TLS: it only talks to the local chromedriver over
//! plain HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::{CmdError, NewSessionError};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

pub(crate) use fantoccini::elements::Element;

/// How long to wait for a page condition before failing.
pub(crate) const PAGE_PATIENCE: Duration = Duration::from_secs(15);

/// How long chromedriver and Chromium may take to start a session.
const START_PATIENCE: Duration = Duration::from_secs(20);

/// How long ending the session may take when the browser is dropped.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

/// A headless Chromium session, with the chromedriver it talks through. Dropping it ends the
/// session (chromedriver then closes Chromium) and stops chromedriver: no stray browser survives a
/// test.
pub(crate) struct Browser {
    client: Client,
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

/// Whether a failed session start means chromedriver is not listening yet (worth retrying).
fn not_listening_yet(error: &NewSessionError) -> bool {
    matches!(
        error,
        NewSessionError::Failed(_) | NewSessionError::FailedC(_) | NewSessionError::Lost(_)
    )
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
        let mut child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("chromedriver {} does not start: {error}", driver.display())
            });
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-proxy-server", "--window-size=1400,1000", "--disable-extensions",
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("the capabilities are an object")
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + START_PATIENCE;
        let client = loop {
            match builder.connect(&url).await {
                Ok(client) => break client,
                Err(error) if not_listening_yet(&error) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chromium did not start through chromedriver: {error}");
                }
            }
        };
        Some(Browser {
            client,
            driver: child,
        })
    }

    /// Opens `url` and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("opening {url}: {error}"));
    }

    /// The page's address.
    pub(crate) async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|error| panic!("the page's address: {error}"))
            .to_string()
    }

    /// The elements matching a CSS selector now.
    pub(crate) async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("finding `{css}`: {error}"))
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
                if let Ok(text) = element.text().await {
                    last = text;
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

    /// Whether an element is displayed (a replaced element is not).
    pub(crate) async fn displayed(&self, element: &Element) -> bool {
        element.is_displayed().await.unwrap_or(false)
    }

    /// Waits for `css` and clicks it (again if the page replaced it meanwhile: live parts of the
    /// page are redrawn).
    pub(crate) async fn click_on(&self, css: &str) {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            let element = self.wait(css).await;
            match element.click().await {
                Ok(()) => return,
                Err(error) if is_stale(&error) && Instant::now() < deadline => {}
                Err(error) => panic!("clicking `{css}`: {error}"),
            }
        }
    }

    /// Clears an input and types `text` into it.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let element = self.wait(css).await;
        element
            .clear()
            .await
            .unwrap_or_else(|error| panic!("clearing `{css}`: {error}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|error| panic!("typing into `{css}`: {error}"));
    }

    /// The visible text of the first element matching `css`.
    pub(crate) async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_PATIENCE;
        loop {
            let element = self.wait(css).await;
            match element.text().await {
                Ok(text) => return text,
                Err(error) if is_stale(&error) && Instant::now() < deadline => {}
                Err(error) => panic!("text of `{css}`: {error}"),
            }
        }
    }

    /// The whole page's visible text.
    pub(crate) async fn page_text(&self) -> String {
        match self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
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
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|error| panic!("screenshot: {error}"));
        let path = Path::new(&dir).join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub(crate) async fn script(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|error| panic!("script `{script}`: {error}"))
    }

    /// Runs `script` (a function body whose last argument is the callback) and returns what it
    /// passes to the callback.
    pub(crate) async fn script_async(&self, script: &str) -> Value {
        self.client
            .execute_async(script, vec![])
            .await
            .unwrap_or_else(|error| panic!("script `{script}`: {error}"))
    }
}

fn is_stale(error: &CmdError) -> bool {
    error.is_stale_element_reference()
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session and waits for it (chromedriver then closes Chromium): drop cannot
        // await, and the runtime may stop before a detached close runs, so this blocks its worker
        // thread (the tests run on the multi-threaded runtime). Then stops chromedriver.
        let chromium = descendants(self.driver.id());
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current()
            && runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| {
                runtime.block_on(async {
                    let _ = tokio::time::timeout(CLOSE_PATIENCE, client.close()).await;
                });
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium's processes exit a moment after the session ends; wait for them so that none
        // outlives the test, and kill any that hang on.
        let deadline = Instant::now() + CLOSE_PATIENCE;
        while chromium.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in chromium.into_iter().filter(|&pid| alive(pid)) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The processes descending from `root` (Chromium and its helpers under chromedriver), read from
/// `/proc`; empty where there is no `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut family = vec![root];
    let mut next = 0;
    while next < family.len() {
        let parent = family[next];
        family.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        next += 1;
    }
    family.remove(0);
    family
}

/// The parent of `pid` (the fourth field of `/proc/{pid}/stat`, after the parenthesised name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is still a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}
