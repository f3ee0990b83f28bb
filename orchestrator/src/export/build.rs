//! Building a [`RunExport`] from a store.

use super::render::{Renderer, kind_name};
use super::{
    EXPORT_FORMAT, EXPORT_FORMAT_VERSION, ExportedEvent, ExportedRun, ExportedSignal, RunExport,
};
use crate::codec::Codec;
use crate::engine::{Engine, RunStatus};
use crate::error::Error;
use crate::inspect::Catalog;
use crate::store::{RunRecord, Store};

/// Exports run `workflow_id` from `store`, without an engine: payloads are kept as bytes and
/// rendered opaquely (an engine's [`Engine::export_run`] renders them as JSON where its catalog
/// knows their types).
///
/// # Errors
///
/// [`Error::NotFound`] when no run has this id, [`Error::InvalidIdentifier`], [`Error::Store`].
/// Events that do not decode are exported as they are (bytes, without a rendering).
pub async fn export_run(store: &dyn Store, workflow_id: &str) -> Result<RunExport, Error> {
    build(store, workflow_id, Codec::default(), None).await
}

impl Engine {
    /// Exports run `workflow_id` (finished or not) as a [`RunExport`]: its record, every journal
    /// event and its pending signals, with payloads rendered as JSON where this engine's type catalog
    /// knows them. See the [`export`](crate::export) module.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no run has this id, [`Error::InvalidIdentifier`], [`Error::Store`].
    pub async fn export_run(&self, workflow_id: &str) -> Result<RunExport, Error> {
        build(
            self.store().as_ref(),
            workflow_id,
            self.codec(),
            Some(self.catalog()),
        )
        .await
    }
}

async fn build(
    store: &dyn Store,
    workflow_id: &str,
    codec: Codec,
    catalog: Option<&Catalog>,
) -> Result<RunExport, Error> {
    crate::limits::check_workflow_id(workflow_id)?;
    let record = store
        .run(workflow_id)
        .await?
        .ok_or_else(|| Error::NotFound {
            workflow_id: workflow_id.to_string(),
        })?;
    let rows = store.history(workflow_id).await?;
    let signals = store.pending_signals(workflow_id).await?;
    let workflow_name = record.workflow_name.clone();
    let renderer = Renderer {
        codec,
        catalog,
        workflow_name: &workflow_name,
    };
    let framing = Codec::new(crate::codec::MAX_PAYLOAD_LIMIT);
    let events = rows
        .into_iter()
        .map(|row| {
            let decoded = crate::journal::decode_event(&framing, &row).ok();
            ExportedEvent {
                seq: row.seq,
                step: row.step,
                kind: row.kind,
                kind_name: decoded.as_ref().map_or("unknown", kind_name).to_string(),
                recorded_at_ms: row.recorded_at_ms,
                rendered: decoded.as_ref().map(|body| renderer.event(body)),
                payload: row.payload,
            }
        })
        .collect();
    let pending_signals = signals
        .into_iter()
        .map(|signal| ExportedSignal {
            rendered: Some(renderer.signal(&signal.name, &signal.payload)),
            id: signal.id,
            name: signal.name,
            payload: signal.payload,
        })
        .collect();
    Ok(RunExport {
        format: EXPORT_FORMAT.to_string(),
        format_version: EXPORT_FORMAT_VERSION,
        journal_format: crate::journal::FORMAT_VERSION,
        exported_at_ms: crate::clock::now_ms(),
        run: exported_run(record, &renderer),
        events,
        pending_signals,
    })
}

fn exported_run(record: RunRecord, renderer: &Renderer<'_>) -> ExportedRun {
    let error_message =
        record.error.as_ref().map(
            |bytes| match RunStatus::from_record(&record, renderer.codec) {
                Ok(RunStatus::Parked(reason)) => reason.to_string(),
                Ok(
                    RunStatus::Failed(error)
                    | RunStatus::Cancelled(error)
                    | RunStatus::CompensationFailed(error),
                ) => error.to_string(),
                Ok(RunStatus::Terminated(termination)) => format!(
                    "terminated by {}: {}",
                    termination.actor, termination.reason
                ),
                Ok(_) => format!("{} bytes", bytes.len()),
                Err(error) => format!("undecodable error: {error}"),
            },
        );
    ExportedRun {
        input_rendered: Some(renderer.input(&record.input)),
        output_rendered: record.output.as_deref().map(|bytes| renderer.output(bytes)),
        error_message,
        workflow_id: record.workflow_id,
        workflow_name: record.workflow_name.clone(),
        status: record.state,
        input: record.input,
        output: record.output,
        error: record.error,
        run_no: record.run_no,
        parent_id: record.parent_id,
        cancel_reason: record.cancel_reason,
        deadline_ms: record.deadline_ms,
        execution_timeout_ms: record.execution_timeout_ms,
        created_at_ms: record.created_at_ms,
        updated_at_ms: record.updated_at_ms,
    }
}
