//! Multi-node test: three engine processes (`node_worker`) share one PostgreSQL journal under leases.
//!
//! Needs a real PostgreSQL: its URL comes from `ORCHESTRATOR_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`). Without it the test says loudly that it was skipped
//! and passes. Each run uses a fresh PostgreSQL schema (dropped at the end when the test passes, kept
//! for inspection when it fails).
//!
//! The scenario: three workers each start 100 of 300 workflows of 5 sequential activity steps (each
//! step sleeps 50–800 ms, so a run lasts 1–4 s and they all overlap), with a 1 s lease. Once some runs
//! have completed, worker A is SIGKILLed; right after, worker B is SIGSTOPped while it drives runs, for
//! three leases, then SIGCONTed — its activities finished during the pause, so it tries to journal
//! their results under a lease that another node has taken over since.
//!
//! Asserted at the end, from the journal's tables: 300 runs, all completed with the right output; every
//! run has exactly one completion event per step (5), with the right result, and nothing else; no
//! `(workflow_id, step)` has two completions; worker B had writes rejected as stale; A's unfinished
//! runs were all taken over by the other nodes. It prints one line:
//! `multi-node workers=3 workflows=300 completed=300 duplicate_steps=0 stale_writes_rejected=N takeover_ms=T`
//! where N is worker B's [`Engine::stale_writes_rejected`](orchestrator::Engine::stale_writes_rejected)
//! after it resumed and T the time from A's SIGKILL until none of A's unfinished runs was still owned
//! by A. The workers also report how many commits the store itself rejected as stale (B must have
//! some: it really tried to write) and their longest gap between lease renewals (C, never paused,
//! must lose no run unless it was starved past its lease).
//!
//! Two more tests pin races down deterministically, on one node with a [`ProbedStore`] that delays
//! chosen calls: a run started while the node's lease renewal is in flight must not be taken for a run
//! another node took over; and a run whose lease lapsed and that its own node claimed again (while the
//! run's driver was busy with a write) must still be driven to completion.
//!
//! A paused-node case with pending retries: node B's runs wait in a 4 s retry backoff when B is
//! SIGSTOPped past its lease; node C takes them over and finishes them; B is SIGCONTed with its
//! backoff timers overdue. An activity-attempt ledger (node, run, step, attempt, start time) written
//! by the workers must show no attempt started on B after its lease expired.
//!
//! [`ProbedStore`]: orchestrator_tests::lease_probe::ProbedStore

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use orchestrator::codec::{Codec, DEFAULT_PAYLOAD_LIMIT};
use orchestrator::journal::EventBody;
use orchestrator::store::{PostgresOptions, PostgresStore};
use tokio_postgres::{Client, NoTls};

/// The environment variable with the PostgreSQL URL.
const URL_VAR: &str = "ORCHESTRATOR_TEST_POSTGRES_URL";
/// Workflows each worker starts.
const PER_WORKER: u64 = 100;
/// Activity steps per workflow.
const STEPS: u32 = 5;
/// The lease every node holds its runs under.
const LEASE: Duration = Duration::from_millis(1000);
/// How long an activity step sleeps (ms): random in this range.
const STEP_MS: (u64, u64) = (50, 800);
/// Completed runs before worker A is killed ("after some completions but well before the end").
const COMPLETED_BEFORE_KILL: i64 = 30;
/// How long worker B stays stopped: well past its lease.
const STOP_FOR: Duration = Duration::from_millis(3 * 1000);
/// The whole scenario's deadline (from the workers' spawn to the last run completed).
const DEADLINE: Duration = Duration::from_secs(75);
/// `runs.state` of a completed run.
const COMPLETED: i32 = 1;
/// `events.kind` of `ActivityCompleted`.
const ACTIVITY_COMPLETED: i32 = 1;

/// One row of the `events` table: step, kind, completion, payload.
type EventRow = (i64, i32, bool, Vec<u8>);

/// The workers: node id and workflow id prefix.
const WORKERS: [(&str, &str); 3] = [("node-a", "a"), ("node-b", "b"), ("node-c", "c")];

/// What step `i` returns given the previous output (as `node_worker` computes it).
fn step_output(i: u32, acc: u64) -> u64 {
    acc.wrapping_mul(31).wrapping_add(u64::from(i))
}

/// The outputs of steps 1..=5 of the run with input `seed`; the last is the run's output.
fn expected_outputs(seed: u64) -> Vec<u64> {
    let mut acc = seed;
    (1..=STEPS)
        .map(|i| {
            acc = step_output(i, acc);
            acc
        })
        .collect()
}

/// Writes a line straight to the process's stderr (not captured by the test harness).
fn shout(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
    let _ = stderr.flush();
}

/// What a worker printed so far.
#[derive(Debug, Default)]
struct WorkerOutput {
    ready: bool,
    stopped: bool,
    closed: bool,
    /// The last `STALE <n>` value: the engine's `stale_writes_rejected()`.
    stale: u64,
    /// The last `REJECTED <n>` value: commits the store refused as stale.
    rejected: u64,
    /// The last `RENEWAL_GAP_MS <ms>` value: the longest time between two lease renewals.
    renewal_gap_ms: u64,
    lines: Vec<String>,
}

/// A running `node_worker`, its stdout parsed by a reader thread.
struct Worker {
    node: &'static str,
    child: Child,
    output: Arc<Mutex<WorkerOutput>>,
}

impl Worker {
    fn spawn(
        url: &str,
        schema: &str,
        node: &'static str,
        prefix: &str,
        stop_file: &Path,
    ) -> Worker {
        Worker::spawn_with(url, schema, node, prefix, stop_file, PER_WORKER, None)
    }

    /// A worker starting `workflows` runs; with a `retry_ledger`, runs of `retrying_steps` that
    /// record every activity attempt there (see `node_worker`).
    fn spawn_with(
        url: &str,
        schema: &str,
        node: &'static str,
        prefix: &str,
        stop_file: &Path,
        workflows: u64,
        retry_ledger: Option<&Path>,
    ) -> Worker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_node_worker"));
        if let Some(ledger) = retry_ledger {
            command.env("NODE_WORKER_RETRY_LEDGER", ledger);
        }
        let mut child = command
            .arg(url)
            .arg(schema)
            .arg(node)
            .arg(LEASE.as_millis().to_string())
            .arg(workflows.to_string())
            .arg(prefix)
            .arg(stop_file)
            .arg(STEP_MS.0.to_string())
            .arg(STEP_MS.1.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node_worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(WorkerOutput::default()));
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut out = sink.lock().unwrap();
                if line == "READY" {
                    out.ready = true;
                } else if line == "STOPPED" {
                    out.stopped = true;
                } else if let Some(n) = line.strip_prefix("STALE ") {
                    out.stale = n.parse().expect("STALE <n>");
                } else if let Some(n) = line.strip_prefix("REJECTED ") {
                    out.rejected = n.parse().expect("REJECTED <n>");
                } else if let Some(n) = line.strip_prefix("RENEWAL_GAP_MS ") {
                    out.renewal_gap_ms = n.parse().expect("RENEWAL_GAP_MS <ms>");
                }
                out.lines.push(line);
            }
            sink.lock().unwrap().closed = true;
        });
        Worker {
            node,
            child,
            output,
        }
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("a pid")
    }

    fn signal(&mut self, signal: libc::c_int) {
        // SAFETY: `kill(2)` on our own child's pid, which has not been reaped (it is reaped only in
        // `kill`/`wait_stopped`/`drop`, after which no signal is sent).
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.node);
    }

    /// Waits until `check` holds for the worker's output; panics with `what` after `timeout`.
    fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&WorkerOutput) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let out = self.output.lock().unwrap();
                if check(&out) {
                    return true;
                }
                if out.closed {
                    panic!(
                        "{} exited before {what}; its output: {:?}",
                        self.node, out.lines
                    );
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stale(&self) -> u64 {
        self.output.lock().unwrap().stale
    }

    fn rejected(&self) -> u64 {
        self.output.lock().unwrap().rejected
    }

    /// `node: stale_writes_rejected (commits rejected, longest renewal gap)`, for messages.
    fn summary(&self) -> String {
        let out = self.output.lock().unwrap();
        format!(
            "{} {} ({} rejected by the store, longest renewal gap {} ms)",
            self.node, out.stale, out.rejected, out.renewal_gap_ms
        )
    }

    /// SIGKILLs and reaps the worker.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL node_worker");
        self.child.wait().expect("reap node_worker");
    }
}

impl Drop for Worker {
    /// Leaves no worker behind when an assertion fails.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A connection to the test's schema, for reading the journal's tables directly.
struct Db {
    rt: tokio::runtime::Runtime,
    client: Client,
    schema: String,
}

/// Row counts the scenario polls.
#[derive(Debug, Clone, Copy)]
struct Counts {
    runs: i64,
    completed: i64,
    /// Unfinished runs owned by each worker (in `WORKERS` order).
    owned: [i64; 3],
}

impl Db {
    fn connect(url: &str, schema: &str) -> Db {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = rt.block_on(async {
            // The store creates the schema and its tables, as each worker would.
            let store = PostgresStore::connect_with(PostgresOptions::new(url).schema(schema))
                .await
                .expect("create the test schema with PostgresStore");
            store.close();
            let (client, connection) = tokio_postgres::connect(url, NoTls)
                .await
                .expect("connect to PostgreSQL");
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    eprintln!("test connection to PostgreSQL ended: {error}");
                }
            });
            client
        });
        Db {
            rt,
            client,
            schema: schema.to_string(),
        }
    }

    /// `sql` with `{s}` replaced by the schema name (generated by the test, so safe to splice).
    fn sql(&self, sql: &str) -> String {
        sql.replace("{s}", &self.schema)
    }

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        let sql = self.sql(sql);
        self.rt
            .block_on(self.client.query(&sql, params))
            .unwrap_or_else(|error| panic!("query {sql:?}: {error}"))
    }

    fn scalar(&self, sql: &str) -> i64 {
        self.query(sql, &[])[0].get(0)
    }

    fn counts(&self) -> Counts {
        let row = &self.query(
            "SELECT count(*), count(*) FILTER (WHERE state = 1), \
             count(*) FILTER (WHERE state IN (0, 3) AND owner = $1), \
             count(*) FILTER (WHERE state IN (0, 3) AND owner = $2), \
             count(*) FILTER (WHERE state IN (0, 3) AND owner = $3) FROM {s}.runs",
            &[&WORKERS[0].0, &WORKERS[1].0, &WORKERS[2].0],
        )[0];
        Counts {
            runs: row.get(0),
            completed: row.get(1),
            owned: [row.get(2), row.get(3), row.get(4)],
        }
    }

    /// The unfinished runs, for a failure message.
    fn unfinished(&self) -> String {
        let rows = self.query(
            "SELECT r.workflow_id, r.state, r.owner, r.lease_epoch, \
             r.lease_expires_at_ms - (extract(epoch FROM clock_timestamp()) * 1000)::bigint, \
             (SELECT count(*) FROM {s}.events e WHERE e.workflow_id = r.workflow_id) \
             FROM {s}.runs r WHERE r.state <> 1 ORDER BY r.workflow_id LIMIT 40",
            &[],
        );
        rows.iter()
            .map(|row| {
                format!(
                    "{} state={} owner={:?} epoch={} lease_left_ms={:?} events={}",
                    row.get::<_, String>(0),
                    row.get::<_, i32>(1),
                    row.get::<_, Option<String>>(2),
                    row.get::<_, i64>(3),
                    row.get::<_, Option<i64>>(4),
                    row.get::<_, i64>(5),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn drop_schema(&self) {
        let sql = self.sql("DROP SCHEMA {s} CASCADE");
        self.rt
            .block_on(self.client.batch_execute(&sql))
            .expect("drop the test schema");
    }
}

/// A fresh schema name for this run.
fn fresh_schema() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_nanos();
    format!(
        "multi_node_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

#[test]
fn three_nodes_share_300_workflows_through_a_kill_and_a_pause() {
    let Ok(url) = std::env::var(URL_VAR) else {
        shout(&format!(
            "\n********************************************************************************\n\
             SKIPPED: {URL_VAR} is not set (multi-node test did not run)\n\
             ********************************************************************************\n"
        ));
        return;
    };
    let schema = fresh_schema();
    let db = Db::connect(&url, &schema);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stop_file: PathBuf = dir.path().join("stop");
    let total = PER_WORKER as i64 * WORKERS.len() as i64;

    let started = Instant::now();
    let mut workers: Vec<Worker> = WORKERS
        .iter()
        .map(|(node, prefix)| Worker::spawn(&url, &schema, node, prefix, &stop_file))
        .collect();
    for worker in &workers {
        assert!(
            worker.wait_until("READY", Duration::from_secs(30), |out| out.ready),
            "{} did not print READY",
            worker.node
        );
    }
    let ready_at = started.elapsed();
    assert_eq!(db.counts().runs, total, "every worker started its runs");

    // Wait for some completions, then SIGKILL worker A.
    let before_kill = loop {
        let counts = db.counts();
        if counts.completed >= COMPLETED_BEFORE_KILL {
            break counts;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {} runs completed before the deadline:\n{}",
            counts.completed,
            db.unfinished()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed_at = Instant::now();
    workers[0].kill();
    let a_left = db.counts().owned[0];
    assert!(
        a_left > 0,
        "worker A had no unfinished runs when killed ({before_kill:?}): kill earlier"
    );
    assert!(
        before_kill.completed < total / 2,
        "A was killed too late: {before_kill:?}"
    );

    // Then SIGSTOP worker B while it drives runs.
    std::thread::sleep(Duration::from_millis(100));
    let b_held = db.counts().owned[1];
    assert!(b_held > 0, "worker B drives no runs to be stopped with");
    let stopped_at = Instant::now();
    workers[1].signal(libc::SIGSTOP);

    // Poll the runs table: A's takeover, B's resumption, every run completing.
    let mut takeover: Option<Duration> = None;
    let mut resumed = false;
    let mut last = db.counts();
    while takeover.is_none() || !resumed || last.completed < total {
        assert!(
            started.elapsed() < DEADLINE,
            "not done by the deadline ({last:?}, takeover {takeover:?}, B resumed {resumed}); \
             workers' stale writes so far: {}; unfinished runs:\n{}",
            workers
                .iter()
                .map(Worker::summary)
                .collect::<Vec<_>>()
                .join(", "),
            db.unfinished()
        );
        std::thread::sleep(Duration::from_millis(50));
        last = db.counts();
        if takeover.is_none() && last.owned[0] == 0 {
            takeover = Some(killed_at.elapsed());
        }
        if !resumed && stopped_at.elapsed() >= STOP_FOR {
            workers[1].signal(libc::SIGCONT);
            resumed = true;
        }
    }
    let done_at = started.elapsed();
    let takeover = takeover.expect("measured");

    // B resumed with journal writes under its old lease: they must have been rejected.
    let b_rejected =
        workers[1].wait_until("a rejected stale write", Duration::from_secs(10), |out| {
            out.stale > 0 && out.rejected > 0
        });

    // Stop the remaining workers gracefully; their final `STALE n` lines come with it.
    std::fs::write(&stop_file, b"stop").expect("create the stop file");
    for worker in &workers[1..] {
        assert!(
            worker.wait_until("STOPPED", Duration::from_secs(15), |out| out.stopped),
            "{} did not stop",
            worker.node
        );
    }
    let (stale_b, rejected_b) = (workers[1].stale(), workers[1].rejected());
    let (stale_c, c_gap) = {
        let out = workers[2].output.lock().unwrap();
        (out.stale, Duration::from_millis(out.renewal_gap_ms))
    };
    eprintln!(
        "timeline: ready {ready_at:?}, kill A at {:?} (A had {a_left} unfinished, {before_kill:?}), \
         stop B at {:?} ({b_held} held), all done at {done_at:?}; stale writes: {}; {}",
        killed_at - started,
        stopped_at - started,
        workers[1].summary(),
        workers[2].summary(),
    );
    assert!(
        b_rejected && stale_b >= 1 && rejected_b >= 1,
        "worker B, paused past its lease, had no journal write rejected as stale \
         (stale_writes_rejected {stale_b}, commits the store rejected {rejected_b})"
    );
    if c_gap < LEASE {
        assert_eq!(
            stale_c,
            0,
            "worker C was never paused and renewed its leases in time (longest gap {c_gap:?}), \
             yet lost runs: {}",
            workers[2].summary()
        );
    } else {
        eprintln!(
            "note: worker C was starved past its lease (longest renewal gap {c_gap:?}): losing runs \
             was legitimate ({})",
            workers[2].summary()
        );
    }

    // The journal.
    assert_eq!(db.scalar("SELECT count(*) FROM {s}.runs"), total, "runs");
    let rows = db.query(
        "SELECT workflow_id, state, output FROM {s}.runs ORDER BY workflow_id",
        &[],
    );
    let codec = Codec::new(DEFAULT_PAYLOAD_LIMIT);
    let framing = Codec::new(DEFAULT_PAYLOAD_LIMIT + 4096);
    let mut seeds: BTreeMap<String, u64> = BTreeMap::new();
    let mut completed = 0;
    for row in &rows {
        let id: String = row.get(0);
        let state: i32 = row.get(1);
        let output: Option<Vec<u8>> = row.get(2);
        let (prefix, n) = id.split_once('-').expect("<prefix>-<n>");
        assert!(WORKERS.iter().any(|(_, p)| *p == prefix), "run id {id}");
        let seed: u64 = n.parse().expect("a run number");
        assert!(seed < PER_WORKER, "run id {id}");
        assert_eq!(state, COMPLETED, "{id} is completed");
        let output: u64 = codec
            .decode(&output.expect("a completed run has an output"))
            .expect("decode a run's output");
        assert_eq!(
            Some(&output),
            expected_outputs(seed).last(),
            "{id}'s output"
        );
        seeds.insert(id, seed);
        completed += 1;
    }
    assert_eq!(seeds.len() as i64, total, "distinct runs");

    let duplicate_steps = db.scalar(
        "SELECT count(*) FROM (SELECT workflow_id, step FROM {s}.events WHERE completion \
         GROUP BY workflow_id, step HAVING count(*) > 1) AS twice",
    );
    assert_eq!(duplicate_steps, 0, "steps with two completion events");

    // Every step's attempts journaled their starts (kind 15, `ActivityAttemptStarted`; a kill or a
    // takeover adds some). Checked here; the completions are checked below without them.
    let unstarted = db.query(
        "SELECT workflow_id, step FROM {s}.events e WHERE kind = 1 AND NOT EXISTS \
         (SELECT 1 FROM {s}.events x WHERE x.workflow_id = e.workflow_id AND x.step = e.step \
         AND x.kind = 15)",
        &[],
    );
    assert!(
        unstarted.is_empty(),
        "{} completed step(s) without a journaled attempt start",
        unstarted.len()
    );
    let events = db.query(
        "SELECT workflow_id, step, kind, completion, payload FROM {s}.events \
         WHERE kind <> 15 ORDER BY workflow_id, seq",
        &[],
    );
    let mut by_run: BTreeMap<String, Vec<EventRow>> = BTreeMap::new();
    for row in &events {
        by_run.entry(row.get(0)).or_default().push((
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
        ));
    }
    assert_eq!(by_run.len(), seeds.len(), "every run has events");
    for (id, events) in &by_run {
        let expected = expected_outputs(seeds[id]);
        let steps: Vec<i64> = events.iter().map(|(step, ..)| *step).collect();
        assert_eq!(
            steps,
            (1..=i64::from(STEPS)).collect::<Vec<_>>(),
            "{id}: exactly one event per step, in order (and nothing else)"
        );
        for (step, kind, completion, payload) in events {
            assert!(*completion, "{id} step {step}: a completion");
            assert_eq!(
                *kind, ACTIVITY_COMPLETED,
                "{id} step {step}: ActivityCompleted"
            );
            let body: EventBody = framing.decode(payload).expect("decode an event");
            let EventBody::ActivityCompleted { name, result, .. } = body else {
                panic!("{id} step {step}: not an ActivityCompleted event: {body:?}");
            };
            assert_eq!(name, "node_step");
            let bytes = result.unwrap_or_else(|error| panic!("{id} step {step} failed: {error}"));
            let value: u64 = codec.decode(&bytes).expect("decode a step's output");
            assert_eq!(
                Some(&value),
                expected.get(usize::try_from(*step).unwrap() - 1),
                "{id} step {step}'s output"
            );
        }
    }

    let line = format!(
        "multi-node workers={} workflows={total} completed={completed} duplicate_steps={duplicate_steps} \
         stale_writes_rejected={stale_b} takeover_ms={}",
        WORKERS.len(),
        takeover.as_millis()
    );
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    drop(stdout);

    drop(workers);
    db.drop_schema();
}

/// One slow activity step (the run must outlive a delayed lease renewal).
#[orchestrator::activity]
async fn slow_echo(n: u64) -> Result<u64, orchestrator::ActivityError> {
    tokio::time::sleep(Duration::from_millis(1000)).await;
    Ok(n)
}

/// A one-step workflow.
#[orchestrator::workflow]
async fn echo_once(
    ctx: orchestrator::WorkflowContext,
    n: u64,
) -> Result<u64, orchestrator::WorkflowError> {
    ctx.call(slow_echo, n).await
}

/// A run started on a node while that node's lease renewal is in flight (the renewal's answer was
/// produced before the run existed, and arrives after the run was created and is driven) must still
/// be driven to completion — by this node, the only one.
///
/// The renewal's answer lacks the new run, so the node must not take that as "another node took it
/// over": no other node exists. Deterministic: renewals are delayed by 400 ms, the run starts 50 ms
/// into one.
#[test]
fn a_run_started_during_a_lease_renewal_is_not_orphaned() {
    let Ok(url) = std::env::var(URL_VAR) else {
        shout(&format!(
            "SKIPPED: {URL_VAR} is not set (multi-node renewal-race test did not run)"
        ));
        return;
    };
    let schema = fresh_schema() + "_race";
    let db = Db::connect(&url, &schema);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = rt.block_on(async {
        let store = PostgresStore::connect_with(PostgresOptions::new(&url).schema(&schema))
            .await
            .expect("connect to PostgreSQL");
        let probe = Arc::new(orchestrator_tests::lease_probe::ProbedStore::new(Arc::new(
            store,
        )));
        probe.delay_renewals(Duration::from_millis(400));
        let engine = orchestrator::Engine::builder()
            .store(probe.clone())
            .node_id("solo")
            .lease_duration(Duration::from_secs(2))
            .register(echo_once)
            .register(slow_echo)
            .start()
            .await
            .expect("start the engine");
        // The cluster loop's first renewal has read the (empty) set of leases and is being delayed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let run = engine
            .start(echo_once, "started-mid-renewal", 7)
            .await
            .expect("start a run");
        tokio::time::sleep(Duration::from_millis(600)).await;
        probe.delay_renewals(Duration::ZERO);
        let result = tokio::time::timeout(Duration::from_secs(8), run.result()).await;
        let stale = engine.stale_writes_rejected();
        let rejected = probe.stale_rejections();
        engine.shutdown().await;
        (result, stale, rejected)
    });
    let (result, stale, rejected) = outcome;
    let row = db.query(
        "SELECT state, owner, lease_epoch, (SELECT count(*) FROM {s}.events) FROM {s}.runs",
        &[],
    );
    let row = row
        .iter()
        .map(|row| {
            format!(
                "state={} owner={:?} epoch={} events={}",
                row.get::<_, i32>(0),
                row.get::<_, Option<String>>(1),
                row.get::<_, i64>(2),
                row.get::<_, i64>(3)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        matches!(result, Ok(Ok(7))),
        "the run did not complete within 8 s ({result:?}); the journal: {row}; \
         stale_writes_rejected {stale}, commits the store rejected {rejected}"
    );
    assert_eq!(
        (stale, rejected),
        (0, 0),
        "a lone node reported stale writes (stale_writes_rejected, commits the store rejected)"
    );
    db.drop_schema();
}

/// A node whose renewals stalled past its lease (a pause, a starved process) while nobody else took its
/// run over gets the run back: its next tick finds the lease expired (the run is lost: `LeaseLost` to
/// the driver) and claims it again under a new epoch (`NewEpoch` to the same driver, which is still
/// there because it is busy with a slow journal write). The run must still be driven to completion.
///
/// Deterministic: one node, a 500 ms lease, a run of two 1 s activities; one renewal is held back
/// 900 ms before it reaches the store, and the first activity's completion 600 ms before it reaches
/// the store.
#[test]
fn a_run_reclaimed_by_its_own_node_after_its_lease_lapsed_completes() {
    let Ok(url) = std::env::var(URL_VAR) else {
        shout(&format!(
            "SKIPPED: {URL_VAR} is not set (multi-node lapsed-lease test did not run)"
        ));
        return;
    };
    let schema = fresh_schema() + "_lapse";
    let db = Db::connect(&url, &schema);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (result, stale, rejected) = rt.block_on(async {
        let store = PostgresStore::connect_with(PostgresOptions::new(&url).schema(&schema))
            .await
            .expect("connect to PostgreSQL");
        let probe = Arc::new(orchestrator_tests::lease_probe::ProbedStore::new(Arc::new(
            store,
        )));
        let engine = orchestrator::Engine::builder()
            .store(probe.clone())
            .node_id("solo")
            .lease_duration(Duration::from_millis(500))
            .register(echo_twice)
            .register(slow_echo)
            .start()
            .await
            .expect("start the engine");
        let run = engine
            .start(echo_twice, "lapsed-and-reclaimed", 7)
            .await
            .expect("start a run");
        tokio::time::sleep(Duration::from_millis(100)).await;
        probe.stall_next_renewal(Duration::from_millis(900));
        probe.delay_next_commit(Duration::from_millis(600));
        let result = tokio::time::timeout(Duration::from_secs(8), run.result()).await;
        let stale = engine.stale_writes_rejected();
        let rejected = probe.stale_rejections();
        engine.shutdown().await;
        (result, stale, rejected)
    });
    let row = db
        .query(
            "SELECT state, owner, lease_epoch, (SELECT count(*) FROM {s}.events) FROM {s}.runs",
            &[],
        )
        .iter()
        .map(|row| {
            format!(
                "state={} owner={:?} epoch={} events={}",
                row.get::<_, i32>(0),
                row.get::<_, Option<String>>(1),
                row.get::<_, i64>(2),
                row.get::<_, i64>(3)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        matches!(result, Ok(Ok(14))),
        "the run did not complete within 8 s ({result:?}); the journal: {row}; \
         stale_writes_rejected {stale}, commits the store rejected {rejected}"
    );
    db.drop_schema();
}

/// Two slow steps: 7 → 7 → 14.
#[orchestrator::workflow]
async fn echo_twice(
    ctx: orchestrator::WorkflowContext,
    n: u64,
) -> Result<u64, orchestrator::WorkflowError> {
    let first = ctx.call(slow_echo, n).await?;
    let second = ctx.call(slow_echo, first).await?;
    Ok(first + second)
}

/// A database outage longer than a driver's commit retries (about 3.3 s) but shorter than the lease
/// (default 10 s): the node keeps its lease, so no other node takes the run over — the node itself
/// must go on driving the run once the database is back.
///
/// Deterministic: one node, the default 10 s lease, a run of two 1 s activities; commits, renewals and
/// claims fail for 4.5 s from 0.2 s on (the first activity's completion falls inside).
#[test]
fn a_run_survives_a_database_outage_shorter_than_its_lease() {
    let Ok(url) = std::env::var(URL_VAR) else {
        shout(&format!(
            "SKIPPED: {URL_VAR} is not set (multi-node outage test did not run)"
        ));
        return;
    };
    let schema = fresh_schema() + "_outage";
    let db = Db::connect(&url, &schema);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (result, took) = rt.block_on(async {
        let store = PostgresStore::connect_with(PostgresOptions::new(&url).schema(&schema))
            .await
            .expect("connect to PostgreSQL");
        let probe = Arc::new(orchestrator_tests::lease_probe::ProbedStore::new(Arc::new(
            store,
        )));
        let engine = orchestrator::Engine::builder()
            .store(probe.clone())
            .node_id("solo")
            .register(echo_twice)
            .register(slow_echo)
            .start()
            .await
            .expect("start the engine");
        let started = Instant::now();
        let run = engine
            .start(echo_twice, "through-an-outage", 7)
            .await
            .expect("start a run");
        tokio::time::sleep(Duration::from_millis(200)).await;
        probe.outage(Duration::from_millis(4500));
        let result = tokio::time::timeout(Duration::from_secs(15), run.result()).await;
        let took = started.elapsed();
        engine.shutdown().await;
        (result, took)
    });
    let row = db
        .query(
            "SELECT state, owner, lease_epoch, \
             lease_expires_at_ms - (extract(epoch FROM clock_timestamp()) * 1000)::bigint, \
             (SELECT count(*) FROM {s}.events) FROM {s}.runs",
            &[],
        )
        .iter()
        .map(|row| {
            format!(
                "state={} owner={:?} epoch={} lease_left_ms={:?} events={}",
                row.get::<_, i32>(0),
                row.get::<_, Option<String>>(1),
                row.get::<_, i64>(2),
                row.get::<_, Option<i64>>(3),
                row.get::<_, i64>(4)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        matches!(result, Ok(Ok(14))),
        "the run did not complete within 15 s of the outage's start ({result:?} after {took:?}); \
         the journal: {row}"
    );
    db.drop_schema();
}

/// One line of the activity-attempt ledger: node, workflow id, step, attempt, start (unix ms).
#[derive(Debug)]
struct Attempt {
    node: String,
    workflow_id: String,
    step: u32,
    attempt: u32,
    started_ms: u128,
}

fn read_ledger(path: &Path) -> Vec<Attempt> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 5, "a ledger line: {line:?}");
            Attempt {
                node: fields[0].to_string(),
                workflow_id: fields[1].to_string(),
                step: fields[2].parse().unwrap(),
                attempt: fields[3].parse().unwrap(),
                started_ms: fields[4].parse().unwrap(),
            }
        })
        .collect()
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_millis()
}

/// Node B's runs wait in a 4 s retry backoff when B is SIGSTOPped for longer than its lease; node C
/// takes them over and finishes them; then B is SIGCONTed with its backoff timers overdue. The
/// activity-attempt ledger (node, run, step, attempt, start time) must show no attempt started on B
/// after its lease expired (at the latest one lease after the SIGSTOP), and none after C's takeover.
#[test]
fn a_paused_node_starts_no_retry_of_runs_taken_over_while_it_was_stopped() {
    let Ok(url) = std::env::var(URL_VAR) else {
        shout(&format!(
            "SKIPPED: {URL_VAR} is not set (multi-node test did not run)"
        ));
        return;
    };
    const RUNS: u64 = 20;
    let schema = fresh_schema();
    let db = Db::connect(&url, &schema);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let stop_file: PathBuf = dir.path().join("stop");
    let ledger = dir.path().join("ledger");
    let started = Instant::now();

    let mut b = Worker::spawn_with(
        &url,
        &schema,
        "node-b",
        "b",
        &stop_file,
        RUNS,
        Some(&ledger),
    );
    assert!(b.wait_until("READY", Duration::from_secs(30), |out| out.ready));
    // Every run's first attempt failed on B: they all wait out a 4 s backoff.
    let first_attempts = || {
        read_ledger(&ledger)
            .iter()
            .filter(|a| a.node == "node-b" && a.step == 1 && a.attempt == 1)
            .count()
    };
    while first_attempts() < RUNS as usize {
        assert!(
            started.elapsed() < DEADLINE,
            "B's first attempts did not all start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the failures be journaled (they are, right after each attempt), then stop B.
    std::thread::sleep(Duration::from_millis(300));
    let stopped_ms = unix_ms();
    b.signal(libc::SIGSTOP);

    let c = Worker::spawn_with(&url, &schema, "node-c", "c", &stop_file, 0, Some(&ledger));
    assert!(c.wait_until("READY", Duration::from_secs(30), |out| out.ready));
    // C takes every run over (once B's leases expired) and finishes them.
    let mut taken_over_ms = None;
    loop {
        let owned_by_b = db.scalar(
            &db.sql("SELECT count(*) FROM {s}.runs WHERE state IN (0, 3) AND owner = 'node-b'"),
        );
        if taken_over_ms.is_none() && owned_by_b == 0 {
            taken_over_ms = Some(unix_ms());
        }
        let completed = db.scalar(&db.sql("SELECT count(*) FROM {s}.runs WHERE state = 1"));
        if completed == RUNS as i64 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "C did not finish B's runs ({completed} of {RUNS}):\n{}",
            db.unfinished()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let taken_over_ms = taken_over_ms.expect("measured");
    // B wakes up with every backoff timer overdue; give it time to (wrongly) act on them.
    std::thread::sleep(Duration::from_millis(500));
    b.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&stop_file, b"stop").unwrap();
    for worker in [&b, &c] {
        assert!(
            worker.wait_until("STOPPED", Duration::from_secs(30), |out| out.stopped),
            "{} did not stop",
            worker.node
        );
    }

    let attempts = read_ledger(&ledger);
    let lease_expired_ms = stopped_ms + LEASE.as_millis();
    let late: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.node == "node-b" && a.started_ms > lease_expired_ms.min(taken_over_ms))
        .collect();
    let by_c = attempts.iter().filter(|a| a.node == "node-c").count();
    println!(
        "paused-node retries: runs={RUNS} attempts={} by_c={by_c} late_on_b={} takeover_ms={}",
        attempts.len(),
        late.len(),
        taken_over_ms.saturating_sub(stopped_ms)
    );
    assert!(
        late.is_empty(),
        "node B started {} activity attempts after its lease expired (SIGSTOP at {stopped_ms}, \
         lease expired by {lease_expired_ms}, takeover at {taken_over_ms}): {late:#?}",
        late.len()
    );
    assert!(by_c >= RUNS as usize, "C ran the retries: {attempts:#?}");
    let completed_by: BTreeMap<&str, usize> =
        attempts.iter().fold(BTreeMap::new(), |mut map, a| {
            *map.entry(a.workflow_id.as_str()).or_default() += 1;
            map
        });
    assert_eq!(completed_by.len(), RUNS as usize, "every run has attempts");
    db.drop_schema();
}
