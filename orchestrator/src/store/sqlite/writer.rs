//! The writer thread: owns the read-write connection and group-commits queued writes.
//!
//! Writes from every run queue up while the previous commit is being synced to disk; the writer takes
//! all of them (up to a bound), runs each inside its own savepoint of one `BEGIN IMMEDIATE`
//! transaction, commits once, and only then tells each caller its result. So one fsync covers many
//! journal writes, and a write that fails (a constraint, say) rolls back alone without failing the
//! others. A caller is never told "done" before its write is durable.

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
}

/// The most writes one commit covers.
const MAX_BATCH: usize = 1024;

/// Runs the writer loop until every sender is gone.
pub(super) fn run(conn: Connection, jobs: Receiver<WriterJob>, window: Duration) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        gather(&jobs, &mut batch, window);
        let mut writes = Vec::with_capacity(batch.len());
        let mut reads = Vec::new();
        for job in batch {
            match job {
                WriterJob::Write(write) => writes.push(write),
                WriterJob::Read(read) => reads.push(read),
            }
        }
        commit_batch(&conn, writes);
        for read in reads {
            read(&conn);
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

fn commit_batch(conn: &Connection, writes: Vec<Box<dyn WriteJob>>) {
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
