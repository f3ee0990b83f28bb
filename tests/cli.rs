//! The operator CLI end to end: the real binaries (`ops_cli`, a service's own ops binary with the
//! test workflows, and `generic_cli`, the generic `orchestrator` main) run as processes against a
//! real service (`cli_owner`, a child process owning an SQLite journal and serving its admin API),
//! against that journal directly (read-only beside its owner, read-write without one), and against
//! PostgreSQL. Hostile input gets a clear error and exit code and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orchestrator::Engine;
use orchestrator::store::RunState;
use orchestrator_tests::ChildWorker;
use orchestrator_tests::cli_workflows::{self, approval, checkout};
use orchestrator_tests::pg_schema::PgSchema;
use serde_json::Value;

const TOKEN: &str = "ops-secret-0123456789abcdef";
const OPS: &str = env!("CARGO_BIN_EXE_ops_cli");
const GENERIC: &str = env!("CARGO_BIN_EXE_generic_cli");
const OWNER: &str = env!("CARGO_BIN_EXE_cli_owner");
/// How long a condition may take to hold.
const PATIENCE: Duration = Duration::from_secs(15);

/// One finished CLI run.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {}", self.stdout))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    fn exit(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `bin` with `args`, without colour or inherited ORCHESTRATOR_* settings, for at most 60 s.
fn cli(bin: &str, args: &[&str]) -> Ran {
    cli_env(bin, &[], args)
}

/// [`cli`] with extra environment variables.
fn cli_env(bin: &str, env: &[(&str, &str)], args: &[&str]) -> Ran {
    let mut command = Command::new(bin);
    command
        .envs(env.iter().copied())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("ORCHESTRATOR_URL")
        .env_remove("ORCHESTRATOR_DB")
        .env_remove("ORCHESTRATOR_TOKEN")
        .env_remove("ORCHESTRATOR_ACTOR")
        .stdin(Stdio::null());
    let output: Output = assert_cmd::Command::from_std(command)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The CLI against the service's admin API.
fn url_cli(url: &str, args: &[&str]) -> Ran {
    let mut all = vec!["--url", url, "--token", TOKEN];
    all.extend_from_slice(args);
    cli(OPS, &all)
}

/// The CLI on a journal.
fn db_cli(bin: &str, db: &Path, args: &[&str]) -> Ran {
    let db = db.to_str().unwrap();
    let mut all = vec!["--db", db];
    all.extend_from_slice(args);
    cli(bin, &all)
}

/// Waits until `check` holds, re-evaluated every 50 ms.
#[track_caller]
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run's state as the CLI reports it.
fn state(url: &str, id: &str) -> String {
    let ran = url_cli(url, &["show", id, "--json"]).ok();
    ran.json()["state"].as_str().unwrap().to_string()
}

/// A service owning a fresh journal, with its runs started and the orders failed.
struct Service {
    _dir: tempfile::TempDir,
    db: PathBuf,
    fix: PathBuf,
    url: String,
    worker: ChildWorker,
}

impl Service {
    fn start() -> Service {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("journal.db");
        let fix = dir.path().join("fixed");
        let worker =
            ChildWorker::spawn(OWNER, [db.to_str().unwrap(), TOKEN, fix.to_str().unwrap()]);
        let url = worker
            .wait_for("ADMIN ", PATIENCE)
            .expect("the service printed its admin address")
            .trim_start_matches("ADMIN ")
            .to_string();
        worker
            .wait_for("READY", PATIENCE)
            .expect("the service started its runs");
        Service {
            _dir: dir,
            db,
            fix,
            url,
            worker,
        }
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["workflow_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn list_show_and_errors_through_the_admin_api() {
    let service = Service::start();
    let url = service.url.as_str();

    let all = url_cli(url, &["list", "--json"]).ok().json();
    assert_eq!(
        ids(&all),
        [
            "approve-1",
            "approve-2",
            "order-1",
            "order-2",
            "parent-1",
            "parent-1/child",
            "we\"ird 'id"
        ]
    );
    let text = url_cli(url, &["list"]).ok().stdout;
    assert!(text.starts_with("ID "), "{text}");
    assert!(
        text.contains("order-1") && text.contains("failed"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour when NO_COLOR is set and not a tty"
    );
    let coloured = url_cli(url, &["list", "--color", "always"]).ok().stdout;
    assert!(coloured.contains("\u{1b}[31mfailed"), "{coloured:?}");

    let failed = url_cli(url, &["list", "--status", "failed", "--json"])
        .ok()
        .json();
    assert_eq!(ids(&failed), ["order-1", "order-2"]);
    let by_error = url_cli(url, &["list", "--error", "processor", "--json"])
        .ok()
        .json();
    assert_eq!(ids(&by_error), ["order-1", "order-2"]);
    let by_type = url_cli(
        url,
        &["list", "--type", "approval", "--since", "1h", "--json"],
    )
    .ok()
    .json();
    assert_eq!(ids(&by_type), ["approve-1", "approve-2"]);
    let page = url_cli(url, &["list", "--limit", "2"]).ok().stdout;
    assert!(page.contains("--after 'approve-2'"), "{page}");
    let rest = url_cli(
        url,
        &[
            "list",
            "--limit",
            "2",
            "--after",
            "approve-2",
            "--all",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(ids(&rest).len(), 5);

    // The timeline as a table: steps, attempts, errors, the blocked-on line.
    let shown = url_cli(url, &["show", "order-1"]).ok().stdout;
    for expected in [
        "run order-1  checkout  failed",
        "blocked on:",
        "STEP",
        "reserve",
        "charge",
        "attempt 2",
        "card processor down",
    ] {
        assert!(
            shown.contains(expected),
            "`{expected}` missing from:\n{shown}"
        );
    }
    let payloads = url_cli(url, &["show", "order-1", "--payloads"]).ok().stdout;
    assert!(
        payloads.contains("input:") && payloads.contains("fixed"),
        "{payloads}"
    );
    let waiting = url_cli(url, &["show", "approve-1"]).ok().stdout;
    assert!(waiting.contains("signal `approve`"), "{waiting}");
    let tree = url_cli(url, &["show", "parent-1"]).ok().stdout;
    assert!(
        tree.contains("children") && tree.contains("└─ parent-1/child  sleeper  running"),
        "{tree}"
    );
    let weird = url_cli(url, &["show", "we\"ird 'id", "--json"]).ok().json();
    assert_eq!(weird["workflow_id"], "we\"ird 'id");

    // Errors that say what to do, with their exit codes.
    let missing = url_cli(url, &["show", "no-such-run"]).exit(3);
    assert!(
        missing.stderr.contains("no-such-run") && missing.stderr.contains("hint:"),
        "{}",
        missing.stderr
    );
    let missing_json = url_cli(url, &["show", "no-such-run", "--json"]).exit(3);
    let error: Value = serde_json::from_str(missing_json.stderr.trim()).unwrap();
    assert_eq!(error["error"]["code"], "not_found");
    assert_eq!(error["error"]["exit_code"], 3);
    let wrong = cli(
        OPS,
        &["--url", url, "--token", "wrong-token-0123456789", "list"],
    )
    .exit(5);
    assert!(wrong.stderr.contains("--token"), "{}", wrong.stderr);
    cli(OPS, &["--url", url, "list"]).exit(5);
    let nowhere = cli(OPS, &["list"]).exit(2);
    assert!(
        nowhere.stderr.contains("--url") && nowhere.stderr.contains("--db"),
        "{}",
        nowhere.stderr
    );
    cli(OPS, &["--url", "ftp://127.0.0.1/", "list"]).exit(2);
    let closed = cli(OPS, &["--url", "http://127.0.0.1:1", "list"]).exit(7);
    assert!(
        closed.stderr.contains("cannot be reached"),
        "{}",
        closed.stderr
    );
    url_cli(url, &["list", "--status", "sleeping"]).exit(2);
    url_cli(url, &["list", "--since", "last tuesday"]).exit(2);
    let completions = cli(OPS, &["completions", "bash"]).ok().stdout;
    assert!(completions.contains("orchestrator"), "{completions}");
}

#[test]
fn each_verb_through_the_admin_api_and_the_refusals_of_the_owned_journal() {
    let service = Service::start();
    let url = service.url.as_str();
    let db = service.db.as_path();

    // Beside its owner the journal is read-only: reading works, every changing verb is refused,
    // pointing at --url, and nothing changes.
    let listed = db_cli(OPS, db, &["list", "--json"]).ok().json();
    assert_eq!(ids(&listed).len(), 7);
    let before = db_cli(OPS, db, &["show", "order-1", "--json"]).ok().json();
    assert_eq!(before["state"], "failed");
    for verb in [
        vec!["retry", "order-1"],
        vec!["pause", "approve-1"],
        vec!["signal", "approve-1", "approve", "true"],
        vec!["terminate", "--where", "type=approval", "--yes"],
        vec![
            "fork",
            "order-1",
            "--from-step",
            "1",
            "--new-id",
            "order-1-copy",
        ],
    ] {
        let refused = db_cli(OPS, db, &verb).exit(4);
        assert!(
            refused.stderr.contains("--url") && refused.stderr.contains("another process"),
            "{verb:?}: {}",
            refused.stderr
        );
    }
    let after = db_cli(OPS, db, &["show", "order-1", "--json"]).ok().json();
    assert_eq!(before["history_len"], after["history_len"]);
    assert_eq!(after["state"], "failed");
    db_cli(OPS, db, &["show", "order-1-copy"]).exit(3);

    // retry, after the fix is deployed.
    url_cli(url, &["retry", "approve-1"]).exit(4);
    std::fs::write(&service.fix, "yes").unwrap();
    let retried = url_cli(url, &["retry", "order-1"]).ok().stdout;
    assert!(retried.contains("retried order-1 (as ops)"), "{retried}");
    until("order-1 to complete", || {
        state(url, "order-1") == "completed"
    });
    let shown = url_cli(url, &["show", "order-1"]).ok().stdout;
    assert!(shown.contains("retried by ops"), "{shown}");

    // signal: JSON checked locally, then by the service against the signal's type.
    url_cli(url, &["signal", "approve-2", "approve", "yes"]).exit(2);
    url_cli(url, &["signal", "approve-2", "approve", "\"yes\""]).exit(2);
    assert_eq!(state(url, "approve-2"), "running");
    // watch follows the run until it finishes: its first event is the current state.
    let mut watcher = ChildWorker::spawn(
        OPS,
        [
            "--url",
            url,
            "--token",
            TOKEN,
            "--color",
            "never",
            "watch",
            "approve-2",
            "--json",
        ],
    );
    let event = |line: Option<String>| -> Value {
        serde_json::from_str(&line.expect("a watch event")).unwrap()
    };
    let first = event(watcher.wait_for("{", PATIENCE));
    assert_eq!(first["event"], "run");
    assert_eq!(first["data"]["state"], "running");
    url_cli(url, &["signal", "approve-2", "approve", "true"]).ok();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let next = event(watcher.wait_for("{", PATIENCE));
        if next["data"]["state"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch never saw approve-2 complete"
        );
    }
    assert!(
        watcher.wait_exit(PATIENCE).success(),
        "the watch ends when the run finishes"
    );
    let listed = url_cli(
        url,
        &["watch", "--type", "approval", "--count", "1", "--json"],
    )
    .ok()
    .stdout;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("\"event\":\"runs\""), "{listed}");

    // pause / resume.
    url_cli(url, &["pause", "we\"ird 'id", "--reason", "incident 7"]).ok();
    let paused = url_cli(url, &["show", "we\"ird 'id"]).ok().stdout;
    assert!(
        paused.contains("paused:") && paused.contains("incident 7"),
        "{paused}"
    );
    url_cli(url, &["resume", "we\"ird 'id"]).ok();
    let not_paused = url_cli(url, &["resume", "we\"ird 'id"]).exit(4);
    assert!(
        not_paused.stderr.contains("not paused"),
        "{}",
        not_paused.stderr
    );
    url_cli(url, &["pause", "order-1"]).exit(4);
    url_cli(url, &["signal", "approve-2", "approve", "true"]).exit(4); // finished
    url_cli(url, &["retry", "order-1", "--dry-run"]).exit(2);
    let resumed = url_cli(url, &["show", "we\"ird 'id", "--json"]).ok().json();
    assert!(resumed["paused"].is_null());

    // fork: step 1 replayed from order-2's journal, step 2 live (fixed now).
    let forked = url_cli(
        url,
        &[
            "fork",
            "order-2",
            "--from-step",
            "2",
            "--new-id",
            "order-2-fork",
        ],
    )
    .ok()
    .stdout;
    assert!(
        forked.contains("forked order-2 from step 2 as order-2-fork"),
        "{forked}"
    );
    until("the fork to complete", || {
        state(url, "order-2-fork") == "completed"
    });
    url_cli(
        url,
        &[
            "fork",
            "order-2",
            "--from-step",
            "2",
            "--new-id",
            "order-2-fork",
        ],
    )
    .exit(4);

    // Bulk: a dry run, a refusal without --yes, then the real thing.
    let dry = url_cli(url, &["retry", "--where", "status=failed", "--dry-run"])
        .ok()
        .stdout;
    assert!(
        dry.contains("dry run: 1 runs match") && dry.contains("order-2"),
        "{dry}"
    );
    let unconfirmed = url_cli(url, &["retry", "--where", "status=failed"]).exit(4);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert_eq!(state(url, "order-2"), "failed");
    let report = url_cli(
        url,
        &["retry", "--where", "status=failed", "--yes", "--json"],
    )
    .ok()
    .json();
    assert_eq!(report["applied"], 1);
    until("order-2 to complete", || {
        state(url, "order-2") == "completed"
    });
    url_cli(url, &["retry", "--where", "colour=red", "--dry-run"]).exit(2);

    // terminate and cancel, and their refusals once finished.
    url_cli(url, &["terminate", "we\"ird 'id", "--reason", "bye"]).ok();
    assert_eq!(state(url, "we\"ird 'id"), "terminated");
    let again = url_cli(url, &["terminate", "we\"ird 'id"]).exit(4);
    assert!(again.stderr.contains("finished"), "{}", again.stderr);
    url_cli(url, &["cancel", "parent-1", "--reason", "customer left"]).ok();
    until("parent-1 to be cancelled", || {
        state(url, "parent-1") == "cancelled"
    });
    url_cli(url, &["cancel", "no-such-run"]).exit(3);
    drop(service.worker);
}

#[test]
fn acting_directly_on_a_journal_without_owner() {
    let service = Service::start();
    let db = service.db.clone();
    let mut worker = service.worker;
    worker.kill();

    // The generic binary knows no types: payloads are opaque, JSON signals cannot be converted.
    let generic = db_cli(GENERIC, &db, &["show", "order-1", "--payloads"])
        .ok()
        .stdout;
    assert!(generic.contains("bytes, not shown"), "{generic}");
    let ops = db_cli(OPS, &db, &["show", "order-1", "--payloads"])
        .ok()
        .stdout;
    assert!(ops.contains("fixed\""), "{ops}");
    let unknown = db_cli(GENERIC, &db, &["signal", "approve-1", "approve", "true"]).exit(2);
    assert!(unknown.stderr.contains("signal_type"), "{}", unknown.stderr);

    // watch by polling the journal: the current state first, then changes (bounded by --count).
    let watched = db_cli(
        OPS,
        &db,
        &[
            "watch",
            "approve-1",
            "--count",
            "1",
            "--json",
            "--interval",
            "50",
        ],
    )
    .ok()
    .stdout;
    let event: Value = serde_json::from_str(watched.trim()).unwrap();
    assert_eq!(event["event"], "run");
    assert_eq!(event["data"]["blocked_on"]["kind"], "signal", "{event}");
    let listed = db_cli(OPS, &db, &["watch", "--type", "approval", "--count", "1"])
        .ok()
        .stdout;
    assert!(listed.contains("approve-1  approval  running"), "{listed}");
    db_cli(OPS, &db, &["watch", "no-such-run", "--count", "1"]).exit(3);

    // With no owner, changing verbs act; the service continues the runs when it next opens it.
    let signalled = db_cli(
        OPS,
        &db,
        &["signal", "approve-1", "approve", "true", "--actor", "alice"],
    )
    .ok()
    .stdout;
    assert!(signalled.contains("when it next opens"), "{signalled}");
    std::fs::write(&service.fix, "yes").unwrap();
    db_cli(GENERIC, &db, &["retry", "order-1", "--actor", "alice"]).ok();
    let dry = db_cli(
        GENERIC,
        &db,
        &[
            "terminate",
            "--where",
            "type=sleeper",
            "--dry-run",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(dry["matched"], 2);
    assert_eq!(dry["applied"], 0);
    let paused = db_cli(
        OPS,
        &db,
        &["pause", "--where", "id_prefix=approve-2", "--yes", "--json"],
    )
    .ok()
    .json();
    assert_eq!(paused["applied"], 1);
    assert_eq!(
        paused["actor"],
        format!("cli:{}", std::env::var("USER").unwrap_or_default()).trim_end_matches(':')
    );
    let journal = db_cli(OPS, &db, &["show", "order-1", "--json"]).ok().json();
    assert_eq!(journal["state"], "running");

    // The service, started again, drives what the CLI changed.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = cli_workflows::register(Engine::builder().sqlite(&db))
            .start()
            .await
            .unwrap();
        let order = engine.handle(checkout, "order-1").await.unwrap();
        assert_eq!(
            tokio::time::timeout(PATIENCE, order.result())
                .await
                .unwrap()
                .unwrap(),
            "charged"
        );
        let approved = engine.handle(approval, "approve-1").await.unwrap();
        assert!(
            tokio::time::timeout(PATIENCE, approved.result())
                .await
                .unwrap()
                .unwrap()
        );
        let paused = engine.describe("approve-2").await.unwrap();
        assert_eq!(
            paused.paused.unwrap().by,
            format!("cli:{}", std::env::var("USER").unwrap_or_default()).trim_end_matches(':')
        );
        // While it owns the file, the CLI refuses again.
        let refused = db_cli(OPS, &db, &["resume", "approve-2"]).exit(4);
        assert!(refused.stderr.contains("--url"), "{}", refused.stderr);
        engine.shutdown().await;
    });
}

#[test]
fn hostile_journals_and_ids_change_nothing() {
    let dir = tempfile::tempdir().unwrap();

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a journal\n".repeat(100)).unwrap();
    let refused = db_cli(OPS, &text, &["list"]).exit(6);
    assert!(
        refused.stderr.contains("not an SQLite database"),
        "{}",
        refused.stderr
    );
    db_cli(OPS, &text, &["retry", "x"]).exit(6);
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "not a journal\n".repeat(100)
    );

    let missing = dir.path().join("missing.db");
    let refused = db_cli(OPS, &missing, &["pause", "x"]).exit(6);
    assert!(refused.stderr.contains("no journal"), "{}", refused.stderr);
    assert!(!missing.exists(), "the CLI never creates a journal");
    db_cli(OPS, dir.path(), &["list"]).exit(6);

    let foreign = dir.path().join("foreign.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY);")
        .unwrap();
    drop(conn);
    db_cli(OPS, &foreign, &["list"]).exit(6);

    // A journal with a run whose id holds quotes, SQL and NUL; then a newer schema.
    let db = dir.path().join("journal.db");
    let hostile = "ro'; DROP TABLE runs; --\0\u{1b}[31m";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = cli_workflows::register(Engine::builder().sqlite(&db))
            .start()
            .await
            .unwrap();
        engine.start(approval, hostile, 1).await.unwrap();
        engine.shutdown().await;
    });
    let listed = db_cli(OPS, &db, &["list", "--json"]).ok().json();
    assert_eq!(ids(&listed), [hostile]);
    let text_list = db_cli(OPS, &db, &["list"]).ok().stdout;
    assert!(
        !text_list.contains('\0') && !text_list.contains('\u{1b}'),
        "{text_list:?}"
    );
    assert!(
        text_list.contains("ro'; DROP TABLE runs; --\\u{0}\\u{1b}[31m"),
        "{text_list}"
    );
    let unknown = db_cli(OPS, &db, &["show", "ro'; DROP TABLE runs; --"]).exit(3);
    assert!(!unknown.stderr.contains('\u{1b}'));
    let dry = db_cli(
        OPS,
        &db,
        &[
            "terminate",
            "--where",
            "id_prefix=ro'",
            "--dry-run",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(dry["matched"], 1);
    db_cli(
        OPS,
        &db,
        &["terminate", "--where", "id_prefix=ro'", "--yes"],
    )
    .ok();
    let terminated = db_cli(OPS, &db, &["list", "--json"]).ok().json();
    assert_eq!(terminated["runs"][0]["state"], "terminated");

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA user_version = 999;").unwrap();
    drop(conn);
    let bytes = std::fs::read(&db).unwrap();
    for verb in [
        vec!["list"],
        vec!["retry", "x"],
        vec!["cancel", "--where", "status=running", "--yes"],
    ] {
        let refused = db_cli(OPS, &db, &verb).exit(6);
        assert!(
            refused.stderr.contains("newer") && refused.stderr.contains("install"),
            "{verb:?}: {}",
            refused.stderr
        );
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "a newer journal is left untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_journal_shared_with_a_running_node() {
    let Some(schema) = PgSchema::fresh("cli", "the CLI on PostgreSQL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fix = dir.path().join("fixed").to_str().unwrap().to_string();
    let node = cli_workflows::register(
        Engine::builder().store(std::sync::Arc::new(schema.store(4).await)),
    )
    .lease_duration(Duration::from_millis(500))
    .start()
    .await
    .unwrap();
    node.start(checkout, "pg-order", fix.clone()).await.unwrap();
    node.start(approval, "pg-approve", 10).await.unwrap();
    let order = node.handle(checkout, "pg-order").await.unwrap();
    assert!(
        tokio::time::timeout(PATIENCE, order.result())
            .await
            .unwrap()
            .is_err()
    );

    let url = schema.url.clone();
    let name = schema.name.clone();
    let pg = move |args: &[&str]| {
        let mut all = vec![
            "--db",
            url.as_str(),
            "--pg-schema",
            name.as_str(),
            "--actor",
            "bob",
        ];
        all.extend_from_slice(args);
        let all: Vec<String> = all.into_iter().map(str::to_string).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                cli(OPS, &args)
            })
            .await
            .unwrap()
        }
    };
    let listed = pg(&["list", "--json"]).await.ok().json();
    assert_eq!(ids(&listed), ["pg-approve", "pg-order"]);
    let shown = pg(&["show", "pg-order"]).await.ok().stdout;
    assert!(
        shown.contains("card processor down") && shown.contains("attempt 2"),
        "{shown}"
    );
    let dry = pg(&["retry", "--where", "status=failed", "--dry-run", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(dry["matched"], 1);
    pg(&["pause", "pg-approve", "--reason", "audit"]).await.ok();
    assert_eq!(
        node.describe("pg-approve")
            .await
            .unwrap()
            .paused
            .unwrap()
            .by,
        "bob"
    );
    pg(&["resume", "pg-approve"]).await.ok();
    pg(&["signal", "pg-approve", "approve", "true"]).await.ok();
    let approved = node.handle(approval, "pg-approve").await.unwrap();
    assert!(
        tokio::time::timeout(PATIENCE, approved.result())
            .await
            .unwrap()
            .unwrap()
    );

    std::fs::write(&fix, "yes").unwrap();
    let retried = pg(&["retry", "pg-order"]).await.ok().stdout;
    assert!(
        retried.contains("a node of the service claims"),
        "{retried}"
    );
    assert_eq!(
        tokio::time::timeout(PATIENCE, order.result())
            .await
            .unwrap()
            .unwrap(),
        "charged"
    );
    pg(&["retry", "pg-order"]).await.exit(4);
    pg(&["show", "pg-missing"]).await.exit(3);

    // export → import → replay-check on the shared journal.
    let file = dir.path().join("pg-order.json");
    let file_arg = file.to_str().unwrap().to_string();
    pg(&["export", "pg-order", "-o", &file_arg]).await.ok();
    pg(&["import", &file_arg, "--id-prefix", "copy-"])
        .await
        .ok();
    assert_eq!(
        node.describe("copy-pg-order").await.unwrap().state,
        RunState::Completed
    );
    let report = pg(&[
        "replay-check",
        "--id",
        "copy-pg-order",
        "--id",
        "pg-order",
        "--json",
    ])
    .await
    .ok()
    .json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"], 2);
    pg(&["replay-check", &file_arg]).await.ok();
    assert_eq!(
        node.store().run("pg-order").await.unwrap().unwrap().state,
        RunState::Completed
    );
    node.shutdown().await;
}

#[test]
fn export_import_and_replay_check_round_trip() {
    let service = Service::start();
    let url = service.url.as_str();
    let db = service.db.as_path();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order-1.json");
    let file_arg = file.to_str().unwrap();

    // Export through the service, and read-only from the journal beside it: the same history.
    let exported = url_cli(url, &["export", "order-1", "-o", file_arg])
        .ok()
        .stdout;
    assert!(exported.contains("exported order-1 to"), "{exported}");
    let document: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(document["format"], "orchestrator-run-export");
    let direct = db_cli(GENERIC, db, &["export", "order-1"]).ok().json();
    // The same bytes (the generic binary renders fewer payloads as JSON: it knows no types).
    let payloads = |document: &Value| -> Vec<Value> {
        document["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["payload"].clone())
            .collect()
    };
    assert_eq!(payloads(&direct), payloads(&document));
    assert_eq!(direct["run"]["input"], document["run"]["input"]);
    url_cli(url, &["export", "no-such-run"]).exit(3);

    // The current code replays it (the service's, or an ops binary's with the same code)...
    let checked = url_cli(url, &["replay-check", file_arg]).ok().stdout;
    assert!(
        checked.contains("✓ order-1 (checkout): replays"),
        "{checked}"
    );
    db_cli(OPS, db, &["replay-check", file_arg]).ok();
    let stored = url_cli(
        url,
        &[
            "replay-check",
            "--id",
            "order-1",
            "--id",
            "approve-1",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(stored["checked"], 2);
    let all = url_cli(url, &["replay-check", "--type", "checkout"])
        .ok()
        .stdout;
    assert!(all.contains("replayed 2 histories"), "{all}");
    // ...changed code does not, and the step is named (exit 1).
    let changed = cli_env(
        OPS,
        &[("OPS_CLI_CODE", "v2")],
        &["--db", db.to_str().unwrap(), "replay-check", file_arg],
    )
    .exit(1);
    assert!(
        changed
            .stdout
            .contains("✗ order-1 (checkout): nondeterminism at step 1"),
        "{}",
        changed.stdout
    );
    let stored_changed = cli_env(
        OPS,
        &[("OPS_CLI_CODE", "v2")],
        &["--db", db.to_str().unwrap(), "replay-check", "--json"],
    )
    .exit(1);
    let report = stored_changed.json();
    assert_eq!(report["nondeterministic"], 2, "{report}");
    // The generic binary has no code to replay with: it says what to do.
    let no_code = db_cli(GENERIC, db, &["replay-check", file_arg]).exit(4);
    assert!(
        no_code.stderr.contains("main_with") && no_code.stderr.contains("--url"),
        "{}",
        no_code.stderr
    );

    // Import under a prefix (into the running service), then again: refused.
    let imported = url_cli(url, &["import", file_arg, "--id-prefix", "copy-"])
        .ok()
        .stdout;
    assert!(
        imported.contains("imported copy-order-1 (checkout, 6 journal events)"),
        "{imported}"
    );
    assert_eq!(state(url, "copy-order-1"), "failed");
    url_cli(url, &["import", file_arg, "--id-prefix", "copy-"]).exit(4);
    let round_trip = url_cli(url, &["replay-check", "--id", "copy-order-1"])
        .ok()
        .stdout;
    assert!(
        round_trip.contains("✓ copy-order-1 (checkout): replays"),
        "{round_trip}"
    );
    // Beside the running service the journal cannot be imported into.
    db_cli(OPS, db, &["import", file_arg, "--id-prefix", "other-"]).exit(4);

    // Hostile files: not JSON, not an export, a newer format, a directory; nothing imported.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let mut newer = document.clone();
    newer["format_version"] = serde_json::json!(99);
    let newer_file = dir.path().join("newer.json");
    std::fs::write(&newer_file, newer.to_string()).unwrap();
    let not_export = dir.path().join("other.json");
    std::fs::write(&not_export, r#"{"runs": []}"#).unwrap();
    for bad in [&text, &newer_file, &not_export, &dir.path().to_path_buf()] {
        let refused = url_cli(
            url,
            &["import", bad.to_str().unwrap(), "--id-prefix", "bad-"],
        )
        .exit(2);
        assert!(
            refused.stderr.contains(bad.to_str().unwrap()),
            "{}",
            refused.stderr
        );
        url_cli(url, &["replay-check", bad.to_str().unwrap()]).exit(2);
    }
    let listed = url_cli(url, &["list", "--id-prefix", "bad-", "--json"])
        .ok()
        .json();
    assert!(ids(&listed).is_empty());
    url_cli(url, &["replay-check", file_arg, "--id", "order-1"]).exit(2);
}
