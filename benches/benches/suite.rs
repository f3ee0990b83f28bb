//! The one-run benchmark suite of orchestrator.
//!
//! ```sh
//! cargo bench -p orchestrator-benches --bench suite              # full suite (a few minutes)
//! cargo bench -p orchestrator-benches --bench suite -- --quick   # scaled down, for CI (seconds)
//! ```
//!
//! In one run, on one machine, it measures the raw SQLite ceiling (a single-row commit with
//! `synchronous = FULL` in WAL, same table, pragmas and row size as the journal) and then the engine —
//! sequential steps, the latency of a 3-activity workflow, throughput with 1,000 workflows in flight,
//! replay speed, memory with 100,000 workflows parked on timers, idle CPU — prints a table with each
//! figure's ratio to the ceiling and its target (reported, never asserted), and writes every figure to
//! `target/orchestrator-bench.json`. The memory and idle-CPU figures come from a child process (this
//! binary re-executed with a hidden `--child-parked N` argument) so other workloads do not pollute them.
//!
//! CI runs the quick suite. Run without cargo bench's `--bench` flag (`cargo test --benches` or
//! `--all-targets`), it runs the quick suite as a single test named `bench_suite_quick` (honouring name
//! filters and `--list`) and writes `target/orchestrator-bench-test.json` instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use orchestrator::codec::Codec;
use orchestrator::journal::EventBody;
use orchestrator::store::SqliteStore;
use orchestrator_benches::{
    BoxError, KIND_ACTIVITY_COMPLETED, KIND_TIMER_STARTED, Mode, POISON_MESSAGE,
    average_completion_payload, build_replay_journal, copy_journal, count_events, cpu_time,
    engine_builder, noop_name, parked, peak_rss_kb, percentile_us, poison_pill, replay_once,
    rss_kb, seq_steps, take_stamps, ten_steps, three_steps, within,
};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::runtime::Runtime;

/// The hidden argument that turns this binary into the parked-workflows child process.
const CHILD_FLAG: &str = "--child-parked";

/// The JSON file the suite writes, under the workspace's target directory.
const JSON_FILE: &str = "orchestrator-bench.json";

/// Where the JSON goes when the suite runs as a test (`cargo test`, unoptimized) instead.
const TEST_JSON_FILE: &str = "orchestrator-bench-test.json";

/// The suite's name as a test, for `--list` and name filters under `cargo test`.
const TEST_NAME: &str = "bench_suite_quick";

// Targets (from the issue). Reported, never asserted.
const TARGET_SEQ_STEP_X_COMMIT: f64 = 1.5;
const TARGET_WF3_X_COMMIT: f64 = 6.0;
const TARGET_STEPS_X_BATCH10: f64 = 0.9;
const TARGET_REPLAY_EVENTS_PER_S: f64 = 250_000.0;
const TARGET_RSS_MB: f64 = 100.0;
const TARGET_IDLE_CPU_PERCENT: f64 = 1.0;
/// Issue 6: the other workflows keep at least 95% of their throughput beside poison runs.
const TARGET_POISON_RATIO: f64 = 0.95;

/// Journal writes of a 3-activity workflow: the run row, two completions, the last completion together
/// with the final status.
const WRITES_PER_WF3: f64 = 4.0;

/// How big each workload is.
#[derive(Debug, Clone)]
struct Sizes {
    /// Single-row commits timed per sample of the raw ceiling (it is sampled 11 times).
    raw_commits: usize,
    /// Batches of 10 rows timed per sample of the raw ceiling.
    raw_batches: usize,
    /// Activities of the sequential workflow.
    seq_steps: u32,
    /// Timed start→result samples of the 3-activity workflow.
    wf3_samples: usize,
    /// Concurrent 10-activity workflows.
    concurrent_workflows: u32,
    /// 3-activity workflows run for the completion rate ...
    wps_total: u32,
    /// ... with this many in flight.
    wps_in_flight: usize,
    /// Steps of the replayed journal.
    replay_steps: u32,
    /// 3-activity workflows per measurement of the throughput beside poison runs ...
    poison_total: u32,
    /// ... and the poison runs replayed meanwhile ...
    poison_runs: u32,
    /// ... after letting them settle into their retry cycle for this long.
    poison_settle: Duration,
    /// Workflows parked on timers in the child process.
    parked: u32,
    /// The idle-CPU window.
    idle: Duration,
}

impl Sizes {
    fn full() -> Self {
        Sizes {
            raw_commits: 1_000,
            raw_batches: 500,
            seq_steps: 1_000,
            wf3_samples: 1_000,
            concurrent_workflows: 1_000,
            wps_total: 20_000,
            wps_in_flight: 1_000,
            replay_steps: 10_000,
            poison_total: 20_000,
            poison_runs: 100,
            poison_settle: Duration::from_secs(2),
            parked: 100_000,
            idle: Duration::from_secs(5),
        }
    }

    fn quick() -> Self {
        Sizes {
            raw_commits: 40,
            raw_batches: 10,
            seq_steps: 100,
            wf3_samples: 30,
            concurrent_workflows: 100,
            wps_total: 300,
            wps_in_flight: 100,
            replay_steps: 1_000,
            poison_total: 300,
            poison_runs: 20,
            poison_settle: Duration::from_millis(300),
            parked: 1_000,
            idle: Duration::from_secs(1),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = if args.iter().any(|arg| arg == CHILD_FLAG) {
        child_main(&args)
    } else {
        suite_main(&args)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orchestrator bench suite: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn progress(message: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>7.1}s] {message}", start.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------------
// The suite

fn suite_main(args: &[String]) -> Result<(), BoxError> {
    let under_cargo_bench = args.iter().any(|arg| arg == "--bench");
    if !under_cargo_bench {
        // Run as a test (`cargo test --benches`): behave like a one-test harness.
        if args.iter().any(|arg| arg == "--list") {
            println!("{TEST_NAME}: test");
            return Ok(());
        }
        let filtered_out = args
            .iter()
            .filter(|arg| !arg.starts_with('-'))
            .any(|filter| !TEST_NAME.contains(filter.as_str()));
        if filtered_out {
            println!("{TEST_NAME}: filtered out");
            return Ok(());
        }
    }
    let quick = args.iter().any(|arg| arg == "--quick") || !under_cargo_bench;
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    progress(&format!(
        "orchestrator bench suite: {} run{}",
        if quick { "quick" } else { "full" },
        if under_cargo_bench {
            ""
        } else {
            " (not started by `cargo bench`: quick by default)"
        }
    ));
    let suite_started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new().prefix("orch-bench-").tempdir()?;
    let mut results: BTreeMap<String, f64> = BTreeMap::new();

    // The raw SQLite ceiling is sampled before every engine workload and at the end, and the samples
    // are pooled, so it covers the same stretch of time (and the same neighbours' disk noise) as the
    // engine figures it is compared with.
    let payload = completion_payload()?;
    let mut ceiling = Ceilings {
        full: Ceiling::new(Synchronous::Full, &payload),
        normal: Ceiling::new(Synchronous::Normal, &payload),
        dir: dir.path().to_path_buf(),
        taken: 0,
        commits: sizes.raw_commits,
        batches: sizes.raw_batches,
    };

    // The engine workloads, at both durabilities.
    let mut journal_payload = f64::NAN;
    for mode in [Mode::Full, Mode::Normal] {
        let suffix = mode.suffix();
        let label = mode.label();
        ceiling.sample(&runtime)?;
        let path = dir.path().join(format!("seq-{label}.db"));
        progress(&format!(
            "[{label}] one workflow, {} no-op activities back to back",
            sizes.seq_steps
        ));
        let mut sequential =
            runtime.block_on(seq_workload(&path, mode, Spin::Default, sizes.seq_steps))?;
        if mode == Mode::Full {
            journal_payload = average_completion_payload(&path)?;
        }
        results.insert(
            format!("seq_step_p50_us{suffix}"),
            percentile_us(&mut sequential.steps, 50.0),
        );
        results.insert(
            format!("seq_step_p99_us{suffix}"),
            percentile_us(&mut sequential.steps, 99.0),
        );
        results.insert(format!("seq_cpu_percent{suffix}"), sequential.cpu_percent);

        ceiling.sample(&runtime)?;
        progress(&format!(
            "[{label}] start→result of a 3-activity workflow, {} samples",
            sizes.wf3_samples
        ));
        let path = dir.path().join(format!("wf3-{label}.db"));
        let mut latencies =
            runtime.block_on(wf3_workload(&path, mode, Spin::Default, sizes.wf3_samples))?;
        results.insert(
            format!("wf3_latency_p50_us{suffix}"),
            percentile_us(&mut latencies, 50.0),
        );
        results.insert(
            format!("wf3_latency_p99_us{suffix}"),
            percentile_us(&mut latencies, 99.0),
        );

        ceiling.sample(&runtime)?;
        progress(&format!(
            "[{label}] {} concurrent workflows × 10 no-op activities",
            sizes.concurrent_workflows
        ));
        let path = dir.path().join(format!("concurrent-{label}.db"));
        let steps_per_s =
            runtime.block_on(concurrent_workload(&path, mode, sizes.concurrent_workflows))?;
        results.insert(format!("steps_per_s_1000wf{suffix}"), steps_per_s);

        ceiling.sample(&runtime)?;
        progress(&format!(
            "[{label}] {} 3-activity workflows, {} in flight",
            sizes.wps_total, sizes.wps_in_flight
        ));
        let path = dir.path().join(format!("wps-{label}.db"));
        let workflows_per_s = runtime.block_on(throughput_workload(
            &path,
            mode,
            sizes.wps_total,
            sizes.wps_in_flight,
        ))?;
        results.insert(format!("workflows_per_s{suffix}"), workflows_per_s);
    }

    // The baseline of the spin: the sequential and wf3 workloads again (Full) with waiters that sleep
    // at once (`spin_wait(0)`), in this same run.
    ceiling.sample(&runtime)?;
    progress("[Full, no spin] the sequential and the 3-activity workloads with spin_wait(0)");
    let path = dir.path().join("seq-no-spin.db");
    let mut sequential =
        runtime.block_on(seq_workload(&path, Mode::Full, Spin::Off, sizes.seq_steps))?;
    results.insert(
        "seq_step_p50_us_no_spin".to_string(),
        percentile_us(&mut sequential.steps, 50.0),
    );
    results.insert(
        "seq_cpu_percent_no_spin".to_string(),
        sequential.cpu_percent,
    );
    let path = dir.path().join("wf3-no-spin.db");
    let mut latencies = runtime.block_on(wf3_workload(
        &path,
        Mode::Full,
        Spin::Off,
        sizes.wf3_samples,
    ))?;
    results.insert(
        "wf3_latency_p50_us_no_spin".to_string(),
        percentile_us(&mut latencies, 50.0),
    );

    // Replay of a journal of `replay_steps` steps.
    ceiling.sample(&runtime)?;
    progress(&format!(
        "building a {}-step journal to replay",
        sizes.replay_steps
    ));
    let replay_events_per_s = runtime.block_on(replay_workload(dir.path(), sizes.replay_steps))?;
    results.insert("replay_events_per_s".to_string(), replay_events_per_s);

    // Throughput beside poison runs (workflow code that panics on every replay).
    ceiling.sample(&runtime)?;
    progress(&format!(
        "[Normal] {} 3-activity workflows, {} in flight, without and with {} poison runs replayed meanwhile",
        sizes.poison_total, sizes.wps_in_flight, sizes.poison_runs
    ));
    let ratio = runtime.block_on(poison_ratio(dir.path(), &sizes))?;
    results.insert("poison_throughput_ratio".to_string(), ratio);

    // Memory and idle CPU with parked workflows, in a child process.
    ceiling.sample(&runtime)?;
    progress(&format!(
        "child process: {} workflows parked on 1-hour timers, then {:?} idle",
        sizes.parked, sizes.idle
    ));
    let parked_db = dir.path().join("parked.db");
    let child = run_parked_child(&parked_db, sizes.parked, sizes.idle, quick)?;
    results.insert("rss_mb_100k_parked".to_string(), child.rss_mb);
    results.insert("idle_cpu_percent".to_string(), child.idle_cpu_percent);

    // Recovery: an engine restarted on the journals of parked workflows the children left behind
    // (they exited without shutting down, as after a crash). Quick: only the small case, on the
    // quick child's journal.
    let mut recoveries = vec![(if quick { "10k" } else { "100k" }, parked_db, sizes.parked)];
    if !quick {
        ceiling.sample(&runtime)?;
        progress("child process: 10,000 workflows parked on 1-hour timers, for recovery");
        let small = dir.path().join("parked-10k.db");
        run_parked_child(&small, 10_000, Duration::from_millis(100), quick)?;
        recoveries.push(("10k", small, 10_000));
    }
    for (label, db, runs) in recoveries {
        ceiling.sample(&runtime)?;
        progress(&format!("restarting an engine on {runs} parked workflows"));
        let (start_ms, recovered_secs) = runtime.block_on(recovery_workload(&db, runs))?;
        progress(&format!(
            "start() returned in {start_ms:.1} ms; every run resumed after {recovered_secs:.2} s"
        ));
        results.insert(format!("recovery_start_ms_{label}"), start_ms);
        results.insert(format!("recovery_secs_{label}"), recovered_secs);
    }

    // The replay checker over the parked workflows' journal: every stored run replayed on the
    // current code, nothing executed.
    ceiling.sample(&runtime)?;
    progress(&format!(
        "replay-checking the journal of {} parked workflows",
        sizes.parked
    ));
    let check_db = dir.path().join("parked.db");
    let per_s = runtime.block_on(replay_check_workload(dir.path(), &check_db, sizes.parked))?;
    results.insert("replay_check_runs_per_s".to_string(), per_s);

    ceiling.sample(&runtime)?;
    results.insert(
        "sqlite_full_commit_p50_us".to_string(),
        ceiling.full.commit_p50_us(),
    );
    results.insert(
        "sqlite_full_batch10_rows_per_s".to_string(),
        ceiling.full.batch_rows_per_s(),
    );
    results.insert(
        "sqlite_normal_commit_p50_us".to_string(),
        ceiling.normal.commit_p50_us(),
    );
    results.insert(
        "sqlite_normal_batch10_rows_per_s".to_string(),
        ceiling.normal.batch_rows_per_s(),
    );
    drop(runtime);

    // 6. Report.
    let report = Report {
        results: &results,
        quick,
        sizes: &sizes,
    };
    println!();
    report.print_table();
    println!();
    let (p50_low, p50_high, rate_low, rate_high) = ceiling.full.spread();
    println!(
        "ceiling noise: over {} samples taken between the workloads, the single-row FULL commit p50 \
         ranged {p50_low:.0}–{p50_high:.0} µs and batch10 {rate_low:.0}–{rate_high:.0} rows/s (the table pools \
         the commits and takes the median batch10 sample)",
        ceiling.full.samples()
    );
    if p50_high > 2.0 * p50_low || rate_high > 2.0 * rate_low {
        println!(
            "WARNING: the disk was noisy during this run (fsync latency varied more than 2× between \
             ceiling samples, e.g. other processes writing): the ratios are unreliable; run again on a \
             quieter machine"
        );
    }
    println!(
        "row size: {} bytes of payload in the raw ceiling; a no-op completion in the engine's journal \
         averages {:.1} bytes",
        payload.len(),
        journal_payload
    );
    println!(
        "parked child: RSS {:.1} MB before starting workflows, {:.1} MB with {} parked (the key), {:.1} MB \
         after the idle window, peak {:.1} MB; parked in {:.1} s ({:.0}/s)",
        child.baseline_rss_mb,
        child.rss_mb,
        sizes.parked,
        child.rss_after_idle_mb,
        child.peak_rss_mb,
        child.park_secs,
        f64::from(sizes.parked) / child.park_secs
    );
    if quick {
        println!(
            "note: quick run: workloads are scaled down ({} seq steps, {} concurrent workflows, {} parked, \
             {:?} idle); the figures are not comparable to a full run",
            sizes.seq_steps, sizes.concurrent_workflows, sizes.parked, sizes.idle
        );
    }

    let json = report.json();
    let target = target_dir();
    std::fs::create_dir_all(&target)
        .map_err(|error| format!("creating {}: {error}", target.display()))?;
    // Under `cargo test` (an unoptimized build) the figures only prove the suite runs: keep them apart.
    let path = target.join(if under_cargo_bench {
        JSON_FILE
    } else {
        TEST_JSON_FILE
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .map_err(|error| format!("writing {}: {error}", path.display()))?;
    println!(
        "wrote {} (suite took {:.1} s)",
        path.display(),
        suite_started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The workspace's target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest).to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        None => workspace.join("target"),
    }
}

// ---------------------------------------------------------------------------------------------------
// The raw SQLite ceiling

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    Full,
    Normal,
}

/// The raw SQLite ceiling at one `synchronous` setting: single-row commits and batches of 10 rows
/// into a journal-shaped table — the events table the library creates (its schema, indexes and
/// foreign key), WAL, `BEGIN IMMEDIATE` transactions, cached statements, rows the size of a no-op
/// activity's completion event. Each sample uses a fresh file, as each engine workload does (a
/// journal's first commits, which grow the WAL, cost more than later ones that reuse it); the samples
/// are spread over the suite and pooled.
struct Ceiling {
    sync: Synchronous,
    payload: Vec<u8>,
    commits: Vec<Duration>,
    sample_p50s: Vec<f64>,
    sample_rates: Vec<f64>,
}

/// The ceilings at both settings, sampled together.
struct Ceilings {
    full: Ceiling,
    normal: Ceiling,
    dir: PathBuf,
    taken: usize,
    commits: usize,
    batches: usize,
}

impl Ceilings {
    fn sample(&mut self, runtime: &Runtime) -> Result<(), BoxError> {
        self.taken += 1;
        let taken = self.taken;
        self.full.sample(
            runtime,
            &self.dir.join(format!("raw-full-{taken}.db")),
            self.commits,
            self.batches,
        )?;
        self.normal.sample(
            runtime,
            &self.dir.join(format!("raw-normal-{taken}.db")),
            self.commits,
            self.batches,
        )?;
        progress(&format!(
            "raw SQLite ceiling sample: FULL commit p50 {:.0} µs, batch10 {:.0} rows/s",
            self.full.sample_p50s.last().copied().unwrap_or(f64::NAN),
            self.full.sample_rates.last().copied().unwrap_or(f64::NAN),
        ));
        Ok(())
    }
}

const RAW_WORKFLOW_ID: &str = "raw-run-0";

/// A fresh journal-shaped database at `path`, opened with the library's pragmas.
fn open_raw(runtime: &Runtime, path: &Path, sync: Synchronous) -> Result<Connection, BoxError> {
    // Let the library create its schema, so the table, indexes and constraints are its own.
    runtime.block_on(async {
        let store = within(
            Duration::from_secs(30),
            "creating the journal schema",
            SqliteStore::open(path),
        )
        .await??;
        drop(store);
        Ok::<_, BoxError>(())
    })?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("raw SQLite: journal_mode is `{mode}`, not WAL").into());
    }
    let synchronous = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute(
        "INSERT INTO runs (workflow_id, workflow_name, state, input, created_at_ms, updated_at_ms) \
         VALUES (?1, 'seq_steps', 0, x'00', 0, 0)",
        [RAW_WORKFLOW_ID],
    )?;
    Ok(conn)
}

/// One `BEGIN IMMEDIATE` transaction inserting `rows` event rows after step `*step`.
fn raw_commit(
    conn: &mut Connection,
    step: &mut u32,
    payload: &[u8],
    rows: usize,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (workflow_id, step, kind, completion, payload, recorded_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for _ in 0..rows {
            *step += 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            insert.execute(params![
                RAW_WORKFLOW_ID,
                *step,
                KIND_ACTIVITY_COMPLETED,
                true,
                payload,
                now
            ])?;
        }
    }
    tx.commit()
}

impl Ceiling {
    fn new(sync: Synchronous, payload: &[u8]) -> Self {
        Ceiling {
            sync,
            payload: payload.to_vec(),
            commits: Vec::new(),
            sample_p50s: Vec::new(),
            sample_rates: Vec::new(),
        }
    }

    /// On a fresh file at `path`: times `commits` single-row commits, then `batches` 10-row commits.
    fn sample(
        &mut self,
        runtime: &Runtime,
        path: &Path,
        commits: usize,
        batches: usize,
    ) -> Result<(), BoxError> {
        let mut conn = open_raw(runtime, path, self.sync)?;
        let mut step = 0;
        let mut sample = Vec::with_capacity(commits);
        for _ in 0..commits {
            let started = Instant::now();
            raw_commit(&mut conn, &mut step, &self.payload, 1)?;
            sample.push(started.elapsed());
        }
        self.commits.extend_from_slice(&sample);
        self.sample_p50s.push(percentile_us(&mut sample, 50.0));
        let started = Instant::now();
        for _ in 0..batches {
            raw_commit(&mut conn, &mut step, &self.payload, 10)?;
        }
        let elapsed = started.elapsed();
        self.sample_rates
            .push((batches * 10) as f64 / elapsed.as_secs_f64());
        drop(conn);
        for suffix in ["", "-wal", "-shm", ".owner"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
        Ok(())
    }

    fn commit_p50_us(&self) -> f64 {
        percentile_us(&mut self.commits.clone(), 50.0)
    }

    /// The median of the samples' rates (one sample slowed down by a neighbour's burst of writes
    /// would otherwise dominate a pooled rows/time figure).
    fn batch_rows_per_s(&self) -> f64 {
        let mut rates = self.sample_rates.clone();
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        }
    }

    fn samples(&self) -> usize {
        self.sample_p50s.len()
    }

    /// The lowest and highest per-sample commit p50 and batch rate.
    fn spread(&self) -> (f64, f64, f64, f64) {
        let low = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = |values: &[f64]| values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (
            low(&self.sample_p50s),
            high(&self.sample_p50s),
            low(&self.sample_rates),
            high(&self.sample_rates),
        )
    }
}

/// The encoded event of a no-op activity's completion, as the engine journals it.
fn completion_payload() -> Result<Vec<u8>, BoxError> {
    let codec = Codec::default();
    let body = EventBody::ActivityCompleted {
        name: noop_name().to_string(),
        // An FNV-1a hash like the engine's fingerprints: a full-width u64 (a 9-byte varint).
        input_fingerprint: 0xaf63_bd4c_8601_b7df,
        attempts: 1,
        result: Ok(codec.encode(&7u32)?),
    };
    Ok(codec.encode(&body)?)
}

// ---------------------------------------------------------------------------------------------------
// Engine workloads

/// A generous deadline for `count` operations that each should take well under `per_op`.
fn budget(count: u32, per_op: Duration) -> Duration {
    Duration::from_secs(60) + per_op * count
}

async fn start_engine(path: &Path, mode: Mode) -> Result<orchestrator::Engine, BoxError> {
    start_engine_spinning(path, mode, Spin::Default).await
}

/// Whether waiters for the store's replies spin (the default) or sleep at once (the baseline the
/// `_no_spin` keys measure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spin {
    Default,
    Off,
}

async fn start_engine_spinning(
    path: &Path,
    mode: Mode,
    spin: Spin,
) -> Result<orchestrator::Engine, BoxError> {
    let builder = match spin {
        Spin::Default => engine_builder(path, mode),
        Spin::Off => engine_builder(path, mode).spin_wait(Duration::ZERO),
    };
    Ok(within(
        Duration::from_secs(60),
        "starting the engine",
        builder.start(),
    )
    .await??)
}

async fn stop_engine(engine: orchestrator::Engine) -> Result<(), BoxError> {
    within(
        Duration::from_secs(30),
        "shutting the engine down",
        engine.shutdown(),
    )
    .await
}

/// What the sequential workload measured.
struct Sequential {
    /// The time between consecutive activity executions.
    steps: Vec<Duration>,
    /// The process's CPU time (all threads) over the workflow's wall time, in percent of one core.
    cpu_percent: f64,
}

/// One workflow running `steps` activities back to back; returns the time between consecutive
/// activity executions (one step: journal the previous completion, resume the workflow, start the
/// next activity), and the CPU the process used meanwhile.
async fn seq_workload(
    path: &Path,
    mode: Mode,
    spin: Spin,
    steps: u32,
) -> Result<Sequential, BoxError> {
    let engine = start_engine_spinning(path, mode, spin).await?;
    take_stamps();
    let cpu_before = cpu_time()?;
    let wall = Instant::now();
    let run = within(
        Duration::from_secs(30),
        "starting the sequential workflow",
        engine.start(seq_steps, "seq", steps).into_future(),
    )
    .await??;
    let last = within(
        budget(steps, Duration::from_millis(20)),
        "the sequential workflow's result",
        run.result(),
    )
    .await??;
    let cpu_percent =
        100.0 * (cpu_time()? - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64();
    let stamps = take_stamps();
    stop_engine(engine).await?;
    if last + 1 != steps || stamps.len() != steps as usize {
        return Err(format!(
            "sequential workflow: {} activity executions for {steps} steps (last output {last})",
            stamps.len()
        )
        .into());
    }
    Ok(Sequential {
        steps: stamps.windows(2).map(|pair| pair[1] - pair[0]).collect(),
        cpu_percent,
    })
}

/// Start→result of a 3-activity workflow on an otherwise idle engine, `samples` times in a row
/// (after a few untimed warm-up runs).
async fn wf3_workload(
    path: &Path,
    mode: Mode,
    spin: Spin,
    samples: usize,
) -> Result<Vec<Duration>, BoxError> {
    const WARM_UP: usize = 5;
    let engine = start_engine_spinning(path, mode, spin).await?;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..WARM_UP + samples {
        let input = u32::try_from(i)?;
        let started = Instant::now();
        let output = within(Duration::from_secs(30), "a 3-activity workflow", async {
            let run = engine.start(three_steps, format!("wf3-{i}"), input).await?;
            run.result().await
        })
        .await??;
        let elapsed = started.elapsed();
        if output != input {
            return Err(format!("3-activity workflow returned {output}, expected {input}").into());
        }
        if i >= WARM_UP {
            latencies.push(elapsed);
        }
    }
    stop_engine(engine).await?;
    Ok(latencies)
}

/// `workflows` 10-activity workflows started at once; returns activity steps per second, from the
/// first start until the last result.
async fn concurrent_workload(path: &Path, mode: Mode, workflows: u32) -> Result<f64, BoxError> {
    let engine = start_engine(path, mode).await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..workflows {
        let engine = engine.clone();
        tasks.spawn(async move {
            let run = engine
                .start(ten_steps, format!("concurrent-{i}"), i)
                .await?;
            let output = run.result().await?;
            if output != i {
                return Err(format!("10-activity workflow returned {output}, expected {i}").into());
            }
            Ok::<(), BoxError>(())
        });
    }
    within(
        budget(workflows * 10, Duration::from_millis(20)),
        "concurrent 10-activity workflows",
        async {
            while let Some(joined) = tasks.join_next().await {
                joined??;
            }
            Ok::<(), BoxError>(())
        },
    )
    .await??;
    let elapsed = started.elapsed();
    stop_engine(engine).await?;
    Ok(f64::from(workflows) * 10.0 / elapsed.as_secs_f64())
}

/// `total` 3-activity workflows with at most `in_flight` running at a time; returns completed
/// workflows per second.
async fn throughput_workload(
    path: &Path,
    mode: Mode,
    total: u32,
    in_flight: usize,
) -> Result<f64, BoxError> {
    let engine = start_engine(path, mode).await?;
    let rate = load(&engine, total, in_flight).await?;
    stop_engine(engine).await?;
    Ok(rate)
}

/// Workflows per second of [`load`] (Normal durability: the fsync noise of this disk would drown what
/// is measured, the CPU the replays take) beside `poison_runs` poison runs ([`poison_pill`]) started
/// first, settled into their retry cycle, and replayed after each panic throughout (their panic policy
/// allows 1,000 attempts, 100 ms doubling up to 1 s apart), divided by the same without them. The two
/// are measured alternately, four times each (A B B A A B B A), so drifting machine noise hits both
/// alike.
async fn poison_ratio(dir: &Path, sizes: &Sizes) -> Result<f64, BoxError> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if !message.starts_with(POISON_MESSAGE) {
            quiet(info);
        }
    }));
    let mut clean = Vec::new();
    let mut poisoned = Vec::new();
    let p = sizes.poison_runs;
    for (round, poison) in [0, p, p, 0, 0, p, p, 0].into_iter().enumerate() {
        let path = dir.join(format!("poison-{round}.db"));
        let engine = within(
            Duration::from_secs(60),
            "starting the engine",
            engine_builder(&path, Mode::Normal)
                .panic_retry(
                    orchestrator::RetryPolicy::builder()
                        .max_attempts(1_000)
                        .initial_backoff(Duration::from_millis(100))
                        .max_backoff(Duration::from_secs(1))
                        .build(),
                )
                .start(),
        )
        .await??;
        for i in 0..poison {
            engine.start(poison_pill, format!("poison-{i}"), i).await?;
        }
        // Into their retry cycle (every poison run replayed about once a second from then on); the
        // rounds without poison idle as long.
        tokio::time::sleep(sizes.poison_settle).await;
        let rate = load(&engine, sizes.poison_total, sizes.wps_in_flight).await?;
        if poison > 0 {
            let parked_runs = engine
                .list_runs(
                    &orchestrator::store::RunQuery::new()
                        .state(orchestrator::store::RunState::Parked),
                )
                .await?;
            if !parked_runs.runs.is_empty() {
                return Err(
                    "a poison run was parked during the measurement: it no longer measures replays"
                        .into(),
                );
            }
            poisoned.push(rate);
        } else {
            clean.push(rate);
        }
        stop_engine(engine).await?;
    }
    let _ = std::panic::take_hook();
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    Ok(mean(&poisoned) / mean(&clean))
}

/// `total` 3-activity workflows on `engine`, at most `in_flight` at a time (ids `load-{i}`); completed
/// per second.
async fn load(
    engine: &orchestrator::Engine,
    total: u32,
    in_flight: usize,
) -> Result<f64, BoxError> {
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let engine = engine.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let run = engine.start(three_steps, format!("load-{i}"), i).await?;
            let output = run.result().await?;
            if output != i {
                return Err(format!("3-activity workflow returned {output}, expected {i}").into());
            }
            Ok::<(), BoxError>(())
        });
    }
    within(
        budget(total * 5, Duration::from_millis(20)),
        "3-activity workflows with a bounded number in flight",
        async {
            while let Some(joined) = tasks.join_next().await {
                joined??;
            }
            Ok::<(), BoxError>(())
        },
    )
    .await??;
    Ok(f64::from(total) / started.elapsed().as_secs_f64())
}

/// Builds a journal of `steps` completed activities (stopped in its last step), then restarts an
/// engine on copies of it three times and returns events per second of the median replay (from
/// `EngineBuilder::start` until the run asks for its first step past the journal).
async fn replay_workload(dir: &Path, steps: u32) -> Result<f64, BoxError> {
    let template = dir.join("replay-template.db");
    let events = build_replay_journal(&template, steps, Mode::Full).await?;
    let mut elapsed = Vec::new();
    for attempt in 0..3 {
        let path = dir.join(format!("replay-{attempt}.db"));
        copy_journal(&template, &path)?;
        let copied = count_events(&path, "*", None)?;
        if copied != events {
            return Err(format!(
                "the copied replay journal has {copied} events, expected {events}"
            )
            .into());
        }
        let took = replay_once(&path, Mode::Full).await?;
        progress(&format!(
            "replayed {events} events in {:.1} ms",
            took.as_secs_f64() * 1e3
        ));
        elapsed.push(took);
    }
    let median = percentile_us(&mut elapsed, 50.0) / 1e6;
    Ok(events as f64 / median)
}

/// Starts an engine on a journal of `runs` unfinished (parked) workflows: how long `start()` took, in
/// ms, and how long until every run was resumed ([`orchestrator::Engine::recovered`]), in seconds.
async fn recovery_workload(db: &Path, runs: u32) -> Result<(f64, f64), BoxError> {
    let begun = Instant::now();
    let engine = start_engine(db, Mode::Full).await?;
    let started = begun.elapsed();
    within(
        budget(runs, Duration::from_millis(20)),
        "resuming the parked workflows",
        engine.recovered(),
    )
    .await?;
    let recovered = begun.elapsed();
    stop_engine(engine).await?;
    Ok((started.as_secs_f64() * 1e3, recovered.as_secs_f64()))
}

/// Replay-checks every run of the journal `db` (`runs` of them, opened read-only) on the bench
/// workflows (`Engine::replay_check`): runs checked per second.
async fn replay_check_workload(dir: &Path, db: &Path, runs: u32) -> Result<f64, BoxError> {
    let store: Arc<dyn orchestrator::store::Store> =
        Arc::new(SqliteStore::open_read_only(db).await?);
    let engine = engine_builder(&dir.join("replay-check-engine.db"), Mode::Normal)
        .start()
        .await?;
    let report = engine
        .replay_check(orchestrator::replay::ReplaySource::Store(
            store,
            orchestrator::store::RunQuery::new(),
        ))
        .await?;
    stop_engine(engine).await?;
    if report.runs.len() != runs as usize || !report.is_ok() {
        return Err(format!("the replay check of the parked journal failed: {report}").into());
    }
    progress(&format!(
        "replay-checked {} runs in {:.3} s",
        report.runs.len(),
        report.elapsed.as_secs_f64()
    ));
    Ok(report.runs.len() as f64 / report.elapsed.as_secs_f64().max(1e-9))
}

// ---------------------------------------------------------------------------------------------------
// The parked-workflows child process

/// What the child process measured.
#[derive(Debug, Clone)]
struct ChildReport {
    baseline_rss_mb: f64,
    rss_mb: f64,
    peak_rss_mb: f64,
    rss_after_idle_mb: f64,
    park_secs: f64,
    idle_cpu_percent: f64,
}

/// Runs this binary again as the child (`--child-parked N`) on the journal `db` with `workflows`
/// parked workflows and an `idle` window, waits for it, and parses its report.
fn run_parked_child(
    db: &Path,
    workflows: u32,
    idle: Duration,
    quick: bool,
) -> Result<ChildReport, BoxError> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .arg(CHILD_FLAG)
        .arg(workflows.to_string())
        .arg("--idle-ms")
        .arg(idle.as_millis().to_string())
        .arg("--db")
        .arg(db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| format!("starting the child process {}: {error}", exe.display()))?;
    let limit = if quick {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(1800)
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(
                format!("the parked-workflows child did not finish within {limit:?}").into(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut output)?;
    }
    if !status.success() {
        return Err(
            format!("the parked-workflows child failed ({status}); its output: {output}").into(),
        );
    }
    let values: BTreeMap<&str, f64> = output
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(key, value)| Some((key.trim(), value.trim().parse().ok()?)))
        .collect();
    let get = |key: &str| {
        values
            .get(key)
            .copied()
            .ok_or_else(|| format!("the child's report has no `{key}`: {output}"))
    };
    Ok(ChildReport {
        baseline_rss_mb: get("baseline_rss_kb")? / 1024.0,
        rss_mb: get("rss_kb")? / 1024.0,
        peak_rss_mb: get("peak_rss_kb")? / 1024.0,
        rss_after_idle_mb: get("rss_after_idle_kb")? / 1024.0,
        park_secs: get("park_secs")?,
        idle_cpu_percent: get("idle_cpu_percent")?,
    })
}

/// The child: parks N workflows on 1-hour timers, waits until every timer is journaled, then reports
/// its resident memory and its CPU use over an idle window, one `key=value` per line on stdout.
fn child_main(args: &[String]) -> Result<(), BoxError> {
    let value = |flag: &str| -> Result<&str, BoxError> {
        let index = args
            .iter()
            .position(|arg| arg == flag)
            .ok_or_else(|| format!("child: missing {flag}"))?;
        Ok(args
            .get(index + 1)
            .ok_or_else(|| format!("child: {flag} needs a value"))?
            .as_str())
    };
    let parked_count: u32 = value(CHILD_FLAG)?.parse()?;
    let idle = Duration::from_millis(value("--idle-ms")?.parse()?);
    let db = PathBuf::from(value("--db")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let engine = start_engine(&db, Mode::Full).await?;
        let baseline_rss_kb = rss_kb()?;
        let started = Instant::now();
        let starts = futures::stream::iter(0..parked_count)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    engine
                        .start(parked, format!("parked-{i}"), 3600)
                        .await
                        .map(drop)
                }
            })
            .buffer_unordered(256)
            .fold(Ok(()), |outcome, started| async move { outcome.and(started) });
        within(
            budget(parked_count, Duration::from_millis(20)),
            "starting the parked workflows",
            starts,
        )
        .await??;
        // Every run has started; wait until each has journaled its timer (it is then parked).
        let limit = budget(parked_count, Duration::from_millis(20));
        let mut last_report = Instant::now();
        loop {
            let timers = count_events(&db, "*", Some(KIND_TIMER_STARTED))?;
            if timers >= u64::from(parked_count) {
                break;
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "only {timers} of {parked_count} workflows parked within {limit:?}"
                )
                .into());
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                progress(&format!("child: {timers}/{parked_count} workflows parked"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let park_secs = started.elapsed().as_secs_f64();
        // Let the last drivers arm their timers and go idle.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = rss_kb()?;
        let peak = peak_rss_kb()?;
        let cpu_before = cpu_time()?;
        let wall_before = Instant::now();
        tokio::time::sleep(idle).await;
        let cpu = cpu_time()? - cpu_before;
        let wall = wall_before.elapsed();
        let rss_after_idle = rss_kb()?;
        let report = format!(
            "baseline_rss_kb={baseline_rss_kb}\nrss_kb={rss}\npeak_rss_kb={peak}\npark_secs={park_secs}\n\
             rss_after_idle_kb={rss_after_idle}\n\
             idle_cpu_percent={}\nidle_secs={}\n",
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            wall.as_secs_f64()
        );
        drop(engine);
        Ok::<String, BoxError>(report)
    })?;
    print!("{report}");
    use std::io::Write;
    std::io::stdout().flush()?;
    // Skip tearing down 100,000 drivers: the parent deletes the journal's directory.
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------------------
// The report

struct Report<'a> {
    results: &'a BTreeMap<String, f64>,
    quick: bool,
    sizes: &'a Sizes,
}

/// One row of the table.
struct Row {
    key: String,
    value: f64,
    unit: &'static str,
    ratio: Option<String>,
    target: Option<(String, bool)>,
}

impl Report<'_> {
    fn get(&self, key: &str) -> f64 {
        self.results.get(key).copied().unwrap_or(f64::NAN)
    }

    fn rows(&self) -> Vec<Row> {
        let commit = self.get("sqlite_full_commit_p50_us");
        let batch = self.get("sqlite_full_batch10_rows_per_s");
        let commit_normal = self.get("sqlite_normal_commit_p50_us");
        let batch_normal = self.get("sqlite_normal_batch10_rows_per_s");
        let row = |key: &str, unit: &'static str| Row {
            key: key.to_string(),
            value: self.get(key),
            unit,
            ratio: None,
            target: None,
        };
        let ratio = |value: f64, ceiling: f64, label: &str| {
            Some(format!("{:.2}× {label}", value / ceiling))
        };
        let mut rows = vec![
            Row {
                ratio: Some("ceiling".to_string()),
                ..row("sqlite_full_commit_p50_us", "µs")
            },
            Row {
                ratio: Some("ceiling".to_string()),
                ..row("sqlite_full_batch10_rows_per_s", "rows/s")
            },
        ];
        for mode in [Mode::Full, Mode::Normal] {
            let suffix = mode.suffix();
            let (commit, batch, tag) = match mode {
                Mode::Full => (commit, batch, "commit"),
                Mode::Normal => (commit_normal, batch_normal, "commit(N)"),
            };
            let batch_tag = if mode == Mode::Full {
                "batch10"
            } else {
                "batch10(N)"
            };
            let full = mode == Mode::Full;
            let key = format!("seq_step_p50_us{suffix}");
            let value = self.get(&key);
            rows.push(Row {
                ratio: ratio(value, commit, tag),
                target: full.then(|| {
                    let bound = TARGET_SEQ_STEP_X_COMMIT * commit;
                    (
                        format!("≤ {TARGET_SEQ_STEP_X_COMMIT}× commit ({bound:.0})"),
                        value <= bound,
                    )
                }),
                ..row(&key, "µs")
            });
            let key = format!("seq_step_p99_us{suffix}");
            let value = self.get(&key);
            rows.push(Row {
                ratio: ratio(value, commit, tag),
                ..row(&key, "µs")
            });
            let key = format!("seq_cpu_percent{suffix}");
            rows.push(row(&key, "% core"));
            let key = format!("wf3_latency_p50_us{suffix}");
            let value = self.get(&key);
            rows.push(Row {
                ratio: ratio(value, commit, tag),
                target: full.then(|| {
                    let bound = TARGET_WF3_X_COMMIT * commit;
                    (
                        format!("≤ {TARGET_WF3_X_COMMIT}× commit ({bound:.0})"),
                        value <= bound,
                    )
                }),
                ..row(&key, "µs")
            });
            let key = format!("wf3_latency_p99_us{suffix}");
            let value = self.get(&key);
            rows.push(Row {
                ratio: ratio(value, commit, tag),
                ..row(&key, "µs")
            });
            let key = format!("steps_per_s_1000wf{suffix}");
            let value = self.get(&key);
            rows.push(Row {
                ratio: ratio(value, batch, batch_tag),
                target: full.then(|| {
                    let bound = TARGET_STEPS_X_BATCH10 * batch;
                    (
                        format!("≥ {TARGET_STEPS_X_BATCH10}× batch10 ({bound:.0})"),
                        value >= bound,
                    )
                }),
                ..row(&key, "steps/s")
            });
            let key = format!("workflows_per_s{suffix}");
            let value = self.get(&key);
            rows.push(Row {
                ratio: ratio(
                    value * WRITES_PER_WF3,
                    batch,
                    &format!("{batch_tag}/{WRITES_PER_WF3:.0}"),
                ),
                ..row(&key, "wf/s")
            });
        }
        let commit = self.get("sqlite_full_commit_p50_us");
        for (key, with_spin) in [
            ("seq_step_p50_us_no_spin", "seq_step_p50_us"),
            ("wf3_latency_p50_us_no_spin", "wf3_latency_p50_us"),
        ] {
            let value = self.get(key);
            rows.push(Row {
                ratio: Some(format!(
                    "{:.2}× commit; spin {:.2}× faster",
                    value / commit,
                    value / self.get(with_spin)
                )),
                ..row(key, "µs")
            });
        }
        rows.push(row("seq_cpu_percent_no_spin", "% core"));
        let value = self.get("replay_events_per_s");
        rows.push(Row {
            target: Some((
                format!("≥ {TARGET_REPLAY_EVENTS_PER_S:.0}"),
                value >= TARGET_REPLAY_EVENTS_PER_S,
            )),
            ..row("replay_events_per_s", "events/s")
        });
        let value = self.get("poison_throughput_ratio");
        rows.push(Row {
            target: Some((
                format!("≥ {TARGET_POISON_RATIO}"),
                value >= TARGET_POISON_RATIO,
            )),
            ..row("poison_throughput_ratio", "×")
        });
        let value = self.get("rss_mb_100k_parked");
        let parked_note = if self.quick {
            format!(" [{} parked]", self.sizes.parked)
        } else {
            String::new()
        };
        rows.push(Row {
            target: Some((
                format!("≤ {TARGET_RSS_MB:.0}{parked_note}"),
                value <= TARGET_RSS_MB,
            )),
            ..row("rss_mb_100k_parked", "MB")
        });
        let value = self.get("idle_cpu_percent");
        rows.push(Row {
            target: Some((
                format!("< {TARGET_IDLE_CPU_PERCENT:.0}"),
                value < TARGET_IDLE_CPU_PERCENT,
            )),
            ..row("idle_cpu_percent", "%")
        });
        for label in ["10k", "100k"] {
            let start = format!("recovery_start_ms_{label}");
            if self.results.contains_key(&start) {
                rows.push(row(&start, "ms"));
                rows.push(row(&format!("recovery_secs_{label}"), "s"));
            }
        }
        rows.push(row("replay_check_runs_per_s", "runs/s"));
        rows
    }

    fn print_table(&self) {
        let rows = self.rows();
        let cells: Vec<[String; 6]> = rows
            .iter()
            .map(|row| {
                [
                    row.key.clone(),
                    format_value(row.value),
                    row.unit.to_string(),
                    row.ratio.clone().unwrap_or_else(|| "—".to_string()),
                    row.target
                        .as_ref()
                        .map(|(text, _)| text.clone())
                        .unwrap_or_else(|| "—".to_string()),
                    match &row.target {
                        Some((_, true)) => "met".to_string(),
                        Some((_, false)) => "NOT MET".to_string(),
                        None => "".to_string(),
                    },
                ]
            })
            .collect();
        let header = [
            "metric",
            "value",
            "unit",
            "ratio-to-ceiling",
            "target",
            "met",
        ];
        let mut widths = header.map(|title| title.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 6]| {
            let mut out = String::new();
            for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
                let pad = width - cell.chars().count();
                if index == 1 {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                }
                out.push_str("  ");
            }
            out.trim_end().to_string()
        };
        println!("{}", line(&header.map(str::to_string)));
        println!("{}", line(&widths.map(|width| "-".repeat(width))));
        for row in &cells {
            println!("{}", line(row));
        }
        println!();
        println!(
            "ratios: `commit` = sqlite_full_commit_p50_us, `batch10` = sqlite_full_batch10_rows_per_s \
             (N = the raw synchronous=NORMAL ceiling); workflows_per_s is compared as {WRITES_PER_WF3:.0} \
             journal writes per 3-activity workflow (run row, 2 completions, the last completion with the final status)."
        );
    }

    fn json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (key, value) in self.results {
            map.insert(key.clone(), serde_json::Value::from(*value));
        }
        map.insert("quick".to_string(), serde_json::Value::from(self.quick));
        map.insert(
            "parked_workflows".to_string(),
            serde_json::Value::from(self.sizes.parked),
        );
        serde_json::Value::Object(map)
    }
}

/// A figure with a sensible number of digits and thousands separators.
fn format_value(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_string();
    }
    if value.abs() >= 1000.0 {
        let digits = format!("{:.0}", value.abs());
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if value < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
