//! The dashboard's endpoints at 100,000 runs: how long the admin API takes to answer the run list
//! (first page, filtered, deep page) and the counts by state, on an SQLite journal.
//!
//! ```sh
//! cargo bench -p orchestrator-benches --bench dashboard              # 30 samples per endpoint
//! cargo bench -p orchestrator-benches --bench dashboard -- --quick   # 5 samples, for CI
//! ```
//!
//! The journal is filled with raw SQL in one transaction (100,000 finished runs: 90% completed, 10%
//! failed with a real encoded error copied from a run the engine failed, across 4 workflow types),
//! then an engine serves it on a loopback port and each endpoint is requested over plain HTTP/1.1.
//! Figures are printed (p50 and p95 in ms), never asserted. Run without cargo bench's `--bench`
//! flag (`cargo test --benches`), it runs the quick variant as a single test named
//! `bench_dashboard_quick`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use orchestrator::Engine;
use orchestrator::admin::AdminConfig;
use orchestrator::prelude::*;
use orchestrator_benches::BoxError;
use rusqlite::{Connection, params};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs in the journal.
const RUNS: usize = 100_000;

/// The workflow types the runs are spread over.
const TYPES: [&str; 4] = ["checkout", "refund", "nightly", "signup"];

const TEST_NAME: &str = "bench_dashboard_quick";

/// Fails at once: its error is copied onto the failed rows.
#[workflow]
async fn checkout(_ctx: WorkflowContext, order: u64) -> Result<(), WorkflowError> {
    Err(WorkflowError::failed(format!(
        "card declined for order {order}"
    )))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let under_cargo_bench = args.iter().any(|arg| arg == "--bench");
    if !under_cargo_bench {
        if args.iter().any(|arg| arg == "--list") {
            println!("{TEST_NAME}: test");
            return ExitCode::SUCCESS;
        }
        if args
            .iter()
            .filter(|arg| !arg.starts_with('-'))
            .any(|filter| !TEST_NAME.contains(filter.as_str()))
        {
            println!("{TEST_NAME}: filtered out");
            return ExitCode::SUCCESS;
        }
    }
    let quick = args.iter().any(|arg| arg == "--quick") || !under_cargo_bench;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dashboard bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(if quick { 5 } else { 30 })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dashboard bench: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(samples: usize) -> Result<(), BoxError> {
    let dir = tempfile::Builder::new()
        .prefix("orch-dash-bench-")
        .tempdir()?;
    let path = dir.path().join("runs.db");

    // One real failed run, for an error blob the API decodes as it would any other.
    let engine = Engine::builder()
        .sqlite(&path)
        .register(checkout)
        .start()
        .await?;
    let _ = engine.start(checkout, "seed", 1).await?.result().await;
    engine.shutdown().await;
    drop(engine);

    let started = Instant::now();
    fill(&path)?;
    eprintln!(
        "filled the journal with {RUNS} runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let engine = Engine::builder()
        .sqlite(&path)
        .register(checkout)
        .admin(
            AdminConfig::builder()
                .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .build(),
        )
        .start()
        .await?;
    let addr = engine.admin_addr().ok_or("the admin API does not listen")?;

    let endpoints: [(&str, &str); 9] = [
        ("list, first page of 100", "/api/v1/runs?limit=100"),
        ("list, 100 failed", "/api/v1/runs?status=failed&limit=100"),
        ("list, one type", "/api/v1/runs?type=refund&limit=100"),
        (
            "list, error text",
            "/api/v1/runs?error_contains=order%207&limit=100",
        ),
        ("list, deep page", "/api/v1/runs?after=run-090000&limit=100"),
        ("counts, all runs", "/api/v1/counts"),
        ("counts, one type", "/api/v1/counts?type=refund"),
        (
            "counts, error text",
            "/api/v1/counts?error_contains=declined",
        ),
        ("workflows summary", "/api/v1/workflows/summary"),
    ];
    println!();
    println!("dashboard endpoints at {RUNS} runs (SQLite), {samples} samples each:");
    println!(
        "{:<26} {:>9} {:>9} {:>9}",
        "endpoint", "p50 ms", "p95 ms", "bytes"
    );
    for (label, request) in endpoints {
        let mut times = Vec::with_capacity(samples);
        let mut bytes = 0;
        for _ in 0..samples {
            let begun = Instant::now();
            let (status, body) = get(addr, request).await?;
            times.push(begun.elapsed());
            if status != 200 {
                return Err(format!("{request} answered {status}: {body}").into());
            }
            bytes = body.len();
        }
        times.sort();
        let at = |q: f64| {
            let index = ((times.len() as f64 - 1.0) * q).round() as usize;
            times[index].as_secs_f64() * 1000.0
        };
        println!("{label:<26} {:>9.2} {:>9.2} {bytes:>9}", at(0.5), at(0.95));
    }
    engine.shutdown().await;
    Ok(())
}

/// Inserts `RUNS` finished runs with raw SQL, in one transaction.
fn fill(path: &Path) -> Result<(), BoxError> {
    let mut conn = Connection::open(path)?;
    let (input, error, error_text): (Vec<u8>, Vec<u8>, String) = conn.query_row(
        "SELECT input, error, error_text FROM runs WHERE workflow_id = 'seed'",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO runs (workflow_id, workflow_name, state, input, output, error, error_text, \
             created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )?;
        let base = 1_700_000_000_000_i64;
        for n in 0..RUNS {
            let failed = n % 10 == 3;
            let name = if failed {
                "checkout"
            } else {
                TYPES[n % TYPES.len()]
            };
            let at = base + i64::try_from(n)? * 1_000;
            insert.execute(params![
                format!("run-{n:06}"),
                name,
                if failed { 2 } else { 1 },
                input,
                if failed { None } else { Some(b"\x00".to_vec()) },
                if failed { Some(error.clone()) } else { None },
                if failed {
                    Some(error_text.replace("order 1", &format!("order {n}")))
                } else {
                    None
                },
                at,
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// A GET over a new connection: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), BoxError> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("not an HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
