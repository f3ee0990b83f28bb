//! The web dashboard in a real headless Chromium (through chromedriver, driven by `fantoccini`):
//! the runs list with its filters, counts, paging and live updates; a run's Gantt timeline updating
//! live (a failed attempt, its retry, a timer); every repair action behind its confirmation; bulk
//! actions with their dry-run count; read-only mode; token login; hostile payloads rendered inert;
//! cross-site POSTs refused.
//!
//! Each test prints a loud SKIPPED line and passes when chromium or chromedriver is missing
//! (`.ci/run` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "dashboard_support/webdriver.rs"]
mod webdriver;

use std::net::SocketAddr;
use std::time::Duration;

use orchestrator::admin::{AdminConfig, AdminConfigBuilder};
use orchestrator::prelude::*;
use orchestrator::store::RunState;
use orchestrator::{Engine, EngineBuilder, RunStatus};
use orchestrator_tests::{TestDb, bump, count, eventually, gate_wait, open_gate, wait_status};
use serde_json::Value;
use tokio::sync::Semaphore;
use webdriver::Browser;

const ALICE: &str = "alice-secret-0123456789abcdef";

/// One browser at a time: the machine is small and each Chromium is heavy.
static BROWSERS: Semaphore = Semaphore::const_new(1);

/// Waits for the signal `go` and returns its payload.
#[workflow]
async fn waiter(ctx: WorkflowContext, _: ()) -> Result<u32, WorkflowError> {
    ctx.signal::<u32>("go").await
}

/// Completes at once.
#[workflow]
async fn quick(_ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    Ok(n)
}

/// Fails with its input as the error message.
#[workflow]
async fn doomed(_ctx: WorkflowContext, message: String) -> Result<(), WorkflowError> {
    Err(WorkflowError::failed(message))
}

/// Waits until the gate `key` opens, then answers.
#[activity]
async fn gated(key: String) -> Result<String, ActivityError> {
    gate_wait(&key).await;
    Ok(format!("{key} opened"))
}

/// Counts its executions under `key`; fails for good until `{key}/fixed` is bumped.
#[activity(retry(max_attempts = 1))]
async fn flaky(key: String) -> Result<String, ActivityError> {
    bump(&key);
    if count(&format!("{key}/fixed")) == 0 {
        return Err(ActivityError::non_retryable("the service is down"));
    }
    Ok(format!("{key} ok"))
}

/// A gated step, a signal wait, then a flaky step: a timeline that grows while the page watches.
#[workflow]
async fn stepper(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
    let first = ctx.call(gated, format!("{key}/gate")).await?;
    let n = ctx.signal::<u32>("next").await?;
    let second = ctx.call(flaky, format!("{key}/flaky")).await?;
    Ok(format!("{first} {n} {second}"))
}

/// Continues as new once; its second run sleeps a moment and starts a child.
#[workflow]
async fn family(ctx: WorkflowContext, generation: u32) -> Result<u32, WorkflowError> {
    if generation == 0 {
        return Err(ctx.continue_as_new(family, 1));
    }
    ctx.sleep(Duration::from_millis(20)).await?;
    let child = ctx.child(quick, "family-child", 5).await?;
    Ok(generation + child)
}

fn registered(builder: EngineBuilder) -> EngineBuilder {
    builder
        .keep_continued_runs(5)
        .register(family)
        .signal_type::<_, u32>(waiter, "go")
        .signal_type::<_, u32>(stepper, "next")
        .register(waiter)
        .register(quick)
        .register(doomed)
        .register(stepper)
        .register(gated)
        .register(flaky)
}

/// An engine on an SQLite file serving the admin API and dashboard on a free loopback port.
struct Server {
    _db: TestDb,
    engine: Engine,
    addr: SocketAddr,
}

impl Server {
    async fn start(config: AdminConfigBuilder) -> Server {
        let db = TestDb::new();
        let engine = registered(db.builder())
            .admin(
                config
                    .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .sse_poll_interval(Duration::from_millis(50))
                    .build(),
            )
            .start()
            .await
            .unwrap();
        let addr = engine.admin_addr().expect("the admin API listens");
        Server {
            _db: db,
            engine,
            addr,
        }
    }

    async fn open() -> Server {
        Server::start(AdminConfig::builder()).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn run_url(&self, id: &str) -> String {
        self.url(&format!("/runs/{}", encode(id)))
    }
}

/// Percent-encodes a path segment.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A browser, or `None` (SKIPPED) without Chromium; holds the one-browser permit.
async fn browser(test: &str) -> Option<(Browser, tokio::sync::SemaphorePermit<'static>)> {
    let permit = BROWSERS.acquire().await.unwrap();
    Browser::start(test).await.map(|browser| (browser, permit))
}

/// The number in a count button (`running\n12`).
fn count_in(text: &str) -> u64 {
    text.split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in `{text}`"))
}

async fn rows(browser: &Browser) -> Vec<String> {
    let value = browser
        .script("return [...document.querySelectorAll('#runs tbody tr[data-id]')].map(r => r.dataset.id)")
        .await;
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn wait_rows(
    browser: &Browser,
    what: &str,
    accept: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + webdriver::PAGE_PATIENCE;
    loop {
        let ids = rows(browser).await;
        if accept(&ids) {
            return ids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run list never showed {what}; it shows {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_page_counts_filters_pages_and_updates_live() {
    let Some((browser, _permit)) = browser("runs_page_counts_filters_pages_and_updates_live").await
    else {
        return;
    };
    let server = Server::open().await;
    let engine = &server.engine;
    for n in 0..60 {
        engine
            .start(quick, format!("batch-{n:03}"), n)
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    for n in 0..3 {
        let handle = engine
            .start(doomed, format!("broken-{n}"), format!("card {n} declined"))
            .await
            .unwrap();
        let _ = handle.result().await;
    }
    engine.start(waiter, "wait-1", ()).await.unwrap();
    engine.start(waiter, "wait-2", ()).await.unwrap();

    browser.goto(&server.url("/")).await;
    browser
        .wait_text("#count-total", "65 runs", |t| count_in(t) == 65)
        .await;
    assert_eq!(count_in(&browser.text("#count-completed").await), 60);
    assert_eq!(count_in(&browser.text("#count-failed").await), 3);
    assert_eq!(count_in(&browser.text("#count-running").await), 2);

    browser.screenshot("runs-page").await;
    // Paging: 50 per page, by cursor, and back.
    let first = wait_rows(&browser, "a first page of 50", |ids| ids.len() == 50).await;
    assert_eq!(first[0], "batch-000");
    browser.click_on("#next-page").await;
    let second = wait_rows(&browser, "the second page", |ids| ids.len() == 15).await;
    assert_eq!(second[0], "batch-050");
    assert!(second.contains(&"wait-2".to_string()), "{second:?}");
    browser.click_on("#prev-page").await;
    wait_rows(&browser, "the first page again", |ids| {
        ids.first().map(String::as_str) == Some("batch-000")
    })
    .await;

    // Filters: status, then error text, then id prefix; the counts follow the other filters.
    browser.click_on("#filter-status-failed").await;
    browser.click_on("#apply-filters").await;
    let failed = wait_rows(&browser, "the 3 failed runs", |ids| ids.len() == 3).await;
    assert!(
        failed.iter().all(|id| id.starts_with("broken-")),
        "{failed:?}"
    );
    let outcomes = browser.text("#runs tbody").await;
    assert!(outcomes.contains("card 1 declined"), "{outcomes}");
    assert!(browser.url().await.contains("status=failed"));

    browser.fill("#filter-error", "CARD 2").await;
    browser.click_on("#apply-filters").await;
    wait_rows(&browser, "the run whose error mentions card 2", |ids| {
        ids == ["broken-2"]
    })
    .await;

    browser.click_on("#clear-filters").await;
    browser.fill("#filter-id-prefix", "wait-").await;
    browser.click_on("#apply-filters").await;
    wait_rows(&browser, "the waiting runs", |ids| {
        ids == ["wait-1", "wait-2"]
    })
    .await;
    browser
        .wait_text("#count-total", "2 runs with this prefix", |t| {
            count_in(t) == 2
        })
        .await;

    // A time range in the future matches nothing.
    let future = orchestrator_tests::now_ms() + 3_600_000;
    browser
        .goto(&server.url(&format!("/?created_from_ms={future}")))
        .await;
    browser
        .wait_text("#runs tbody", "no runs", |t| t.contains("No runs match"))
        .await;

    // Live: a run started while the page watches appears without a reload, and the counts move.
    browser.goto(&server.url("/?id_prefix=wait-")).await;
    wait_rows(&browser, "the waiting runs", |ids| ids.len() == 2).await;
    engine.start(waiter, "wait-3", ()).await.unwrap();
    wait_rows(&browser, "the new run, live", |ids| {
        ids.contains(&"wait-3".to_string())
    })
    .await;
    browser
        .wait_text("#count-running", "3 running", |t| count_in(t) == 3)
        .await;

    // A click on a count filters by it.
    browser.goto(&server.url("/")).await;
    browser.click_on("#count-failed").await;
    wait_rows(&browser, "the failed runs", |ids| ids.len() == 3).await;

    // The workflows page counts by type.
    browser.goto(&server.url("/workflows")).await;
    let doomed_row = browser.text("#workflows tr[data-type=doomed]").await;
    assert!(doomed_row.contains("broken-0"), "{doomed_row}");
    let failed_cell = browser
        .text("#workflows tr[data-type=doomed] td[data-column=failed]")
        .await;
    assert_eq!(failed_cell, "3");
    let completed = browser
        .text("#workflows tr[data-type=quick] td[data-column=completed]")
        .await;
    assert_eq!(completed, "60");
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_draws_a_live_gantt_timeline() {
    let Some((browser, _permit)) = browser("run_page_draws_a_live_gantt_timeline").await else {
        return;
    };
    let server = Server::open().await;
    let engine = &server.engine;
    let key = "gantt";
    engine
        .start(stepper, "gantt-1", key.to_string())
        .await
        .unwrap();
    browser.goto(&server.run_url("gantt-1")).await;
    browser
        .wait_text("#run-state", "running", |t| t.contains("running"))
        .await;
    // Step 1 is in flight: one row, one attempt bar.
    browser
        .wait_script(
            "the in-flight attempt of step 1",
            "return document.querySelectorAll('#timeline .gantt-row[data-step=\"1\"] .bar.outcome-in_flight').length === 1",
        )
        .await;
    browser
        .wait_text("#blocked-on", "the gated activity", |t| t.contains("gated"))
        .await;

    // The run moves: the page follows without a reload.
    open_gate(&format!("{key}/gate"));
    browser
        .wait_script(
            "step 1 drawn as completed",
            "const row = document.querySelector('#timeline .gantt-row[data-step=\"1\"]'); \
             return !!row && row.dataset.status === 'completed' \
               && !!row.querySelector('.bar.outcome-succeeded, .bar.status-completed') \
               && !row.querySelector('.bar.outcome-in_flight')",
        )
        .await;
    browser
        .wait_text("#blocked-on", "the signal wait", |t| t.contains("signal"))
        .await;
    engine.signal("gantt-1", "next", 7_u32).await.unwrap();
    // Step 3 fails for good (its service is down): a red attempt bar with its error, run failed.
    browser
        .wait_script(
            "the failed attempt of step 3",
            "return !!document.querySelector('#timeline .gantt-row[data-step=\"3\"] .bar.outcome-failed')",
        )
        .await;
    browser
        .wait_text("#run-state", "failed", |t| t.contains("failed"))
        .await;
    browser.screenshot("run-page").await;
    let errors = browser.text("#attempt-errors").await;
    assert!(errors.contains("the service is down"), "{errors}");
    let title = browser
        .script("return document.querySelector('#timeline .gantt-row[data-step=\"3\"] .bar.outcome-failed').title")
        .await;
    assert!(
        title.as_str().unwrap().contains("the service is down"),
        "{title}"
    );
    // Payloads as pretty JSON text.
    let input = browser.text("#payload-input").await;
    assert_eq!(input, "\"gantt\"");
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_links_parent_children_and_the_continue_as_new_chain() {
    let Some((browser, _permit)) =
        browser("run_page_links_parent_children_and_the_continue_as_new_chain").await
    else {
        return;
    };
    let server = Server::open().await;
    let run = server.engine.start(family, "family", 0).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 6);
    browser.goto(&server.run_url("family")).await;
    let chain = browser
        .wait_text("#run-chain", "two runs", |t| t.contains("run 1: this run"))
        .await;
    assert!(
        chain.contains("run 0:") && chain.contains("continued as new"),
        "{chain}"
    );
    // The timer and the child are drawn as their own kinds of bars.
    browser
        .wait_script(
            "a timer bar and a child bar",
            "return !!document.querySelector('#timeline .bar.kind-timer') \
               && !!document.querySelector('#timeline .bar.kind-child')",
        )
        .await;
    // Child and parent link to each other.
    browser.click_on("#run-children a.run-link").await;
    browser
        .wait_text("#run-id", "the child's page", |t| t == "family-child")
        .await;
    browser.click_on("#run-parent a.run-link").await;
    browser
        .wait_text("#run-id", "the parent's page", |t| t == "family")
        .await;
    server.engine.shutdown().await;
}

/// Clicks an action button, fills the dialog's fields, confirms (or cancels).
async fn act(browser: &Browser, verb: &str, fields: &[(&str, &str)], confirm: bool) -> String {
    browser.click_on(&format!("#action-{verb}")).await;
    browser.wait("dialog#confirm[open]").await;
    for (name, value) in fields {
        browser.fill(&format!("#confirm-field-{name}"), value).await;
    }
    browser
        .click_on(if confirm {
            "#confirm-ok"
        } else {
            "#confirm-cancel"
        })
        .await;
    browser
        .wait_text("#action-result", "the action's result", |t| {
            t.contains(verb)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_actions_ask_for_confirmation_and_record_the_actor() {
    let Some((browser, _permit)) =
        browser("repair_actions_ask_for_confirmation_and_record_the_actor").await
    else {
        return;
    };
    let server = Server::open().await;
    let engine = &server.engine;

    // Pause and resume, with a reason; a cancelled dialog does nothing.
    engine.start(waiter, "act-1", ()).await.unwrap();
    browser.goto(&server.run_url("act-1")).await;
    browser
        .wait_text("#run-state", "running", |t| t.contains("running"))
        .await;
    let said = act(&browser, "pause", &[], false).await;
    assert!(said.contains("nothing was done"), "{said}");
    assert!(engine.describe("act-1").await.unwrap().paused.is_none());
    let said = act(&browser, "pause", &[("reason", "deploy freeze")], true).await;
    assert!(said.contains("pause done by local"), "{said}");
    let paused = engine
        .describe("act-1")
        .await
        .unwrap()
        .paused
        .expect("paused");
    assert_eq!(
        (paused.by.as_str(), paused.reason.as_str()),
        ("local", "deploy freeze")
    );
    browser
        .wait_text("#run-state", "paused", |t| t.contains("paused"))
        .await;
    act(&browser, "resume", &[], true).await;
    eventually("the run resumes", || async {
        engine.describe("act-1").await.unwrap().paused.is_none()
    })
    .await;
    // Both actions are on the timeline (markers of the run-events row) and in the audit list.
    browser
        .wait_script(
            "the pause and resume markers",
            "const titles = [...document.querySelectorAll('#timeline .run-events .marker')].map(m => m.title); \
             return titles.some(t => t.includes('paused by local') && t.includes('deploy freeze')) \
               && titles.some(t => t.includes('resumed by local'))",
        )
        .await;
    let audit = browser.text("#operator-actions").await;
    assert!(audit.contains("paused by local"), "{audit}");

    // A signal with a JSON payload completes the run.
    let said = act(
        &browser,
        "signal",
        &[("name", "go"), ("payload", "41")],
        true,
    )
    .await;
    assert!(said.contains("signal done"), "{said}");
    wait_status(engine, "act-1", |s| matches!(s, RunStatus::Completed)).await;
    browser
        .wait_text("#run-state", "completed", |t| t.contains("completed"))
        .await;
    // Actions that do not apply to a completed run are disabled.
    for verb in ["pause", "resume", "cancel", "terminate", "signal", "retry"] {
        browser
            .wait_script(
                &format!("{verb} disabled on a completed run"),
                &format!("return document.querySelector('#action-{verb}').disabled"),
            )
            .await;
    }

    // Terminate and cancel; a bad signal payload is refused with the reason.
    engine.start(waiter, "act-2", ()).await.unwrap();
    engine.start(waiter, "act-3", ()).await.unwrap();
    browser.goto(&server.run_url("act-2")).await;
    let said = act(
        &browser,
        "signal",
        &[("name", "go"), ("payload", "{not json")],
        true,
    )
    .await;
    assert!(said.contains("signal refused"), "{said}");
    let said = act(
        &browser,
        "signal",
        &[("name", "go"), ("payload", "\"text\"")],
        true,
    )
    .await;
    assert!(
        said.contains("signal refused"),
        "a string is not the u32 the signal takes: {said}"
    );
    assert_eq!(
        engine
            .describe("act-2")
            .await
            .unwrap()
            .pending_signals
            .len(),
        0
    );
    act(&browser, "terminate", &[("reason", "bad data")], true).await;
    wait_status(engine, "act-2", |s| matches!(s, RunStatus::Terminated(_))).await;
    browser.goto(&server.run_url("act-3")).await;
    act(&browser, "cancel", &[("reason", "not needed")], true).await;
    wait_status(engine, "act-3", |s| matches!(s, RunStatus::Cancelled(_))).await;

    // Retry a failed run once its service is fixed; then fork it from a step chosen on the
    // timeline.
    let key = "retry";
    open_gate(&format!("{key}/gate"));
    engine
        .start(stepper, "act-4", key.to_string())
        .await
        .unwrap();
    engine.signal("act-4", "next", 1_u32).await.unwrap();
    wait_status(engine, "act-4", |s| matches!(s, RunStatus::Failed(_))).await;
    browser.goto(&server.run_url("act-4")).await;
    browser
        .wait_text("#run-state", "failed", |t| t.contains("failed"))
        .await;
    bump(&format!("{key}/flaky/fixed"));
    act(&browser, "retry", &[], true).await;
    wait_status(engine, "act-4", |s| matches!(s, RunStatus::Completed)).await;
    let description = engine.describe("act-4").await.unwrap();
    assert!(
        description
            .operator_actions
            .iter()
            .any(|event| format!("{event:?}").contains("local")),
        "the retry is recorded with its actor: {:?}",
        description.operator_actions
    );
    browser
        .wait_text("#run-state", "completed", |t| t.contains("completed"))
        .await;
    browser
        .click_on("#timeline .gantt-row[data-step=\"3\"]")
        .await;
    browser
        .wait_text("#selected-step", "step 3 chosen", |t| t.contains("Step 3"))
        .await;
    browser.click_on("#action-fork").await;
    browser.wait("dialog#confirm[open]").await;
    let from = browser
        .script("return document.querySelector('#confirm-field-from_step').value")
        .await;
    assert_eq!(
        from,
        Value::from("3"),
        "the dialog starts from the chosen step"
    );
    browser.fill("#confirm-field-new_id", "act-4-fork").await;
    browser.click_on("#confirm-ok").await;
    let said = browser
        .wait_text("#action-result", "the fork", |t| t.contains("fork"))
        .await;
    assert!(said.contains("act-4-fork"), "{said}");
    wait_status(engine, "act-4-fork", |s| matches!(s, RunStatus::Completed)).await;
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_show_the_dry_run_count_before_acting() {
    let Some((browser, _permit)) =
        browser("bulk_actions_show_the_dry_run_count_before_acting").await
    else {
        return;
    };
    let server = Server::open().await;
    let engine = &server.engine;
    for n in 0..4 {
        engine.start(waiter, format!("bulk-{n}"), ()).await.unwrap();
    }
    engine.start(waiter, "other-1", ()).await.unwrap();
    browser.goto(&server.url("/?id_prefix=bulk-")).await;
    wait_rows(&browser, "the 4 bulk runs", |ids| ids.len() == 4).await;

    // Cancelled at the confirmation: nothing changes.
    browser.fill("#bulk-reason", "maintenance").await;
    browser.click_on("#bulk-start").await;
    let message = browser.text("#confirm-message").await;
    assert!(message.contains("4 runs match"), "{message}");
    browser.click_on("#confirm-cancel").await;
    browser
        .wait_text("#bulk-result", "nothing done", |t| {
            t.contains("nothing was done")
        })
        .await;
    let paused = engine
        .count_runs(&orchestrator::store::RunQuery::new().paused(true))
        .await
        .unwrap();
    assert_eq!(paused.total, 0);

    // Confirmed: the 4 matching runs are paused, the other one is not.
    browser.click_on("#bulk-start").await;
    browser.wait("dialog#confirm[open]").await;
    browser.click_on("#confirm-ok").await;
    let report = browser
        .wait_text("#bulk-result", "the report", |t| t.contains("applied"))
        .await;
    assert!(report.contains("4 applied"), "{report}");
    for n in 0..4 {
        let pause = engine.describe(&format!("bulk-{n}")).await.unwrap().paused;
        assert_eq!(pause.map(|p| p.reason), Some("maintenance".to_string()));
    }
    assert!(engine.describe("other-1").await.unwrap().paused.is_none());
    browser
        .wait_text("#count-paused", "4 paused", |t| count_in(t) == 4)
        .await;
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_hides_and_refuses_actions() {
    let Some((browser, _permit)) = browser("read_only_mode_hides_and_refuses_actions").await else {
        return;
    };
    let server = Server::start(AdminConfig::builder().read_only(true)).await;
    server.engine.start(waiter, "ro-1", ()).await.unwrap();
    browser.goto(&server.run_url("ro-1")).await;
    browser
        .wait_text("#run-state", "running", |t| t.contains("running"))
        .await;
    browser.wait("#read-only-badge").await;
    for css in ["#actions", "#action-pause"] {
        let shown = browser.find_all(css).await;
        assert!(!browser.displayed(&shown[0]).await, "{css} is hidden");
    }
    // The server refuses even a request the page would not make.
    let answer = browser
        .script_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/api/v1/runs/ro-1/pause', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'}) \
               .then(r => r.json().then(b => done([r.status, b.error.code])));",
        )
        .await;
    assert_eq!(answer, serde_json::json!([403, "read_only"]));
    assert!(
        server
            .engine
            .describe("ro-1")
            .await
            .unwrap()
            .paused
            .is_none()
    );
    browser.goto(&server.url("/")).await;
    wait_rows(&browser, "the run", |ids| ids == ["ro-1"]).await;
    let bulk = browser.find_all("#bulk").await;
    assert!(
        !browser.displayed(&bulk[0]).await,
        "bulk actions are hidden"
    );
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_login_opens_a_session_whose_actions_carry_the_identity() {
    let Some((browser, _permit)) =
        browser("token_login_opens_a_session_whose_actions_carry_the_identity").await
    else {
        return;
    };
    let server = Server::start(AdminConfig::builder().token("alice", ALICE)).await;
    server.engine.start(waiter, "login-1", ()).await.unwrap();

    // Not logged in: the page sends the browser to the login form, which refuses a wrong token.
    browser.goto(&server.run_url("login-1")).await;
    browser.wait("#login").await;
    assert!(browser.url().await.contains("/login?next="));
    browser.fill("#token", "not-the-token-0123456789").await;
    browser.click_on("#login-submit").await;
    browser
        .wait_text("#login-message", "the refusal", |t| {
            t.contains("unknown token")
        })
        .await;
    browser.fill("#token", ALICE).await;
    browser.click_on("#login-submit").await;
    browser
        .wait_text("#run-state", "the run", |t| t.contains("running"))
        .await;
    assert!(browser.text("#who").await.contains("alice"));
    // The cookie is HttpOnly: script cannot read it.
    assert_eq!(
        browser.script("return document.cookie").await,
        Value::from("")
    );

    act(&browser, "pause", &[("reason", "from the dashboard")], true).await;
    let pause = server
        .engine
        .describe("login-1")
        .await
        .unwrap()
        .paused
        .unwrap();
    assert_eq!(
        pause.by, "alice",
        "the action's actor is the token's identity"
    );

    // Logged out: the API refuses the browser again.
    browser.click_on("#logout").await;
    browser.wait("#login").await;
    let answer = browser
        .script_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/api/v1/runs').then(r => done(r.status));",
        )
        .await;
    assert_eq!(answer, Value::from(401));
    server.engine.shutdown().await;
}

/// Markup that would run script if a page parsed it.
const HOSTILE: &[&str] = &[
    "<img src=x onerror=\"window.__xss=1\">",
    "</script><script>window.__xss=2</script>",
    "<svg onload=\"window.__xss=3\"></svg>",
    "\"><iframe src=\"javascript:window.parent.__xss=4\"></iframe>",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_are_shown_as_inert_text() {
    let Some((browser, _permit)) = browser("hostile_payloads_are_shown_as_inert_text").await else {
        return;
    };
    let server = Server::open().await;
    let engine = &server.engine;
    let id = format!("xss{}", HOSTILE[0]);
    let message = HOSTILE.join(" ");
    let _ = engine
        .start(doomed, id.as_str(), message.clone())
        .await
        .unwrap()
        .result()
        .await;
    let check = "return window.__xss === undefined \
        && document.querySelectorAll('img, svg, iframe, main script').length === 0";

    browser.goto(&server.url("/")).await;
    wait_rows(&browser, "the hostile run", |ids| ids == [id.clone()]).await;
    let listed = browser.text("#runs tbody").await;
    for payload in HOSTILE {
        assert!(
            listed.contains(payload),
            "`{payload}` is shown as text: {listed}"
        );
    }
    assert_eq!(
        browser.script(check).await,
        Value::Bool(true),
        "nothing ran"
    );

    browser.click_on("#runs a.run-link").await;
    browser
        .wait_text("#run-id", "the hostile id", |t| t == id)
        .await;
    let outcome = browser.text("#run-outcome").await;
    assert!(outcome.contains(HOSTILE[1]), "{outcome}");
    let input = browser.text("#payload-input").await;
    assert_eq!(serde_json::from_str::<String>(&input).unwrap(), message);
    assert_eq!(
        browser.script(check).await,
        Value::Bool(true),
        "nothing ran"
    );

    browser.goto(&server.url("/workflows")).await;
    let row = browser.text("#workflows tr[data-type=doomed]").await;
    assert!(row.contains(HOSTILE[2]), "{row}");
    assert_eq!(
        browser.script(check).await,
        Value::Bool(true),
        "nothing ran"
    );

    // A large payload starts collapsed, and opens on a click.
    let large = format!("{} {}", HOSTILE[0], "y".repeat(5_000));
    let _ = engine
        .start(doomed, "large", large.clone())
        .await
        .unwrap()
        .result()
        .await;
    browser.goto(&server.run_url("large")).await;
    let summary = browser.text("#payloads details summary").await;
    assert!(
        summary.contains("Input") && summary.contains("characters"),
        "{summary}"
    );
    let input = browser.find_all("#payload-input").await;
    assert!(!browser.displayed(&input[0]).await, "collapsed");
    browser.click_on("#payloads details summary").await;
    let shown = browser.text("#payload-input").await;
    assert_eq!(serde_json::from_str::<String>(&shown).unwrap(), large);
    assert_eq!(
        browser.script(check).await,
        Value::Bool(true),
        "nothing ran"
    );
    server.engine.shutdown().await;
}

/// Serves one HTML page on a loopback port of its own (another origin than the dashboard).
async fn hostile_site(page: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_are_refused() {
    let Some((browser, _permit)) = browser("cross_site_posts_are_refused").await else {
        return;
    };
    for with_token in [false, true] {
        let server = if with_token {
            Server::start(AdminConfig::builder().token("alice", ALICE)).await
        } else {
            Server::open().await
        };
        server.engine.start(waiter, "target", ()).await.unwrap();
        if with_token {
            // The victim is logged in to the dashboard.
            browser.goto(&server.url("/login")).await;
            browser.fill("#token", ALICE).await;
            browser.click_on("#login-submit").await;
            browser.wait("#counts .count").await;
        }
        let target = server.url("/api/v1/runs/target/pause");
        // A no-cors fetch (the response is opaque, but the request would be sent), then a
        // top-level form POST with a JSON-looking text/plain body.
        let page = format!(
            "<!doctype html><body><form id=f method=POST action=\"{target}\" enctype=\"text/plain\">\
             <input name='{{\"reason\":\"x\",\"y\":\"' value='\"}}'></form><script>\
             fetch('{target}', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
               headers: {{'Content-Type': 'text/plain'}}, body: '{{}}'}}) \
               .finally(() => document.getElementById('f').submit());\
             </script></body>"
        );
        let site = hostile_site(page).await;
        // `localhost` is another origin than the dashboard's 127.0.0.1 address.
        browser
            .goto(&format!("http://localhost:{}/", site.port()))
            .await;
        // Without tokens the Origin check refuses it; with them, the SameSite=Strict session
        // cookie is not even sent, so the request has no credentials.
        let expected = if with_token {
            "\"unauthorized\""
        } else {
            "\"cross_site\""
        };
        browser
            .wait_text("body", "the admin server's refusal", |t| {
                t.contains(expected)
            })
            .await;
        let description = server.engine.describe("target").await.unwrap();
        assert!(
            description.paused.is_none(),
            "the cross-site POST paused the run"
        );
        assert_eq!(description.state, RunState::Running);
        server.engine.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Without a browser: the dashboard's HTTP contract (these run even where Chromium is missing).

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_assets_carry_strict_security_headers() {
    let server = Server::open().await;
    let client = http();
    for (path, content_type) in [
        ("/", "text/html"),
        ("/workflows", "text/html"),
        ("/login", "text/html"),
        ("/runs/a%2Fb", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/gantt.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let policy = header("content-security-policy");
        assert!(policy.contains("script-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
    }
    for path in ["/assets/nope.js", "/assets/..%2Fmod.rs", "/assets/"] {
        let (status, body) = json_of(client.get(server.url(path)).send().await.unwrap()).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_endpoint_counts_by_state_with_the_list_filters() {
    let server = Server::open().await;
    let engine = &server.engine;
    for n in 0..3 {
        engine
            .start(quick, format!("c-{n}"), n)
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    let _ = engine
        .start(doomed, "d-1", "broken pipe".to_string())
        .await
        .unwrap()
        .result()
        .await;
    engine.start(waiter, "w-1", ()).await.unwrap();
    engine.pause("w-1", "ops", "hold").await.unwrap();
    let client = http();
    let counts = |query: &'static str| {
        let client = client.clone();
        let url = server.url(&format!("/api/v1/counts{query}"));
        async move { json_of(client.get(url).send().await.unwrap()).await }
    };
    let (status, body) = counts("").await;
    assert_eq!(status, 200, "{body}");
    let all = &body["counts"];
    assert_eq!(
        (
            all["total"].as_u64(),
            all["completed"].as_u64(),
            all["failed"].as_u64()
        ),
        (Some(5), Some(3), Some(1))
    );
    assert_eq!(
        (all["running"].as_u64(), all["paused"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, body) = counts("?type=quick&after=c-1&limit=1").await;
    assert_eq!(
        body["counts"]["total"], 3,
        "the cursor and limit are ignored"
    );
    let (_, body) = counts("?error_contains=PIPE").await;
    assert_eq!(body["counts"]["failed"], 1);
    assert_eq!(body["counts"]["total"], 1);
    let (_, body) = counts("?paused=true").await;
    assert_eq!(body["counts"]["total"], 1);
    for bad in ["?status=exploded", "?nope=1", "?created_from_ms=soon"] {
        let (status, body) = counts(bad).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_query")),
            "{bad}"
        );
    }
    let (status, body) = json_of(
        client
            .get(server.url("/api/v1/workflows/summary"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let doomed_type = body["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "doomed")
        .unwrap();
    assert_eq!(doomed_type["failed_last_24h"], 1);
    assert_eq!(doomed_type["recent_failures"][0]["workflow_id"], "d-1");
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_trades_a_token_for_an_http_only_session_cookie() {
    let server = Server::start(AdminConfig::builder().token("alice", ALICE).read_only(true)).await;
    server.engine.start(waiter, "s-1", ()).await.unwrap();
    let client = http();
    let login = |token: &str| {
        client
            .post(server.url("/api/v1/session"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "token": token }).to_string())
    };
    // Without credentials: the data is refused, the page shells are not.
    let (status, _) = json_of(client.get(server.url("/api/v1/runs")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let (status, _) = json_of(
        client
            .get(server.url("/api/v1/counts"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        client.get(server.url("/")).send().await.unwrap().status(),
        200
    );

    let (status, body) = json_of(login("wrong-token-0123456789abc").send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // A login posted from another site is refused before the token is looked at.
    let (status, body) = json_of(
        login(ALICE)
            .header("origin", "http://evil.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("cross_site"))
    );

    // A read-only server still lets people log in.
    let response = login(ALICE).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    assert!(
        session.starts_with("orchestrator_session=") && session.len() > 60,
        "{session}"
    );

    let (status, body) = json_of(
        client
            .get(server.url("/api/v1/session"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["identity"], "alice");
    assert_eq!(body["read_only"], true);
    let (status, _) = json_of(
        client
            .get(server.url("/api/v1/runs"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    // Read-only: the session cannot act.
    let (status, body) = json_of(
        client
            .post(server.url("/api/v1/runs/s-1/pause"))
            .header("cookie", &session)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("read_only"))
    );
    // A forged session id is nobody.
    let (status, _) = json_of(
        client
            .get(server.url("/api/v1/runs"))
            .header(
                "cookie",
                "orchestrator_session=00000000000000000000000000000000",
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // Logged out: the cookie is cleared and the id no longer works.
    let response = client
        .post(server.url("/api/v1/session/logout"))
        .header("cookie", &session)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _) = json_of(
        client
            .get(server.url("/api/v1/runs"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    server.engine.shutdown().await;
}

/// Reserves stock for `order`; its first attempt times out (after a moment of work), the retry
/// succeeds.
#[activity(retry(max_attempts = 3, backoff = "150ms..150ms", jitter = 0.0))]
async fn reserve(order: String) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_millis(120)).await;
    if bump(&format!("{order}/reserve")) == 1 {
        return Err(ActivityError::retryable("the stock service timed out"));
    }
    Ok(format!("{order} reserved"))
}

/// Charges `order` after a moment of work.
#[activity]
async fn charge(order: String) -> Result<String, ActivityError> {
    tokio::time::sleep(Duration::from_millis(80)).await;
    Ok(format!("{order} charged"))
}

/// Reserves (retried once), waits out a cooling-off timer, then charges.
#[workflow]
async fn checkout(ctx: WorkflowContext, order: String) -> Result<String, WorkflowError> {
    let reserved = ctx.call(reserve, order.clone()).await?;
    ctx.sleep(Duration::from_millis(300)).await?;
    let charged = ctx.call(charge, order).await?;
    Ok(format!("{reserved}, {charged}"))
}

/// The runs page over a mix of states and a run page whose timeline shows a failed attempt, its
/// retry and a timer: what the README's screenshots show (`dashboard-runs.png` and
/// `dashboard-run.png`, taken with `ORCHESTRATOR_DASHBOARD_SCREENSHOTS=$PWD/docs/images` from the
/// repository's root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_shows_a_failed_attempt_its_retry_and_a_timer() {
    let Some((browser, _permit)) =
        browser("run_page_shows_a_failed_attempt_its_retry_and_a_timer").await
    else {
        return;
    };
    let db = TestDb::new();
    let engine = registered(db.builder())
        .register(checkout)
        .register(reserve)
        .register(charge)
        .admin(
            AdminConfig::builder()
                .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .build(),
        )
        .start()
        .await
        .unwrap();
    let server = Server {
        addr: engine.admin_addr().expect("the admin API listens"),
        engine,
        _db: db,
    };
    let engine = &server.engine;
    let orders: Vec<String> = (1..=4).map(|n| format!("order-{}", 1040 + n)).collect();
    let handles = futures::future::join_all(
        orders
            .iter()
            .map(|order| engine.start(checkout, order.clone(), order.clone())),
    )
    .await;
    for handle in handles {
        handle.unwrap().result().await.unwrap();
    }
    let declined = engine
        .start(
            doomed,
            "order-1045",
            "card declined by the issuer".to_string(),
        )
        .await
        .unwrap();
    let _ = declined.result().await;
    engine.start(waiter, "approval-77", ()).await.unwrap();
    engine.start(waiter, "approval-78", ()).await.unwrap();
    engine
        .pause("approval-78", "alice", "waiting for finance")
        .await
        .unwrap();
    for n in 0..3 {
        engine
            .start(quick, format!("report-{n}"), n)
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }

    browser.goto(&server.url("/")).await;
    browser
        .wait_text("#count-total", "10 runs", |t| count_in(t) == 10)
        .await;
    assert_eq!(count_in(&browser.text("#count-completed").await), 7);
    assert_eq!(count_in(&browser.text("#count-failed").await), 1);
    assert_eq!(count_in(&browser.text("#count-paused").await), 1);
    wait_rows(&browser, "the ten runs", |ids| ids.len() == 10).await;
    browser.screenshot("dashboard-runs").await;

    browser.goto(&server.run_url("order-1041")).await;
    browser
        .wait_text("#run-state", "completed", |t| t.contains("completed"))
        .await;
    // Step 1: a failed attempt, then the retry that succeeded; then the timer; then step 3.
    browser
        .wait_script(
            "a failed and a succeeded attempt of step 1, and a timer bar",
            "const row = document.querySelector('#timeline .gantt-row[data-step=\"1\"]'); \
             return !!row && !!row.querySelector('.bar.outcome-failed') \
               && !!row.querySelector('.bar.outcome-succeeded') \
               && !!document.querySelector('#timeline .bar.kind-timer')",
        )
        .await;
    let errors = browser.text("#attempt-errors").await;
    assert!(errors.contains("the stock service timed out"), "{errors}");
    browser.screenshot("dashboard-run").await;
    server.engine.shutdown().await;
}
