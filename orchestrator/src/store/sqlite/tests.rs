//! The SQLite store's own modes: inline execution and read-only opening. (The store's semantics are
//! checked by the conformance suite, `tests/store_conformance.rs`, in every mode.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;
use crate::store::{NewEvent, RunState, StatusChange};

fn new_run(id: &str) -> NewRun {
    NewRun {
        workflow_id: id.to_string(),
        workflow_name: "wf".to_string(),
        input: vec![1, 2, 3],
        parent_id: None,
        deadline_ms: None,
        execution_timeout_ms: None,
        owner: None,
        events: Vec::new(),
    }
}

fn completion(id: &str, step: u32) -> Commit {
    Commit::events(
        id,
        vec![NewEvent {
            step,
            kind: 1,
            completion: true,
            payload: vec![step as u8],
            wake_at_ms: None,
        }],
    )
}

fn inline_options(path: Option<PathBuf>) -> SqliteOptions {
    SqliteOptions {
        path,
        execution: SqliteExecution::Inline,
        ..SqliteOptions::default()
    }
}

/// Whether another open file description can lock `<path>.owner` right now.
fn owner_lock_is_free(path: &Path) -> bool {
    let mut name = path.as_os_str().to_owned();
    name.push(".owner");
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .open(PathBuf::from(name))
    {
        Ok(file) => file,
        Err(_) => return true,
    };
    match file.try_lock() {
        Ok(()) => {
            File::unlock(&file).unwrap();
            true
        }
        Err(TryLockError::WouldBlock) => false,
        Err(TryLockError::Error(error)) => panic!("{error}"),
    }
}

async fn exercise(store: &SqliteStore) {
    assert!(matches!(
        store.create_run(new_run("a")).await.unwrap(),
        CreateOutcome::Created
    ));
    assert!(matches!(
        store.create_run(new_run("a")).await.unwrap(),
        CreateOutcome::Existing(_)
    ));
    store.commit(completion("a", 1)).await.unwrap();
    // A second completion of a step is a conflict that writes nothing, and the store goes on.
    let conflict = store.commit(completion("a", 1)).await.unwrap_err();
    assert!(
        matches!(conflict, StoreError::Conflict { .. }),
        "{conflict:?}"
    );
    store.commit(completion("a", 2)).await.unwrap();
    assert_eq!(store.history("a").await.unwrap().len(), 2);
    store
        .commit(Commit {
            status: Some(StatusChange::Complete { output: vec![9] }),
            ..Commit::events("a", Vec::new())
        })
        .await
        .unwrap();
    let run = store.run("a").await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Completed);
    assert_eq!(run.output, Some(vec![9]));
}

#[tokio::test(flavor = "current_thread")]
async fn inline_on_a_file_holds_the_ownership_lock_and_spawns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inline.db");
    let store = SqliteStore::open_with(inline_options(Some(path.clone())))
        .await
        .unwrap();
    assert!(matches!(store.execution, Execution::Inline(_)));
    assert!(!owner_lock_is_free(&path));
    exercise(&store).await;
    let clone = store.clone();
    drop(store);
    assert!(!owner_lock_is_free(&path), "a clone still uses the journal");
    drop(clone);
    assert!(owner_lock_is_free(&path));

    // What it wrote is a normal journal (WAL), readable by the threaded store.
    let threaded = SqliteStore::open(&path).await.unwrap();
    assert_eq!(threaded.history("a").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn inline_in_memory_works() {
    let store = SqliteStore::open_with(inline_options(None)).await.unwrap();
    exercise(&store).await;
}

#[tokio::test(flavor = "current_thread")]
async fn inline_recovers_a_connection_left_inside_a_transaction() {
    let store = SqliteStore::open_with(inline_options(None)).await.unwrap();
    let Execution::Inline(inline) = &store.execution else {
        panic!("not inline")
    };
    inline
        .read(|conn| conn.execute_batch("BEGIN").during("test"))
        .unwrap();
    store.create_run(new_run("after")).await.unwrap();
    assert!(store.run("after").await.unwrap().is_some());
}

async fn journal_with_one_run(path: &Path) -> SqliteStore {
    let owner = SqliteStore::open(path).await.unwrap();
    owner.create_run(new_run("r")).await.unwrap();
    owner.commit(completion("r", 1)).await.unwrap();
    owner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_next_to_the_owner_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let owner = journal_with_one_run(&path).await;
    for execution in [SqliteExecution::Threads, SqliteExecution::Inline] {
        let reader = SqliteStore::open_with(SqliteOptions {
            path: Some(path.clone()),
            read_only: true,
            execution,
            ..SqliteOptions::default()
        })
        .await
        .unwrap();
        assert!(reader.is_read_only());
        let before = owner.history("r").await.unwrap().len();
        assert_eq!(reader.history("r").await.unwrap().len(), before);
        assert_eq!(
            reader.list_runs(&RunQuery::new()).await.unwrap().runs.len(),
            1
        );
        assert_eq!(reader.unfinished_runs().await.unwrap().len(), 1);
        assert!(reader.pending_signals("r").await.unwrap().is_empty());
        assert!(reader.value("r", "k").await.unwrap().is_none());
        assert!(reader.archived_runs("r").await.unwrap().is_empty());
        assert!(reader.due_wakeups(i64::MAX, 10).await.unwrap().is_empty());

        // Each read sees what the owner committed since.
        let step = if execution == SqliteExecution::Threads {
            2
        } else {
            3
        };
        owner.commit(completion("r", step)).await.unwrap();
        assert_eq!(reader.history("r").await.unwrap().len(), before + 1);

        let refused = [
            (
                "creating a run",
                reader.create_run(new_run("x")).await.err(),
            ),
            (
                "committing journal events",
                reader.commit(completion("r", 9)).await.err(),
            ),
            (
                "sending a signal",
                reader.send_signal("r", "s", vec![]).await.err(),
            ),
            (
                "requesting a cancellation",
                reader.request_cancel("r", "no").await.err(),
            ),
        ];
        for (what, error) in refused {
            let error = error.unwrap();
            assert_eq!(error, StoreError::ReadOnly { operation: what });
            assert!(!error.is_retryable());
        }
    }
    assert!(owner.run("x").await.unwrap().is_none());
    assert_eq!(owner.history("r").await.unwrap().len(), 3);
}

#[tokio::test(flavor = "current_thread")]
async fn read_only_takes_no_ownership_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    drop(journal_with_one_run(&path).await);
    // The writer thread lets go of the lock as it exits, shortly after the last store is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !owner_lock_is_free(&path) {
        assert!(
            std::time::Instant::now() < deadline,
            "the owner never let go"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let reader = SqliteStore::open_read_only(&path).await.unwrap();
    assert!(owner_lock_is_free(&path));
    // The owner can start while a reader has the file open.
    let owner = SqliteStore::open(&path).await.unwrap();
    owner.commit(completion("r", 2)).await.unwrap();
    assert_eq!(reader.history("r").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn read_only_refuses_what_is_not_a_current_journal_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.db");
    let error = SqliteStore::open_read_only(&missing).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Io { message, .. } if message.contains("missing.db")),
        "{error:?}"
    );
    assert!(!missing.exists(), "a read-only open created the file");

    let text = dir.path().join("text.db");
    std::fs::write(&text, "not a database, just text\n".repeat(200)).unwrap();
    let error = SqliteStore::open_read_only(&text).await.unwrap_err();
    assert!(
        matches!(error, StoreError::NotADatabase { .. }),
        "{error:?}"
    );

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY);")
        .unwrap();
    let error = SqliteStore::open_read_only(&foreign).await.unwrap_err();
    assert!(
        matches!(error, StoreError::ForeignDatabase { tables: 1, .. }),
        "{error:?}"
    );

    let empty = dir.path().join("empty.db");
    File::create(&empty).unwrap();
    let error = SqliteStore::open_read_only(&empty).await.unwrap_err();
    assert_eq!(
        error,
        StoreError::SchemaTooOld {
            found: 0,
            supported: schema::SCHEMA_VERSION
        }
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "it was migrated"
    );

    let older = dir.path().join("older.db");
    drop(SqliteStore::open(&older).await.unwrap());
    rusqlite::Connection::open(&older)
        .unwrap()
        .execute_batch("PRAGMA user_version = 1;")
        .unwrap();
    let error = SqliteStore::open_read_only(&older).await.unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooOld { found: 1, .. }),
        "{error:?}"
    );

    let newer = dir.path().join("newer.db");
    drop(SqliteStore::open(&newer).await.unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch("PRAGMA user_version = 999;")
        .unwrap();
    let error = SqliteStore::open_read_only(&newer).await.unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found: 999, .. }),
        "{error:?}"
    );

    let error = SqliteStore::open_with(SqliteOptions {
        read_only: true,
        ..SqliteOptions::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn list_runs_prefixes_with_nul_bytes_and_wildcards_match_exactly() {
    let store = SqliteStore::in_memory().await.unwrap();
    let ids = [
        "nul", "nul\0", "nul\0a", "nul\0b", "nulx", "%_", "%_x", "a%",
    ];
    for id in ids {
        store.create_run(new_run(id)).await.unwrap();
    }
    let listed = |prefix: &'static str| {
        let store = store.clone();
        async move {
            store
                .list_runs(&RunQuery::new().id_prefix(prefix))
                .await
                .unwrap()
                .runs
                .into_iter()
                .map(|run| run.workflow_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("nul\0").await, ["nul\0", "nul\0a", "nul\0b"]);
    assert_eq!(listed("nul\0a").await, ["nul\0a"]);
    assert_eq!(listed("nul").await.len(), 5);
    assert_eq!(listed("%_").await, ["%_", "%_x"]);
    assert_eq!(listed("%").await, ["%_", "%_x"]);
    assert_eq!(listed("\0").await, Vec::<String>::new());
    assert_eq!(listed("").await.len(), ids.len());
}

fn wal_len(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).map_or(0, |meta| meta.len())
}

/// A 64 KiB event that completes nothing.
fn bulky(id: &str, step: u32) -> Commit {
    Commit::events(
        id,
        vec![NewEvent {
            step,
            kind: 8,
            completion: false,
            payload: vec![0x5A; 64 * 1024],
            wake_at_ms: None,
        }],
    )
}

/// Readers that keep overlapping defeat every forced checkpoint; the guard must then try again as the
/// WAL grows, not only once a second, or a fast writer outruns it (the contention test saw 78 MiB).
#[test]
fn defeated_checkpoints_are_retried_as_the_wal_grows_and_wait_longer_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE blobs (body BLOB NOT NULL); \
         INSERT INTO blobs VALUES (x'00');",
    )
    .unwrap();
    let reader =
        rusqlite::Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM blobs", [], |row| row.get(0))
        .unwrap();

    // No pause by the clock: only growth may bring a retry forward.
    let mut guard = writer::WalGuard::new(&path, Duration::from_secs(5))
        .with_retry_after(Duration::from_secs(3600));
    let body = vec![0x5Au8; 64 * 1024];
    let write_batch = |guard: &mut writer::WalGuard| {
        conn.execute("INSERT INTO blobs VALUES (?1)", [&body])
            .unwrap();
        let started = Instant::now();
        guard.after_batch(&conn);
        started.elapsed()
    };
    while guard.defeated_times() == 0 {
        write_batch(&mut guard);
        assert!(
            wal_len(&path) < 2 * writer::WAL_TRUNCATE_BYTES,
            "no forced checkpoint"
        );
    }
    let defeated_at = wal_len(&path);
    assert!(defeated_at >= writer::WAL_TRUNCATE_BYTES, "{defeated_at}");

    // The next try comes once the WAL has grown by the retry growth, and waits two steps.
    let mut longest = Duration::ZERO;
    while guard.defeated_times() == 1 {
        longest = longest.max(write_batch(&mut guard));
        assert!(
            wal_len(&path) < defeated_at + 2 * writer::WAL_RETRY_GROWTH,
            "no retry as the WAL grew"
        );
    }
    assert!(wal_len(&path) >= defeated_at + writer::WAL_RETRY_GROWTH);
    assert!(longest >= Duration::from_millis(190), "{longest:?}");
    assert_eq!(guard.defeated_times(), 2);

    // Once the reader has left, SQLite's own checkpoints reuse the WAL from its start: it stops
    // growing (and the next timed retry would truncate it).
    reader.execute_batch("COMMIT").unwrap();
    let left_at = wal_len(&path);
    for _ in 0..10 * writer::WAL_CHECK_EVERY {
        write_batch(&mut guard);
    }
    assert!(wal_len(&path) <= left_at + writer::WAL_RETRY_GROWTH / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_resets_a_wal_that_readers_kept_growing_and_never_fails_a_write_for_it() {
    for execution in [SqliteExecution::Threads, SqliteExecution::Inline] {
        wal_bounded_under_a_reader(execution).await;
    }
}

async fn wal_bounded_under_a_reader(execution: SqliteExecution) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let store = SqliteStore::open_with(SqliteOptions {
        path: Some(path.clone()),
        durability: Durability::Normal,
        execution,
        ..SqliteOptions::default()
    })
    .await
    .unwrap();
    store.create_run(new_run("w")).await.unwrap();

    // A reader (another process's, say) holds one snapshot while the writer writes 25 MiB: no
    // checkpoint can reset the WAL under it, and the forced one gives up quietly.
    let reader =
        rusqlite::Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    for step in 1..=400 {
        store.commit(bulky("w", step)).await.unwrap();
    }
    let grown = wal_len(&path);
    assert!(
        grown >= writer::WAL_TRUNCATE_BYTES,
        "{execution:?}: {grown}"
    );

    // Once the reader has moved on, the writer resets the WAL at its next look (after its retry pause).
    reader.execute_batch("COMMIT").unwrap();
    tokio::time::sleep(writer::WAL_RETRY_AFTER + Duration::from_millis(100)).await;
    for step in 401..=400 + 2 * writer::WAL_CHECK_EVERY {
        store.commit(bulky("w", step)).await.unwrap();
    }
    let reset = wal_len(&path);
    assert!(reset < 8 * 1024 * 1024, "{execution:?}: {reset}");
    assert_eq!(store.history("w").await.unwrap().len(), 464);
}

/// A batch runs without savepoints; when one write fails after it changed something, the batch is
/// rolled back, that write gets its error, and the others run again, each isolated: their effects
/// are kept exactly once, the failed write's not at all.
#[test]
fn a_write_failing_midway_through_a_batch_rolls_back_alone() {
    use std::sync::atomic::{AtomicU32, Ordering};

    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE rows (name TEXT NOT NULL UNIQUE)")
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let insert = |names: &'static [&'static str]| {
        let runs = runs.clone();
        move |conn: &Connection| -> Result<usize, StoreError> {
            runs.fetch_add(1, Ordering::Relaxed);
            for name in names {
                conn.execute("INSERT INTO rows (name) VALUES (?1)", [name])
                    .during("inserting a test row")?;
            }
            Ok(names.len())
        }
    };
    let mut replies = Vec::new();
    let mut writes: Vec<Box<dyn writer::WriteJob>> = Vec::new();
    // The second write inserts `b`, then fails on a duplicate of `a` (written by the first).
    for names in [&["a"][..], &["b", "a"], &["c"]] {
        let (reply, response) = oneshot::channel();
        writes.push(Box::new(TypedWrite::new(insert(names), reply)));
        replies.push(response);
    }
    writer::commit_batch(&conn, writes);

    let outcomes: Vec<_> = replies
        .into_iter()
        .map(|mut reply| reply.try_recv().unwrap())
        .collect();
    assert_eq!(outcomes[0].as_ref().ok(), Some(&1));
    assert!(
        matches!(outcomes[1], Err(StoreError::Conflict { .. })),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2].as_ref().ok(), Some(&1));
    let mut names: Vec<String> = conn
        .prepare("SELECT name FROM rows ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    assert!(conn.is_autocommit(), "the transaction was left open");
    // The first write ran twice (optimistic pass, isolated pass), the failing one once, the last once.
    assert_eq!(runs.load(Ordering::Relaxed), 4);
}
