//! The embedded admin HTTP API end to end: a real engine on an SQLite file serving loopback, a real
//! HTTP client, with tokens and without; every hostile case answered with a JSON 4xx that changes
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use orchestrator::admin::AdminConfig;
use orchestrator::prelude::*;
use orchestrator::{Engine, EngineBuilder};
use orchestrator_tests::pg_schema::PgSchema;
use orchestrator_tests::{PATIENCE, TestDb, bump, count, eventually, finish, stop, wait_status};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALICE: &str = "alice-secret-0123456789abcdef";
const BOB: &str = "bob-secret-0123456789abcdefghij";

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

/// Fails at once.
#[workflow]
async fn doomed(_ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
    Err(WorkflowError::failed("doomed from the start"))
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

/// Counts its executions under `key`.
#[activity]
async fn counted(key: String) -> Result<String, ActivityError> {
    Ok(format!("{key}#{}", bump(&key)))
}

/// Step 1 counted (its input depends on the key only), step 2 flaky (on the tag too).
#[workflow]
async fn two_steps(ctx: WorkflowContext, input: (String, u32)) -> Result<String, WorkflowError> {
    let (key, tag) = input;
    let first = ctx.call(counted, format!("{key}/1")).await?;
    let second = ctx.call(flaky, format!("{key}/2-{tag}")).await?;
    Ok(format!("{first}|{second}"))
}

fn registered(builder: EngineBuilder) -> EngineBuilder {
    builder
        // The type of `waiter`'s signal, for JSON payloads sent before any run waited for it.
        .signal_type::<_, u32>(waiter, "go")
        .register(waiter)
        .register(quick)
        .register(doomed)
        .register(two_steps)
        .register(flaky)
        .register(counted)
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// An engine on an SQLite file serving the admin API on a free loopback port.
struct Server {
    _db: TestDb,
    engine: Engine,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Server {
    async fn start(config: orchestrator::admin::AdminConfigBuilder) -> Server {
        let db = TestDb::new();
        let engine = registered(db.builder())
            .admin(config.bind(loopback_any_port()).build())
            .start()
            .await
            .unwrap();
        let addr = engine.admin_addr().expect("the admin API listens");
        Server {
            _db: db,
            engine,
            addr,
            http: client(),
        }
    }

    async fn open() -> Server {
        Server::start(AdminConfig::builder().sse_poll_interval(Duration::from_millis(20))).await
    }

    async fn with_tokens() -> Server {
        Server::start(
            AdminConfig::builder()
                .token("alice", ALICE)
                .token("bob", BOB)
                .sse_poll_interval(Duration::from_millis(20)),
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    /// A POST with a JSON body.
    fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    /// Starts a run waiting for its `go` signal.
    async fn waiting_run(&self, id: &str) {
        self.engine.start(waiter, id, ()).await.unwrap();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// The status and JSON body of a response; every answer of the API is JSON.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the admin API answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("status {status}: body `{text}` is not JSON: {error}"));
    assert!(
        content_type.starts_with("application/json"),
        "status {status}: content type `{content_type}` for {text}"
    );
    (status, body)
}

/// Asserts a JSON error with `status` and `code`.
async fn refused(request: reqwest::RequestBuilder, status: u16, code: &str) -> Value {
    let (got, body) = answer(request).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// Sends raw bytes over a new connection and returns the status code and the body text.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response)).await;
    let _ = read.expect("the server answers and closes");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// The ids of a run list answer.
fn ids(body: &Value) -> Vec<String> {
    body["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("not a run list: {body}"))
        .iter()
        .map(|run| run["workflow_id"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts that the run is still running, with no cancellation requested.
async fn untouched(server: &Server, id: &str) {
    untouched_on(&server.engine, id).await;
}

// ---------------------------------------------------------------------------------------------------
// Reading runs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_list_and_one_run_without_tokens() {
    let server = Server::open().await;
    let (status, body) = answer(server.get("/api/v1/health")).await;
    assert_eq!((status, body), (200, json!({ "status": "live" })));
    server.engine.recovered().await;
    let (status, body) = answer(server.get("/api/v1/ready")).await;
    assert_eq!((status, body), (200, json!({ "status": "ready" })));
    let (status, body) = answer(server.get("/api/v1/workflows")).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({ "workflows": ["doomed", "quick", "two_steps", "waiter"] })
        )
    );
    let response = server.get("/api/v1/runs").send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");

    for n in 1..=3 {
        let run = server
            .engine
            .start(quick, format!("order-{n}"), n)
            .await
            .unwrap();
        finish(&run).await.unwrap();
    }
    let failed = server.engine.start(doomed, "order-4", ()).await.unwrap();
    assert!(finish(&failed).await.is_err());
    server.waiting_run("order/5 with \"quotes\"").await;
    server.waiting_run("zeta").await;

    // Everything, ordered by id.
    let (status, all) = answer(server.get("/api/v1/runs")).await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&all),
        [
            "order-1",
            "order-2",
            "order-3",
            "order-4",
            "order/5 with \"quotes\"",
            "zeta"
        ]
    );
    assert_eq!(all["next"], Value::Null);
    let first = &all["runs"][0];
    assert_eq!(first["workflow_name"], "quick");
    assert_eq!(first["state"], "completed");
    assert_eq!(first["outcome"], Value::Null);
    assert!(first["created_at_ms"].as_i64().unwrap() > 0);

    // Filters: status (repeated or comma-separated), type, id prefix.
    let (_, body) = answer(server.get("/api/v1/runs?status=failed")).await;
    assert_eq!(ids(&body), ["order-4"]);
    assert!(
        body["runs"][0]["outcome"]
            .as_str()
            .unwrap()
            .contains("doomed from the start"),
        "{body}"
    );
    let (_, body) = answer(server.get("/api/v1/runs?status=failed&status=running")).await;
    assert_eq!(ids(&body), ["order-4", "order/5 with \"quotes\"", "zeta"]);
    let (_, body) = answer(server.get("/api/v1/runs?status=failed,running&type=waiter")).await;
    assert_eq!(ids(&body), ["order/5 with \"quotes\"", "zeta"]);
    let (_, body) = answer(server.get("/api/v1/runs?id_prefix=order-")).await;
    assert_eq!(ids(&body), ["order-1", "order-2", "order-3", "order-4"]);

    // Paging with a cursor.
    let (_, page) = answer(server.get("/api/v1/runs?limit=4")).await;
    assert_eq!(ids(&page).len(), 4);
    let next = page["next"].as_str().unwrap().to_string();
    let (_, rest) =
        answer(server.get(&format!("/api/v1/runs?limit=4&after={}", encode(&next)))).await;
    assert_eq!(ids(&rest), ["order/5 with \"quotes\"", "zeta"]);
    // A limit over the cap is capped, not refused.
    let (status, _) = answer(server.get("/api/v1/runs?limit=1000000")).await;
    assert_eq!(status, 200);

    // Bad filters are refused, not ignored.
    refused(server.get("/api/v1/runs?status=exploded"), 400, "bad_query").await;
    refused(server.get("/api/v1/runs?limit=many"), 400, "bad_query").await;
    refused(server.get("/api/v1/runs?stauts=failed"), 400, "bad_query").await;

    // One run, by id (percent-encoded: `/` and quotes are part of it).
    let (status, run) = answer(server.get("/api/v1/runs/order-4")).await;
    assert_eq!(status, 200);
    assert_eq!(run["workflow_id"], "order-4");
    assert_eq!(run["state"], "failed");
    let (status, run) = answer(server.get("/api/v1/runs/order%2F5%20with%20%22quotes%22")).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["workflow_id"], "order/5 with \"quotes\"");
    assert_eq!(run["state"], "running");
    refused(server.get("/api/v1/runs/no-such-run"), 404, "not_found").await;

    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_recovery_of_unfinished_runs() {
    let db = TestDb::new();
    let first = registered(db.builder()).start().await.unwrap();
    first.start(waiter, "unfinished", ()).await.unwrap();
    stop(first).await;

    // The next engine's recovery is held up reading that run's journal.
    let store = std::sync::Arc::new(orchestrator_tests::SlowStore::open(db.path()).await);
    store.delay_history_of("unfinished", Duration::from_millis(1500));
    let engine = registered(Engine::builder())
        .store(store)
        .admin(AdminConfig::builder().bind(loopback_any_port()).build())
        .start()
        .await
        .unwrap();
    let addr = engine.admin_addr().unwrap();
    let http = client();
    let (status, body) = answer(http.get(format!("http://{addr}/api/v1/ready"))).await;
    assert_eq!((status, body), (503, json!({ "status": "recovering" })));
    // Live meanwhile, and serving views.
    let (status, _) = answer(http.get(format!("http://{addr}/api/v1/health"))).await;
    assert_eq!(status, 200);
    let (status, _) = answer(http.get(format!("http://{addr}/api/v1/runs/unfinished"))).await;
    assert_eq!(status, 200);
    engine.recovered().await;
    let (status, body) = answer(http.get(format!("http://{addr}/api/v1/ready"))).await;
    assert_eq!((status, body), (200, json!({ "status": "ready" })));
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Actions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_records_the_token_identity_and_refuses_what_does_not_apply() {
    let server = Server::with_tokens().await;
    server.waiting_run("seat-1").await;
    server.waiting_run("seat-2").await;

    let (status, body) = answer(
        server
            .post(
                "/api/v1/runs/seat-1/cancel",
                json!({ "reason": "customer left" }),
            )
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["actor"], "alice");
    let cancelled = wait_status(&server.engine, "seat-1", |s| {
        matches!(s, RunStatus::Cancelled(_))
    })
    .await;
    assert!(
        matches!(&cancelled, RunStatus::Cancelled(WorkflowError::Cancelled { reason }) if reason == "customer left"),
        "{cancelled:?}"
    );

    // Without a reason, the reason names the actor.
    let (status, body) = answer(
        server
            .post("/api/v1/runs/seat-2/cancel", json!({}))
            .bearer_auth(BOB),
    )
    .await;
    assert_eq!((status, &body["actor"]), (200, &json!("bob")), "{body}");
    let cancelled = wait_status(&server.engine, "seat-2", |s| {
        matches!(s, RunStatus::Cancelled(_))
    })
    .await;
    assert!(format!("{cancelled:?}").contains("bob"), "{cancelled:?}");

    // A finished run, an unknown run.
    refused(
        server
            .post("/api/v1/runs/seat-1/cancel", json!({}))
            .bearer_auth(ALICE),
        409,
        "run_finished",
    )
    .await;
    refused(
        server
            .post("/api/v1/runs/seat-3/cancel", json!({}))
            .bearer_auth(ALICE),
        404,
        "not_found",
    )
    .await;
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_timeline_and_signal_with_a_json_payload() {
    let server = Server::with_tokens().await;
    server.waiting_run("signalled").await;
    let (status, run) = answer(server.get("/api/v1/runs/signalled").bearer_auth(ALICE)).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["workflow_name"], "waiter");
    assert_eq!(run["state"], "running");
    assert_eq!(run["input"], json!({ "json": null }));
    assert!(run["blocked_on_text"].as_str().is_some(), "{run}");

    // A payload of the wrong type, an unknown signal name, a missing name: refused, nothing sent.
    refused(
        server
            .post(
                "/api/v1/runs/signalled/signal",
                json!({ "name": "go", "payload": "seven" }),
            )
            .bearer_auth(ALICE),
        400,
        "bad_payload",
    )
    .await;
    refused(
        server
            .post(
                "/api/v1/runs/signalled/signal",
                json!({ "name": "stop", "payload": 1 }),
            )
            .bearer_auth(ALICE),
        422,
        "unknown_payload_type",
    )
    .await;
    refused(
        server
            .post("/api/v1/runs/signalled/signal", json!({ "payload": 1 }))
            .bearer_auth(ALICE),
        400,
        "invalid_body",
    )
    .await;
    refused(
        server
            .post(
                "/api/v1/runs/nobody/signal",
                json!({ "name": "go", "payload": 1 }),
            )
            .bearer_auth(ALICE),
        404,
        "not_found",
    )
    .await;
    let (_, run) = answer(server.get("/api/v1/runs/signalled").bearer_auth(ALICE)).await;
    assert_eq!(run["pending_signals"], json!([]));
    assert_eq!(run["state"], "running");

    let (status, body) = answer(
        server
            .post(
                "/api/v1/runs/signalled/signal",
                json!({ "name": "go", "payload": 7 }),
            )
            .bearer_auth(BOB),
    )
    .await;
    assert_eq!((status, &body["actor"]), (200, &json!("bob")), "{body}");
    let run = server.engine.handle(waiter, "signalled").await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 7);
    // A finished run takes no signal.
    refused(
        server
            .post(
                "/api/v1/runs/signalled/signal",
                json!({ "name": "go", "payload": 1 }),
            )
            .bearer_auth(ALICE),
        409,
        "run_finished",
    )
    .await;

    let (status, timeline) = answer(
        server
            .get("/api/v1/runs/signalled/timeline")
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!(timeline["workflow_id"], "signalled");
    assert_eq!(timeline["state"], "completed");
    let steps = timeline["timeline"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{timeline}");
    assert!(steps[0].to_string().contains("go"), "{timeline}");
    refused(
        server
            .get("/api/v1/runs/nobody/timeline")
            .bearer_auth(ALICE),
        404,
        "not_found",
    )
    .await;
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_fork_over_http_record_the_actor_and_refuse_what_does_not_apply() {
    let server = Server::with_tokens().await;
    let key = format!("admin-repair-{}", fastrand::u64(..));
    let run = server
        .engine
        .start(two_steps, "repair-1", (key.clone(), 0))
        .await
        .unwrap();
    assert!(finish(&run).await.is_err(), "step 2 fails");
    assert_eq!(
        (count(&format!("{key}/1")), count(&format!("{key}/2-0"))),
        (1, 1)
    );

    // Refusals first: a running run cannot be retried, a bad fork creates nothing.
    server.waiting_run("repair-running").await;
    refused(
        server
            .post("/api/v1/runs/repair-running/retry", json!({}))
            .bearer_auth(ALICE),
        409,
        "not_applicable",
    )
    .await;
    refused(
        server
            .post("/api/v1/runs/repair-1/retry", json!({ "step": 2 }))
            .bearer_auth(ALICE),
        400,
        "invalid_body",
    )
    .await;
    for (body, status, code) in [
        (
            json!({ "from_step": 0, "new_id": "repair-2" }),
            409,
            "not_applicable",
        ),
        (
            json!({ "from_step": 2, "new_id": "repair-running" }),
            409,
            "not_applicable",
        ),
        (json!({ "from_step": 2 }), 400, "invalid_body"),
        (
            json!({ "from_step": -1, "new_id": "repair-2" }),
            400,
            "invalid_body",
        ),
        (
            json!({ "from_step": 2, "new_id": "x".repeat(2048) }),
            400,
            "invalid_identifier",
        ),
        (
            json!({ "from_step": 2, "new_id": "repair-2", "input": 42 }),
            400,
            "bad_payload",
        ),
    ] {
        refused(
            server
                .post("/api/v1/runs/repair-1/fork", body)
                .bearer_auth(ALICE),
            status,
            code,
        )
        .await;
    }
    refused(
        server
            .post(
                "/api/v1/runs/nobody/fork",
                json!({ "from_step": 1, "new_id": "repair-2" }),
            )
            .bearer_auth(ALICE),
        404,
        "not_found",
    )
    .await;
    assert!(matches!(
        server.engine.status("repair-2").await,
        Err(orchestrator::Error::NotFound { .. })
    ));

    // A new input that changes step 1 does not replay the prefix: refused, naming the step.
    let body = refused(
        server
            .post(
                "/api/v1/runs/repair-1/fork",
                json!({ "from_step": 2, "new_id": "repair-2", "input": [format!("{key}-other"), 1] }),
            )
            .bearer_auth(BOB),
        409,
        "not_applicable",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("step 1"),
        "{body}"
    );

    // Fork from step 2 with a new input (JSON of the workflow's input type): step 1 is replayed, not
    // run; step 2 runs live with the new tag and fails (the service is still down).
    let (status, body) = answer(
        server
            .post(
                "/api/v1/runs/repair-1/fork",
                json!({ "from_step": 2, "new_id": "repair-2", "input": [key, 1] }),
            )
            .bearer_auth(BOB),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (&body["workflow_id"], &body["forked_from"], &body["actor"]),
        (&json!("repair-2"), &json!("repair-1"), &json!("bob"))
    );
    wait_status(&server.engine, "repair-2", |s| {
        matches!(s, RunStatus::Failed(_))
    })
    .await;
    assert_eq!(count(&format!("{key}/1")), 1, "step 1 was not run again");
    assert_eq!(
        count(&format!("{key}/2-1")),
        1,
        "step 2 ran live with the new input"
    );

    // Retry after the fix: only the failed step runs again.
    bump(&format!("{key}/2-0/fixed"));
    let (status, body) = answer(
        server
            .post("/api/v1/runs/repair-1/retry", json!({}))
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!((status, &body["actor"]), (200, &json!("alice")), "{body}");
    wait_status(&server.engine, "repair-1", |s| {
        matches!(s, RunStatus::Completed)
    })
    .await;
    assert_eq!(
        (count(&format!("{key}/1")), count(&format!("{key}/2-0"))),
        (1, 2)
    );

    // The actors are in the runs' journals.
    let retried = operator_actors(&server, "repair-1").await;
    assert!(retried.contains(&"alice".to_string()), "{retried:?}");
    assert!(
        retried.contains(&"bob".to_string()),
        "{retried:?} (ForkedTo)"
    );
    let forked = operator_actors(&server, "repair-2").await;
    assert_eq!(forked, ["bob"]);
    stop(server.engine).await;
}

/// The actors of the operator events in a run's journal, in order.
async fn operator_actors(server: &Server, id: &str) -> Vec<String> {
    let codec = orchestrator::codec::Codec::default();
    server
        .engine
        .store()
        .history(id)
        .await
        .unwrap()
        .iter()
        .filter_map(|event| {
            match codec.decode::<orchestrator::journal::EventBody>(&event.payload) {
                Ok(orchestrator::journal::EventBody::Operator { actor, .. }) => Some(actor),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_terminate_over_http_record_the_actor() {
    let server = Server::with_tokens().await;
    server.waiting_run("op-1").await;
    server.waiting_run("op-2").await;

    let (status, body) = answer(
        server
            .post(
                "/api/v1/runs/op-1/pause",
                json!({ "reason": "investigating" }),
            )
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!((status, &body["actor"]), (200, &json!("alice")), "{body}");
    let (_, run) = answer(server.get("/api/v1/runs?paused=true").bearer_auth(ALICE)).await;
    assert_eq!(ids(&run), ["op-1"]);
    assert_eq!(run["runs"][0]["paused"]["by"], "alice", "{run}");
    assert_eq!(run["runs"][0]["paused"]["reason"], "investigating");
    let (_, run) = answer(
        server
            .get("/api/v1/runs?paused=false&type=waiter")
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!(ids(&run), ["op-2"]);
    refused(
        server.get("/api/v1/runs?paused=maybe").bearer_auth(ALICE),
        400,
        "bad_query",
    )
    .await;

    // Resume of a run that is not paused: refused, nothing changes.
    refused(
        server
            .post("/api/v1/runs/op-2/resume", json!({}))
            .bearer_auth(BOB),
        409,
        "not_applicable",
    )
    .await;
    let (status, body) = answer(
        server
            .post("/api/v1/runs/op-1/resume", json!({}))
            .bearer_auth(BOB),
    )
    .await;
    assert_eq!((status, &body["actor"]), (200, &json!("bob")), "{body}");
    let actors = operator_actors(&server, "op-1").await;
    assert_eq!(actors, ["alice", "bob"]);

    let (status, _) = answer(
        server
            .post(
                "/api/v1/runs/op-2/terminate",
                json!({ "reason": "duplicate" }),
            )
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!(status, 200);
    wait_status(&server.engine, "op-2", |s| {
        matches!(s, RunStatus::Terminated(_))
    })
    .await;
    let (_, run) = answer(
        server
            .get("/api/v1/runs?status=terminated")
            .bearer_auth(ALICE),
    )
    .await;
    assert_eq!(ids(&run), ["op-2"]);
    assert!(
        run["runs"][0]["outcome"]
            .as_str()
            .unwrap()
            .contains("duplicate"),
        "{run}"
    );
    refused(
        server
            .post("/api/v1/runs/op-2/terminate", json!({ "reason": "again" }))
            .bearer_auth(ALICE),
        409,
        "run_finished",
    )
    .await;
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_with_a_dry_run_a_limit_and_hostile_bodies() {
    let server = Server::open().await;
    for n in 0..6 {
        server.waiting_run(&format!("bulk-{n}")).await;
    }
    server.waiting_run("other-0").await;

    // A dry run counts and lists, changes nothing.
    let (status, report) = answer(server.post(
        "/api/v1/bulk/pause",
        json!({ "id_prefix": "bulk-", "status": ["running"], "dry_run": true, "reason": "maintenance" }),
    ))
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["matched"].as_u64(), report["applied"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(report["first_ids"][0], "bulk-0");
    assert_eq!(report["dry_run"], true);
    let (_, paused) = answer(server.get("/api/v1/runs?paused=true")).await;
    assert_eq!(ids(&paused), Vec::<String>::new());

    // With a limit: the first 4 by id.
    let (_, report) = answer(server.post(
        "/api/v1/bulk/pause",
        json!({ "id_prefix": "bulk-", "limit": 4, "reason": "maintenance" }),
    ))
    .await;
    assert_eq!(
        (report["matched"].as_u64(), report["applied"].as_u64()),
        (Some(4), Some(4)),
        "{report}"
    );
    assert_eq!(report["actor"], "local");
    let (_, paused) = answer(server.get("/api/v1/runs?paused=true")).await;
    assert_eq!(ids(&paused), ["bulk-0", "bulk-1", "bulk-2", "bulk-3"]);

    // Resume everything paused.
    let (_, report) = answer(server.post("/api/v1/bulk/resume", json!({ "paused": true }))).await;
    assert_eq!(report["applied"].as_u64(), Some(4), "{report}");
    let (_, paused) = answer(server.get("/api/v1/runs?paused=true")).await;
    assert_eq!(ids(&paused), Vec::<String>::new());

    // Hostile bulk requests change nothing.
    refused(
        server.post("/api/v1/bulk/explode", json!({})),
        404,
        "no_such_endpoint",
    )
    .await;
    // Bulk retry goes through `Engine::retry` run by run: a run that failed in its own code has no
    // step to run again, so it is reported as a problem, not applied.
    let failed = server
        .engine
        .start(doomed, "bulk-doomed", ())
        .await
        .unwrap();
    assert!(failed.result().await.is_err());
    let (status, report) = answer(server.post(
        "/api/v1/bulk/retry",
        json!({ "id_prefix": "bulk-doomed", "status": ["failed"] }),
    ))
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["matched"].as_u64(), report["applied"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );
    assert_eq!(report["problems"][0]["code"], "not_applicable", "{report}");
    for body in [
        json!({ "sql": "DELETE FROM runs" }),
        json!({ "status": ["exploded"] }),
        json!({ "status": [{ "a": 1 }] }),
        json!({ "dry_run": "yes" }),
        json!({ "limit": -1 }),
        json!({ "limit": 0 }),
        json!({ "reason": 42 }),
        json!({ "id_prefix": "x".repeat(2048) }),
    ] {
        let (status, answer_body) =
            answer(server.post("/api/v1/bulk/terminate", body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer_body}");
    }
    refused(
        server.post("/api/v1/bulk/terminate", json!([1])),
        400,
        "invalid_body",
    )
    .await;
    let (_, running) = answer(server.get("/api/v1/runs?status=running")).await;
    assert_eq!(ids(&running).len(), 7);
    stop(server.engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Authentication, read-only mode

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_every_endpoint_but_health_needs_a_valid_bearer_token() {
    let server = Server::with_tokens().await;
    server.waiting_run("guarded").await;

    // Health needs none.
    let (status, _) = answer(server.get("/api/v1/health")).await;
    assert_eq!(status, 200);

    let views = [
        "/api/v1/ready",
        "/api/v1/runs",
        "/api/v1/runs/guarded",
        "/api/v1/nowhere",
    ];
    for path in views {
        let response = server.get(path).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"orchestrator\""
        );
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        for bad in [
            format!("Bearer {ALICE}x"),
            format!("Bearer {}", &ALICE[..ALICE.len() - 1]),
            "Bearer ".to_string(),
            format!("Basic {ALICE}"),
            ALICE.to_string(),
            format!("Bearer {}", ALICE.to_uppercase()),
        ] {
            refused(
                server.get(path).header("authorization", bad.as_str()),
                401,
                "unauthorized",
            )
            .await;
        }
    }
    // Actions too, and nothing changes.
    refused(
        server.post("/api/v1/runs/guarded/cancel", json!({})),
        401,
        "unauthorized",
    )
    .await;
    refused(
        server
            .post("/api/v1/runs/guarded/cancel", json!({}))
            .bearer_auth("not-a-token-of-this-server"),
        401,
        "unauthorized",
    )
    .await;
    untouched(&server, "guarded").await;

    // The right token works, whatever the scheme's case.
    let (status, _) = answer(server.get("/api/v1/runs").bearer_auth(BOB)).await;
    assert_eq!(status, 200);
    let (status, _) = answer(
        server
            .get("/api/v1/runs/guarded")
            .header("authorization", format!("bearer {ALICE}")),
    )
    .await;
    assert_eq!(status, 200);
    // With a token, any Host is accepted (the token is the defence).
    let (status, _) = answer(
        server
            .get("/api/v1/runs")
            .bearer_auth(ALICE)
            .header("host", "admin.example"),
    )
    .await;
    assert_eq!(status, 200);
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_refuses_every_action_and_serves_views() {
    let server = Server::start(AdminConfig::builder().read_only(true)).await;
    server.waiting_run("ro-1").await;
    for (path, body) in [
        ("/api/v1/runs/ro-1/cancel", json!({ "reason": "no" })),
        (
            "/api/v1/runs/ro-1/signal",
            json!({ "name": "go", "payload": 1 }),
        ),
        ("/api/v1/runs/ro-1/pause", json!({ "reason": "no" })),
        ("/api/v1/runs/ro-1/resume", json!({})),
        ("/api/v1/runs/ro-1/retry", json!({})),
        ("/api/v1/runs/ro-1/terminate", json!({ "reason": "no" })),
        (
            "/api/v1/runs/ro-1/fork",
            json!({ "from_step": 1, "new_id": "ro-2" }),
        ),
        ("/api/v1/bulk/cancel", json!({ "status": ["running"] })),
    ] {
        refused(server.post(path, body), 403, "read_only").await;
    }
    untouched(&server, "ro-1").await;
    let (status, body) = answer(server.get("/api/v1/runs/ro-1")).await;
    assert_eq!((status, &body["state"]), (200, &json!("running")));
    stop(server.engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Hostile input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_json_errors_and_change_nothing() {
    let server = Server::start(AdminConfig::builder().body_limit(1024)).await;
    server.waiting_run("target").await;
    let cancel = "/api/v1/runs/target/cancel";

    // Too large: declared, and streamed in chunks without a length.
    let huge = json!({ "reason": "x".repeat(2048) });
    refused(server.post(cancel, huge.clone()), 413, "body_too_large").await;
    let chunked = format!(
        "POST {cancel} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
        (0..8)
            .map(|_| format!("200\r\n{}\r\n", "x".repeat(0x200)))
            .collect::<String>()
            + "0\r\n\r\n"
    );
    let (status, body) = raw(server.addr, chunked.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body_too_large"), "{body}");

    // Not JSON, not an object of this endpoint, not declared as JSON.
    for text in ["{\"reason\": ", "not json", "\u{0}", "{'reason': 'x'}"] {
        refused(
            server
                .http
                .post(server.url(cancel))
                .header("content-type", "application/json")
                .body(text),
            400,
            "malformed_json",
        )
        .await;
    }
    for body in [
        json!({ "reason": 42 }),
        json!({ "reason": "ok", "sql": "DROP TABLE runs" }),
        json!(["reason"]),
        json!("reason"),
    ] {
        refused(server.post(cancel, body), 400, "invalid_body").await;
    }
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let mut request = server.http.post(server.url(cancel)).body("{}");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        refused(request, 415, "unsupported_media_type").await;
    }
    untouched(&server, "target").await;

    // The same content type with a charset is fine.
    let (status, _) = answer(
        server
            .http
            .post(server.url(cancel))
            .header("content-type", "application/json; charset=utf-8")
            .body("{\"reason\": \"fine\"}"),
    )
    .await;
    assert_eq!(status, 200);
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_paths_get_json_errors_and_change_nothing() {
    let server = Server::open().await;
    server.waiting_run("target").await;
    server.waiting_run("target/child").await;
    let long = "a".repeat(2048);

    for id in [
        "target%00",
        "%00",
        "target%27%20OR%20%271%27%3D%271",
        "%22target%22",
        "..%2F..%2Fetc%2Fpasswd",
        "target%2F..",
        "target%2F..%2Fchild",
    ] {
        refused(server.get(&format!("/api/v1/runs/{id}")), 404, "not_found").await;
        refused(
            server.post(&format!("/api/v1/runs/{id}/cancel"), json!({})),
            404,
            "not_found",
        )
        .await;
    }
    // Over the 1 KiB id limit; not UTF-8 once decoded.
    refused(
        server.get(&format!("/api/v1/runs/{long}")),
        400,
        "invalid_identifier",
    )
    .await;
    refused(
        server.post(&format!("/api/v1/runs/{long}/cancel"), json!({})),
        400,
        "invalid_identifier",
    )
    .await;
    refused(server.get("/api/v1/runs/%FF%FE"), 400, "bad_id").await;
    refused(
        server.post("/api/v1/runs/%FF/cancel", json!({})),
        400,
        "bad_id",
    )
    .await;
    refused(
        server.get(&format!("/api/v1/runs?id_prefix={long}")),
        400,
        "invalid_identifier",
    )
    .await;

    // Paths a client would normalize, sent raw.
    for path in [
        "/api/v1/runs/../../../etc/passwd",
        "/api/v1/runs/target/../child/cancel",
        "/api/v1/../v1/runs/target/cancel",
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let (status, body) = raw(server.addr, request.as_bytes()).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("\"code\""), "{path}: {body}");
    }
    untouched(&server, "target").await;
    untouched(&server, "target/child").await;
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_verbs_and_methods_get_json_errors() {
    let server = Server::open().await;
    server.waiting_run("target").await;
    for path in [
        "/api/v1/runs/target/explode",
        "/api/v1/runs/target/cancel/now",
        "/api/v1/bulk/explode",
        "/api/v2/runs",
        "/api/v1/sql",
    ] {
        refused(server.post(path, json!({})), 404, "no_such_endpoint").await;
    }
    // `/` is the dashboard's page: a known path, for GET only.
    refused(server.post("/", json!({})), 405, "method_not_allowed").await;
    refused(
        server.get("/api/v1/query?sql=select"),
        404,
        "no_such_endpoint",
    )
    .await;
    refused(
        server.get("/api/v1/runs/target/cancel"),
        405,
        "method_not_allowed",
    )
    .await;
    refused(
        server.post("/api/v1/runs", json!({})),
        405,
        "method_not_allowed",
    )
    .await;
    refused(
        server
            .http
            .delete(server.url("/api/v1/runs/target"))
            .header("content-type", "application/json"),
        405,
        "method_not_allowed",
    )
    .await;
    untouched(&server, "target").await;
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_and_foreign_hosts_are_refused() {
    let server = Server::open().await;
    server.waiting_run("target").await;
    let cancel = "/api/v1/runs/target/cancel";
    let own_origin = format!("http://{}", server.addr);

    // Cross-site actions, as a browser marks them.
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("origin", "http://127.0.0.1.evil.example"),
        ("origin", "http://127.0.0.1:1"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        refused(
            server.post(cancel, json!({})).header(header, value),
            403,
            "cross_site",
        )
        .await;
    }
    // DNS rebinding: without tokens, only loopback Host names are served (views and actions).
    for host in [
        "evil.example",
        "evil.example:7070",
        "localhost.evil.example",
        "10.0.0.1",
    ] {
        refused(
            server.get("/api/v1/runs").header("host", host),
            403,
            "forbidden_host",
        )
        .await;
        refused(
            server.post(cancel, json!({})).header("host", host),
            403,
            "forbidden_host",
        )
        .await;
    }
    untouched(&server, "target").await;

    // Loopback names, and the same origin, are served.
    for host in [
        "localhost",
        &format!("localhost:{}", server.addr.port()),
        "[::1]:7070",
    ] {
        let (status, _) = answer(server.get("/api/v1/runs").header("host", host)).await;
        assert_eq!(status, 200, "{host}");
    }
    let (status, body) = answer(
        server
            .post(cancel, json!({ "reason": "same origin" }))
            .header("origin", own_origin.as_str())
            .header("sec-fetch-site", "same-origin"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["actor"], "local");
    stop(server.engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Configuration and lifecycle

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_or_impossible_configurations_refuse_to_start_and_touch_nothing() {
    let db = TestDb::new();
    let open_to_all = registered(db.builder())
        .admin(
            AdminConfig::builder()
                .bind(SocketAddr::from(([0, 0, 0, 0], 0)))
                .build(),
        )
        .start()
        .await;
    match open_to_all {
        Err(orchestrator::Error::Config { message }) => {
            assert!(message.contains("token"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert!(!db.path().exists(), "the journal was created");

    let weak = registered(db.builder())
        .admin(
            AdminConfig::builder()
                .bind(loopback_any_port())
                .token("carol", "short")
                .build(),
        )
        .start()
        .await;
    assert!(
        matches!(weak, Err(orchestrator::Error::Config { .. })),
        "{weak:?}"
    );
    let shared = registered(db.builder())
        .admin(
            AdminConfig::builder()
                .bind(loopback_any_port())
                .token("carol", ALICE)
                .token("dave", ALICE)
                .build(),
        )
        .start()
        .await;
    assert!(
        matches!(shared, Err(orchestrator::Error::Config { .. })),
        "{shared:?}"
    );

    // A non-loopback address with a token starts.
    let engine = registered(db.builder())
        .admin(
            AdminConfig::builder()
                .bind(SocketAddr::from(([0, 0, 0, 0], 0)))
                .token("alice", ALICE)
                .build(),
        )
        .start()
        .await
        .unwrap();
    let addr = engine.admin_addr().unwrap();
    assert!(addr.ip().is_unspecified());
    // Its port is taken: a second engine (another journal) cannot bind it, and opens nothing.
    let other = TestDb::new();
    let taken = registered(other.builder())
        .admin(
            AdminConfig::builder()
                .bind(SocketAddr::from(([127, 0, 0, 1], addr.port())))
                .token("alice", ALICE)
                .build(),
        )
        .start()
        .await;
    match taken {
        Err(orchestrator::Error::Config { message }) => {
            assert!(message.contains("cannot listen"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert!(!other.path().exists());
    stop(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_server_and_ends_live_streams() {
    let server = Server::open().await;
    server.waiting_run("streamed").await;
    let mut stream = SseReader::open(&server, "/api/v1/runs/streamed/stream").await;
    let (event, _) = stream.next().await.expect("a first event");
    assert_eq!(event, "run");
    let addr = server.addr;
    let started = Instant::now();
    stop(server.engine).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(stream.next().await, None, "the stream ended");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_addr_is_none_without_the_admin_api_or_after_shutdown() {
    let db = TestDb::new();
    let engine = registered(db.builder()).start().await.unwrap();
    assert_eq!(engine.admin_addr(), None);
    stop(engine).await;
    let server = Server::open().await;
    let engine = server.engine.clone();
    assert!(engine.admin_addr().is_some());
    engine.shutdown().await;
    assert_eq!(engine.admin_addr(), None);
}

// ---------------------------------------------------------------------------------------------------
// Live updates (Server-Sent Events)

/// Reads Server-Sent Events from a response.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(server: &Server, path: &str) -> SseReader {
        SseReader::open_with(server.get(path)).await
    }

    async fn open_with(request: reqwest::RequestBuilder) -> SseReader {
        let response = request
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's name and JSON data (comments skipped), or `None` when the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("an event within the patience")
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skips events until one satisfies `accept`.
    async fn until(&mut self, accept: impl Fn(&str, &Value) -> bool) -> Value {
        loop {
            let (name, data) = self.next().await.expect("the stream goes on");
            if accept(&name, &data) {
                return data;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stream_sends_its_state_then_each_change() {
    let server = Server::with_tokens().await;
    server.waiting_run("live-1").await;
    refused(
        server.get("/api/v1/runs/live-1/stream"),
        401,
        "unauthorized",
    )
    .await;
    refused(
        server.get("/api/v1/runs/nobody/stream").bearer_auth(ALICE),
        404,
        "not_found",
    )
    .await;

    let mut stream =
        SseReader::open_with(server.get("/api/v1/runs/live-1/stream").bearer_auth(ALICE)).await;
    let (event, first) = stream.next().await.unwrap();
    assert_eq!(event, "run");
    assert_eq!(first["workflow_id"], "live-1");
    assert_eq!(first["state"], "running");
    assert_eq!(first["pending_signals"], json!([]));

    // A signal is journaled (inbox, then consumed) and the run completes: each change is sent.
    server.engine.signal("live-1", "go", 7u32).await.unwrap();
    let done = stream
        .until(|name, data| name == "run" && data["state"] == "completed")
        .await;
    assert!(done["history_len"].as_u64().unwrap() > first["history_len"].as_u64().unwrap());
    assert_eq!(done["output"], json!({ "json": 7 }), "{done}");
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_list_stream_sends_the_filtered_page_when_it_changes() {
    let server = Server::open().await;
    server.waiting_run("list-1").await;
    let mut stream =
        SseReader::open(&server, "/api/v1/stream/runs?status=running&type=waiter").await;
    let (event, first) = stream.next().await.unwrap();
    assert_eq!(event, "runs");
    assert_eq!(ids(&first), ["list-1"]);

    server.waiting_run("list-2").await;
    let page = stream.until(|_, data| ids(data).len() == 2).await;
    assert_eq!(ids(&page), ["list-1", "list-2"]);
    // A run of another type does not match; a finished one leaves the page.
    server.engine.start(quick, "list-0", 1).await.unwrap();
    server.engine.signal("list-1", "go", 1u32).await.unwrap();
    let page = stream.until(|_, data| ids(data) == ["list-2"]).await;
    assert_eq!(page["runs"][0]["state"], "running");
    refused(
        server.get("/api/v1/stream/runs?status=nope"),
        400,
        "bad_query",
    )
    .await;
    stop(server.engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_bounded_and_a_closed_one_frees_its_slot() {
    let server = Server::start(
        AdminConfig::builder()
            .max_streams(2)
            .sse_poll_interval(Duration::from_millis(20)),
    )
    .await;
    server.waiting_run("bounded").await;
    let mut first = SseReader::open(&server, "/api/v1/runs/bounded/stream").await;
    let mut second = SseReader::open(&server, "/api/v1/stream/runs").await;
    first.next().await.unwrap();
    second.next().await.unwrap();
    refused(
        server.get("/api/v1/runs/bounded/stream"),
        503,
        "too_many_streams",
    )
    .await;
    // Views still work meanwhile.
    let (status, _) = answer(server.get("/api/v1/runs")).await;
    assert_eq!(status, 200);

    drop(first);
    eventually("a closed stream frees its slot", || async {
        let response = server
            .get("/api/v1/runs/bounded/stream")
            .send()
            .await
            .unwrap();
        response.status().as_u16() == 200
    })
    .await;
    stop(server.engine).await;
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL: several nodes

/// An engine (a node) on a test schema.
async fn node_on(schema: &PgSchema, node: &str, admin: Option<AdminConfig>) -> Engine {
    let store = schema.store(4).await;
    let mut builder = registered(Engine::builder())
        .store(std::sync::Arc::new(store))
        .node_id(node)
        .lease_duration(Duration::from_secs(2))
        .shutdown_grace(Duration::from_secs(2));
    if let Some(admin) = admin {
        builder = builder.admin(admin);
    }
    builder.start().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_one_node_serves_and_acts_on_runs_another_node_holds() {
    let Some(schema) = PgSchema::fresh("orch_admin", "admin API PostgreSQL test") else {
        return;
    };
    let a = node_on(
        &schema,
        "node-a",
        Some(
            AdminConfig::builder()
                .bind(loopback_any_port())
                .token("alice", ALICE)
                .sse_poll_interval(Duration::from_millis(20))
                .build(),
        ),
    )
    .await;
    let b = node_on(&schema, "node-b", None).await;
    let addr = a.admin_addr().unwrap();
    let http = client();
    let url = |path: &str| format!("http://{addr}{path}");

    // Node b creates (and so holds) the runs.
    b.start(waiter, "pg-held-1", ()).await.unwrap();
    b.start(waiter, "pg-held-2", ()).await.unwrap();

    let (status, body) = answer(http.get(url("/api/v1/runs?type=waiter")).bearer_auth(ALICE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["pg-held-1", "pg-held-2"]);

    // Node a's stream follows a run node b drives; node a's cancel reaches node b.
    let mut stream = SseReader::open_with(
        http.get(url("/api/v1/runs/pg-held-1/stream"))
            .bearer_auth(ALICE),
    )
    .await;
    let (_, first) = stream.next().await.unwrap();
    assert_eq!(first["state"], "running");
    let (status, body) = answer(
        http.post(url("/api/v1/runs/pg-held-1/cancel"))
            .bearer_auth(ALICE)
            .header("content-type", "application/json")
            .body(json!({ "reason": "from node a" }).to_string()),
    )
    .await;
    assert_eq!((status, &body["actor"]), (200, &json!("alice")), "{body}");
    let cancelled = stream.until(|_, data| data["state"] == "cancelled").await;
    assert!(
        cancelled["outcome"]
            .as_str()
            .unwrap()
            .contains("from node a"),
        "{cancelled}"
    );
    untouched_on(&b, "pg-held-2").await;
    stop(a).await;
    stop(b).await;
}

/// Asserts that the run is still running, with no cancellation requested, through `engine`.
async fn untouched_on(engine: &Engine, id: &str) {
    let run = engine
        .list_runs(&orchestrator::store::RunQuery::new().id_prefix(id).limit(1))
        .await
        .unwrap()
        .runs
        .remove(0);
    assert_eq!(run.state, orchestrator::store::RunState::Running);
    assert_eq!(run.cancel_reason, None);
}

// ---------------------------------------------------------------------------------------------------
// Measurement (run with `--ignored --nocapture`)

/// Seeds 20,000 finished-looking runs through the store and times list requests over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn list_latency_over_20k_runs() {
    let db = TestDb::new();
    let store = std::sync::Arc::new(
        orchestrator::store::SqliteStore::open(db.path())
            .await
            .unwrap(),
    );
    let codec = orchestrator::codec::Codec::default();
    let input = codec.encode(&7u32).unwrap();
    let seeded = Instant::now();
    for n in 0..20_000 {
        let run = orchestrator::store::NewRun {
            workflow_id: format!("seed-{n:05}"),
            workflow_name: if n % 2 == 0 { "quick" } else { "doomed" }.to_string(),
            input: input.clone(),
            parent_id: None,
            deadline_ms: None,
            execution_timeout_ms: None,
            owner: None,
            events: Vec::new(),
            paused: None,
        };
        orchestrator::store::Store::create_run(store.as_ref(), run)
            .await
            .unwrap();
    }
    println!("seeded 20,000 runs in {:?}", seeded.elapsed());
    let engine = registered(Engine::builder())
        .store(store)
        .admin(AdminConfig::builder().bind(loopback_any_port()).build())
        .start()
        .await
        .unwrap();
    engine.recovered().await;
    let addr = engine.admin_addr().unwrap();
    let http = client();
    for path in [
        "/api/v1/runs?limit=100",
        "/api/v1/runs?limit=1000",
        "/api/v1/runs?type=doomed&limit=100",
        "/api/v1/runs?id_prefix=seed-19&limit=100",
        "/api/v1/runs?after=seed-15000&limit=100",
        "/api/v1/runs/seed-12345",
    ] {
        let mut times = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let (status, _) = answer(http.get(format!("http://{addr}{path}"))).await;
            times.push(started.elapsed());
            assert_eq!(status, 200);
        }
        times.sort();
        println!("{path}: median {:?}, max {:?}", times[10], times[19]);
    }
    stop(engine).await;
}

/// User data (here a workflow id holding markup) comes back as JSON text, never as something a browser
/// would render: the answer is `application/json` with `nosniff`, and the markup is a JSON string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_user_data_is_served_as_inert_json() {
    let server = Server::open().await;
    let id = "<img src=x onerror=alert(1)></script>";
    server.waiting_run(id).await;
    let response = server
        .get("/api/v1/runs?id_prefix=%3Cimg")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{headers:?}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let page: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(ids(&page), [id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_and_replay_check_over_http() {
    let server = Server::start(
        AdminConfig::builder()
            .token("alice", ALICE)
            .body_limit(64 * 1024),
    )
    .await;
    let auth = |request: reqwest::RequestBuilder| request.bearer_auth(ALICE);
    let run = server.engine.start(quick, "exp-1", 7).await.unwrap();
    assert_eq!(finish(&run).await.unwrap(), 7);

    // Export: the run's document; unknown ids and missing tokens refused.
    let (status, export) = answer(auth(server.get("/api/v1/runs/exp-1/export"))).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["format"], "orchestrator-run-export");
    assert_eq!(export["run"]["workflow_id"], "exp-1");
    refused(
        auth(server.get("/api/v1/runs/nope/export")),
        404,
        "not_found",
    )
    .await;
    refused(server.get("/api/v1/runs/exp-1/export"), 401, "unauthorized").await;

    // Import under a new id, recorded with the token's identity; twice is refused.
    let body = json!({ "export": export, "new_id": "exp-1-copy" });
    let (status, imported) = answer(auth(server.post("/api/v1/import", body.clone()))).await;
    assert_eq!(status, 201, "{imported}");
    assert_eq!(imported["workflow_id"], "exp-1-copy");
    assert_eq!(imported["actor"], "alice");
    let copy = server.engine.describe("exp-1-copy").await.unwrap();
    assert_eq!(copy.state, orchestrator::store::RunState::Completed);
    refused(
        auth(server.post("/api/v1/import", body)),
        409,
        "not_applicable",
    )
    .await;
    // Hostile imports: not an export, an unknown version, unknown fields, an oversized body.
    refused(
        auth(server.post("/api/v1/import", json!({ "export": { "hello": 1 } }))),
        400,
        "bad_export",
    )
    .await;
    let mut newer = export.clone();
    newer["format_version"] = json!(99);
    let error = refused(
        auth(server.post("/api/v1/import", json!({ "export": newer, "new_id": "x" }))),
        400,
        "bad_export",
    )
    .await;
    assert!(
        error["error"]["message"].as_str().unwrap().contains("99"),
        "{error}"
    );
    refused(
        auth(server.post("/api/v1/import", json!({ "export": export, "drive": true }))),
        400,
        "invalid_body",
    )
    .await;
    let mut nul_id = export.clone();
    nul_id["run"]["workflow_id"] = json!("nul\u{0}\"quote");
    let (status, body) = answer(auth(
        server.post("/api/v1/import", json!({ "export": nul_id })),
    ))
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        server
            .engine
            .describe("nul\u{0}\"quote")
            .await
            .unwrap()
            .workflow_id,
        "nul\u{0}\"quote"
    );
    let huge = json!({ "export": export, "new_id": "x".repeat(70 * 1024) });
    refused(
        auth(server.post("/api/v1/import", huge)),
        413,
        "body_too_large",
    )
    .await;
    assert!(server.engine.describe("x").await.is_err());

    // Replay check of sent exports, of stored ids, of filters: the service's code replays them.
    for body in [
        json!({ "exports": [export] }),
        json!({ "ids": ["exp-1", "exp-1-copy"] }),
        json!({ "where": { "type": "quick", "status": ["completed"] } }),
    ] {
        let (status, report) =
            answer(auth(server.post("/api/v1/replay-check", body.clone()))).await;
        assert_eq!(status, 200, "{body}: {report}");
        assert_eq!(report["ok"], true, "{report}");
        assert!(report["checked"].as_u64().unwrap() >= 1, "{report}");
    }
    refused(
        auth(server.post("/api/v1/replay-check", json!({ "ids": ["nope"] }))),
        404,
        "not_found",
    )
    .await;
    refused(
        auth(server.post("/api/v1/replay-check", json!({ "ids": [], "exports": [] }))),
        400,
        "invalid_body",
    )
    .await;
    refused(
        auth(server.post(
            "/api/v1/replay-check",
            json!({ "where": { "colour": "red" } }),
        )),
        400,
        "invalid_body",
    )
    .await;
    server.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_replay_checks_but_refuses_imports() {
    let server = Server::start(AdminConfig::builder().read_only(true)).await;
    let run = server.engine.start(quick, "ro-1", 1).await.unwrap();
    finish(&run).await.unwrap();
    let (status, export) = answer(server.get("/api/v1/runs/ro-1/export")).await;
    assert_eq!(status, 200);
    let (status, report) =
        answer(server.post("/api/v1/replay-check", json!({ "exports": [export] }))).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true);
    refused(
        server.post(
            "/api/v1/import",
            json!({ "export": export, "new_id": "ro-2" }),
        ),
        403,
        "read_only",
    )
    .await;
    assert!(server.engine.describe("ro-2").await.is_err());
    server.engine.shutdown().await;
}
