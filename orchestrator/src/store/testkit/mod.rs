//! The storage conformance suite: every contract the engine relies on from a [`Store`], as executable
//! checks that any backend can run from its own tests (cargo feature `store-testkit`).
//!
//! [`run_conformance`] takes a factory that makes a **fresh, empty** store, gives each check its own
//! store (so checks never see each other's runs), and returns a [`ConformanceReport`] of the checks
//! that passed and those that were skipped — or a [`ConformanceFailure`] naming the check that failed
//! and what it expected and found. Every check is also a public function of its own (the table below),
//! so a backend can run one while it works on it.
//!
//! ## Running the suite from a backend's tests
//!
//! In the backend crate, add `orchestrator = { version = "…", features = ["store-testkit"] }` under
//! `[dev-dependencies]`, then:
//!
//! ```no_run
//! # use orchestrator::store::SqliteStore as MyStore;
//! use std::sync::Arc;
//!
//! use orchestrator::store::Store;
//!
//! #[tokio::test]
//! async fn my_backend_conforms() {
//!     let report = orchestrator::store::testkit::run_conformance(|| async {
//!         Ok(Arc::new(MyStore::in_memory().await?) as Arc<dyn Store>)
//!     })
//!     .await
//!     .unwrap();
//!     println!("{report}");
//! }
//! # fn main() {}
//! ```
//!
//! One check on its own, here against the SQLite store:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use orchestrator::store::testkit::{self, CheckOutcome};
//! use orchestrator::store::{SqliteStore, Store};
//!
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await?);
//! let outcome = testkit::signal_consumed_exactly_once(store).await?;
//! assert_eq!(outcome, CheckOutcome::Passed);
//! # Ok(())
//! # }
//! ```
//!
//! The checks need a tokio runtime with its time driver (`#[tokio::test]` has one); the lease checks
//! sleep for a few hundred milliseconds to let short leases expire. Each check has two minutes.
//!
//! ## The checks
//!
//! | area | checks |
//! |---|---|
//! | runs | [`create_run_idempotent`], [`run_record_round_trip`], [`unfinished_runs_lists_running_and_parked`] |
//! | commits | [`commit_atomicity`], [`events_in_commit_order`], [`one_completion_per_step`], [`status_transitions`], [`run_no_guard`], [`continue_as_new`], [`published_values`] |
//! | signals and cancellation | [`signal_send_outcomes`], [`signal_inbox_order`], [`signal_consumed_exactly_once`], [`request_cancel`] |
//! | timers | [`due_wakeups`] |
//! | listing | [`list_runs_filters`], [`list_runs_pagination`], [`list_runs_limit_clamped`], [`count_runs_by_state`] |
//! | operator actions | [`operator_actions`], [`create_run_paused`], [`list_runs_operator_filters`], [`lease_pauses_and_terminations`] |
//! | concurrency | [`concurrent_writers`], [`concurrent_races`] |
//! | errors | [`error_classification`] |
//! | leases ([`LeaseStore`](super::LeaseStore), skipped when [`Store::leases`] is `None`) | [`lease_claims_disjoint`], [`lease_takeover_epoch`], [`lease_renew_and_release`], [`lease_fencing`], [`lease_owner_at_creation`], [`lease_owned_inbox`] |
//!
//! Each function's documentation states its contract. Where the trait's documentation leaves room,
//! the checks hold a backend to what the SQLite store (the reference implementation) does.

mod commits;
mod concurrency;
mod errors;
mod leases;
mod listing;
mod operator;
mod runs;
mod signals;
mod support;
mod wakeups;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::{Store, StoreError};

pub use commits::{
    commit_atomicity, continue_as_new, events_in_commit_order, events_recorded_at,
    one_completion_per_step, published_values, run_no_guard, status_transitions,
};
pub use concurrency::{concurrent_races, concurrent_writers};
pub use errors::error_classification;
pub use leases::{
    lease_claims_disjoint, lease_fencing, lease_holder_reported, lease_owned_inbox,
    lease_owner_at_creation, lease_renew_and_release, lease_takeover_epoch,
};
pub use listing::{list_runs_filters, list_runs_limit_clamped, list_runs_pagination};
pub use operator::{
    count_runs_by_state, create_run_paused, lease_pauses_and_terminations,
    list_runs_operator_filters, operator_actions,
};
pub use runs::{
    create_run_idempotent, run_record_round_trip, unfinished_runs_lists_running_and_parked,
};
pub use signals::{
    request_cancel, signal_consumed_exactly_once, signal_inbox_order, signal_send_outcomes,
};
pub use wakeups::due_wakeups;

/// How long one check may run before it counts as hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// What one check concluded, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckOutcome {
    /// The store kept the check's contract.
    Passed,
    /// The check does not apply to this store (e.g. lease checks on a store without leases).
    Skipped {
        /// Why it does not apply.
        reason: String,
    },
}

/// A check that did not apply to the store, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedCheck {
    /// The check's name (its function's name).
    pub check: &'static str,
    /// Why it was skipped.
    pub reason: String,
}

/// What [`run_conformance`] found when no check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConformanceReport {
    /// The checks the store passed, in the order they ran.
    pub passed: Vec<&'static str>,
    /// The checks that did not apply to the store. A skipped check is not a passed one.
    pub skipped: Vec<SkippedCheck>,
    /// How long the whole suite took.
    pub elapsed: Duration,
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "store conformance: {} passed, {} skipped, in {:.2?}",
            self.passed.len(),
            self.skipped.len(),
            self.elapsed
        )?;
        for check in &self.passed {
            writeln!(f, "  passed   {check}")?;
        }
        for skipped in &self.skipped {
            writeln!(f, "  SKIPPED  {}: {}", skipped.check, skipped.reason)?;
        }
        Ok(())
    }
}

/// A store broke a contract of the conformance suite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConformanceFailure {
    /// The store answered, but not what the contract requires.
    #[error("conformance check `{check}` failed: {what}: expected {expected}, found {found}")]
    Violation {
        /// The check's name.
        check: &'static str,
        /// What was being checked.
        what: String,
        /// What the contract requires.
        expected: String,
        /// What the store did.
        found: String,
    },
    /// A store operation the contract says succeeds returned an error.
    #[error("conformance check `{check}` failed: {operation} returned an error: {source}")]
    Store {
        /// The check's name.
        check: &'static str,
        /// The operation that failed.
        operation: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The factory could not make a store for the check.
    #[error("conformance check `{check}` could not start: the store factory failed: {source}")]
    Factory {
        /// The check's name.
        check: &'static str,
        /// The factory's error.
        #[source]
        source: StoreError,
    },
    /// The check did not finish in time (a store call hung).
    #[error("conformance check `{check}` did not finish within {after:?} (a store call hangs?)")]
    TimedOut {
        /// The check's name.
        check: &'static str,
        /// How long it was given.
        after: Duration,
    },
    /// The check (or a store call it made) panicked.
    #[error("conformance check `{check}` panicked: {message}")]
    Panicked {
        /// The check's name.
        check: &'static str,
        /// The panic's message.
        message: String,
    },
    /// More than one check failed ([`run_conformance`] runs them all).
    #[error("{}", several(.failures, .report))]
    Several {
        /// Every failure, in the order the checks ran.
        failures: Vec<ConformanceFailure>,
        /// The checks that passed or were skipped.
        report: ConformanceReport,
    },
}

impl ConformanceFailure {
    /// The name of the check that failed (`None` for [`ConformanceFailure::Several`]).
    pub fn check(&self) -> Option<&'static str> {
        match self {
            ConformanceFailure::Violation { check, .. }
            | ConformanceFailure::Store { check, .. }
            | ConformanceFailure::Factory { check, .. }
            | ConformanceFailure::TimedOut { check, .. }
            | ConformanceFailure::Panicked { check, .. } => Some(check),
            ConformanceFailure::Several { .. } => None,
        }
    }

    /// The names of every failed check.
    pub fn failed_checks(&self) -> Vec<&'static str> {
        match self {
            ConformanceFailure::Several { failures, .. } => {
                failures.iter().flat_map(Self::failed_checks).collect()
            }
            other => other.check().into_iter().collect(),
        }
    }
}

fn several(failures: &[ConformanceFailure], report: &ConformanceReport) -> String {
    let mut text = format!(
        "{} store conformance checks failed ({} passed, {} skipped):",
        failures.len(),
        report.passed.len(),
        report.skipped.len()
    );
    for failure in failures {
        text.push_str("\n  - ");
        text.push_str(&failure.to_string());
    }
    text
}

/// A check, as [`run_conformance`] runs it.
type CheckFn = fn(Arc<dyn Store>) -> BoxFuture<'static, Result<CheckOutcome, ConformanceFailure>>;

/// Every check with its name, in the order [`run_conformance`] runs them.
const CHECKS: &[(&str, CheckFn)] = &[
    ("create_run_idempotent", |s| {
        Box::pin(create_run_idempotent(s))
    }),
    ("run_record_round_trip", |s| {
        Box::pin(run_record_round_trip(s))
    }),
    ("unfinished_runs_lists_running_and_parked", |s| {
        Box::pin(unfinished_runs_lists_running_and_parked(s))
    }),
    ("commit_atomicity", |s| Box::pin(commit_atomicity(s))),
    ("events_in_commit_order", |s| {
        Box::pin(events_in_commit_order(s))
    }),
    ("events_recorded_at", |s| Box::pin(events_recorded_at(s))),
    ("one_completion_per_step", |s| {
        Box::pin(one_completion_per_step(s))
    }),
    ("status_transitions", |s| Box::pin(status_transitions(s))),
    ("run_no_guard", |s| Box::pin(run_no_guard(s))),
    ("continue_as_new", |s| Box::pin(continue_as_new(s))),
    ("published_values", |s| Box::pin(published_values(s))),
    ("signal_send_outcomes", |s| {
        Box::pin(signal_send_outcomes(s))
    }),
    ("signal_inbox_order", |s| Box::pin(signal_inbox_order(s))),
    ("signal_consumed_exactly_once", |s| {
        Box::pin(signal_consumed_exactly_once(s))
    }),
    ("request_cancel", |s| Box::pin(request_cancel(s))),
    ("due_wakeups", |s| Box::pin(due_wakeups(s))),
    ("list_runs_filters", |s| Box::pin(list_runs_filters(s))),
    ("list_runs_pagination", |s| {
        Box::pin(list_runs_pagination(s))
    }),
    ("list_runs_limit_clamped", |s| {
        Box::pin(list_runs_limit_clamped(s))
    }),
    ("list_runs_operator_filters", |s| {
        Box::pin(list_runs_operator_filters(s))
    }),
    ("operator_actions", |s| Box::pin(operator_actions(s))),
    ("create_run_paused", |s| Box::pin(create_run_paused(s))),
    ("count_runs_by_state", |s| Box::pin(count_runs_by_state(s))),
    ("concurrent_writers", |s| Box::pin(concurrent_writers(s))),
    ("concurrent_races", |s| Box::pin(concurrent_races(s))),
    ("error_classification", |s| {
        Box::pin(error_classification(s))
    }),
    ("lease_claims_disjoint", |s| {
        Box::pin(lease_claims_disjoint(s))
    }),
    ("lease_takeover_epoch", |s| {
        Box::pin(lease_takeover_epoch(s))
    }),
    ("lease_renew_and_release", |s| {
        Box::pin(lease_renew_and_release(s))
    }),
    ("lease_fencing", |s| Box::pin(lease_fencing(s))),
    ("lease_owner_at_creation", |s| {
        Box::pin(lease_owner_at_creation(s))
    }),
    ("lease_owned_inbox", |s| Box::pin(lease_owned_inbox(s))),
    ("lease_pauses_and_terminations", |s| {
        Box::pin(lease_pauses_and_terminations(s))
    }),
    ("lease_holder_reported", |s| {
        Box::pin(lease_holder_reported(s))
    }),
];

/// Runs every conformance check, each against a fresh store from `factory`.
///
/// `factory` must return a new, **empty** store on every call (a new in-memory database, a new file,
/// a new PostgreSQL schema): checks create runs with fixed ids and count what they find. Every check
/// runs, even after one fails, so one run of the suite shows everything a backend still has to fix.
///
/// Returns the [`ConformanceReport`] when no check failed (lease checks are reported as skipped, not
/// passed, for a store whose [`Store::leases`] is `None`); otherwise the failure of the one check
/// that failed, or [`ConformanceFailure::Several`] with each failure.
pub async fn run_conformance<F, Fut>(factory: F) -> Result<ConformanceReport, ConformanceFailure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Store>, StoreError>>,
{
    let started = Instant::now();
    let mut report = ConformanceReport {
        passed: Vec::new(),
        skipped: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut failures = Vec::new();
    for &(check, run) in CHECKS {
        tracing::debug!(check, "store conformance check");
        let outcome = match factory().await {
            Ok(store) => run_isolated(check, run(store)).await,
            Err(source) => Err(ConformanceFailure::Factory { check, source }),
        };
        match outcome {
            Ok(CheckOutcome::Passed) => report.passed.push(check),
            Ok(CheckOutcome::Skipped { reason }) => {
                report.skipped.push(SkippedCheck { check, reason })
            }
            Err(failure) => failures.push(failure),
        }
    }
    report.elapsed = started.elapsed();
    if failures.len() > 1 {
        return Err(ConformanceFailure::Several { failures, report });
    }
    match failures.pop() {
        Some(failure) => Err(failure),
        None => Ok(report),
    }
}

/// Runs one check on its own task (so a panic is reported as that check's failure) with a deadline.
async fn run_isolated(
    check: &'static str,
    future: BoxFuture<'static, Result<CheckOutcome, ConformanceFailure>>,
) -> Result<CheckOutcome, ConformanceFailure> {
    let mut task = tokio::spawn(future);
    match tokio::time::timeout(CHECK_TIMEOUT, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => Err(support::join_failure(check, error)),
        Err(_) => {
            task.abort();
            Err(ConformanceFailure::TimedOut {
                check,
                after: CHECK_TIMEOUT,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        ArchivedRun, CancelOutcome, Claim, Commit, CreateOutcome, LeaseStore, NewRun,
        OperatorOutcome, OperatorWrite, RunPage, RunQuery, RunRecord, SignalOutcome, SignalRecord,
        StoredEvent, Wakeup,
    };

    /// A store (with leases) whose every call fails: each check fails at its first call.
    struct Closed;

    #[async_trait::async_trait]
    impl Store for Closed {
        async fn create_run(&self, _: NewRun) -> Result<CreateOutcome, StoreError> {
            Err(StoreError::Closed)
        }
        async fn commit(&self, _: Commit) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn run(&self, _: &str) -> Result<Option<RunRecord>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn history(&self, _: &str) -> Result<Vec<StoredEvent>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn unfinished_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn send_signal(
            &self,
            _: &str,
            _: &str,
            _: Vec<u8>,
        ) -> Result<SignalOutcome, StoreError> {
            Err(StoreError::Closed)
        }
        async fn pending_signals(&self, _: &str) -> Result<Vec<SignalRecord>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn request_cancel(&self, _: &str, _: &str) -> Result<CancelOutcome, StoreError> {
            Err(StoreError::Closed)
        }
        async fn operate(&self, _: OperatorWrite) -> Result<OperatorOutcome, StoreError> {
            Err(StoreError::Closed)
        }
        async fn value(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn archived_runs(&self, _: &str) -> Result<Vec<ArchivedRun>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn due_wakeups(&self, _: i64, _: usize) -> Result<Vec<Wakeup>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn list_runs(&self, _: &RunQuery) -> Result<RunPage, StoreError> {
            Err(StoreError::Closed)
        }
        fn leases(&self) -> Option<&dyn LeaseStore> {
            Some(self)
        }
    }

    #[async_trait::async_trait]
    impl LeaseStore for Closed {
        async fn claim_runs(&self, _: &str, _: i64, _: usize) -> Result<Vec<Claim>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn renew_leases(&self, _: &str, _: i64) -> Result<Vec<Claim>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn release_run(&self, _: &str, _: &Claim) -> Result<(), StoreError> {
            Err(StoreError::Closed)
        }
        async fn owned_signals(
            &self,
            _: &str,
            _: i64,
        ) -> Result<Vec<(String, SignalRecord)>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn owned_cancellations(&self, _: &str) -> Result<Vec<(String, String)>, StoreError> {
            Err(StoreError::Closed)
        }
        async fn owned_pauses(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Err(StoreError::Closed)
        }
    }

    #[tokio::test]
    async fn every_check_reports_failures_under_its_own_name() {
        let failure = run_conformance(|| async { Ok(Arc::new(Closed) as Arc<dyn Store>) })
            .await
            .expect_err("a closed store conforms to nothing");
        let expected: Vec<&str> = CHECKS.iter().map(|(name, _)| *name).collect();
        assert_eq!(failure.failed_checks(), expected, "{failure}");
        assert!(
            failure.to_string().contains("the store is closed"),
            "{failure}"
        );
    }

    #[test]
    fn check_names_are_unique() {
        let mut names: Vec<&str> = CHECKS.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CHECKS.len());
    }
}
