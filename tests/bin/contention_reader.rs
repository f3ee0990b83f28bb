//! The reader process of the contention test (`tests/contention.rs`): while the test's engine writes
//! to a journal, it reads the journal through `SqliteStore::open_read_only` for a bounded time and
//! prints what it saw.
//!
//! Usage: `contention_reader <db path> <duration ms> <seed> <steps>`.
//!
//! Until the duration is over, each round opens the journal read-only, lists every run page by page,
//! then reads `run`, `history`, `pending_signals` and `value` of a few random runs (plus
//! `unfinished_runs` and `due_wakeups` now and then). Every fifth round it also holds a read
//! transaction open on a raw connection for 50 ms while the writer commits, so the writer's WAL
//! checkpoints meet a reader's snapshot. A run listed as completed must show `<steps>` activity
//! completions in its history (read afterwards, so from a snapshot at least as new).
//!
//! Prints `READY` once the first open succeeded, then one line at the end:
//! `reader reads=R opens=O rounds=N errors=E busy=B inconsistent=I snapshots=S`, with up to five
//! error messages on stderr before it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orchestrator::store::{RunQuery, RunState, SqliteStore, Store, StoreError};
use rusqlite::{Connection, OpenFlags};

/// The `kind` column of an `ActivityCompleted` event.
const KIND_ACTIVITY_COMPLETED: u16 = 1;

#[derive(Default)]
struct Tally {
    reads: u64,
    opens: u64,
    rounds: u64,
    errors: u64,
    busy: u64,
    inconsistent: u64,
    snapshots: u64,
    shown: u32,
}

impl Tally {
    /// Counts one store call's outcome; `Some(value)` if it succeeded.
    fn count<T>(&mut self, what: &str, result: Result<T, StoreError>) -> Option<T> {
        self.reads += 1;
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.failed(
                    what,
                    &error.to_string(),
                    matches!(error, StoreError::Busy { .. }),
                );
                None
            }
        }
    }

    fn failed(&mut self, what: &str, message: &str, busy: bool) {
        self.errors += 1;
        let lower = message.to_lowercase();
        if busy || lower.contains("locked") || lower.contains("busy") {
            self.busy += 1;
        }
        if self.shown < 5 {
            self.shown += 1;
            eprintln!("contention_reader: {what} failed: {message}");
        }
    }
}

/// Holds a read transaction (a WAL snapshot) open for `hold` on a raw read-only connection.
fn hold_snapshot(path: &Path, hold: Duration, tally: &mut Tally) {
    let result = (|| -> rusqlite::Result<()> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch("BEGIN")?;
        let _: i64 = conn.query_row("SELECT count(*) FROM events", [], |row| row.get(0))?;
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    match result {
        Ok(()) => tally.snapshots += 1,
        Err(error) => {
            let busy = matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            );
            tally.failed("holding a snapshot", &error.to_string(), busy);
        }
    }
}

async fn round(path: &Path, rng: &mut fastrand::Rng, steps: usize, tally: &mut Tally) {
    let store = match SqliteStore::open_read_only(path).await {
        Ok(store) => store,
        Err(error) => {
            let busy = matches!(error, StoreError::Busy { .. });
            tally.failed("opening read-only", &error.to_string(), busy);
            return;
        }
    };
    tally.opens += 1;
    let mut ids = Vec::new();
    let mut query = RunQuery::new().limit(50);
    for _ in 0..40 {
        let Some(page) = tally.count("list_runs", store.list_runs(&query).await) else {
            break;
        };
        ids.extend(page.runs.into_iter().map(|run| run.workflow_id));
        match page.next {
            Some(cursor) => query = query.after(cursor),
            None => break,
        }
    }
    for _ in 0..5 {
        if ids.is_empty() {
            break;
        }
        let id = &ids[rng.usize(..ids.len())];
        let run = tally.count("run", store.run(id).await).flatten();
        let history = tally.count("history", store.history(id).await);
        if let (Some(run), Some(history)) = (run, history)
            && run.state == RunState::Completed
        {
            let completions = history
                .iter()
                .filter(|event| event.kind == KIND_ACTIVITY_COMPLETED)
                .count();
            if completions != steps {
                tally.inconsistent += 1;
                eprintln!(
                    "contention_reader: completed run `{id}` shows {completions} of {steps} steps"
                );
            }
        }
        tally.count("pending_signals", store.pending_signals(id).await);
        tally.count("value", store.value(id, "progress").await);
    }
    if rng.u8(..4) == 0 {
        tally.count("unfinished_runs", store.unfinished_runs().await);
        tally.count("due_wakeups", store.due_wakeups(i64::MAX, 100).await);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(
        args.len(),
        5,
        "usage: contention_reader <db path> <duration ms> <seed> <steps>"
    );
    let path = PathBuf::from(&args[1]);
    let duration = Duration::from_millis(args[2].parse().expect("a duration in ms"));
    let mut rng = fastrand::Rng::with_seed(args[3].parse().expect("a seed"));
    let steps: usize = args[4].parse().expect("a step count");

    let mut tally = Tally::default();
    let started = Instant::now();
    let mut ready = false;
    while started.elapsed() < duration {
        round(&path, &mut rng, steps, &mut tally).await;
        tally.rounds += 1;
        if !ready && tally.opens > 0 {
            ready = true;
            println!("READY");
        }
        if tally.rounds.is_multiple_of(5) {
            hold_snapshot(&path, Duration::from_millis(50), &mut tally);
        }
    }
    if !ready {
        println!("READY");
    }
    println!(
        "reader reads={} opens={} rounds={} errors={} busy={} inconsistent={} snapshots={}",
        tally.reads,
        tally.opens,
        tally.rounds,
        tally.errors,
        tally.busy,
        tally.inconsistent,
        tally.snapshots
    );
}
