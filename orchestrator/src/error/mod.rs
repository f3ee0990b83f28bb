//! Errors: the umbrella [`Error`] returned by the engine's API, and the errors of workflows and activities.

mod activity;
mod workflow;

pub use activity::{ActivityError, ActivityFailure, ActivityResultExt};
pub use workflow::{NonDeterminismError, ParkReason, WorkflowError};

use serde::de::DeserializeOwned;

use crate::codec::CodecError;
use crate::store::StoreError;

/// Everything the engine's API can fail with.
///
/// Each variant carries the context needed to act on it (the workflow id, the names involved); causes are
/// chained through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The journal store failed; see [`StoreError::is_retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A workflow with this id already exists and is of another type.
    #[error(
        "workflow id `{}` is already used by a `{existing}` run (requested `{requested}`)", crate::limits::IdDisplay(.workflow_id)
    )]
    WorkflowIdConflict {
        /// The contested workflow id.
        workflow_id: String,
        /// The type of the existing run.
        existing: String,
        /// The type that was asked for.
        requested: String,
    },
    /// The workflow type was not registered with this engine.
    #[error(
        "workflow type `{name}` is not registered with this engine; call `.register(..)` on the builder"
    )]
    UnregisteredWorkflow {
        /// The workflow type's name.
        name: String,
    },
    /// Two registrations use one name.
    #[error("the name `{name}` is registered twice")]
    DuplicateRegistration {
        /// The name used twice.
        name: String,
    },
    /// No run with this workflow id exists.
    #[error("no workflow with id `{}`", crate::limits::IdDisplay(.workflow_id))]
    NotFound {
        /// The workflow id looked up.
        workflow_id: String,
    },
    /// The run has already completed or failed, so it cannot take this request (e.g. a signal).
    #[error("workflow `{}` has already finished", crate::limits::IdDisplay(.workflow_id))]
    RunFinished {
        /// The finished run's workflow id.
        workflow_id: String,
    },
    /// The run was asked for with an output type other than its workflow's.
    #[error("workflow `{}` is a `{actual}` run, not a `{expected}` run", crate::limits::IdDisplay(.workflow_id))]
    WrongWorkflowType {
        /// The run's workflow id.
        workflow_id: String,
        /// The type the caller expected.
        expected: String,
        /// The run's recorded type.
        actual: String,
    },
    /// The workflow finished with an error.
    #[error("workflow `{}` failed: {error}", crate::limits::IdDisplay(.workflow_id))]
    WorkflowFailed {
        /// The failed run's workflow id.
        workflow_id: String,
        /// The error the workflow ended with.
        #[source]
        error: WorkflowError,
    },
    /// The run was parked and needs an operator (see [`ParkReason`]).
    #[error("workflow `{}` is parked: {reason}", crate::limits::IdDisplay(.workflow_id))]
    RunParked {
        /// The parked run's workflow id.
        workflow_id: String,
        /// Why it was parked.
        #[source]
        reason: ParkReason,
    },
    /// The run finished without publishing the awaited state key.
    #[error("workflow `{}` finished without publishing `{key}`", crate::limits::IdDisplay(.workflow_id))]
    StateNeverSet {
        /// The run's workflow id.
        workflow_id: String,
        /// The key awaited.
        key: String,
    },
    /// The run's driver stopped because its journal could not be read or written (disk full,
    /// corruption, a closed store). The run is unfinished, and the engine keeps reviving it from its
    /// journal with backoff, so asking for the result again later may succeed. Transient errors (busy,
    /// I/O) are retried without this error.
    #[error(
        "workflow `{}` stopped: {reason}; the engine revives it from its journal once the store works again", crate::limits::IdDisplay(.workflow_id)
    )]
    RunStopped {
        /// The run's workflow id.
        workflow_id: String,
        /// The journal error.
        reason: String,
    },
    /// An operator terminated the run (see [`Engine::terminate`](crate::Engine::terminate)): it
    /// ended at once, without compensations.
    #[error("workflow `{}` was terminated by {actor}: {reason}", crate::limits::IdDisplay(.workflow_id))]
    RunTerminated {
        /// The run's workflow id.
        workflow_id: String,
        /// Who terminated it.
        actor: String,
        /// Why.
        reason: String,
    },
    /// The engine is shutting down and takes no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The engine's configuration is invalid.
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// A workflow id, signal name or state key is longer than its limit (see
    /// [`limits`](crate::limits)). Refused before the store is touched.
    #[error("{kind} `{prefix}` is too long: {len} bytes, the limit is {max}")]
    InvalidIdentifier {
        /// Which identifier.
        kind: crate::limits::IdentifierKind,
        /// Its length in bytes.
        len: usize,
        /// The largest length accepted, in bytes.
        max: usize,
        /// The identifier, shortened to a prefix when long.
        prefix: String,
    },
    /// An operator action (pause, resume, retry, fork, terminate) does not apply to the run in its
    /// current state, e.g. resuming a run that is not paused or retrying one that completed. Nothing
    /// was changed.
    #[error("cannot {action} workflow `{}`: {reason}", crate::limits::IdDisplay(.workflow_id))]
    NotApplicable {
        /// The run's workflow id.
        workflow_id: String,
        /// The action refused (`"pause"`, `"resume"`, `"retry"`, `"fork"`, `"terminate"`).
        action: &'static str,
        /// Why it does not apply, and what to do instead.
        reason: String,
    },
    /// A payload's type is not in the engine's type catalog, so JSON cannot be turned into it (see
    /// [`Engine::signal_json`](crate::Engine::signal_json)): register the workflow or activity, or
    /// declare the type on the builder.
    #[error("the type of {what} is not known to this engine; declare it on the builder")]
    UnknownPayloadType {
        /// Which payload (e.g. "signal `approval` of workflow `checkout`").
        what: String,
    },
    /// JSON given for a payload does not match its type.
    #[error("invalid JSON for {what}: {message}")]
    InvalidJson {
        /// Which payload.
        what: String,
        /// Why it does not match.
        message: String,
    },
    /// An exported history was refused (see [`export`](crate::export)).
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
}

impl Error {
    /// The code of the business failure a run ended with, if it has one: set by
    /// [`WorkflowError::failure`] in the workflow or [`ActivityError::failure`] in one of its activities
    /// (see [`WorkflowError::failure_code`]). Match on it instead of on nested error variants.
    ///
    /// ```
    /// use orchestrator::{ActivityError, Error, WorkflowError};
    ///
    /// let error = Error::WorkflowFailed {
    ///     workflow_id: "order-42".into(),
    ///     error: WorkflowError::ActivityFailed {
    ///         activity: "charge".into(),
    ///         step: 1,
    ///         attempts: 1,
    ///         error: ActivityError::failure("card_declined", "declined"),
    ///     },
    /// };
    /// match error.failure_code() {
    ///     Some("card_declined") => { /* ask for another card */ }
    ///     _ => { /* ... */ }
    /// }
    /// ```
    pub fn failure_code(&self) -> Option<&str> {
        match self {
            Error::WorkflowFailed { error, .. } => error.failure_code(),
            _ => None,
        }
    }

    /// The details of the failure [`Error::failure_code`] finds, decoded as a `T`: `None` when it has
    /// none, `Err` when they are not a `T`.
    pub fn failure_details<T: DeserializeOwned>(&self) -> Option<Result<T, CodecError>> {
        match self {
            Error::WorkflowFailed { error, .. } => error.failure_details(),
            _ => None,
        }
    }
}
