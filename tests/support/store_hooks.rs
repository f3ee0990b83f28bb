//! [`HookedStore`]: any store passed through, with a [`StoreHook`] consulted around every call.
//!
//! A hook can fail a call before it reaches the store (nothing happens, as with a busy database or a
//! full disk), report a call that took effect as failed (the ambiguous outcome of a lost connection or
//! a failing `fsync`), or just observe it (fail points that kill the process before or after a
//! commit). The fault campaign, the crash campaign and the simulation all build on it.

use std::sync::Arc;

use orchestrator::store::{
    ArchivedRun, CancelOutcome, Commit, CreateOutcome, LeaseStore, NewRun, OperatorOutcome,
    OperatorWrite, RunPage, RunQuery, RunRecord, SignalOutcome, SignalRecord, Store, StoreError,
    StoredEvent, Wakeup,
};

/// One call to a [`Store`], as a hook sees it.
#[derive(Debug, Clone, Copy)]
pub enum StoreCall<'a> {
    /// [`Store::create_run`].
    CreateRun(&'a NewRun),
    /// [`Store::commit`].
    Commit(&'a Commit),
    /// [`Store::run`].
    Run(&'a str),
    /// [`Store::history`].
    History(&'a str),
    /// [`Store::unfinished_runs`].
    UnfinishedRuns,
    /// [`Store::send_signal`]: the workflow id and the signal's name.
    SendSignal(&'a str, &'a str),
    /// [`Store::pending_signals`].
    PendingSignals(&'a str),
    /// [`Store::request_cancel`].
    RequestCancel(&'a str),
    /// [`Store::value`]: the workflow id and the key.
    Value(&'a str, &'a str),
    /// [`Store::archived_runs`].
    ArchivedRuns(&'a str),
    /// [`Store::due_wakeups`].
    DueWakeups,
    /// [`Store::list_runs`].
    ListRuns,
}

impl StoreCall<'_> {
    /// Whether the call writes (a fault after it leaves its effect in place).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            StoreCall::CreateRun(_)
                | StoreCall::Commit(_)
                | StoreCall::SendSignal(..)
                | StoreCall::RequestCancel(_)
        )
    }

    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            StoreCall::CreateRun(_) => "create_run",
            StoreCall::Commit(_) => "commit",
            StoreCall::Run(_) => "run",
            StoreCall::History(_) => "history",
            StoreCall::UnfinishedRuns => "unfinished_runs",
            StoreCall::SendSignal(..) => "send_signal",
            StoreCall::PendingSignals(_) => "pending_signals",
            StoreCall::RequestCancel(_) => "request_cancel",
            StoreCall::Value(..) => "value",
            StoreCall::ArchivedRuns(_) => "archived_runs",
            StoreCall::DueWakeups => "due_wakeups",
            StoreCall::ListRuns => "list_runs",
        }
    }
}

/// Consulted around every call a [`HookedStore`] passes through.
pub trait StoreHook: Send + Sync + 'static {
    /// Before the call reaches the store: `Some(error)` fails it without calling the store.
    fn before(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        let _ = call;
        None
    }

    /// After the store answered `Ok`: `Some(error)` reports the call as failed although it took effect.
    fn after_ok(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        let _ = call;
        None
    }
}

/// A shared hook (so a test can keep steering it while the engine owns the store).
impl<H: StoreHook> StoreHook for Arc<H> {
    fn before(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        (**self).before(call)
    }

    fn after_ok(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        (**self).after_ok(call)
    }
}

/// A store that passes every call to `inner`, consulting `hook` before and after it.
/// Lease calls ([`Store::leases`]) pass through unhooked.
pub struct HookedStore<H> {
    inner: Arc<dyn Store>,
    hook: H,
}

impl<H: StoreHook> HookedStore<H> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, hook: H) -> Self {
        HookedStore { inner, hook }
    }

    /// The hook (to steer or read it while the engine uses the store).
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    async fn around<T>(
        &self,
        call: StoreCall<'_>,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if let Some(error) = self.hook.before(&call) {
            return Err(error);
        }
        let value = operation.await?;
        match self.hook.after_ok(&call) {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

#[async_trait::async_trait]
impl<H: StoreHook> Store for HookedStore<H> {
    async fn create_run(&self, run: NewRun) -> Result<CreateOutcome, StoreError> {
        let copy = run.clone();
        self.around(StoreCall::CreateRun(&copy), self.inner.create_run(run))
            .await
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let copy = commit.clone();
        self.around(StoreCall::Commit(&copy), self.inner.commit(commit))
            .await
    }

    async fn run(&self, workflow_id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.around(StoreCall::Run(workflow_id), self.inner.run(workflow_id))
            .await
    }

    async fn history(&self, workflow_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.around(
            StoreCall::History(workflow_id),
            self.inner.history(workflow_id),
        )
        .await
    }

    async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.around(StoreCall::UnfinishedRuns, self.inner.unfinished_runs())
            .await
    }

    async fn send_signal(
        &self,
        workflow_id: &str,
        name: &str,
        payload: Vec<u8>,
    ) -> Result<SignalOutcome, StoreError> {
        self.around(
            StoreCall::SendSignal(workflow_id, name),
            self.inner.send_signal(workflow_id, name, payload),
        )
        .await
    }

    async fn pending_signals(&self, workflow_id: &str) -> Result<Vec<SignalRecord>, StoreError> {
        self.around(
            StoreCall::PendingSignals(workflow_id),
            self.inner.pending_signals(workflow_id),
        )
        .await
    }

    /// Not hooked: no fault campaign issues operator actions.
    async fn operate(&self, write: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
        self.inner.operate(write).await
    }

    async fn request_cancel(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        self.around(
            StoreCall::RequestCancel(workflow_id),
            self.inner.request_cancel(workflow_id, reason),
        )
        .await
    }

    async fn value(&self, workflow_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.around(
            StoreCall::Value(workflow_id, key),
            self.inner.value(workflow_id, key),
        )
        .await
    }

    async fn archived_runs(&self, workflow_id: &str) -> Result<Vec<ArchivedRun>, StoreError> {
        self.around(
            StoreCall::ArchivedRuns(workflow_id),
            self.inner.archived_runs(workflow_id),
        )
        .await
    }

    async fn due_wakeups(&self, before_ms: i64, limit: usize) -> Result<Vec<Wakeup>, StoreError> {
        self.around(
            StoreCall::DueWakeups,
            self.inner.due_wakeups(before_ms, limit),
        )
        .await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        self.around(StoreCall::ListRuns, self.inner.list_runs(query))
            .await
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        self.inner.leases()
    }
}
