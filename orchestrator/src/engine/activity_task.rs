//! Executes one activity step: attempts, timeouts, durable backoff waits.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{mpsc, watch};

use super::driver::DriverMsg;
use super::lease::RunLease;
use crate::clock::{now_ms, until};
use crate::codec::Codec;
use crate::context::{ActivityContext, ActivityInvocation, CancellationFlag};
use crate::error::ActivityError;
use crate::journal::{Event, EventBody, encode_event};
use crate::replay::ActivityResume;
use crate::retry::RetryPolicy;
use crate::store::{Commit, Store, StoreError};

/// Everything an activity task needs.
pub(crate) struct ActivityTask {
    pub(crate) workflow_id: Arc<str>,
    pub(crate) step: u32,
    pub(crate) name: &'static str,
    pub(crate) input_fingerprint: u64,
    pub(crate) resume: Option<ActivityResume>,
    pub(crate) invocation: ActivityInvocation,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) codec: Codec,
    pub(crate) driver: mpsc::UnboundedSender<DriverMsg>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Raised when the run is paused: no further attempt starts (the step is left, like at shutdown,
    /// with its failed attempts and next due time journaled).
    pub(crate) halt: watch::Receiver<bool>,
    pub(crate) cancellation: CancellationFlag,
    /// The run this step belongs to: its writes are fenced to it.
    pub(crate) run_no: i64,
    /// With leases: this node's lease on the run. No attempt starts unless it is usable; its writes
    /// carry its (node, epoch); a write rejected as stale revokes it.
    pub(crate) lease: Option<Arc<RunLease>>,
    /// The attempt whose start the driver journaled with the commit that scheduled the step (see
    /// [`immediate_attempt`]); every other attempt journals its own start before it runs.
    pub(crate) journaled_start: Option<u32>,
    /// A test engine's activity mocks: a mocked activity's attempts run the mock instead.
    #[cfg(feature = "testing")]
    pub(crate) mocks: Option<Arc<crate::testing::MockTable>>,
}

/// The attempt an activity step starts at once, without a backoff wait, if any: the first attempt of
/// a new step; after a crash, the one after the last journaled attempt (started or failed) if its
/// retry is due or the last one was cut short, and the policy allows another. Its start rides in the
/// driver's commit of the poll that scheduled the step.
pub(crate) fn immediate_attempt(
    resume: Option<ActivityResume>,
    policy: &RetryPolicy,
    now_ms: i64,
) -> Option<u32> {
    match resume {
        None => Some(1),
        Some(ActivityResume {
            last_attempt,
            retry_at_ms: Some(at),
        }) => (at <= now_ms).then(|| last_attempt.saturating_add(1)),
        Some(ActivityResume {
            last_attempt,
            retry_at_ms: None,
        }) => policy
            .allows_retry_after(last_attempt)
            .then(|| last_attempt.saturating_add(1)),
    }
}

/// Extracts a panic's message.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl ActivityTask {
    /// Runs attempts until one succeeds, the error is final, or the engine shuts down (then the step
    /// is left for the next start: its failed attempts and next due time are journaled).
    pub(crate) async fn run(mut self) {
        let mut attempt = 0;
        if let Some(resume) = self.resume {
            attempt = resume.last_attempt;
            match resume.retry_at_ms {
                Some(retry_at_ms) => {
                    if !self.wait(until(retry_at_ms)).await {
                        return self.stopped();
                    }
                }
                None => {
                    // The last attempt was cut short (the process stopped while it ran): it counts.
                    if !self.invocation.options.retry.allows_retry_after(attempt) {
                        let error = ActivityError::retryable(format!(
                            "attempt {attempt} was cut short (the process stopped while it ran) and no attempts remain"
                        ));
                        return self.done(attempt, Err(error));
                    }
                }
            }
        }
        loop {
            attempt += 1;
            if self.halted() || self.cancellation.is_raised() {
                return self.stopped();
            }
            if !self.lease_usable().await {
                return self.stopped();
            }
            // An attempt never runs before its start is durable: the first one's rode in the
            // driver's commit; a retry's is written here (the retry path only).
            if self.journaled_start != Some(attempt) && !self.journal_start(attempt).await {
                return self.stopped();
            }
            let ctx = ActivityContext::new(
                self.workflow_id.clone(),
                self.name,
                self.step,
                attempt,
                self.cancellation.clone(),
            );
            let result = self.attempt(ctx).await;
            let error = match result {
                Ok(output) => return self.done(attempt, Ok(output)),
                Err(error) => error,
            };
            let policy = &self.invocation.options.retry;
            if !error.is_retryable() || !policy.allows_retry_after(attempt) {
                return self.done(attempt, Err(error));
            }
            let wait = policy.backoff(attempt, fastrand::f64());
            let retry_at_ms =
                now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            tracing::debug!(workflow_id = %self.workflow_id, step = self.step, activity = self.name, attempt, %error, ?wait, "activity attempt failed; retrying");
            if self.cancellation.is_raised() {
                // The step was abandoned: its attempts are no longer the run's business.
                return self.stopped();
            }
            if !self.journal_failure(attempt, error, retry_at_ms).await {
                // Another node owns the run now: its attempts are that node's business.
                return self.stopped();
            }
            if !self.wait(wait).await {
                return self.stopped();
            }
        }
    }

    async fn attempt(&self, ctx: ActivityContext) -> Result<Vec<u8>, ActivityError> {
        #[cfg(feature = "testing")]
        let future = match self.mocks.as_ref().and_then(|mocks| mocks.get(self.name)) {
            Some(mock) => mock.invoke(self.codec, ctx, self.invocation.input.clone()),
            None => (self.invocation.invoke)(self.codec, ctx, self.invocation.input.clone()),
        };
        #[cfg(not(feature = "testing"))]
        let future = (self.invocation.invoke)(self.codec, ctx, self.invocation.input.clone());
        let guarded = AssertUnwindSafe(future).catch_unwind();
        let outcome = match self.invocation.options.timeout {
            Some(timeout) => match tokio::time::timeout(timeout, guarded).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(ActivityError::Timeout { timeout }),
            },
            None => guarded.await,
        };
        let result = match outcome {
            Ok(result) => result,
            Err(panic) => Err(ActivityError::Panicked {
                message: panic_message(panic.as_ref()),
            }),
        };
        // An error message must fit in the journal: keep its head.
        let max = (self.codec.limit() / 2).max(256);
        result.map_err(|error| error.clamped(max))
    }

    /// Journals the start of `attempt` (a retry, or the first attempt after a backoff wait) before it
    /// runs; `false` if it could not be written: the attempt must not run then. A lost lease or a
    /// failed store is reported to the driver, which stops (and the engine revives the run from its
    /// journal).
    async fn journal_start(&self, attempt: u32) -> bool {
        let event = Event {
            step: self.step,
            body: EventBody::ActivityAttemptStarted {
                name: self.name.to_string(),
                input_fingerprint: self.input_fingerprint,
                attempt,
                started_at_ms: now_ms(),
            },
        };
        let event = match encode_event(&self.codec, &event) {
            Ok(event) => event,
            Err(error) => {
                let _ = self
                    .driver
                    .send(DriverMsg::TaskWriteFailed(StoreError::Backend {
                        operation: "encoding an attempt start",
                        message: error.to_string(),
                    }));
                return false;
            }
        };
        let mut commit = Commit::events(&self.workflow_id, vec![event]);
        commit.run_no = Some(self.run_no);
        commit.fence = self.lease.as_ref().map(|lease| lease.fence());
        match self.store.commit(commit).await {
            Ok(()) => true,
            Err(StoreError::StaleLease { epoch, .. }) => {
                if let Some(lease) = &self.lease {
                    lease.revoke_epoch(epoch);
                }
                let _ = self.driver.send(DriverMsg::WriteRejected);
                false
            }
            Err(error) => {
                tracing::warn!(workflow_id = %self.workflow_id, step = self.step, attempt, %error, "could not journal an attempt's start; the attempt does not run");
                let _ = self.driver.send(DriverMsg::TaskWriteFailed(error));
                false
            }
        }
    }

    /// Journals a failed attempt; `false` if the write was rejected because the lease is lost.
    async fn journal_failure(&self, attempt: u32, error: ActivityError, retry_at_ms: i64) -> bool {
        let event = Event {
            step: self.step,
            body: EventBody::ActivityAttemptFailed {
                name: self.name.to_string(),
                input_fingerprint: self.input_fingerprint,
                attempt,
                error,
                retry_at_ms,
            },
        };
        let written = match encode_event(&self.codec, &event) {
            Ok(event) => {
                let mut commit = Commit::events(&self.workflow_id, vec![event]);
                commit.run_no = Some(self.run_no);
                commit.fence = self.lease.as_ref().map(|lease| lease.fence());
                match self.store.commit(commit).await {
                    Err(StoreError::StaleLease { epoch, .. }) => {
                        if let Some(lease) = &self.lease {
                            lease.revoke_epoch(epoch);
                        }
                        let _ = self.driver.send(DriverMsg::WriteRejected);
                        return false;
                    }
                    written => written.map_err(|error| error.to_string()),
                }
            }
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = written {
            // The retry still happens; only its durability is lost (a restart would retry sooner).
            tracing::warn!(workflow_id = %self.workflow_id, step = self.step, %error, "could not journal a failed attempt");
        }
        true
    }

    /// Waits until this node may start an attempt (see [`RunLease::usable`]); `false` if the lease
    /// is lost or the engine shuts down or the step is abandoned meanwhile. At once without leases.
    async fn lease_usable(&mut self) -> bool {
        let Some(lease) = self.lease.clone() else {
            return true;
        };
        let cancellation = self.cancellation.clone();
        tokio::select! {
            biased;
            usable = lease.usable() => usable,
            _ = self.shutdown.changed() => false,
            _ = cancellation.raised() => false,
        }
    }

    /// Whether the engine is shutting down or the run was paused: no further attempt starts.
    fn halted(&self) -> bool {
        *self.shutdown.borrow() || *self.halt.borrow()
    }

    /// Sleeps for `wait`; `false` if the engine began shutting down or the run was paused meanwhile.
    async fn wait(&mut self, wait: std::time::Duration) -> bool {
        if self.halted() || self.cancellation.is_raised() {
            return false;
        }
        let cancellation = self.cancellation.clone();
        // `biased`: branches are checked in this order rather than a random one, so a run is
        // reproducible under a seeded simulation (see `docs/reliability.md`).
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => false,
            _ = self.halt.changed() => false,
            _ = cancellation.raised() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    fn done(&self, attempts: u32, result: Result<Vec<u8>, ActivityError>) {
        let _ = self.driver.send(DriverMsg::ActivityDone {
            step: self.step,
            attempts,
            result,
        });
    }

    fn stopped(&self) {
        let _ = self
            .driver
            .send(DriverMsg::ActivityStopped { step: self.step });
    }
}
