//! The writer thread: owns the read-write connection and group-commits queued writes.
//!
//! Writes from every run queue up while the previous commit is being synced to disk; the writer takes
//! all of them (up to a bound), runs each inside its own savepoint of one `BEGIN IMMEDIATE`
//! transaction, commits once, and only then tells each caller its result. So one fsync covers many
//! journal writes, and a write that fails (a constraint, say) rolls back alone without failing the
//! others. A caller is never told "done" before its write is durable.
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
    /// Runs the write's statements (inside its savepoint); `true` if they succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tells the caller the outcome, once the batch's commit outcome is known.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A write whose caller awaits a value of type `R`.
pub(super) struct TypedWrite<R, F> {
    work: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> TypedWrite<R, F> {
    pub(super) fn new(work: F, reply: oneshot::Sender<Result<R, StoreError>>) -> Self {
        TypedWrite {
            work: Some(work),
            result: None,
            reply,
        }
    }
}

impl<R, F> WriteJob for TypedWrite<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
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

/// Commits `writes` as one transaction, one savepoint each, then tells each caller its outcome. The
/// inline mode (`inline.rs`) calls this with one write at a time.
pub(super) fn commit_batch(conn: &Connection, writes: Vec<Box<dyn WriteJob>>) {
    if writes.is_empty() {
        return;
    }
    const OP: &str = "committing a batch of journal writes";
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE").during(OP) {
        // Nothing ran: every caller gets the error (usually `Busy`, which they retry).
        for write in writes {
            write.finish(Err(error.clone()));
        }
        return;
    }
    let mut ran: Vec<Box<dyn WriteJob>> = Vec::with_capacity(writes.len());
    let mut pending = writes.into_iter();
    while let Some(mut write) = pending.next() {
        if let Err(error) = conn.execute_batch("SAVEPOINT job").during(OP) {
            write.finish(Err(error));
            continue;
        }
        let ok = write.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): everything in this batch
            // is lost, so every caller is told, and none of the rest may run outside a transaction.
            let error = StoreError::Io {
                operation: OP,
                message: "the transaction was rolled back by the database".to_string(),
            };
            // The failing write reports its own error; the others the rollback.
            write.finish(if ok { Err(error.clone()) } else { Ok(()) });
            for lost in ran.into_iter().chain(pending) {
                lost.finish(Err(error.clone()));
            }
            return;
        }
        let closed = if ok {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        match closed.during(OP) {
            Ok(()) => ran.push(write),
            Err(error) => write.finish(Err(error)),
        }
    }
    let committed = conn.execute_batch("COMMIT").during(OP);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
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
