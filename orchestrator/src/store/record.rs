//! The rows a [`Store`](super::Store) reads and writes.

/// The lifecycle state of a run as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunState {
    /// Started and not finished.
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped and waiting for an operator (the engine retries it at its next start).
    Parked,
}

impl RunState {
    /// The integer stored in the `state` column.
    pub fn code(self) -> i64 {
        match self {
            RunState::Running => 0,
            RunState::Completed => 1,
            RunState::Failed => 2,
            RunState::Parked => 3,
        }
    }

    /// The state for a stored integer.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(RunState::Running),
            1 => Some(RunState::Completed),
            2 => Some(RunState::Failed),
            3 => Some(RunState::Parked),
            _ => None,
        }
    }

    /// Whether the run has completed or failed.
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Completed | RunState::Failed)
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The caller-chosen, unique workflow id.
    pub workflow_id: String,
    /// The workflow type's name.
    pub workflow_name: String,
    /// The encoded input.
    pub input: Vec<u8>,
}

/// What [`Store::create_run`](super::Store::create_run) found.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    /// The run was created.
    Created,
    /// A run with this workflow id already existed; nothing was written.
    Existing(RunRecord),
}

/// A stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The workflow id.
    pub workflow_id: String,
    /// The workflow type's name.
    pub workflow_name: String,
    /// The lifecycle state.
    pub state: RunState,
    /// The encoded input.
    pub input: Vec<u8>,
    /// The encoded output, once completed.
    pub output: Option<Vec<u8>>,
    /// The encoded error (failed) or park reason (parked).
    pub error: Option<Vec<u8>>,
    /// When the run was created (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When the run's row last changed (ms since the Unix epoch).
    pub updated_at_ms: i64,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The step it belongs to (1-based).
    pub step: u32,
    /// The event's numeric kind.
    pub kind: u16,
    /// Whether it completes its step (at most one completion per step).
    pub completion: bool,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its position in the store's commit order.
    pub seq: i64,
    /// The step it belongs to.
    pub step: u32,
    /// The event's numeric kind.
    pub kind: u16,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// A change of a run's status, applied with a [`Commit`].
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// A parked run is being retried.
    Resume,
    /// The run completed with this encoded output.
    Complete {
        /// The encoded output.
        output: Vec<u8>,
    },
    /// The run failed with this encoded error.
    Fail {
        /// The encoded error.
        error: Vec<u8>,
    },
    /// The run is parked for this encoded reason.
    Park {
        /// The encoded park reason.
        reason: Vec<u8>,
    },
}

/// One atomic write to a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The run written to.
    pub workflow_id: String,
    /// Events to append, in order.
    pub events: Vec<NewEvent>,
    /// A signal (by inbox id) consumed by this commit.
    pub consume_signal: Option<i64>,
    /// A status change.
    pub status: Option<StatusChange>,
}

impl Commit {
    /// A commit that only appends `events`.
    pub fn events(workflow_id: &str, events: Vec<NewEvent>) -> Self {
        Commit {
            workflow_id: workflow_id.to_string(),
            events,
            consume_signal: None,
            status: None,
        }
    }
}

/// A signal in a run's inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRecord {
    /// The inbox id: signals to one run are delivered in increasing id order.
    pub id: i64,
    /// The signal's name.
    pub name: String,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

/// What [`Store::send_signal`](super::Store::send_signal) did.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalOutcome {
    /// The signal is in the inbox.
    Queued(SignalRecord),
    /// No run has this workflow id.
    NoSuchRun,
    /// The run has finished.
    RunFinished,
}
