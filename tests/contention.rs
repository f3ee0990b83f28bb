//! Contention (issue 6, item 4): several tasks write to an SQLite journal through an engine while two
//! other processes list and read it through `SqliteStore::open_read_only`, for a bounded time. No
//! `SQLITE_BUSY` / "database is locked" may reach anyone: not the writers' API calls, not the
//! engine's own store calls (which it would retry, hiding them), not the readers' calls.
//!
//! The readers (`tests/bin/contention_reader.rs`) reopen the journal every round, page through
//! `list_runs`, read `run`, `history`, `pending_signals` and `value` of random runs, and now and then
//! hold a read transaction open for 50 ms, so the writer's WAL checkpoints run into readers'
//! snapshots. They also check that a run listed as completed shows all its steps.
//!
//! Also checked: the WAL stays bounded although readers' snapshots keep SQLite's passive
//! auto-checkpoints from resetting it (the writer forces a checkpoint past 16 MiB, between batches,
//! and ignores it when readers are in the way).
//!
//! Prints `contention writers=W workflows=N writes=X reader_reads=R ... busy=0`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchestrator::prelude::*;
use orchestrator::store::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, NewRun, OperatorOutcome, OperatorWrite,
    RunPage, RunQuery, RunRecord, SignalOutcome, SignalRecord, SqliteStore, Store, StoreError,
    StoredEvent, Wakeup,
};
use orchestrator::{Engine, Error};
use orchestrator_tests::{ChildWorker, TestDb, stop};

/// Concurrent writer tasks, each starting a workflow and awaiting it, over and over.
const WRITERS: usize = 4;
/// Activity calls per workflow (one journal write each, plus the run's creation).
const STEPS: u32 = 12;
/// How long the readers read (the writers write until both readers are done).
const READ_FOR: Duration = Duration::from_secs(4);
/// Reader processes.
const READERS: usize = 2;

#[activity]
async fn tiny(i: u32) -> Result<u32, ActivityError> {
    Ok(i + 1)
}

#[workflow]
async fn many_steps(ctx: WorkflowContext, steps: u32) -> Result<u32, WorkflowError> {
    let mut total = 0;
    for i in 0..steps {
        total += ctx.call(tiny, i).await?;
    }
    Ok(total)
}

/// The SQLite store, counting every call that failed because the database was busy or locked —
/// including those the engine retries and so would hide from the test.
struct BusyCounting {
    inner: SqliteStore,
    calls: AtomicU64,
    writes: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
}

impl BusyCounting {
    fn see<T>(&self, write: bool, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if write {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(error) = &result {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if is_busy(&error.to_string()) || matches!(error, StoreError::Busy { .. }) {
                self.busy.fetch_add(1, Ordering::Relaxed);
            }
            eprintln!("engine store call failed: {error}");
        }
        result
    }
}

fn is_busy(message: &str) -> bool {
    let message = message.to_lowercase();
    message.contains("locked") || message.contains("busy")
}

#[async_trait::async_trait]
impl Store for BusyCounting {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        self.see(true, self.inner.create_run(run).await)
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.see(true, self.inner.commit(commit).await)
    }
    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.see(false, self.inner.run(workflow_id).await)
    }
    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.see(false, self.inner.history(workflow_id).await)
    }
    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.see(false, self.inner.unfinished_runs().await)
    }
    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        self.see(
            true,
            self.inner.send_signal(workflow_id, name, payload).await,
        )
    }
    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.see(false, self.inner.pending_signals(workflow_id).await)
    }
    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        self.see(true, self.inner.request_cancel(workflow_id, reason).await)
    }
    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
        self.see(true, self.inner.operate(write).await)
    }
    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.see(false, self.inner.value(workflow_id, key).await)
    }
    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        self.see(false, self.inner.archived_runs(workflow_id).await)
    }
    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError> {
        self.see(false, self.inner.due_wakeups(before_ms, limit).await)
    }
    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        self.see(false, self.inner.list_runs(query).await)
    }
}

/// What one reader process printed at the end.
#[derive(Debug, Default)]
struct ReaderSummary {
    reads: u64,
    opens: u64,
    errors: u64,
    busy: u64,
    inconsistent: u64,
    snapshots: u64,
}

fn parse_summary(line: &str) -> ReaderSummary {
    let mut summary = ReaderSummary::default();
    for field in line.split_whitespace().skip(1) {
        let (key, value) = field.split_once('=').expect("key=value");
        let value: u64 = value.parse().expect("a count");
        match key {
            "reads" => summary.reads = value,
            "opens" => summary.opens = value,
            "errors" => summary.errors = value,
            "busy" => summary.busy = value,
            "inconsistent" => summary.inconsistent = value,
            "snapshots" => summary.snapshots = value,
            _ => {}
        }
    }
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_and_read_only_processes_never_see_busy() {
    let db = TestDb::new();
    let store = Arc::new(BusyCounting {
        inner: SqliteStore::open(db.path()).await.unwrap(),
        calls: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        busy: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let engine = Engine::builder()
        .store(store.clone())
        .shutdown_grace(Duration::from_secs(2))
        .register(many_steps)
        .register(tiny)
        .start()
        .await
        .unwrap();
    // One workflow before the readers start, so they have something to read from their first round.
    let first = engine.start(many_steps, "warmup", STEPS).await.unwrap();
    assert_eq!(first.result().await.unwrap(), (1..=STEPS).sum::<u32>());

    let stopping = Arc::new(AtomicBool::new(false));
    let workflows = Arc::new(AtomicU64::new(1));
    let user_errors = Arc::new(AtomicU64::new(0));
    let user_busy = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let engine = engine.clone();
        let stopping = stopping.clone();
        let workflows = workflows.clone();
        let user_errors = user_errors.clone();
        let user_busy = user_busy.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let id = format!("w{w}-{n:05}");
                n += 1;
                let outcome = match engine.start(many_steps, id.clone(), STEPS).await {
                    Ok(handle) => {
                        match tokio::time::timeout(Duration::from_secs(30), handle.result()).await {
                            Ok(result) => result,
                            Err(_) => panic!("`{id}` did not finish within 30 s"),
                        }
                    }
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(total) => {
                        assert_eq!(total, (1..=STEPS).sum::<u32>(), "{id}");
                        workflows.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        user_errors.fetch_add(1, Ordering::Relaxed);
                        if matches!(error, Error::Store(StoreError::Busy { .. }))
                            || is_busy(&error.to_string())
                        {
                            user_busy.fetch_add(1, Ordering::Relaxed);
                        }
                        eprintln!("writer {w}: `{id}` failed: {error}");
                    }
                }
            }
        }));
    }

    // The WAL's largest size while readers hold snapshots (the writer must keep it bounded).
    let mut wal = db.path().as_os_str().to_owned();
    wal.push("-wal");
    let wal_max = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (wal, wal_max, stopping) = (wal.clone(), wal_max.clone(), stopping.clone());
        tokio::spawn(async move {
            while !stopping.load(Ordering::Relaxed) {
                if let Ok(meta) = std::fs::metadata(&wal) {
                    wal_max.fetch_max(meta.len(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let path = db.path().to_str().unwrap().to_string();
    let read_ms = READ_FOR.as_millis().to_string();
    let started = Instant::now();
    let readers: Vec<ChildWorker> = (0..READERS)
        .map(|r| {
            let seed = (0xC0FFEE + r).to_string();
            ChildWorker::spawn(
                env!("CARGO_BIN_EXE_contention_reader"),
                [
                    path.as_str(),
                    read_ms.as_str(),
                    seed.as_str(),
                    &STEPS.to_string(),
                ],
            )
        })
        .collect();
    let mut summaries = Vec::new();
    for mut reader in readers {
        let line = reader
            .wait_for("reader ", READ_FOR + Duration::from_secs(60))
            .expect("the reader printed its summary");
        println!("{line}");
        assert!(reader.wait_exit(Duration::from_secs(10)).success());
        summaries.push(parse_summary(&line));
    }
    let elapsed = started.elapsed();
    stopping.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let wal_max_kib = wal_max.load(Ordering::Relaxed) / 1024;
    for writer in writers {
        writer.await.unwrap();
    }
    stop(engine).await;

    let workflows = workflows.load(Ordering::Relaxed);
    let writes = store.writes.load(Ordering::Relaxed);
    let reader_reads: u64 = summaries.iter().map(|s| s.reads).sum();
    let busy = store.busy.load(Ordering::Relaxed)
        + user_busy.load(Ordering::Relaxed)
        + summaries.iter().map(|s| s.busy).sum::<u64>();
    println!(
        "contention writers={WRITERS} workflows={workflows} writes={writes} engine_store_calls={} \
         reader_reads={reader_reads} reader_opens={} snapshots_held={} wal_max_kib={wal_max_kib} elapsed_ms={} \
         busy={busy}",
        store.calls.load(Ordering::Relaxed),
        summaries.iter().map(|s| s.opens).sum::<u64>(),
        summaries.iter().map(|s| s.snapshots).sum::<u64>(),
        elapsed.as_millis()
    );

    assert_eq!(busy, 0, "SQLITE_BUSY / locked reached someone");
    assert_eq!(
        store.errors.load(Ordering::Relaxed),
        0,
        "the engine's store calls failed"
    );
    assert_eq!(
        user_errors.load(Ordering::Relaxed),
        0,
        "writers' calls failed"
    );
    for (r, summary) in summaries.iter().enumerate() {
        assert_eq!(summary.errors, 0, "reader {r}: {summary:?}");
        assert_eq!(summary.inconsistent, 0, "reader {r}: {summary:?}");
        assert!(
            summary.reads >= 100,
            "reader {r} read too little: {summary:?}"
        );
        assert!(
            summary.opens >= 5,
            "reader {r} opened too rarely: {summary:?}"
        );
        assert!(
            summary.snapshots >= 1,
            "reader {r} held no snapshot: {summary:?}"
        );
    }
    // Passive auto-checkpoints cannot reset the WAL under overlapping readers; the writer's forced
    // checkpoint (at 16 MiB) must have, without anyone seeing `Busy` (asserted above).
    assert!(
        wal_max_kib < 40 * 1024,
        "the WAL grew to {wal_max_kib} KiB while readers read"
    );
    assert!(
        workflows >= 20,
        "only {workflows} workflows completed during the test"
    );
    assert!(
        writes >= workflows * u64::from(STEPS),
        "{writes} writes for {workflows} workflows"
    );
}
