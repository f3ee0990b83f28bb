//! What every check uses: a checker that turns store errors and surprises into
//! [`ConformanceFailure`]s, builders for runs, events and commits, and a snapshot of everything a
//! store keeps about one run (to prove that a rejected write wrote nothing).

use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::ConformanceFailure;
use crate::store::{
    ArchivedRun, Commit, CreateOutcome, NewEvent, NewRun, RunRecord, SignalOutcome, SignalRecord,
    StatusChange, Store, StoreError, StoredEvent, Wakeup,
};

/// The event kind checks use for completions (`ActivityCompleted`; stores see only numbers).
pub(super) const KIND_COMPLETION: u16 = 1;
/// The event kind checks use for timers (`TimerStarted`).
pub(super) const KIND_TIMER: u16 = 3;
/// The event kind checks use for other non-completion events (`SideEffect`).
pub(super) const KIND_NOTE: u16 = 8;

/// One check's view of its store: every helper reports failures under the check's name.
pub(super) struct Ck {
    name: &'static str,
    pub(super) store: Arc<dyn Store>,
}

impl Ck {
    pub(super) fn new(name: &'static str, store: Arc<dyn Store>) -> Self {
        Ck { name, store }
    }

    pub(super) fn name(&self) -> &'static str {
        self.name
    }

    /// A contract violation.
    pub(super) fn violation(
        &self,
        what: impl Into<String>,
        expected: impl Display,
        found: impl Display,
    ) -> ConformanceFailure {
        violation(self.name, what, expected, found)
    }

    /// A violation unless `ok`.
    pub(super) fn ensure(
        &self,
        ok: bool,
        what: impl Into<String>,
        expected: impl Display,
        found: impl Display,
    ) -> Result<(), ConformanceFailure> {
        if ok {
            Ok(())
        } else {
            Err(self.violation(what, expected, found))
        }
    }

    /// A violation unless `found == expected`.
    pub(super) fn eq<T: PartialEq + Debug + ?Sized>(
        &self,
        what: impl Into<String>,
        expected: &T,
        found: &T,
    ) -> Result<(), ConformanceFailure> {
        if expected == found {
            Ok(())
        } else {
            Err(self.violation(what, format!("{expected:?}"), format!("{found:?}")))
        }
    }

    /// The value of a store call that must succeed.
    pub(super) async fn ok<T>(
        &self,
        operation: impl Into<String>,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ConformanceFailure> {
        call.await.map_err(|source| ConformanceFailure::Store {
            check: self.name,
            operation: operation.into(),
            source,
        })
    }

    /// Requires `result` to be a [`StoreError::Conflict`].
    pub(super) fn conflict<T: Debug>(
        &self,
        what: impl Into<String>,
        result: Result<T, StoreError>,
    ) -> Result<(), ConformanceFailure> {
        match result {
            Err(StoreError::Conflict { .. }) => Ok(()),
            other => Err(self.violation(
                what,
                "Err(StoreError::Conflict { .. })",
                format!("{other:?}"),
            )),
        }
    }

    /// Requires `result` to be an error (any kind); returns it.
    pub(super) fn rejected<T: Debug>(
        &self,
        what: impl Into<String>,
        result: Result<T, StoreError>,
    ) -> Result<StoreError, ConformanceFailure> {
        match result {
            Err(error) => Ok(error),
            Ok(value) => Err(self.violation(what, "an error", format!("Ok({value:?})"))),
        }
    }

    /// Creates a run that must not exist yet.
    pub(super) async fn create_run(&self, run: NewRun) -> Result<(), ConformanceFailure> {
        let id = run.workflow_id.clone();
        match self
            .ok(format!("create_run(`{id}`)"), self.store.create_run(run))
            .await?
        {
            CreateOutcome::Created => Ok(()),
            other => Err(self.violation(
                format!("create_run(`{id}`) of a new workflow id"),
                "CreateOutcome::Created",
                format!("{other:?}"),
            )),
        }
    }

    /// Creates a plain running run.
    pub(super) async fn create(&self, id: &str, name: &str) -> Result<(), ConformanceFailure> {
        self.create_run(new_run(id, name)).await
    }

    /// A commit that must succeed.
    pub(super) async fn commit(
        &self,
        what: impl Display,
        commit: Commit,
    ) -> Result<(), ConformanceFailure> {
        let id = commit.workflow_id.clone();
        self.ok(
            format!("commit to `{id}` ({what})"),
            self.store.commit(commit),
        )
        .await
    }

    /// A status change that must succeed.
    pub(super) async fn set_status(
        &self,
        id: &str,
        status: StatusChange,
    ) -> Result<(), ConformanceFailure> {
        let what = format!("status change {}", status_name(&status));
        self.commit(what, status_commit(id, status)).await
    }

    /// The record of a run that must exist.
    pub(super) async fn record(&self, id: &str) -> Result<RunRecord, ConformanceFailure> {
        match self.ok(format!("run(`{id}`)"), self.store.run(id)).await? {
            Some(record) => Ok(record),
            None => Err(self.violation(
                format!("run(`{id}`) of a created run"),
                "Some(record)",
                "None",
            )),
        }
    }

    pub(super) async fn history(&self, id: &str) -> Result<Vec<StoredEvent>, ConformanceFailure> {
        self.ok(format!("history(`{id}`)"), self.store.history(id))
            .await
    }

    pub(super) async fn pending(&self, id: &str) -> Result<Vec<SignalRecord>, ConformanceFailure> {
        self.ok(
            format!("pending_signals(`{id}`)"),
            self.store.pending_signals(id),
        )
        .await
    }

    pub(super) async fn value(
        &self,
        id: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, ConformanceFailure> {
        self.ok(format!("value(`{id}`, `{key}`)"), self.store.value(id, key))
            .await
    }

    /// Sends a signal that must be queued.
    pub(super) async fn signal(
        &self,
        id: &str,
        name: &str,
        payload: &[u8],
    ) -> Result<SignalRecord, ConformanceFailure> {
        let outcome = self
            .ok(
                format!("send_signal(`{id}`, `{name}`)"),
                self.store.send_signal(id, name, payload.to_vec()),
            )
            .await?;
        match outcome {
            SignalOutcome::Queued(record) => {
                let expected = (name, payload);
                let found = (record.name.as_str(), record.payload.as_slice());
                self.eq(
                    format!("(name, payload) of the signal queued to `{id}`"),
                    &expected,
                    &found,
                )?;
                Ok(record)
            }
            other => Err(self.violation(
                format!("send_signal(`{id}`, `{name}`) to a running run"),
                "SignalOutcome::Queued(..)",
                format!("{other:?}"),
            )),
        }
    }

    /// The (event step, kind, payload) triples of a run's history, in order, after checking that its
    /// sequence numbers increase.
    pub(super) async fn steps(
        &self,
        id: &str,
    ) -> Result<Vec<(u32, u16, Vec<u8>)>, ConformanceFailure> {
        let history = self.history(id).await?;
        self.increasing_seqs(id, &history)?;
        Ok(history
            .into_iter()
            .map(|event| (event.step, event.kind, event.payload))
            .collect())
    }

    /// Requires a history's `seq`s to be strictly increasing.
    pub(super) fn increasing_seqs(
        &self,
        id: &str,
        history: &[StoredEvent],
    ) -> Result<(), ConformanceFailure> {
        for pair in history.windows(2) {
            if let [a, b] = pair {
                self.ensure(
                    a.seq < b.seq,
                    format!("seq order of the history of `{id}`"),
                    "strictly increasing seq (commit order)",
                    format!("seq {} followed by seq {}", a.seq, b.seq),
                )?;
            }
        }
        Ok(())
    }

    /// The run's wake-ups among everything due at any time.
    pub(super) async fn wakeups_of(&self, id: &str) -> Result<Vec<Wakeup>, ConformanceFailure> {
        let all = self
            .ok(
                "due_wakeups(i64::MAX, 10_000)",
                self.store.due_wakeups(i64::MAX, 10_000),
            )
            .await?;
        Ok(all
            .into_iter()
            .filter(|wakeup| wakeup.workflow_id == id)
            .collect())
    }

    /// Everything the store keeps about run `id`, with the published values under `keys`.
    pub(super) async fn snapshot(
        &self,
        id: &str,
        keys: &[&str],
    ) -> Result<Snapshot, ConformanceFailure> {
        let record = self.ok(format!("run(`{id}`)"), self.store.run(id)).await?;
        let history = self.history(id).await?;
        let pending = self.pending(id).await?;
        let mut values = Vec::new();
        for key in keys {
            values.push(((*key).to_string(), self.value(id, key).await?));
        }
        let archived = self
            .ok(
                format!("archived_runs(`{id}`)"),
                self.store.archived_runs(id),
            )
            .await?;
        let wakeups = self.wakeups_of(id).await?;
        Ok(Snapshot {
            record,
            history,
            pending,
            values,
            archived,
            wakeups,
        })
    }

    /// Requires run `id` to be exactly as `before`: `what` (a rejected write) changed nothing.
    pub(super) async fn unchanged(
        &self,
        what: &str,
        id: &str,
        keys: &[&str],
        before: &Snapshot,
    ) -> Result<(), ConformanceFailure> {
        let after = self.snapshot(id, keys).await?;
        let context =
            |part: &str| format!("{part} of `{id}` after {what} (which must write nothing)");
        self.eq(context("the run record"), &before.record, &after.record)?;
        self.eq(context("the history"), &before.history, &after.history)?;
        self.eq(
            context("the pending signals"),
            &before.pending,
            &after.pending,
        )?;
        self.eq(
            context("the published values"),
            &before.values,
            &after.values,
        )?;
        self.eq(
            context("the archived runs"),
            &before.archived,
            &after.archived,
        )?;
        self.eq(context("the due wake-ups"), &before.wakeups, &after.wakeups)
    }
}

/// Everything a store keeps about one run.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snapshot {
    pub(super) record: Option<RunRecord>,
    pub(super) history: Vec<StoredEvent>,
    pub(super) pending: Vec<SignalRecord>,
    pub(super) values: Vec<(String, Option<Vec<u8>>)>,
    pub(super) archived: Vec<ArchivedRun>,
    pub(super) wakeups: Vec<Wakeup>,
}

pub(super) fn violation(
    check: &'static str,
    what: impl Into<String>,
    expected: impl Display,
    found: impl Display,
) -> ConformanceFailure {
    ConformanceFailure::Violation {
        check,
        what: what.into(),
        expected: shorten(expected.to_string()),
        found: shorten(found.to_string()),
    }
}

/// Keeps a failure message readable when it describes large values.
fn shorten(mut text: String) -> String {
    const MOST: usize = 1_500;
    if text.len() > MOST {
        let mut cut = MOST;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let more = text.len() - cut;
        text.truncate(cut);
        text.push_str(&format!("… ({more} more bytes)"));
    }
    text
}

/// Signals for messages: id, name and payload size.
pub(super) fn describe_signals(signals: &[SignalRecord]) -> String {
    let parts: Vec<String> = signals
        .iter()
        .map(|s| format!("#{} `{}` ({} bytes)", s.id, s.name, s.payload.len()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// A task of a check panicked or was cancelled.
pub(super) fn join_failure(
    check: &'static str,
    error: tokio::task::JoinError,
) -> ConformanceFailure {
    let message = if error.is_panic() {
        let panic = error.into_panic();
        panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string())
    } else {
        error.to_string()
    };
    ConformanceFailure::Panicked { check, message }
}

/// A running run with no options.
pub(super) fn new_run(id: &str, name: &str) -> NewRun {
    NewRun {
        workflow_id: id.to_string(),
        workflow_name: name.to_string(),
        input: format!("input of {id}").into_bytes(),
        parent_id: None,
        deadline_ms: None,
        execution_timeout_ms: None,
        owner: None,
        events: Vec::new(),
        paused: None,
    }
}

/// An event that completes `step`.
pub(super) fn completion(step: u32, payload: &[u8]) -> NewEvent {
    NewEvent {
        step,
        kind: KIND_COMPLETION,
        completion: true,
        payload: payload.to_vec(),
        wake_at_ms: None,
    }
}

/// An event that does not complete its step.
pub(super) fn note(step: u32, kind: u16, payload: &[u8]) -> NewEvent {
    NewEvent {
        step,
        kind,
        completion: false,
        payload: payload.to_vec(),
        wake_at_ms: None,
    }
}

/// A timer started at `step`, due at `at_ms`.
pub(super) fn timer(step: u32, at_ms: i64) -> NewEvent {
    NewEvent {
        step,
        kind: KIND_TIMER,
        completion: false,
        payload: at_ms.to_le_bytes().to_vec(),
        wake_at_ms: Some(at_ms),
    }
}

/// A commit that only changes the run's status.
pub(super) fn status_commit(id: &str, status: StatusChange) -> Commit {
    let mut commit = Commit::events(id, Vec::new());
    commit.status = Some(status);
    commit
}

/// A short name for a status change, for messages.
pub(super) fn status_name(status: &StatusChange) -> &'static str {
    match status {
        StatusChange::Resume => "Resume",
        StatusChange::Complete { .. } => "Complete",
        StatusChange::Fail { .. } => "Fail",
        StatusChange::Park { .. } => "Park",
        StatusChange::Cancel { .. } => "Cancel",
        StatusChange::CompensationFail { .. } => "CompensationFail",
        StatusChange::ContinueAsNew { .. } => "ContinueAsNew",
    }
}

/// Runs a store call the way the engine does: retryable errors are retried (up to 10 times, with a
/// backoff from 5 ms), anything else is returned.
pub(super) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut wait = Duration::from_millis(5);
    let mut tries = 0;
    loop {
        match call().await {
            Err(error) if error.is_retryable() && tries < 10 => {
                tries += 1;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}
