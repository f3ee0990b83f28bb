//! A node frozen mid-commit (`tests/postgres_store.rs`): commits to one run of a PostgreSQL journal
//! in a tight loop, so that a SIGSTOP most likely lands inside a transaction that holds the run's row
//! lock.
//!
//! Usage: `commit_looper <pg url> <schema> <workflow id>`. It connects with the store's default
//! options (so their session timeouts apply), creates the run owned by `node-frozen` (epoch 1, a 1 s
//! lease it never renews), prints `READY`, then commits fenced events to it until killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use orchestrator::store::{Commit, Lease, NewEvent, NewRun, PostgresOptions, PostgresStore, Store};

fn usage() -> ! {
    eprintln!("usage: commit_looper <pg url> <schema> <workflow id>");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, schema, id] = args.as_slice() else {
        usage();
    };
    let store =
        PostgresStore::connect_with(PostgresOptions::new(url.clone()).schema(schema.clone()))
            .await
            .expect("connect to PostgreSQL");
    store
        .create_run(NewRun {
            workflow_id: id.clone(),
            workflow_name: "frozen".to_string(),
            input: Vec::new(),
            parent_id: None,
            deadline_ms: None,
            execution_timeout_ms: None,
            owner: Some(Lease {
                node: "node-frozen".to_string(),
                epoch: 1,
                duration_ms: 1_000,
            }),
            events: Vec::new(),
            paused: None,
        })
        .await
        .expect("create the run");
    println!("READY");
    loop {
        let event = NewEvent {
            step: 1,
            kind: 1,
            completion: false,
            payload: b"attempt".to_vec(),
            wake_at_ms: None,
        };
        let commit = Commit {
            fence: Some(("node-frozen".to_string(), 1)),
            ..Commit::events(id, vec![event])
        };
        if let Err(error) = store.commit(commit).await {
            eprintln!("commit_looper: {error}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
