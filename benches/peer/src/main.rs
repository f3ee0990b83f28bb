//! Peer benchmark: orchestrator next to duroxide (0.1.x, SQLite provider) in one process run.
//!
//! ```sh
//! cargo run --release --manifest-path benches/peer/Cargo.toml              # full (a few minutes)
//! cargo run --release --manifest-path benches/peer/Cargo.toml -- --quick   # scaled down
//! ```
//!
//! The same workloads run on each engine, one engine after the other (never concurrently), in one
//! tokio multi-thread runtime, each measured run on a fresh SQLite file in a temporary directory:
//!
//! - `sequential`: one workflow running N no-op activities back to back → steps/s (submission to the
//!   observed result) and the per-step time p50/p99 (the gaps between consecutive activity
//!   executions, stamped inside the activity);
//! - `concurrent`: W workflows started at once, each running 10 no-op activities back to back → total
//!   steps/s (first submission to last completion);
//! - `wf3`: start→result latency of a 3-activity workflow, one at a time, p50/p99 over R runs.
//!
//! Engines ("peers"):
//! - orchestrator with `Durability::Full` (the default: `synchronous = FULL`, fsync per commit);
//! - orchestrator with `Durability::Normal` (`synchronous = NORMAL`, no fsync per commit);
//! - duroxide as configured by default (`SqliteProvider::new` + `RuntimeOptions::default()`);
//! - duroxide with `dispatcher_min_poll_interval = 1ms` (its default is 100 ms and its SQLite
//!   provider does not long-poll, so idle dispatchers sleep up to 100 ms between polls). Skip it with
//!   `--no-fast-poll`.
//!
//! Before the measured runs each peer does one warm-up pass of every workload (small sizes, its own
//! file, excluded), and each measured run starts with one excluded 3-activity workflow so the engine's
//! connections and caches are live before the clock starts.
//!
//! Waiting for results: orchestrator's `RunHandle::result` is notified by the engine. duroxide's
//! client can only poll, and `Client::get_orchestration_status` reads the whole history each time,
//! so this bench polls duroxide's `executions` row instead (one cheap primary-key query): every 1 ms
//! for a single run, every 5 ms for the concurrent count. That adds up to ~1 ms to each duroxide
//! sample (against duroxide).
//!
//! Every wait has a deadline: a hang fails the run loudly (non-zero exit).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use duroxide::providers::sqlite::SqliteProvider;
use duroxide::runtime::registry::ActivityRegistry;
use duroxide::{ActivityContext, Client, OrchestrationContext, OrchestrationRegistry, RuntimeOptions};
use orchestrator::Durability;
use orchestrator::prelude::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------------
// Step stamps (shared by both engines' "stamp" activity; one workload runs at a time)

static STAMPS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

fn stamps() -> MutexGuard<'static, Vec<Instant>> {
    STAMPS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn stamp_now() {
    stamps().push(Instant::now());
}

fn take_stamps() -> Vec<Instant> {
    std::mem::take(&mut *stamps())
}

// ---------------------------------------------------------------------------------------------------
// Warnings: a global tracing subscriber that counts WARN/ERROR events per engine instead of printing
// them. Installed before any duroxide runtime starts, so duroxide's own `try_init` of a stdout
// subscriber fails (which it tolerates: "multiple runtimes share a process"); its metrics and
// instrumented provider are set up as usual.

static DUROXIDE_WARNINGS: AtomicU64 = AtomicU64::new(0);
static ORCH_WARNINGS: AtomicU64 = AtomicU64::new(0);
static WARNING_SAMPLES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static FAILURE_NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn failure_notes() -> MutexGuard<'static, Vec<String>> {
    FAILURE_NOTES.lock().unwrap_or_else(|p| p.into_inner())
}

struct WarningCounter;

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push_str(", ");
        }
        let _ = write!(self.0, "{}={value:?}", field.name());
    }
}

impl tracing::Subscriber for WarningCounter {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let target = event.metadata().target();
        if target.starts_with("duroxide") {
            DUROXIDE_WARNINGS.fetch_add(1, Ordering::Relaxed);
        } else {
            ORCH_WARNINGS.fetch_add(1, Ordering::Relaxed);
        }
        let mut samples = WARNING_SAMPLES.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < 4 {
            let mut visitor = MessageVisitor(String::new());
            event.record(&mut visitor);
            let mut line = format!("{target}: {}", visitor.0);
            line.truncate(300);
            samples.push(line);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn warnings() -> u64 {
    DUROXIDE_WARNINGS.load(Ordering::Relaxed) + ORCH_WARNINGS.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------------
// orchestrator side

/// Does nothing: returns its input.
#[activity]
async fn noop(n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

/// Records when it ran, returns its input.
#[activity]
async fn stamp(n: u32) -> Result<u32, ActivityError> {
    stamp_now();
    Ok(n)
}

/// `n` stamp activities back to back.
#[workflow]
async fn seq_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut last = 0;
    for i in 0..n {
        last = ctx.call(stamp, i).await?;
    }
    Ok(last)
}

/// Three no-op activities back to back.
#[workflow]
async fn three_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let a = ctx.call(noop, n).await?;
    let b = ctx.call(noop, a).await?;
    ctx.call(noop, b).await
}

/// Ten no-op activities back to back.
#[workflow]
async fn ten_steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let mut last = n;
    for _ in 0..10 {
        last = ctx.call(noop, last).await?;
    }
    Ok(last)
}

// ---------------------------------------------------------------------------------------------------
// duroxide side: the same workflows and activities, with string payloads (its native API)

fn duroxide_registries() -> (ActivityRegistry, OrchestrationRegistry) {
    let activities = ActivityRegistry::builder()
        .register("Noop", |_ctx: ActivityContext, input: String| async move {
            Ok(input)
        })
        .register("Stamp", |_ctx: ActivityContext, input: String| async move {
            stamp_now();
            Ok(input)
        })
        .build();
    let orchestrations = OrchestrationRegistry::builder()
        .register(
            "SeqSteps",
            |ctx: OrchestrationContext, input: String| async move {
                let n: u32 = input.parse().map_err(|e| format!("bad input {input:?}: {e}"))?;
                let mut last = String::from("0");
                for i in 0..n {
                    last = ctx.schedule_activity("Stamp", i.to_string()).await?;
                }
                Ok(last)
            },
        )
        .register(
            "ThreeSteps",
            |ctx: OrchestrationContext, input: String| async move {
                let a = ctx.schedule_activity("Noop", input).await?;
                let b = ctx.schedule_activity("Noop", a).await?;
                ctx.schedule_activity("Noop", b).await
            },
        )
        .register(
            "TenSteps",
            |ctx: OrchestrationContext, input: String| async move {
                let mut last = input;
                for _ in 0..10 {
                    last = ctx.schedule_activity("Noop", last).await?;
                }
                Ok(last)
            },
        )
        .build();
    (activities, orchestrations)
}

// ---------------------------------------------------------------------------------------------------
// Peers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    OrchFull,
    OrchNormal,
    Duroxide,
    DuroxideFastPoll,
}

const ALL_PEERS: [Peer; 4] = [
    Peer::OrchFull,
    Peer::OrchNormal,
    Peer::Duroxide,
    Peer::DuroxideFastPoll,
];

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::OrchFull => "orch Full",
            Peer::OrchNormal => "orch Normal",
            Peer::Duroxide => "duroxide",
            Peer::DuroxideFastPoll => "duroxide 1ms-poll",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Peer::OrchFull => "orch-full",
            Peer::OrchNormal => "orch-normal",
            Peer::Duroxide => "duroxide",
            Peer::DuroxideFastPoll => "duroxide-fastpoll",
        }
    }
}

/// How the bench waits for a single duroxide run's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DuroxideWait {
    /// Poll its `executions` row every 1 ms (cheap primary-key read).
    Row,
    /// `Client::wait_for_orchestration` (reads the whole history per poll, 5→100 ms backoff).
    Client,
}

static DUROXIDE_WAIT: Mutex<DuroxideWait> = Mutex::new(DuroxideWait::Row);

fn duroxide_wait_mode() -> DuroxideWait {
    *DUROXIDE_WAIT.lock().unwrap_or_else(|p| p.into_inner())
}

/// A started engine of one peer.
enum Running {
    Orch(Engine),
    Duroxide {
        runtime: Arc<duroxide::runtime::Runtime>,
        client: Client,
        store: Arc<SqliteProvider>,
    },
}

async fn start_peer(peer: Peer, path: &Path) -> Result<Running, BoxError> {
    match peer {
        Peer::OrchFull | Peer::OrchNormal => {
            let durability = if peer == Peer::OrchFull {
                Durability::Full
            } else {
                Durability::Normal
            };
            let engine = Engine::builder()
                .sqlite(path)
                .durability(durability)
                .shutdown_grace(Duration::from_secs(2))
                .register(seq_steps)
                .register(three_steps)
                .register(ten_steps)
                .register(noop)
                .register(stamp)
                .start()
                .await?;
            Ok(Running::Orch(engine))
        }
        Peer::Duroxide | Peer::DuroxideFastPoll => {
            // As in duroxide's examples: create the file, then open it by URL.
            std::fs::File::create(path)?;
            let url = format!("sqlite:{}", path.display());
            let store = Arc::new(SqliteProvider::new(&url, None).await?);
            let mut options = RuntimeOptions::default();
            if peer == Peer::DuroxideFastPoll {
                options.dispatcher_min_poll_interval = Duration::from_millis(1);
            }
            let (activities, orchestrations) = duroxide_registries();
            let runtime = duroxide::runtime::Runtime::start_with_options(
                store.clone(),
                activities,
                orchestrations,
                options,
            )
            .await;
            let client = Client::new(store.clone());
            Ok(Running::Duroxide {
                runtime,
                client,
                store,
            })
        }
    }
}

async fn stop_peer(running: Running) -> Result<(), BoxError> {
    match running {
        Running::Orch(engine) => {
            within(Duration::from_secs(30), "orchestrator shutdown", engine.shutdown()).await?;
        }
        Running::Duroxide {
            runtime,
            client,
            store,
        } => {
            within(
                Duration::from_secs(30),
                "duroxide shutdown",
                runtime.shutdown(None),
            )
            .await?;
            drop(client);
            store.get_pool().close().await;
        }
    }
    Ok(())
}

/// Latest status and output of a duroxide instance, read from its `executions` row.
async fn duroxide_execution(
    store: &SqliteProvider,
    instance: &str,
) -> Result<Option<(String, Option<String>)>, BoxError> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, output FROM executions WHERE instance_id = ?1 \
         ORDER BY execution_id DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(store.get_pool())
    .await?;
    Ok(row)
}

/// Waits for a duroxide instance to complete (see [`DuroxideWait`]); returns its output.
async fn duroxide_wait(
    client: &Client,
    store: &SqliteProvider,
    instance: &str,
) -> Result<String, BoxError> {
    if duroxide_wait_mode() == DuroxideWait::Client {
        return match client
            .wait_for_orchestration(instance, Duration::from_secs(3600))
            .await?
        {
            duroxide::OrchestrationStatus::Completed { output, .. } => Ok(output),
            other => Err(format!("duroxide instance {instance} ended {other:?}").into()),
        };
    }
    loop {
        if let Some((status, output)) = duroxide_execution(store, instance).await? {
            match status.as_str() {
                "Completed" => return Ok(output.unwrap_or_default()),
                "Running" => {}
                other => {
                    let detail = output.unwrap_or_default();
                    return Err(format!("duroxide instance {instance} is {other}: {detail}").into());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl Running {
    /// Runs the sequential workflow with `n` steps under id `id` and returns when it finished.
    async fn sequential(&self, id: &str, n: u32) -> Result<(), BoxError> {
        match self {
            Running::Orch(engine) => {
                let run = engine.start(seq_steps, id, n).await?;
                let out = run.result().await?;
                check(out == n.saturating_sub(1), || format!("seq returned {out}"))
            }
            Running::Duroxide { client, store, .. } => {
                client.start_orchestration(id, "SeqSteps", n.to_string()).await?;
                let out = duroxide_wait(client, store, id).await?;
                check(out.trim_matches('"') == n.saturating_sub(1).to_string(), || {
                    format!("seq returned {out}")
                })
            }
        }
    }

    /// Runs one 3-activity workflow under id `id`; returns when it finished.
    async fn wf3(&self, id: &str, n: u32) -> Result<(), BoxError> {
        match self {
            Running::Orch(engine) => {
                let run = engine.start(three_steps, id, n).await?;
                let out = run.result().await?;
                check(out == n, || format!("wf3 returned {out}"))
            }
            Running::Duroxide { client, store, .. } => {
                client.start_orchestration(id, "ThreeSteps", n.to_string()).await?;
                let out = duroxide_wait(client, store, id).await?;
                check(out.trim_matches('"') == n.to_string(), || {
                    format!("wf3 returned {out}")
                })
            }
        }
    }

    /// Starts `count` 10-activity workflows at once (ids `{prefix}-{i}`); returns when all finished,
    /// with the number that failed (an orchestrator failure is an error; a duroxide instance that ends
    /// `Failed` is counted and described in the notes, as duroxide does fail instances when its SQLite
    /// provider keeps reporting "database is locked").
    async fn concurrent(&self, prefix: &str, count: u32) -> Result<u32, BoxError> {
        match self {
            Running::Orch(engine) => {
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..count {
                    let engine = engine.clone();
                    let id = format!("{prefix}-{i}");
                    tasks.spawn(async move {
                        let run = engine.start(ten_steps, id, i).await?;
                        let out = run.result().await?;
                        check(out == i, || format!("ten_steps returned {out}, expected {i}"))
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    joined??;
                }
                Ok(0)
            }
            Running::Duroxide { client, store, .. } => {
                let mut tasks = tokio::task::JoinSet::new();
                for i in 0..count {
                    let client = client.clone();
                    let id = format!("{prefix}-{i}");
                    tasks.spawn(async move {
                        client.start_orchestration(id, "TenSteps", i.to_string()).await?;
                        Ok::<(), BoxError>(())
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    joined??;
                }
                let pattern = format!("{prefix}-%");
                loop {
                    let (completed, other): (i64, i64) = sqlx::query_as(
                        "SELECT \
                           COALESCE(SUM(CASE WHEN status = 'Completed' THEN 1 ELSE 0 END), 0), \
                           COALESCE(SUM(CASE WHEN status NOT IN ('Completed', 'Running') THEN 1 ELSE 0 END), 0) \
                         FROM executions WHERE instance_id LIKE ?1",
                    )
                    .bind(&pattern)
                    .fetch_one(store.get_pool())
                    .await?;
                    if completed + other >= i64::from(count) {
                        if other > 0 {
                            let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
                                "SELECT instance_id, status, output FROM executions \
                                 WHERE instance_id LIKE ?1 AND status NOT IN ('Completed', 'Running') LIMIT 3",
                            )
                            .bind(&pattern)
                            .fetch_all(store.get_pool())
                            .await?;
                            for (id, status, output) in rows {
                                let mut line = format!(
                                    "duroxide instance {id} ended {status}: {}",
                                    output.unwrap_or_default()
                                );
                                line.truncate(400);
                                failure_notes().push(line);
                            }
                        }
                        return Ok(u32::try_from(other)?);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// duroxide's effective `synchronous` and `journal_mode` (read on one of its pooled connections).
    async fn duroxide_pragmas(&self) -> Result<Option<(i64, String)>, BoxError> {
        match self {
            Running::Orch(_) => Ok(None),
            Running::Duroxide { store, .. } => {
                let pool = store.get_pool();
                let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await?;
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await?;
                Ok(Some((sync, mode)))
            }
        }
    }
}

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), BoxError> {
    if ok { Ok(()) } else { Err(message().into()) }
}

async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> Result<T, BoxError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| format!("TIMEOUT: {what} did not finish within {limit:?}").into())
}

// ---------------------------------------------------------------------------------------------------
// Measurements

#[derive(Debug, Clone, Copy)]
struct Sizes {
    seq_steps: u32,
    workflows: u32,
    wf3_runs: u32,
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    seq_steps_per_s: f64,
    seq_p50_us: f64,
    seq_p99_us: f64,
    conc_steps_per_s: f64,
    wf3_p50_us: f64,
    wf3_p99_us: f64,
}

/// One measured run's wall time, process CPU time and journal size, for the details section.
struct Detail {
    peer: Peer,
    workload: &'static str,
    wall: Duration,
    cpu: Duration,
    warnings: u64,
    /// Workflows that ended failed (counted only by the concurrent workload).
    failed: u32,
}

/// Process CPU time (user + system) from /proc/self/stat; zero where unavailable.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15 (1-based).
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14 → index 11 after the state (field 3 → index 0); CLK_TCK is 100 on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile_us(samples: &mut [Duration], pct: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((pct / 100.0) * samples.len() as f64).ceil() as usize;
    let index = rank.clamp(1, samples.len()) - 1;
    samples[index].as_secs_f64() * 1e6
}

/// Starts a peer on a fresh file and runs one excluded 3-activity workflow before returning it.
async fn fresh(peer: Peer, dir: &Path, name: &str) -> Result<Running, BoxError> {
    // The file name is unique per peer and workload: a fresh journal each time.
    let path = dir.join(format!("{}-{name}.db", peer.slug()));
    let running = within(Duration::from_secs(60), "engine start", start_peer(peer, &path)).await??;
    within(
        Duration::from_secs(60),
        "priming 3-activity workflow",
        running.wf3("prime", 7),
    )
    .await??;
    Ok(running)
}

async fn measure_sequential(
    peer: Peer,
    dir: &Path,
    name: &str,
    n: u32,
    details: &mut Vec<Detail>,
) -> Result<(f64, f64, f64), BoxError> {
    let running = fresh(peer, dir, name).await?;
    take_stamps();
    let cpu0 = cpu_time();
    let warn0 = warnings();
    let t0 = Instant::now();
    let limit = Duration::from_secs(60) + Duration::from_millis(500) * n;
    within(limit, "sequential workflow", running.sequential("seq", n)).await??;
    let wall = t0.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    stop_peer(running).await?;
    let stamps = take_stamps();
    check(stamps.len() == n as usize, || {
        format!("{}: {} stamps for {n} steps", peer.label(), stamps.len())
    })?;
    let mut gaps: Vec<Duration> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    let p50 = percentile_us(&mut gaps, 50.0);
    let p99 = percentile_us(&mut gaps, 99.0);
    details.push(Detail {
        peer,
        workload: "sequential",
        wall,
        cpu,
        warnings: warnings() - warn0,
        failed: 0,
    });
    Ok((f64::from(n) / wall.as_secs_f64(), p50, p99))
}

async fn measure_concurrent(
    peer: Peer,
    dir: &Path,
    name: &str,
    workflows: u32,
    details: &mut Vec<Detail>,
) -> Result<f64, BoxError> {
    let running = fresh(peer, dir, name).await?;
    let cpu0 = cpu_time();
    let warn0 = warnings();
    let t0 = Instant::now();
    let limit = Duration::from_secs(60) + Duration::from_millis(30) * (workflows * 10);
    let failed =
        within(limit, "concurrent workflows", running.concurrent("conc", workflows)).await??;
    let wall = t0.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    stop_peer(running).await?;
    details.push(Detail {
        peer,
        workload: "concurrent",
        wall,
        cpu,
        warnings: warnings() - warn0,
        failed,
    });
    if failed > 0 {
        eprintln!("  concurrent {:<18} {failed} of {workflows} workflows FAILED", peer.label());
    }
    // Only the steps of completed workflows count.
    Ok(f64::from((workflows - failed) * 10) / wall.as_secs_f64())
}

async fn measure_wf3(
    peer: Peer,
    dir: &Path,
    name: &str,
    runs: u32,
    details: &mut Vec<Detail>,
) -> Result<(f64, f64), BoxError> {
    let running = fresh(peer, dir, name).await?;
    let mut samples = Vec::with_capacity(runs as usize);
    let cpu0 = cpu_time();
    let warn0 = warnings();
    let t_all = Instant::now();
    for i in 0..runs {
        let id = format!("wf3-{i}");
        let t0 = Instant::now();
        within(Duration::from_secs(30), "3-activity workflow", running.wf3(&id, i)).await??;
        samples.push(t0.elapsed());
    }
    let wall = t_all.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    stop_peer(running).await?;
    details.push(Detail {
        peer,
        workload: "wf3",
        wall,
        cpu,
        warnings: warnings() - warn0,
        failed: 0,
    });
    Ok((percentile_us(&mut samples, 50.0), percentile_us(&mut samples, 99.0)))
}

/// One excluded pass of every workload at small sizes on the peer's own file.
async fn warm_up(peer: Peer, dir: &Path) -> Result<Option<(i64, String)>, BoxError> {
    let path = dir.join(format!("{}-warmup.db", peer.slug()));
    let running = within(Duration::from_secs(60), "engine start", start_peer(peer, &path)).await??;
    let pragmas = running.duroxide_pragmas().await?;
    within(Duration::from_secs(120), "warm-up", async {
        running.sequential("warm-seq", 20).await?;
        for i in 0..5 {
            running.wf3(&format!("warm-wf3-{i}"), i).await?;
        }
        running.concurrent("warm-conc", 20).await.map(|_| ())
    })
    .await??;
    take_stamps();
    stop_peer(running).await?;
    Ok(pragmas)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_figures(samples: &[Figures]) -> Figures {
    let m = |get: fn(&Figures) -> f64| median(samples.iter().map(get).collect());
    Figures {
        seq_steps_per_s: m(|f| f.seq_steps_per_s),
        seq_p50_us: m(|f| f.seq_p50_us),
        seq_p99_us: m(|f| f.seq_p99_us),
        conc_steps_per_s: m(|f| f.conc_steps_per_s),
        wf3_p50_us: m(|f| f.wf3_p50_us),
        wf3_p99_us: m(|f| f.wf3_p99_us),
    }
}

/// The machine's fsync'd-commit latency right now: 200 single-row autocommit INSERTs into a fresh
/// SQLite file in WAL with `synchronous = FULL` (p50, p99 µs) — context for the Full figures, which
/// on this shared machine move with it.
async fn raw_commit_baseline(dir: &Path, name: &str) -> Result<(f64, f64), BoxError> {
    let path = dir.join(format!("raw-commit-{name}.db"));
    let job = tokio::task::spawn_blocking(move || -> Result<(f64, f64), BoxError> {
        let conn = rusqlite::Connection::open(&path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        check(mode.eq_ignore_ascii_case("wal"), || format!("journal_mode {mode}"))?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
        )?;
        let payload = vec![0u8; 64];
        let mut samples = Vec::with_capacity(200);
        for _ in 0..200 {
            let t0 = Instant::now();
            conn.execute("INSERT INTO t (v) VALUES (?1)", [&payload])?;
            samples.push(t0.elapsed());
        }
        Ok((percentile_us(&mut samples, 50.0), percentile_us(&mut samples, 99.0)))
    });
    within(Duration::from_secs(120), "raw commit baseline", job).await??
}

// ---------------------------------------------------------------------------------------------------
// Output

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "-".to_string()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// How many times faster orchestrator is: throughput ours/theirs, latency theirs/ours.
fn speedup(ours: f64, theirs: f64, higher_is_better: bool) -> String {
    let r = if higher_is_better {
        ours / theirs
    } else {
        theirs / ours
    };
    if r.is_finite() {
        format!("{r:.2}x")
    } else {
        "-".to_string()
    }
}

/// A table row: its label, how to read the figure, whether higher is better.
type Row = (&'static str, fn(&Figures) -> f64, bool);

fn print_table(peers: &[Peer], figures: &[Figures]) {
    let rows: [Row; 6] = [
        ("sequential steps/s", |f| f.seq_steps_per_s, true),
        ("sequential step p50 µs", |f| f.seq_p50_us, false),
        ("sequential step p99 µs", |f| f.seq_p99_us, false),
        ("concurrent steps/s", |f| f.conc_steps_per_s, true),
        ("wf3 start→result p50 µs", |f| f.wf3_p50_us, false),
        ("wf3 start→result p99 µs", |f| f.wf3_p99_us, false),
    ];
    let get = |peer: Peer| peers.iter().position(|p| *p == peer).map(|i| figures[i]);
    let missing = Figures {
        seq_steps_per_s: f64::NAN,
        seq_p50_us: f64::NAN,
        seq_p99_us: f64::NAN,
        conc_steps_per_s: f64::NAN,
        wf3_p50_us: f64::NAN,
        wf3_p99_us: f64::NAN,
    };
    let full = get(Peer::OrchFull).unwrap_or(missing);
    let normal = get(Peer::OrchNormal).unwrap_or(missing);
    let dx = get(Peer::Duroxide).unwrap_or(missing);
    let fast = get(Peer::DuroxideFastPoll);

    let mut header = format!(
        "| {:<25} | {:>11} | {:>11} | {:>11} |",
        "workload", "orch Full", "orch Normal", "duroxide"
    );
    if fast.is_some() {
        let _ = write!(header, " {:>17} |", "duroxide 1ms-poll");
    }
    let _ = write!(header, " {:>11} | {:>13} |", "Full vs dx", "Normal vs dx");
    if fast.is_some() {
        let _ = write!(header, " {:>13} | {:>15} |", "Full vs dx1ms", "Normal vs dx1ms");
    }
    println!("{header}");
    let sep: String = header
        .chars()
        .map(|c| if c == '|' { '|' } else { '-' })
        .collect();
    println!("{sep}");
    for (name, value, higher) in rows {
        let mut line = format!(
            "| {:<25} | {:>11} | {:>11} | {:>11} |",
            name,
            fmt_value(value(&full)),
            fmt_value(value(&normal)),
            fmt_value(value(&dx)),
        );
        if let Some(fast) = &fast {
            let _ = write!(line, " {:>17} |", fmt_value(value(fast)));
        }
        let _ = write!(
            line,
            " {:>11} | {:>13} |",
            speedup(value(&full), value(&dx), higher),
            speedup(value(&normal), value(&dx), higher),
        );
        if let Some(fast) = &fast {
            let _ = write!(
                line,
                " {:>13} | {:>15} |",
                speedup(value(&full), value(fast), higher),
                speedup(value(&normal), value(fast), higher),
            );
        }
        println!("{line}");
    }
}

// ---------------------------------------------------------------------------------------------------

struct Args {
    quick: bool,
    fast_poll: bool,
    duroxide_wait: DuroxideWait,
    repeat: u32,
    /// Only these peers (by slug); all when empty.
    only: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        fast_poll: true,
        duroxide_wait: DuroxideWait::Row,
        repeat: 1,
        only: Vec::new(),
    };
    for arg in std::env::args().skip(1) {
        if let Some(list) = arg.strip_prefix("--peers=") {
            args.only = list.split(',').map(str::to_string).collect();
            continue;
        }
        if let Some(n) = arg.strip_prefix("--repeat=") {
            args.repeat = n
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("bad {arg:?}: want --repeat=N with N >= 1"))?;
            continue;
        }
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--no-fast-poll" => args.fast_poll = false,
            "--duroxide-wait=row" => args.duroxide_wait = DuroxideWait::Row,
            "--duroxide-wait=client" => args.duroxide_wait = DuroxideWait::Client,
            // `cargo bench`-style harness flags, ignored.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "orchestrator-peer-bench [--quick] [--repeat=N] [--no-fast-poll] [--duroxide-wait=row|client]\n  \
                     --repeat=N      run every measured workload N times (interleaved), report medians (default 1)\n  \
                     --peers=LIST    only these peers: orch-full,orch-normal,duroxide,duroxide-fastpoll\n  \
                     --quick         100 sequential steps, 100 concurrent workflows, 20 wf3 runs\n  \
                     --no-fast-poll  skip the duroxide run with a 1 ms dispatcher poll interval\n  \
                     --duroxide-wait=row     await a duroxide run by polling its executions row every 1 ms (default)\n  \
                     --duroxide-wait=client  await it with Client::wait_for_orchestration instead (single runs only)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

async fn run(args: Args) -> Result<(), BoxError> {
    *DUROXIDE_WAIT.lock().unwrap_or_else(|p| p.into_inner()) = args.duroxide_wait;
    let sizes = if args.quick {
        Sizes {
            seq_steps: 100,
            workflows: 100,
            wf3_runs: 20,
        }
    } else {
        Sizes {
            seq_steps: 1_000,
            workflows: 1_000,
            wf3_runs: 200,
        }
    };
    let mut peers = vec![Peer::OrchFull, Peer::OrchNormal, Peer::Duroxide];
    if args.fast_poll {
        peers.push(Peer::DuroxideFastPoll);
    }
    if !args.only.is_empty() {
        if let Some(unknown) = args
            .only
            .iter()
            .find(|slug| !ALL_PEERS.iter().any(|p| p.slug() == slug.as_str()))
        {
            return Err(format!("unknown peer {unknown:?} in --peers").into());
        }
        peers = ALL_PEERS
            .into_iter()
            .filter(|p| args.only.iter().any(|slug| slug == p.slug()))
            .collect();
    }
    let dir = tempfile::Builder::new().prefix("orch-peer-").tempdir()?;
    println!(
        "orchestrator-peer-bench: {} run; sequential {} steps, concurrent {} workflows x 10 steps, wf3 {} runs; \
         {} repeat(s), medians",
        if args.quick { "quick" } else { "full" },
        sizes.seq_steps,
        sizes.workflows,
        sizes.wf3_runs,
        args.repeat
    );
    println!(
        "temp dir {} ; {} worker threads (tokio multi-thread)",
        dir.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut notes = Vec::new();
    for &peer in &peers {
        let t = Instant::now();
        let pragmas = warm_up(peer, dir.path()).await?;
        eprintln!("  warm-up {:<18} {:>8.2?}", peer.label(), t.elapsed());
        if let Some((sync, mode)) = pragmas {
            let level = match sync {
                0 => "OFF",
                1 => "NORMAL (no fsync per commit in WAL; fsync at checkpoints only)",
                2 => "FULL (fsync per commit)",
                3 => "EXTRA",
                _ => "?",
            };
            notes.push(format!(
                "{}: effective PRAGMA synchronous = {sync} = {level}; journal_mode = {mode} \
                 (its provider asks for `synchronous = WAL`, which SQLite does not know and reads as NORMAL)",
                peer.label()
            ));
        }
    }

    let before = raw_commit_baseline(dir.path(), "before").await?;

    // Workload by workload, each peer in turn (never two engines at once); with --repeat, the
    // repeats are interleaved and each figure is the median over them.
    let mut samples: Vec<Vec<Figures>> = vec![Vec::new(); peers.len()];
    let mut details = Vec::new();
    for r in 0..args.repeat {
        let mut figures = vec![
            Figures {
                seq_steps_per_s: f64::NAN,
                seq_p50_us: f64::NAN,
                seq_p99_us: f64::NAN,
                conc_steps_per_s: f64::NAN,
                wf3_p50_us: f64::NAN,
                wf3_p99_us: f64::NAN,
            };
            peers.len()
        ];
        for (i, &peer) in peers.iter().enumerate() {
            let name = format!("sequential-{r}");
            let (sps, p50, p99) =
                measure_sequential(peer, dir.path(), &name, sizes.seq_steps, &mut details).await?;
            figures[i].seq_steps_per_s = sps;
            figures[i].seq_p50_us = p50;
            figures[i].seq_p99_us = p99;
            eprintln!(
                "  sequential {:<18} {sps:>9.1} steps/s  p50 {p50:.0} µs  p99 {p99:.0} µs",
                peer.label()
            );
        }
        for (i, &peer) in peers.iter().enumerate() {
            let name = format!("concurrent-{r}");
            let sps =
                measure_concurrent(peer, dir.path(), &name, sizes.workflows, &mut details).await?;
            figures[i].conc_steps_per_s = sps;
            eprintln!("  concurrent {:<18} {sps:>9.1} steps/s", peer.label());
        }
        for (i, &peer) in peers.iter().enumerate() {
            let name = format!("wf3-{r}");
            let (p50, p99) =
                measure_wf3(peer, dir.path(), &name, sizes.wf3_runs, &mut details).await?;
            figures[i].wf3_p50_us = p50;
            figures[i].wf3_p99_us = p99;
            eprintln!("  wf3        {:<18} p50 {p50:.0} µs  p99 {p99:.0} µs", peer.label());
        }
        for (i, f) in figures.into_iter().enumerate() {
            samples[i].push(f);
        }
    }
    let figures: Vec<Figures> = samples.iter().map(|s| median_figures(s)).collect();

    let after = raw_commit_baseline(dir.path(), "after").await?;

    println!();
    print_table(&peers, &figures);
    println!();
    println!("\"vs\" columns: how many times faster orchestrator is (throughput ours/theirs, latency theirs/ours); >1 = orchestrator faster.");
    println!();
    println!("| peer | workload | wall s | process CPU s | CPU/wall | WARN events | failed workflows |");
    println!("|---|---|---|---|---|---|---|");
    for d in &details {
        let wall = d.wall.as_secs_f64();
        let cpu = d.cpu.as_secs_f64();
        println!(
            "| {} | {} | {wall:.2} | {cpu:.2} | {:.2} | {} | {} |",
            d.peer.label(),
            d.workload,
            cpu / wall,
            d.warnings,
            d.failed
        );
    }
    println!();
    println!("notes:");
    println!("- orch Full: synchronous = FULL in WAL (fsync per commit). orch Normal: synchronous = NORMAL in WAL.");
    println!(
        "- raw fsync'd SQLite commit on this machine (WAL, synchronous = FULL, 1 row): before p50 {:.0} µs / p99 {:.0} µs, \
         after p50 {:.0} µs / p99 {:.0} µs",
        before.0, before.1, after.0, after.1
    );
    for note in &notes {
        println!("- {note}");
    }
    println!(
        "- duroxide defaults: dispatcher_min_poll_interval 100 ms, orchestration_concurrency 2, worker_concurrency 2, \
         pool of 5 connections; its SQLite provider ignores the long-poll timeout, so an idle dispatcher sleeps up to the poll interval."
    );
    println!(
        "- duroxide results are awaited {} (the concurrent count: its executions rows every 5 ms); \
         orchestrator's by RunHandle::result (notified).",
        match args.duroxide_wait {
            DuroxideWait::Row => "by polling its executions row every 1 ms",
            DuroxideWait::Client => "with Client::wait_for_orchestration",
        }
    );
    println!(
        "- WARN events: warnings the engines logged during the measured run (counted, not printed). \
         duroxide total {}, orchestrator total {} (including warm-ups). First ones:",
        DUROXIDE_WARNINGS.load(Ordering::Relaxed),
        ORCH_WARNINGS.load(Ordering::Relaxed)
    );
    for sample in WARNING_SAMPLES.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("    {sample}");
    }
    let failures = failure_notes();
    if !failures.is_empty() {
        println!(
            "- FAILED workflows (not counted in steps/s; see \"failed workflows\" above). First ones:"
        );
        for line in failures.iter() {
            println!("    {line}");
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    if tracing::subscriber::set_global_default(WarningCounter).is_err() {
        eprintln!("cannot install the warning counter");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot build a tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let overall = if args.quick {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(3600)
    };
    let result = runtime.block_on(async {
        match tokio::time::timeout(overall, run(args)).await {
            Ok(result) => result,
            Err(_) => Err(format!("TIMEOUT: the whole bench did not finish within {overall:?}").into()),
        }
    });
    // Do not wait for stray background tasks of a failed engine.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer bench FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
