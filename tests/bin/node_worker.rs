//! One node of the multi-node test (`tests/multi_node.rs`): an engine on a PostgreSQL journal shared
//! with other processes, under leases.
//!
//! Usage: `node_worker <pg url> <schema> <node id> <lease ms> <workflows> <id prefix>
//! [<stop file> [<step min ms> <step max ms>]]`.
//!
//! It builds an engine on the shared [`PostgresStore`] with `.node_id(..)` and `.lease_duration(..)`,
//! registering a 5-step workflow whose activities each sleep a random time in
//! `[step min ms, step max ms]` (default 5–30 ms) and return a pure function of their input. It starts
//! `<workflows>` runs with ids `<id prefix>-<n>` (`n` from 0, input `n`), prints `READY`, then prints
//! `STALE <n>` whenever [`Engine::stale_writes_rejected`] changes and `REJECTED <n>` whenever the count
//! of journal commits the store itself refused as stale changes (the store is wrapped in a
//! [`ProbedStore`] that counts them). It stays alive until it is killed or the stop file appears; then
//! it shuts the engine down (giving its leases back) and prints the final `STALE <n>`, `REJECTED <n>`
//! and `STOPPED`. It also prints `RENEWAL_GAP_MS <ms>` whenever the longest time between two of its
//! lease renewals grows (a gap past the lease means its leases expired because the process was paused
//! or starved, not because of a bug).
//!
//! With `NODE_WORKER_RETRY_LEDGER=<file>` in its environment it starts runs of `retrying_steps`
//! instead: two steps whose first attempt fails and is retried after a fixed 4 s backoff. Every attempt
//! appends `<node> <workflow id> <step> <attempt> <unix ms>` to the ledger file as it starts (the
//! evidence of which node started what, when).
//!
//! The journal is the evidence: the test reads the schema's tables, not anything this process prints,
//! to decide which steps ran and who finished which run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orchestrator::prelude::*;
use orchestrator::store::{PostgresOptions, PostgresStore};
use orchestrator_tests::lease_probe::ProbedStore;

/// Activity calls per run.
const STEPS: u32 = 5;

/// The shortest activity sleep, in ms (set once in `main`).
static STEP_MIN_MS: AtomicU64 = AtomicU64::new(5);
/// The longest activity sleep, in ms (set once in `main`).
static STEP_MAX_MS: AtomicU64 = AtomicU64::new(30);

/// What step `i` returns given the previous step's output: the test recomputes it.
fn step_output(i: u32, acc: u64) -> u64 {
    acc.wrapping_mul(31).wrapping_add(u64::from(i))
}

/// One step: sleeps a random few ms (a window for a kill or a stop), then returns `acc * 31 + i`.
#[activity]
async fn node_step(i: u32, acc: u64) -> Result<u64, ActivityError> {
    let min = STEP_MIN_MS.load(Ordering::Relaxed);
    let max = STEP_MAX_MS.load(Ordering::Relaxed).max(min);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(min..=max))).await;
    Ok(step_output(i, acc))
}

/// Where `flaky_step` records its attempts, and this node's id (set once in `main`).
static LEDGER: OnceLock<(PathBuf, String)> = OnceLock::new();

/// Appends one attempt to the ledger, at once (the process may be stopped or killed any time).
fn record_attempt(ctx: &ActivityContext, step: u32) {
    let Some((path, node)) = LEDGER.get() else {
        return;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let line = format!(
        "{node} {} {step} {} {now_ms}\n",
        ctx.workflow_id(),
        ctx.attempt()
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the ledger");
    file.write_all(line.as_bytes()).expect("write the ledger");
}

/// A step whose first attempt fails; the retry comes 4 s later.
#[activity(retry(max_attempts = 3, backoff = "4s..4s", jitter = 0.0))]
async fn flaky_step(ctx: ActivityContext, i: u32, acc: u64) -> Result<u64, ActivityError> {
    record_attempt(&ctx, i);
    if ctx.attempt() == 1 {
        return Err(ActivityError::retryable("first attempts fail"));
    }
    Ok(step_output(i, acc))
}

/// Two `flaky_step`s in sequence.
#[workflow]
async fn retrying_steps(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let mut acc = seed;
    for i in 1..=2 {
        acc = ctx.call(flaky_step, (i, acc)).await?;
    }
    Ok(acc)
}

/// Five sequential activity calls, each fed the previous one's output.
#[workflow]
async fn five_steps(ctx: WorkflowContext, seed: u64) -> Result<u64, WorkflowError> {
    let mut acc = seed;
    for i in 1..=STEPS {
        acc = ctx.call(node_step, (i, acc)).await?;
    }
    Ok(acc)
}

fn usage() -> ! {
    eprintln!(
        "usage: node_worker <pg url> <schema> <node id> <lease ms> <workflows> <id prefix> \
         [<stop file> [<step min ms> <step max ms>]]"
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        usage();
    }
    let url = args[0].clone();
    let schema = args[1].clone();
    let node = args[2].clone();
    let lease_ms: u64 = args[3].parse().unwrap_or_else(|_| usage());
    let workflows: u64 = args[4].parse().unwrap_or_else(|_| usage());
    let prefix = args[5].clone();
    let stop_file = args
        .get(6)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    if let (Some(min), Some(max)) = (args.get(7), args.get(8)) {
        STEP_MIN_MS.store(min.parse().unwrap_or_else(|_| usage()), Ordering::Relaxed);
        STEP_MAX_MS.store(max.parse().unwrap_or_else(|_| usage()), Ordering::Relaxed);
    }

    let store = PostgresStore::connect_with(
        PostgresOptions::new(url)
            .schema(schema)
            .pool_size(8)
            .acquire_timeout(Duration::from_secs(60)),
    )
    .await
    .expect("connect to PostgreSQL");
    let store = Arc::new(ProbedStore::new(Arc::new(store)));
    let engine = Engine::builder()
        .store(store.clone())
        .node_id(node.clone())
        .lease_duration(Duration::from_millis(lease_ms))
        .shutdown_grace(Duration::from_secs(2))
        .register(five_steps)
        .register(node_step)
        .register(retrying_steps)
        .register(flaky_step)
        .start()
        .await
        .expect("start the engine");
    assert_eq!(engine.node_id(), node);
    let retrying = match std::env::var("NODE_WORKER_RETRY_LEDGER") {
        Ok(path) if !path.is_empty() => {
            let _ = LEDGER.set((PathBuf::from(path), node.clone()));
            true
        }
        _ => false,
    };
    for n in 0..workflows {
        let id = format!("{prefix}-{n}");
        if retrying {
            engine
                .start(retrying_steps, id, n)
                .await
                .expect("start a run");
        } else {
            engine.start(five_steps, id, n).await.expect("start a run");
        }
    }
    println!("READY");

    let (mut reported_stale, mut reported_rejected, mut reported_gap) = (0, 0, 0);
    loop {
        let stale = engine.stale_writes_rejected();
        if stale != reported_stale {
            reported_stale = stale;
            println!("STALE {stale}");
        }
        let rejected = store.stale_rejections();
        if rejected != reported_rejected {
            reported_rejected = rejected;
            println!("REJECTED {rejected}");
        }
        let gap = store.longest_renewal_gap().as_millis();
        if gap > reported_gap {
            reported_gap = gap;
            println!("RENEWAL_GAP_MS {gap}");
        }
        if stop_file.as_ref().is_some_and(|path| path.exists()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.shutdown().await;
    println!("STALE {}", engine.stale_writes_rejected());
    println!("REJECTED {}", store.stale_rejections());
    println!("RENEWAL_GAP_MS {}", store.longest_renewal_gap().as_millis());
    println!("STOPPED");
}
