//! Runs `WORKFLOWS` (first argument, default 200) 10-activity workflows at once at `Normal`
//! durability on a fresh SQLite file, then exits: a fixed workload to count instructions with
//! `valgrind --tool=callgrind` (instruction counts do not depend on the machine's noise).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use orchestrator_benches::{Mode, engine_builder, ten_steps};

fn main() {
    let workflows: u32 = std::env::args()
        .nth(1)
        .map_or(200, |arg| arg.parse().expect("a number of workflows"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = engine_builder(&path, Mode::Normal).start().await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..workflows {
            let engine = engine.clone();
            tasks.spawn(async move {
                let run = engine.start(ten_steps, format!("w-{i}"), i).await.unwrap();
                assert_eq!(run.result().await.unwrap(), i);
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        engine.shutdown().await;
    });
    println!("{workflows} workflows, {} steps", workflows * 10);
}
