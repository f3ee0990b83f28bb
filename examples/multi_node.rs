//! Several nodes sharing one PostgreSQL database: start this example in a few terminals with the same
//! `--url` and different `--node` names, start orders from one of them, and kill that node to watch
//! another one take its orders over once its lease expires.
//!
//! ```text
//! # terminals 1 and 2: two nodes waiting for work
//! cargo run --example multi_node --features postgres -p orchestrator-examples -- \
//!     --url postgres://postgres@127.0.0.1:5432/test --node b
//! cargo run --example multi_node --features postgres -p orchestrator-examples -- \
//!     --url postgres://postgres@127.0.0.1:5432/test --node c
//! # terminal 3: a node that starts 20 orders (and runs them)
//! cargo run --example multi_node --features postgres -p orchestrator-examples -- \
//!     --url postgres://postgres@127.0.0.1:5432/test --node a --start 20
//! ```
//!
//! Each order is a workflow of five stages (reserve stock, charge card, pack, ship, notify), each an
//! activity that takes a second or two. A run belongs to the node that started it, under a lease it
//! keeps renewing; each node prints the stages it runs. Kill node `a` with `kill -9` (or close its
//! terminal) mid-way: once its lease expires (`--lease` seconds, default 3) another node claims its
//! orders and continues each from its journal — the stage that was running when `a` died runs again
//! (at-least-once), stages whose results were journaled do not, and the output says from which node
//! each order was taken over. Stop a node with Ctrl-C instead and it hands its orders over at once.
//! Every node prints how many orders the database holds, by state, whenever that changes.
//!
//! Options: `--url` (default `postgres://postgres@127.0.0.1:5432/test`), `--node` (default
//! `node-<pid>`; unique among the running nodes), `--start N`, `--schema` (default
//! `orchestrator_demo`), `--lease SECONDS`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orchestrator::prelude::*;
use orchestrator::store::{PostgresOptions, PostgresStore, RunQuery, RunState};

/// The stages of an order, in order.
const STAGES: [&str; 5] = [
    "reserve stock",
    "charge card",
    "pack",
    "ship",
    "notify customer",
];

/// This process's node name (set once in `main`), for the activities' output.
static NODE: OnceLock<String> = OnceLock::new();

fn node() -> &'static str {
    NODE.get().map_or("?", String::as_str)
}

/// Runs one stage of an order on this node; returns this node's name (journaled with the result, so
/// the next stage knows where this one ran).
#[activity(retry(max_attempts = 5, backoff = "200ms..5s"))]
async fn run_stage(
    ctx: ActivityContext,
    stage: u32,
    previous_node: String,
) -> Result<String, ActivityError> {
    let name = STAGES
        .get(stage.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("?");
    let here = node();
    let moved = if !previous_node.is_empty() && previous_node != here {
        format!("   (took the order over from node {previous_node})")
    } else {
        String::new()
    };
    let retry = if ctx.attempt() > 1 {
        format!(" [attempt {}]", ctx.attempt())
    } else {
        String::new()
    };
    println!(
        "[{here}] {}  stage {stage}/{}  {name}{retry}{moved}",
        ctx.workflow_id(),
        STAGES.len()
    );
    tokio::time::sleep(Duration::from_millis(1000 + jitter_ms())).await;
    Ok(here.to_string())
}

/// 0–999 ms of jitter, without an extra dependency.
fn jitter_ms() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    u64::from(nanos % 1000)
}

/// An order: five stages, one after the other. Returns the nodes the stages ran on.
#[workflow]
async fn fulfil_order(ctx: WorkflowContext, _order: u32) -> Result<Vec<String>, WorkflowError> {
    let mut nodes: Vec<String> = Vec::new();
    for stage in 1..=STAGES.len() as u32 {
        let previous = nodes.last().cloned().unwrap_or_default();
        nodes.push(ctx.call(run_stage, (stage, previous)).await?);
    }
    Ok(nodes)
}

/// The command line.
struct Args {
    url: String,
    node: String,
    start: u32,
    schema: String,
    lease: Duration,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            url: "postgres://postgres@127.0.0.1:5432/test".to_string(),
            node: format!("node-{}", std::process::id()),
            start: 0,
            schema: "orchestrator_demo".to_string(),
            lease: Duration::from_secs(3),
        };
        let mut words = std::env::args().skip(1);
        while let Some(flag) = words.next() {
            if flag == "--help" || flag == "-h" {
                return Err(String::new());
            }
            let value = words
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?;
            match flag.as_str() {
                "--url" => args.url = value,
                "--node" => args.node = value,
                "--schema" => args.schema = value,
                "--start" => {
                    args.start = value
                        .parse()
                        .map_err(|_| format!("--start {value}: not a count"))?;
                }
                "--lease" => {
                    let seconds: f64 = value
                        .parse()
                        .map_err(|_| format!("--lease {value}: not a number of seconds"))?;
                    if !(0.1..=3600.0).contains(&seconds) {
                        return Err(format!("--lease {value}: between 0.1 and 3600 seconds"));
                    }
                    args.lease = Duration::from_secs_f64(seconds);
                }
                _ => return Err(format!("unknown option `{flag}`")),
            }
        }
        Ok(args)
    }
}

const USAGE: &str =
    "usage: multi_node [--url URL] [--node NAME] [--start N] [--schema NAME] [--lease SECONDS]";

/// Counts the runs of this demo by state: (completed, running, other).
async fn census(engine: &Engine) -> Result<(usize, usize, usize), Error> {
    let (mut completed, mut running, mut other) = (0, 0, 0);
    let mut query = RunQuery::new().workflow_name("fulfil_order").limit(1000);
    loop {
        let page = engine.list_runs(&query).await?;
        for run in &page.runs {
            match run.state {
                RunState::Completed => completed += 1,
                RunState::Running => running += 1,
                _ => other += 1,
            }
        }
        match page.next {
            Some(next) => query = query.after(next),
            None => return Ok((completed, running, other)),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let _ = NODE.set(args.node.clone());

    let store =
        PostgresStore::connect_with(PostgresOptions::new(&args.url).schema(args.schema.as_str()))
            .await?;
    let engine = Engine::builder()
        .store(Arc::new(store))
        .node_id(args.node.as_str())
        .lease_duration(args.lease)
        .shutdown_grace(Duration::from_secs(5))
        .register(fulfil_order)
        .register(run_stage)
        .start()
        .await?;
    println!(
        "[{}] node `{}` is up (schema `{}`, lease {:?}). Ctrl-C hands its orders to the other nodes at \
         once; kill -9 lets them take over when the lease expires.",
        args.node, args.node, args.schema, args.lease
    );

    if args.start > 0 {
        let batch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() % 100_000);
        let mut runs = Vec::new();
        for n in 1..=args.start {
            let id = format!("order-{batch:05}-{n:02}");
            runs.push(engine.start(fulfil_order, id, n).await?);
        }
        println!(
            "[{}] started {} orders: order-{batch:05}-01 .. order-{batch:05}-{:02}",
            args.node, args.start, args.start
        );
        let node = args.node.clone();
        tokio::spawn(async move {
            let results = orchestrator::join_all(
                runs.iter()
                    .map(|run| async move { (run.workflow_id().to_string(), run.result().await) }),
            )
            .await;
            for (id, result) in results {
                match result {
                    Ok(nodes) => println!("[{node}] {id} done: stages ran on {}", nodes.join(", ")),
                    Err(error) => println!("[{node}] {id} failed: {error}"),
                }
            }
            println!("[{node}] all {} orders finished", runs.len());
        });
    }

    let mut last = None;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                match census(&engine).await {
                    Ok(counts) if last != Some(counts) => {
                        last = Some(counts);
                        let (completed, running, other) = counts;
                        println!(
                            "[{}] orders in the database: {completed} completed, {running} running, {other} other",
                            args.node
                        );
                    }
                    Ok(_) => {}
                    Err(error) => eprintln!("[{}] could not list runs: {error}", args.node),
                }
            }
        }
    }
    println!(
        "[{}] shutting down: the other nodes take its orders over now",
        args.node
    );
    engine.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The order workflow's logic under the testing toolkit, on virtual time. The real activity
    //! reports the node of this process (`NODE`, set by `main`): the tests replace it where they
    //! need several nodes, which one process cannot be.

    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use orchestrator::inspect::{StepKind, StepStatus};
    use orchestrator::testing::TestEngine;

    use super::*;

    async fn engine() -> TestEngine {
        TestEngine::builder()
            .register(fulfil_order)
            .register(run_stage)
            .start()
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_five_stages_run_in_order_on_this_node() {
        let test = engine().await;
        let started = test.now_ms();
        let run = test.start(fulfil_order, "order-1", 1).await.unwrap();
        let nodes = run.result().await.unwrap();
        assert_eq!(nodes, vec![node().to_string(); STAGES.len()]);

        let history = test.history("order-1").await.unwrap();
        assert_eq!(history.activities(), vec!["run_stage"; STAGES.len()]);
        assert!(history.failed_steps().is_empty(), "{}", history.summary());
        for step in 1..=STAGES.len() as u32 {
            assert_eq!(history.attempts(step), 1, "{}", history.summary());
        }
        // Each stage takes one to two (virtual) seconds.
        let elapsed = test.now_ms() - started;
        assert!(
            (5_000..10_000).contains(&elapsed),
            "five stages took {elapsed} ms"
        );
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_stage_is_told_where_the_previous_one_ran() {
        let test = engine().await;
        // Node `a` runs the first two stages, then node `b` takes the order over.
        let stages = test.mock(run_stage, |(stage, _previous): (u32, String)| async move {
            Ok(if stage <= 2 { "a" } else { "b" }.to_string())
        });
        let run = test.start(fulfil_order, "order-2", 2).await.unwrap();
        assert_eq!(run.result().await.unwrap(), vec!["a", "a", "b", "b", "b"]);
        assert_eq!(
            stages.inputs(),
            vec![
                (1, String::new()),
                (2, "a".to_string()),
                (3, "a".to_string()),
                (4, "b".to_string()),
                (5, "b".to_string()),
            ]
        );
        assert_eq!(stages.calls(), 5);
        let history = test.history("order-2").await.unwrap();
        assert_eq!(history.kinds(), vec![StepKind::Activity; 5]);
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_stage_is_retried_with_backoff_then_the_order_goes_on() {
        let test = engine().await;
        let stages = test
            .mock(run_stage, |(_stage, _previous): (u32, String)| async move {
                Ok("a".to_string())
            })
            .fail_times(2, || ActivityError::retryable("the warehouse is busy"));
        let started = test.now_ms();
        let run = test.start(fulfil_order, "order-3", 3).await.unwrap();
        assert_eq!(run.result().await.unwrap(), vec!["a"; 5]);
        assert_eq!(stages.calls(), 7, "two failed attempts, then five stages");
        let history = test.history("order-3").await.unwrap();
        assert_eq!(history.attempts(1), 3, "{}", history.summary());
        assert_eq!(history.step(1).status, StepStatus::Completed);
        assert_eq!(history.attempts(2), 1);
        // The mocked stages take no time: what passed is the two backoffs (200 ms..5 s policy).
        let elapsed = test.now_ms() - started;
        assert!(
            (200..=10_000).contains(&elapsed),
            "two backoffs took {elapsed} ms"
        );
        test.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_failing_five_times_fails_the_order_there() {
        let test = engine().await;
        // By name, over encoded bytes: what a test can do without the activity's types at hand.
        let stages = test.mock_by_name("run_stage", |_input: Vec<u8>| async move {
            Err(ActivityError::retryable("the card network is down"))
        });
        let run = test.start(fulfil_order, "order-4", 4).await.unwrap();
        let error = run.result().await.unwrap_err();
        assert!(
            error.to_string().contains("the card network is down"),
            "{error}"
        );
        assert_eq!(stages.calls(), 5, "max_attempts = 5");
        let history = test.history("order-4").await.unwrap();
        assert_eq!(history.failed_steps(), vec![1]);
        assert_eq!(history.attempts(1), 5);
        assert_eq!(
            history.activities(),
            vec!["run_stage"],
            "no later stage ran"
        );
        test.shutdown().await;
    }
}
