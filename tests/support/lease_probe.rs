//! [`ProbedStore`]: a transparent wrapper around a store with leases (PostgreSQL) that counts the
//! journal writes the store rejected as stale, and can delay lease renewals to open race windows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::store::{
    ArchivedRun, CancelOutcome, Claim, Commit, CreateOutcome, LeaseStore, NewRun, OperatorOutcome,
    OperatorWrite, RunPage, RunQuery, RunRecord, SignalOutcome, SignalRecord, Store, StoreError,
    StoredEvent, Wakeup,
};

/// Wraps a store that has leases ([`Store::leases`] is `Some`), passing every call through.
///
/// - [`ProbedStore::stale_rejections`]: how many [`Store::commit`] calls failed with
///   [`StoreError::StaleLease`] — writes the store itself refused because another node owns the run
///   (as opposed to a node noticing at renewal that it lost a run, which rejects nothing).
/// - [`ProbedStore::delay_renewals`]: each `renew_leases` answer is held back this long after the
///   store produced it (as on a slow network or a loaded database).
/// - [`ProbedStore::stall_next_renewal`]: the next `renew_leases` call waits this long before it reaches
///   the store (as when the node's process is paused or starved between two renewals).
/// - [`ProbedStore::delay_next_commit`]: the next `commit` call waits this long before it reaches the
///   store (a driver busy with a slow write while the cluster loop acts).
/// - [`ProbedStore::outage`]: for a while, commits, renewals and claims fail with a retryable
///   [`StoreError::Io`] (the database restarting or failing over).
/// - [`ProbedStore::longest_renewal_gap`]: the longest time between two successive lease renewals
///   reaching the store — past the lease, the node's leases expired through no fault of the store.
pub struct ProbedStore {
    inner: Arc<dyn Store>,
    stale_rejections: AtomicU64,
    renew_delay_ms: AtomicU64,
    renew_stall: Mutex<Option<Duration>>,
    commit_delay: Mutex<Option<Duration>>,
    outage_until: Mutex<Option<Instant>>,
    last_renewal: Mutex<Option<Instant>>,
    longest_gap_ms: AtomicU64,
}

impl std::fmt::Debug for ProbedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbedStore")
            .field("stale_rejections", &self.stale_rejections())
            .finish_non_exhaustive()
    }
}

impl ProbedStore {
    /// Wraps `inner`, which must offer leases.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        assert!(
            inner.leases().is_some(),
            "ProbedStore wraps a store with leases"
        );
        ProbedStore {
            inner,
            stale_rejections: AtomicU64::new(0),
            renew_delay_ms: AtomicU64::new(0),
            renew_stall: Mutex::new(None),
            commit_delay: Mutex::new(None),
            outage_until: Mutex::new(None),
            last_renewal: Mutex::new(None),
            longest_gap_ms: AtomicU64::new(0),
        }
    }

    /// Makes the next `renew_leases` call wait `stall` before it reaches the store (once).
    pub fn stall_next_renewal(&self, stall: Duration) {
        *self
            .renew_stall
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(stall);
    }

    /// Makes the next `commit` call wait `delay` before it reaches the store (once).
    pub fn delay_next_commit(&self, delay: Duration) {
        *self
            .commit_delay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(delay);
    }

    /// Makes commits, renewals and claims fail with [`StoreError::Io`] for the next `length`.
    pub fn outage(&self, length: Duration) {
        *self
            .outage_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now() + length);
    }

    /// `Err(Io)` during an outage.
    fn check_outage(&self, operation: &'static str) -> Result<(), StoreError> {
        let until = *self
            .outage_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match until {
            Some(until) if Instant::now() < until => Err(StoreError::Io {
                operation,
                message: "injected outage: the database is unreachable".to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The longest time between two successive `renew_leases` calls answered by the store so far.
    pub fn longest_renewal_gap(&self) -> Duration {
        Duration::from_millis(self.longest_gap_ms.load(Ordering::Acquire))
    }

    /// Journal writes the store rejected with [`StoreError::StaleLease`] so far.
    pub fn stale_rejections(&self) -> u64 {
        self.stale_rejections.load(Ordering::Acquire)
    }

    /// Holds every later `renew_leases` answer back for `delay` (zero: none).
    pub fn delay_renewals(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.renew_delay_ms.store(ms, Ordering::Release);
    }

    fn leases_inner(&self) -> &dyn LeaseStore {
        self.inner.leases().expect("checked in ProbedStore::new")
    }
}

#[async_trait::async_trait]
impl Store for ProbedStore {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        self.inner.create_run(run).await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let delay = self
            .commit_delay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        self.check_outage("committing journal events")?;
        let result = self.inner.commit(commit).await;
        if matches!(result, Err(StoreError::StaleLease { .. })) {
            self.stale_rejections.fetch_add(1, Ordering::AcqRel);
        }
        result
    }

    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.inner.run(workflow_id).await
    }

    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.history(workflow_id).await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.unfinished_runs().await
    }

    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        self.inner.send_signal(workflow_id, name, payload).await
    }

    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.inner.pending_signals(workflow_id).await
    }

    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        self.inner.request_cancel(workflow_id, reason).await
    }

    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
        self.inner.operate(write).await
    }

    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.value(workflow_id, key).await
    }

    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        self.inner.archived_runs(workflow_id).await
    }

    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError> {
        self.inner.due_wakeups(before_ms, limit).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        self.inner.list_runs(query).await
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl LeaseStore for ProbedStore {
    async fn claim_runs(
        &self,
        node: &str,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        self.check_outage("claiming runs")?;
        self.leases_inner().claim_runs(node, lease_ms, limit).await
    }

    async fn renew_leases(&self, node: &str, lease_ms: i64) -> Result<Vec<Claim>, StoreError> {
        let stall = self
            .renew_stall
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        self.check_outage("renewing leases")?;
        let held = self.leases_inner().renew_leases(node, lease_ms).await;
        let now = Instant::now();
        let previous = self
            .last_renewal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(now);
        if let Some(previous) = previous {
            let gap = u64::try_from((now - previous).as_millis()).unwrap_or(u64::MAX);
            self.longest_gap_ms.fetch_max(gap, Ordering::AcqRel);
        }
        let delay = self.renew_delay_ms.load(Ordering::Acquire);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        held
    }

    async fn release_run(&self, node: &str, claim: &Claim) -> Result<(), StoreError> {
        self.leases_inner().release_run(node, claim).await
    }

    async fn lease_holder(
        &self,
        workflow_id: &str,
    ) -> Result<Option<orchestrator::store::LeaseHolder>, StoreError> {
        self.leases_inner().lease_holder(workflow_id).await
    }

    async fn owned_signals(
        &self,
        node: &str,
        after_id: i64,
    ) -> Result<Vec<(String, SignalRecord)>, StoreError> {
        self.leases_inner().owned_signals(node, after_id).await
    }

    async fn owned_cancellations(&self, node: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.leases_inner().owned_cancellations(node).await
    }

    async fn owned_pauses(&self, node: &str) -> Result<Vec<String>, StoreError> {
        self.leases_inner().owned_pauses(node).await
    }
}
