//! A store wrapper that keeps the runtime busy while a store call is in flight, so paused virtual
//! time never jumps during I/O, and counts calls, so the test engine can tell when everything is
//! blocked.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;

use crate::store::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, EngineClaim, ForkRun, LeaseStore, NewRun,
    OperatorOutcome, OperatorWrite, Rewind, RewindOutcome, RunPage, RunQuery, RunRecord,
    SignalOutcome, SignalRecord, Store, StoreError, StoredEvent, Wakeup,
};

/// How many store calls started, and how many are in flight.
#[derive(Debug, Default)]
pub(crate) struct StoreActivity {
    started: AtomicU64,
    in_flight: AtomicUsize,
}

impl StoreActivity {
    /// `(calls started so far, calls in flight)`.
    pub(crate) fn snapshot(&self) -> (u64, usize) {
        (
            self.started.load(Ordering::Acquire),
            self.in_flight.load(Ordering::Acquire),
        )
    }
}

/// Wraps a [`Store`]: every call is polled in a loop that yields to the runtime between polls,
/// instead of parking it. A store answers from other threads (SQLite's) or sockets (PostgreSQL);
/// a runtime with paused time that parked while waiting would move its clock to the next timer
/// (tokio's auto-advance) in the middle of the call.
pub(crate) struct BusyStore {
    inner: Arc<dyn Store>,
    activity: Arc<StoreActivity>,
}

impl BusyStore {
    pub(crate) fn new(inner: Arc<dyn Store>, activity: Arc<StoreActivity>) -> Self {
        BusyStore { inner, activity }
    }

    async fn busy<F: Future>(&self, call: F) -> F::Output {
        struct InFlight<'a>(&'a StoreActivity);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.activity.started.fetch_add(1, Ordering::AcqRel);
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let _in_flight = InFlight(&self.activity);
        let mut call = std::pin::pin!(call);
        loop {
            let polled = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
            if let Poll::Ready(output) = polled {
                return output;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[async_trait::async_trait]
impl Store for BusyStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        self.busy(self.inner.create_run(run)).await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.busy(self.inner.commit(commit)).await
    }

    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.busy(self.inner.run(workflow_id)).await
    }

    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.busy(self.inner.history(workflow_id)).await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.busy(self.inner.unfinished_runs()).await
    }

    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        self.busy(self.inner.send_signal(workflow_id, name, payload))
            .await
    }

    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.busy(self.inner.pending_signals(workflow_id)).await
    }

    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        self.busy(self.inner.request_cancel(workflow_id, reason))
            .await
    }

    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
        self.busy(self.inner.operate(write)).await
    }

    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.busy(self.inner.value(workflow_id, key)).await
    }

    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        self.busy(self.inner.archived_runs(workflow_id)).await
    }

    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError> {
        self.busy(self.inner.due_wakeups(before_ms, limit)).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        self.busy(self.inner.list_runs(query)).await
    }

    async fn rewind(&self, rewind: Rewind) -> Result<RewindOutcome, StoreError> {
        self.busy(self.inner.rewind(rewind)).await
    }

    async fn fork_run(&self, fork: ForkRun) -> Result<CreateOutcome, StoreError> {
        self.busy(self.inner.fork_run(fork)).await
    }

    fn claim_engine(&self) -> Result<Option<EngineClaim>, StoreError> {
        self.inner.claim_engine()
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        // Shared stores are not simulated: a test engine owns its journal.
        None
    }
}
