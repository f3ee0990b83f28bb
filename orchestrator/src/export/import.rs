//! Recreating an exported run in a store: [`Engine::import_run`].

use std::sync::Arc;

use super::RunExport;
use crate::engine::Engine;
use crate::error::Error;
use crate::journal::{EventBody, OperatorAction};
use crate::store::{
    Commit, CreateOutcome, NewEvent, NewRun, OperatorChange, OperatorWrite, PauseInfo, RunState,
    StatusChange,
};

const ACTION: &str = "import";

/// Who imports, as recorded on the pause of an imported unfinished run.
const IMPORTER: &str = "import";

/// How [`Engine::import_run`] recreates a run.
///
/// ```
/// use orchestrator::export::ImportOptions;
///
/// let options = ImportOptions::new().new_id("order-42-copy").drive_unfinished(false);
/// assert_eq!(options.id(), Some("order-42-copy"));
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ImportOptions {
    new_id: Option<String>,
    drive_unfinished: bool,
}

impl ImportOptions {
    /// Import under the exported workflow id; an unfinished run is imported paused.
    pub fn new() -> Self {
        ImportOptions::default()
    }

    /// Import under this workflow id instead of the exported one.
    pub fn new_id(mut self, id: impl Into<String>) -> Self {
        self.new_id = Some(id.into());
        self
    }

    /// Whether an unfinished (running or parked) run is driven by this engine at once (`true`: it
    /// replays its journal and continues live — its next steps run for real) or imported paused
    /// (`false`, the default: nothing runs until an operator resumes it; it can be inspected and
    /// replay-checked).
    pub fn drive_unfinished(mut self, drive: bool) -> Self {
        self.drive_unfinished = drive;
        self
    }

    /// The workflow id asked for, if any.
    pub fn id(&self) -> Option<&str> {
        self.new_id.as_deref()
    }
}

impl Engine {
    /// Recreates an exported run in this engine's store, under its exported id or
    /// [`ImportOptions::new_id`], and returns that id: the run's input, every journal event (with its
    /// bytes as exported), its pending signals and its outcome. A finished run is imported finished
    /// (terminated runs get one more audit event, the termination); an unfinished one is imported
    /// paused unless [`ImportOptions::drive_unfinished`] — created paused, its pause and the pause's
    /// audit event written with its row, so no engine (a past-due wake-up, recovery on another node)
    /// can drive it before an operator resumes it. Not kept: the events' commit times (the
    /// store's clock stamps them anew), the continue-as-new count and the archived runs.
    ///
    /// # Errors
    ///
    /// - [`Error::Export`] when the export is invalid (see [`RunExport::validate`]).
    /// - [`Error::NotApplicable`] (nothing written) when a run with the id exists already.
    /// - [`Error::InvalidIdentifier`], [`Error::Store`], [`Error::ShuttingDown`].
    pub async fn import_run(
        &self,
        export: RunExport,
        options: ImportOptions,
    ) -> Result<String, Error> {
        export.validate()?;
        let id = options
            .new_id
            .clone()
            .unwrap_or_else(|| export.run.workflow_id.clone());
        crate::limits::check_workflow_id(&id)?;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let store = self.store().clone();
        if store.run(&id).await?.is_some() {
            return Err(taken(&id));
        }
        let mut events = new_events(&export)?;
        let state = export.run.status;
        // An unfinished run not driven at once is created paused, its pause and the pause's audit
        // event in the same write as its row: no engine (a past-due wake-up here, recovery on another
        // node) can pick it up between its creation and its pause.
        // A terminated run may have stopped mid-step (a timer still pending in its journal): it is
        // held the same way, without an audit event, until its termination below clears the pause.
        let paused = if state == RunState::Terminated {
            Some(PauseInfo {
                by: IMPORTER.to_string(),
                reason: "imported terminated; its termination follows".to_string(),
                at_ms: crate::clock::now_ms(),
            })
        } else if state.is_finished() || options.drive_unfinished {
            None
        } else {
            let reason = format!(
                "imported from an export of `{}`; resume to drive it",
                crate::limits::IdDisplay(&export.run.workflow_id)
            );
            events.push(self.operator_event(
                OperatorAction::Paused {
                    reason: reason.clone(),
                },
                IMPORTER,
            )?);
            Some(PauseInfo {
                by: IMPORTER.to_string(),
                reason,
                at_ms: crate::clock::now_ms(),
            })
        };
        let lease = self.initial_lease();
        let created = store
            .create_run(NewRun {
                workflow_id: id.clone(),
                workflow_name: export.run.workflow_name.clone(),
                input: export.run.input.clone(),
                parent_id: export.run.parent_id.clone(),
                deadline_ms: export.run.deadline_ms,
                execution_timeout_ms: export.run.execution_timeout_ms,
                owner: lease,
                events,
                paused,
            })
            .await?;
        if let CreateOutcome::Existing(_) = created {
            return Err(taken(&id));
        }
        if !state.is_finished() {
            for signal in &export.pending_signals {
                store
                    .send_signal(&id, &signal.name, signal.payload.clone())
                    .await?;
            }
            if let Some(reason) = &export.run.cancel_reason {
                store.request_cancel(&id, reason).await?;
            }
        }
        if let Some(status) = status_change(&export)? {
            let mut commit = Commit::events(&id, Vec::new());
            commit.error_text = export.run.error_message.clone();
            commit.status = Some(status);
            store.commit(commit).await?;
        }
        if state == RunState::Terminated {
            let (actor, reason) = termination(&export);
            let audit = self.operator_event(OperatorAction::Terminated { reason }, &actor)?;
            store
                .operate(OperatorWrite {
                    workflow_id: id.clone(),
                    change: OperatorChange::Terminate {
                        error: export.run.error.clone().unwrap_or_default(),
                        text: export.run.error_message.clone().unwrap_or_default(),
                    },
                    audit,
                })
                .await?;
        }
        if !state.is_finished() && options.drive_unfinished {
            self.load_and_drive(Arc::from(id.as_str()), true).await;
        }
        tracing::info!(workflow_id = %id, source = %export.run.workflow_id, "run imported from an export");
        Ok(id)
    }
}

/// The exported events as store rows to append, with the wake-ups of steps still open.
fn new_events(export: &RunExport) -> Result<Vec<NewEvent>, Error> {
    let codec = crate::codec::Codec::new(crate::codec::MAX_PAYLOAD_LIMIT);
    let mut events = Vec::with_capacity(export.events.len());
    for event in &export.events {
        let body = crate::journal::decode_event(&codec, &event.stored()).map_err(|reason| {
            super::ExportError::Invalid {
                workflow_id: crate::limits::IdDisplay(&export.run.workflow_id).to_string(),
                message: reason.to_string(),
            }
        })?;
        let wake_at_ms = match body {
            EventBody::TimerStarted { fire_at_ms } => Some(fire_at_ms),
            EventBody::SignalWaitStarted { deadline_ms, .. } => Some(deadline_ms),
            _ => None,
        };
        events.push(NewEvent {
            step: event.step,
            kind: event.kind,
            completion: body.is_completion(),
            payload: event.payload.clone(),
            wake_at_ms,
        });
    }
    Ok(events)
}

/// The status change that gives the imported run its exported outcome (none for running and
/// terminated runs).
fn status_change(export: &RunExport) -> Result<Option<StatusChange>, Error> {
    let error = || {
        export.run.error.clone().ok_or_else(|| {
            Error::Export(super::ExportError::Invalid {
                workflow_id: crate::limits::IdDisplay(&export.run.workflow_id).to_string(),
                message: format!("a {:?} run without its error", export.run.status),
            })
        })
    };
    Ok(match export.run.status {
        RunState::Completed => Some(StatusChange::Complete {
            output: export.run.output.clone().unwrap_or_default(),
        }),
        RunState::Failed => Some(StatusChange::Fail { error: error()? }),
        RunState::Parked => Some(StatusChange::Park { reason: error()? }),
        RunState::Cancelled => Some(StatusChange::Cancel { error: error()? }),
        RunState::CompensationFailed => Some(StatusChange::CompensationFail { error: error()? }),
        _ => None,
    })
}

/// Who terminated the exported run and why, from its last operator event.
fn termination(export: &RunExport) -> (String, String) {
    let codec = crate::codec::Codec::new(crate::codec::MAX_PAYLOAD_LIMIT);
    export
        .events
        .iter()
        .rev()
        .filter(|event| event.step == 0)
        .find_map(
            |event| match crate::journal::decode_event(&codec, &event.stored()) {
                Ok(EventBody::Operator {
                    action: OperatorAction::Terminated { reason },
                    actor,
                    ..
                }) => Some((actor, reason)),
                _ => None,
            },
        )
        .unwrap_or_else(|| (IMPORTER.to_string(), "terminated before export".to_string()))
}

fn taken(id: &str) -> Error {
    Error::NotApplicable {
        workflow_id: id.to_string(),
        action: ACTION,
        reason:
            "a run with this id exists already; import under another id (ImportOptions::new_id)"
                .to_string(),
    }
}
