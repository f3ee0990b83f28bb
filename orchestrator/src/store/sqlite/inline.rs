//! The inline execution mode: no threads; every statement runs on the calling task, under a mutex on
//! one connection.
//!
//! Writes go through the writer's [`commit_batch`] with a batch of one, so they have exactly the
//! threaded mode's transaction, savepoint and error behaviour — each write is its own `BEGIN
//! IMMEDIATE` transaction, committed with the configured durability before the call returns — and
//! the writer's [`WalGuard`] bounds the WAL the same way. Reads run on the same connection.
//! Deterministic (nothing runs concurrently with the caller), but SQLite's work, fsyncs included,
//! blocks the async runtime's thread: for simulations and tests.

use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::ownership::OwnerLock;
use super::writer::{TypedWrite, WalGuard, commit_batch};
use crate::store::StoreError;

/// One connection shared by every clone of an inline store.
#[derive(Debug)]
pub(super) struct InlineConnection {
    state: Mutex<State>,
    /// The journal's ownership (files opened read-write): held as long as the connection, until
    /// the store is closed.
    owner: Mutex<Option<Arc<OwnerLock>>>,
}

#[derive(Debug)]
struct State {
    conn: Connection,
    /// The writer's WAL bound, for files opened read-write.
    wal: Option<WalGuard>,
    /// Closed for writing (see `SqliteStore::close`).
    closed: bool,
}

impl InlineConnection {
    pub(super) fn new(
        conn: Connection,
        wal: Option<WalGuard>,
        owner: Option<Arc<OwnerLock>>,
    ) -> Self {
        InlineConnection {
            state: Mutex::new(State {
                conn,
                wal,
                closed: false,
            }),
            owner: Mutex::new(owner),
        }
    }

    /// The connection, outside any transaction.
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot have left a half-applied write behind (a transaction
        // commits or rolls back as a whole), only, at worst, an open transaction: roll it back.
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.conn.is_autocommit() {
            let _ = state.conn.execute_batch("ROLLBACK");
        }
        state
    }

    /// Runs a write in its own transaction (and savepoint) and returns once it is durable.
    pub(super) fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let mut state = self.lock();
        if state.closed {
            return Err(StoreError::Closed);
        }
        let (reply, mut response) = oneshot::channel();
        commit_batch(&state.conn, vec![Box::new(TypedWrite::new(work, reply))]);
        let State { conn, wal, .. } = &mut *state;
        if let Some(wal) = wal {
            wal.after_batch(conn);
        }
        drop(state);
        response.try_recv().map_err(|_| StoreError::Backend {
            operation: "committing a journal write",
            message: "the write reported no outcome".to_string(),
        })?
    }

    /// Refuses further writes and gives up the journal's ownership.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        let owner = self
            .owner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(owner);
    }

    /// Runs a read.
    pub(super) fn read<R>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        work(&self.lock().conn)
    }
}
