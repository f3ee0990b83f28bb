//! The writer thread: owns the read-write connection and group-commits queued writes.
//!
//! Writes from every run queue up while the previous commit is being synced to disk; the writer takes
//! all of them (up to a bound), runs them in one `BEGIN IMMEDIATE` transaction, commits once, and only
//! then tells each caller its result. So one fsync covers many journal writes. A write that fails (a
//! constraint, say) must not fail the others: the batch is then rolled back, the failed write gets its
//! error, and the others run again, each in its own savepoint (see [`commit_batch`]). A caller is never
//! told "done" before its write is durable.
//!
//! The inline execution mode runs the same [`commit_batch`] on the caller's task, with a batch of one.
//!
//! Between batches, a [`WalGuard`] keeps the WAL from growing without bound while other processes'
//! readers hold snapshots.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::errors::Context;
use crate::store::StoreError;

/// One queued write.
pub(super) trait WriteJob: Send {
    /// Runs the write's statements; `true` if they succeeded. It may run again (after the transaction
    /// it ran in was rolled back because another write of the batch failed): the last run counts.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tells the caller the outcome, once the batch's commit outcome is known.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A write whose caller awaits a value of type `R`.
pub(super) struct TypedWrite<R, F> {
    work: F,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> TypedWrite<R, F> {
    pub(super) fn new(work: F, reply: oneshot::Sender<Result<R, StoreError>>) -> Self {
        TypedWrite {
            work,
            result: None,
            reply,
        }
    }
}

impl<R, F> WriteJob for TypedWrite<R, F>
where
    R: Send,
    F: FnMut(&Connection) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.work)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let outcome = match (committed, self.result) {
            (Err(error), _) => Err(error),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::Backend {
                operation: "committing a batch of journal writes",
                message: "the write did not run".to_string(),
            }),
        };
        let _ = self.reply.send(outcome);
    }
}

/// Work for the writer thread.
pub(super) enum WriterJob {
    /// A write, group-committed with its neighbours.
    Write(Box<dyn WriteJob>),
    /// A read, for stores without a separate reader (in-memory): runs after the batch commits.
    Read(Box<dyn FnOnce(&Connection) + Send>),
    /// Stop after this batch (`SqliteStore::close`): the sender is told once the connection and the
    /// journal's ownership are released.
    Close(oneshot::Sender<()>),
}

/// The most writes one commit covers.
const MAX_BATCH: usize = 1024;

/// Runs the writer loop until every sender is gone, or a [`WriterJob::Close`] came: returns the
/// closers to tell once the connection is closed. Writes queued behind a close fail with
/// [`StoreError::Closed`].
pub(super) fn run(
    conn: Connection,
    jobs: Receiver<WriterJob>,
    window: Duration,
    mut wal: Option<WalGuard>,
) -> Vec<oneshot::Sender<()>> {
    let mut closers = Vec::new();
    while let Ok(first) = next_job(&jobs) {
        let mut batch = vec![first];
        gather(&jobs, &mut batch, window);
        let mut writes = Vec::with_capacity(batch.len());
        let mut reads = Vec::new();
        for job in batch {
            match job {
                WriterJob::Write(write) if closers.is_empty() => writes.push(write),
                WriterJob::Write(write) => write.finish(Err(StoreError::Closed)),
                WriterJob::Read(read) => reads.push(read),
                WriterJob::Close(closer) => closers.push(closer),
            }
        }
        let wrote = !writes.is_empty();
        commit_batch(&conn, writes);
        if let (true, Some(wal)) = (wrote, wal.as_mut()) {
            wal.after_batch(&conn);
        }
        for read in reads {
            read(&conn);
        }
        if !closers.is_empty() {
            break;
        }
    }
    closers
}

/// How long the writer keeps looking for the next write before it goes to sleep. A run's next write
/// typically follows its previous commit within tens of microseconds (the driver wakes, polls the
/// workflow, runs a quick activity, writes again), and waking a sleeping thread costs about as much;
/// so after each batch the writer checks the queue for this long, yielding its core in between, and
/// only then blocks. An idle writer spins once, then sleeps.
const SPIN: Duration = Duration::from_micros(100);

/// The next job: looks for [`SPIN`], then blocks.
fn next_job(jobs: &Receiver<WriterJob>) -> Result<WriterJob, std::sync::mpsc::RecvError> {
    let until = Instant::now() + SPIN;
    loop {
        match jobs.try_recv() {
            Ok(job) => return Ok(job),
            Err(TryRecvError::Disconnected) => return Err(std::sync::mpsc::RecvError),
            Err(TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return jobs.recv(),
        }
    }
}

/// Takes what is already queued, and waits up to `window` for more.
fn gather(jobs: &Receiver<WriterJob>, batch: &mut Vec<WriterJob>, window: Duration) {
    let deadline = Instant::now() + window;
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                if window.is_zero() || now >= deadline {
                    return;
                }
                match jobs.recv_timeout(deadline - now) {
                    Ok(job) => batch.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
                }
            }
        }
    }
}

/// Runs one transaction-control statement (`BEGIN`, `SAVEPOINT`, `RELEASE`, `COMMIT`…) from the
/// connection's statement cache: `execute_batch` would parse it again for every write, which cost
/// about a tenth of a step's instructions in the 1,000-workflow benchmark.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Commits `writes` as one transaction, then tells each caller its outcome. The inline mode
/// (`inline.rs`) calls this with one write at a time.
///
/// Writes almost never fail, so they first run back to back with no savepoint of their own: a
/// savepoint per write (its `SAVEPOINT`/`RELEASE` and the pages it copies into the statement journal)
/// cost about a tenth of a step's instructions in the 1,000-workflow benchmark. If one fails, the
/// transaction is rolled back, that write gets its error (what it saw included the writes before it,
/// as it would have), and the others run again in [`commit_isolated`].
pub(super) fn commit_batch(conn: &Connection, mut writes: Vec<Box<dyn WriteJob>>) {
    if writes.is_empty() {
        return;
    }
    if let Err(error) = control(conn, "BEGIN IMMEDIATE").during(BATCH) {
        // Nothing ran: every caller gets the error (usually `Busy`, which they retry).
        for write in writes {
            write.finish(Err(error.clone()));
        }
        return;
    }
    let mut failed = None;
    for (index, write) in writes.iter_mut().enumerate() {
        let ok = write.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): everything in this
            // batch is lost. The failing write reports its own error; the others the rollback.
            let error = rolled_back();
            for (other, write) in writes.into_iter().enumerate() {
                write.finish(if other == index && !ok {
                    Ok(())
                } else {
                    Err(error.clone())
                });
            }
            return;
        }
        if !ok {
            failed = Some(index);
            break;
        }
    }
    let Some(index) = failed else {
        let committed = control(conn, "COMMIT").during(BATCH);
        if committed.is_err() {
            let _ = control(conn, "ROLLBACK");
        }
        for write in writes {
            write.finish(committed.clone());
        }
        return;
    };
    let failing = writes.remove(index);
    if let Err(error) = control(conn, "ROLLBACK").during(BATCH)
        && !conn.is_autocommit()
    {
        failing.finish(Err(error.clone()));
        for write in writes {
            write.finish(Err(error.clone()));
        }
        return;
    }
    // Its result is the error it returned.
    failing.finish(Ok(()));
    commit_isolated(conn, writes);
}

/// What every write of a batch is told when the batch's operation failed.
const BATCH: &str = "committing a batch of journal writes";

/// The error of writes whose transaction SQLite rolled back on its own.
fn rolled_back() -> StoreError {
    StoreError::Io {
        operation: BATCH,
        message: "the transaction was rolled back by the database".to_string(),
    }
}

/// Commits `writes` as one transaction, one savepoint each, so a write that fails rolls back alone
/// without failing the others; then tells each caller its outcome.
fn commit_isolated(conn: &Connection, writes: Vec<Box<dyn WriteJob>>) {
    if writes.is_empty() {
        return;
    }
    if let Err(error) = control(conn, "BEGIN IMMEDIATE").during(BATCH) {
        for write in writes {
            write.finish(Err(error.clone()));
        }
        return;
    }
    let mut ran: Vec<Box<dyn WriteJob>> = Vec::with_capacity(writes.len());
    let mut pending = writes.into_iter();
    while let Some(mut write) = pending.next() {
        if let Err(error) = control(conn, "SAVEPOINT job").during(BATCH) {
            write.finish(Err(error));
            continue;
        }
        let ok = write.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back: every caller is told, and none of the rest
            // may run outside a transaction. The failing write reports its own error.
            let error = rolled_back();
            write.finish(if ok { Err(error.clone()) } else { Ok(()) });
            for lost in ran.into_iter().chain(pending) {
                lost.finish(Err(error.clone()));
            }
            return;
        }
        let closed = if ok {
            control(conn, "RELEASE job")
        } else {
            control(conn, "ROLLBACK TO job").and_then(|()| control(conn, "RELEASE job"))
        };
        match closed.during(BATCH) {
            Ok(()) => ran.push(write),
            Err(error) => write.finish(Err(error)),
        }
    }
    let committed = control(conn, "COMMIT").during(BATCH);
    if committed.is_err() {
        let _ = control(conn, "ROLLBACK");
    }
    for write in ran {
        write.finish(committed.clone());
    }
}

/// How many batches pass between two looks at the WAL file's size.
pub(super) const WAL_CHECK_EVERY: u32 = 32;
/// The WAL size past which the writer forces a checkpoint that resets it (4 times what SQLite's
/// automatic checkpoints, every 1,000 pages, normally let it reach).
pub(super) const WAL_TRUNCATE_BYTES: u64 = 16 * 1024 * 1024;
/// How long the first forced checkpoint may wait for readers to leave their snapshots; each try that
/// readers defeat in a row waits one step longer, up to [`WAL_CHECKPOINT_MAX_STEPS`] steps.
const WAL_CHECKPOINT_WAIT: Duration = Duration::from_millis(100);
/// The most steps of [`WAL_CHECKPOINT_WAIT`] one forced checkpoint waits.
const WAL_CHECKPOINT_MAX_STEPS: u32 = 5;
/// After a try that readers defeated, the longest pause before the next one.
pub(super) const WAL_RETRY_AFTER: Duration = Duration::from_secs(1);
/// After a try that readers defeated, the growth that brings the next one forward: under a heavy
/// write load, the WAL grows by much more than this in [`WAL_RETRY_AFTER`].
pub(super) const WAL_RETRY_GROWTH: u64 = WAL_TRUNCATE_BYTES / 2;

/// Keeps the WAL bounded when readers (read-only stores in other processes) hold snapshots.
///
/// SQLite's automatic checkpoints are passive: they never wait for readers and never fail a commit,
/// but they cannot reset the WAL while some reader's snapshot still uses it, so under a steady stream
/// of overlapping reads it grows without bound. When it has grown past [`WAL_TRUNCATE_BYTES`], the
/// writer runs a `TRUNCATE` checkpoint between batches, waiting a bounded time for the readers of
/// older snapshots (new readers are not blocked). If readers are still there, the checkpoint reports
/// busy, which is ignored — no caller ever sees it — and tried again after [`WAL_RETRY_AFTER`] or as
/// soon as the WAL has grown by [`WAL_RETRY_GROWTH`], whichever comes first, waiting a little longer
/// each time: the retries follow the write rate, not the clock, so the WAL's size stays bounded
/// however fast runs write (the writer's pauses are bounded too, and only happen while the WAL is
/// oversized).
#[derive(Debug)]
pub(super) struct WalGuard {
    wal: PathBuf,
    busy_timeout: Duration,
    batches: u32,
    retry_after: Duration,
    /// Set while readers defeat the forced checkpoints.
    defeated: Option<Defeated>,
}

/// The forced checkpoints that readers defeated in a row, and when to try again.
#[derive(Debug, Clone, Copy)]
struct Defeated {
    times: u32,
    retry_at: Instant,
    retry_at_len: u64,
}

impl WalGuard {
    /// A guard for the journal at `path`, whose connection normally waits `busy_timeout` for locks.
    pub(super) fn new(path: &Path, busy_timeout: Duration) -> Self {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        WalGuard {
            wal: PathBuf::from(wal),
            busy_timeout,
            batches: 0,
            retry_after: WAL_RETRY_AFTER,
            defeated: None,
        }
    }

    /// The same guard with another longest pause between defeated tries (tests).
    #[cfg(test)]
    pub(super) fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// How many forced checkpoints readers have defeated in a row (tests).
    #[cfg(test)]
    pub(super) fn defeated_times(&self) -> u32 {
        self.defeated.map_or(0, |defeated| defeated.times)
    }

    /// Called after each batch that wrote: now and then, checks the WAL's size and resets it.
    pub(super) fn after_batch(&mut self, conn: &Connection) {
        self.batches = self.batches.wrapping_add(1);
        if !self.batches.is_multiple_of(WAL_CHECK_EVERY) {
            return;
        }
        let len = match std::fs::metadata(&self.wal) {
            Ok(meta) if meta.len() >= WAL_TRUNCATE_BYTES => meta.len(),
            _ => return,
        };
        let times = match self.defeated {
            Some(defeated) if Instant::now() < defeated.retry_at && len < defeated.retry_at_len => {
                return;
            }
            Some(defeated) => defeated.times,
            None => 0,
        };
        let steps = times.saturating_add(1).min(WAL_CHECKPOINT_MAX_STEPS);
        let _ = conn.busy_timeout(WAL_CHECKPOINT_WAIT.saturating_mul(steps));
        // (busy, frames in the WAL, frames checkpointed); `busy` = 1 when readers kept it from finishing.
        let outcome = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        });
        let _ = conn.busy_timeout(self.busy_timeout);
        match outcome {
            Ok(0) => {
                self.defeated = None;
                tracing::debug!(wal = %self.wal.display(), "WAL checkpointed and truncated");
            }
            other => {
                self.defeated = Some(Defeated {
                    times: times.saturating_add(1),
                    retry_at: Instant::now() + self.retry_after,
                    retry_at_len: len.saturating_add(WAL_RETRY_GROWTH),
                });
                tracing::debug!(
                    wal = %self.wal.display(),
                    wal_bytes = len,
                    defeated = times.saturating_add(1),
                    outcome = ?other,
                    "readers kept the WAL from being reset; trying again later"
                );
            }
        }
    }
}
