//! The reader thread: a second connection for reads, so they never wait behind a commit's fsync.
//!
//! In WAL mode readers see the last committed state and do not block the writer. Stores without a
//! file (in memory) have no reader: their reads run on the writer thread.

use std::sync::mpsc::Receiver;

use rusqlite::Connection;

/// A read to run on the reader's connection.
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Runs reads until every sender is gone.
pub(super) fn run(conn: Connection, jobs: Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        job(&conn);
    }
}
