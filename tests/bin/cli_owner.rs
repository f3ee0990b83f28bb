//! The journal-owning service of `tests/cli.rs`.
//!
//! Usage: `cli_owner <db> <token> <fix file>`: an engine on the SQLite file `<db>` with the admin API
//! on a free loopback port (token identity `ops`), the workflows of `cli_workflows`, and these runs:
//! `order-1`, `order-2` (checkout: fail until `<fix file>` exists), `approve-1`, `approve-2`
//! (approval: wait for a signal), `parent-1` (with the child `parent-1/child`), and `we"ird 'id`
//! (sleeper). Prints `ADMIN <url>`, then `READY` once the orders failed; runs until killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use orchestrator::admin::AdminConfig;
use orchestrator::prelude::*;
use orchestrator_tests::cli_workflows::{self, approval, checkout, parent, sleeper};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, token, fix] = args.as_slice() else {
        panic!("usage: cli_owner <db> <token> <fix file>");
    };
    let engine = cli_workflows::register(Engine::builder().sqlite(db))
        .admin(
            AdminConfig::builder()
                .bind(([127, 0, 0, 1], 0))
                .token("ops", token.as_str())
                .sse_poll_interval(Duration::from_millis(50))
                .build(),
        )
        .start()
        .await
        .unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "ADMIN http://{}", engine.admin_addr().unwrap()).unwrap();
    out.flush().unwrap();
    engine
        .start(checkout, "order-1", fix.clone())
        .await
        .unwrap();
    engine
        .start(checkout, "order-2", fix.clone())
        .await
        .unwrap();
    engine.start(approval, "approve-1", 250).await.unwrap();
    engine.start(approval, "approve-2", 5).await.unwrap();
    engine.start(parent, "parent-1", ()).await.unwrap();
    engine.start(sleeper, "we\"ird 'id", ()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let failed = engine
            .list_runs(
                &orchestrator::store::RunQuery::new().state(orchestrator::store::RunState::Failed),
            )
            .await
            .unwrap()
            .runs
            .len();
        let child = engine
            .store()
            .run("parent-1/child")
            .await
            .unwrap()
            .is_some();
        if failed == 2 && child {
            break;
        }
        assert!(Instant::now() < deadline, "the orders did not fail in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}
