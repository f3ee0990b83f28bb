//! The store operations behind the operator's repair verbs (`Engine::retry`, `Engine::fork`): each
//! is one transaction.

use super::{NewEvent, NewRun, RunState};

/// Rewinds a finished or parked run so it is driven again ([`Store::rewind`](super::Store::rewind)):
/// in one transaction, if the run is still `expected_state` in run `run_no`, deletes the events
/// `drop_seqs`, appends `events` (the operator's audit annotations), re-arms `wakeups`, and makes the
/// run running again (output and error cleared; with leases, unowned so any node claims it).
#[derive(Debug, Clone, PartialEq)]
pub struct Rewind {
    /// The run.
    pub workflow_id: String,
    /// The run of the workflow id the rewind was computed from (continue-as-new changes it).
    pub run_no: i64,
    /// The state the run must still be in (the rewind was computed from it).
    pub expected_state: RunState,
    /// The `seq`s of the events to delete (superseded by the retry).
    pub drop_seqs: Vec<i64>,
    /// Events to append (annotations recording the retry).
    pub events: Vec<NewEvent>,
    /// Wake-ups to (re-)arm: `(step, at_ms)` of timers and signal deadlines still pending in the kept
    /// journal (a finished run's wake-ups were removed).
    pub wakeups: Vec<(u32, i64)>,
}

/// What [`Store::rewind`](super::Store::rewind) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewindOutcome {
    /// The run is running again.
    Rewound,
    /// No run has this workflow id.
    NoSuchRun,
    /// The run is no longer in the expected state or run (e.g. a concurrent retry won): nothing was
    /// written. Carries the state found.
    Changed(RunState),
}

/// Creates a run from another run's journal prefix ([`Store::fork_run`](super::Store::fork_run)): in
/// one transaction, creates `run` unless its id exists, appends `events` (the copied prefix and an
/// audit annotation) to it, and appends `source_events` (an audit annotation) to the source run.
#[derive(Debug, Clone)]
pub struct ForkRun {
    /// The new run.
    pub run: NewRun,
    /// Its first events, in order.
    pub events: Vec<NewEvent>,
    /// The run forked from.
    pub source_id: String,
    /// Events to append to the source run.
    pub source_events: Vec<NewEvent>,
}
