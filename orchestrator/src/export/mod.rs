//! Exported histories: one run — its record, every journal event and its pending signals — as a
//! versioned JSON document ([`RunExport`]), for fixtures, bug reports, moving a run between stores
//! and the replay checker.
//!
//! Bytes are kept exactly (lowercase hex), so an export can be imported back
//! ([`Engine::import_run`](crate::Engine::import_run)) and replayed; beside them, a JSON rendering
//! is given for people wherever the exporting engine's type catalog knows the payload's type
//! (`Rendered::Opaque` otherwise). The format is documented in `docs/journal.md`, section
//! "Exported histories".
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use orchestrator::prelude::*;
//! use orchestrator::export::{ImportOptions, RunExport};
//!
//! #[activity]
//! async fn double(n: u64) -> Result<u64, ActivityError> { Ok(n * 2) }
//!
//! #[workflow]
//! async fn doubler(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
//!     Ok(ctx.call(double, n).await?)
//! }
//!
//! let engine = Engine::builder().in_memory().register(doubler).register(double).start().await?;
//! engine.start(doubler, "d-1", 21).await?.result().await?;
//! let text = engine.export_run("d-1").await?.to_json_pretty()?;
//!
//! let export = RunExport::from_json(text.as_bytes())?; // bounded and validated
//! assert_eq!(export.run.workflow_name, "doubler");
//! let copy = engine.import_run(export, ImportOptions::new().new_id("d-1-copy")).await?;
//! assert_eq!(engine.handle(doubler, copy).await?.result().await?, 42);
//! # engine.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod build;
pub(crate) mod hex;
mod import;
mod render;

pub use build::export_run;
pub use import::ImportOptions;

use serde::{Deserialize, Serialize};

use crate::inspect::Rendered;
use crate::store::RunState;

/// The value of [`RunExport::format`]: what the document is.
pub const EXPORT_FORMAT: &str = "orchestrator-run-export";

/// The version of the export format this build writes and reads.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

/// The largest export document [`RunExport::from_json`] accepts: 256 MiB.
pub const MAX_EXPORT_BYTES: usize = 256 * 1024 * 1024;

/// The most journal events an export may hold.
pub const MAX_EXPORT_EVENTS: usize = 1_000_000;

/// The most pending signals an export may hold.
pub const MAX_EXPORT_SIGNALS: usize = 100_000;

/// One run's history, as exported (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// The export format's version ([`EXPORT_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The journal event encoding the payloads are in ([`crate::journal::FORMAT_VERSION`]).
    pub journal_format: u32,
    /// When the export was made (ms since the Unix epoch).
    pub exported_at_ms: i64,
    /// The run's record.
    pub run: ExportedRun,
    /// Every journal event of the run, in commit order.
    pub events: Vec<ExportedEvent>,
    /// Signals in the run's inbox not yet consumed, oldest first.
    pub pending_signals: Vec<ExportedSignal>,
}

/// The run record of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExportedRun {
    /// The workflow id.
    pub workflow_id: String,
    /// The workflow type.
    pub workflow_name: String,
    /// The stored lifecycle state.
    pub status: RunState,
    /// The encoded input.
    #[serde(with = "hex")]
    pub input: Vec<u8>,
    /// The input for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_rendered: Option<Rendered>,
    /// The encoded output of a completed run.
    #[serde(default, with = "hex::option")]
    pub output: Option<Vec<u8>>,
    /// The output for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_rendered: Option<Rendered>,
    /// The encoded error (failed, cancelled, compensation failed, terminated) or park reason.
    #[serde(default, with = "hex::option")]
    pub error: Option<Vec<u8>>,
    /// The error's message, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// How many times the workflow id continued as new before this run.
    pub run_no: i64,
    /// The parent run, for child workflows.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// The reason of a requested cancellation.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// The execution deadline (ms since the Unix epoch).
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    /// The execution timeout, in milliseconds.
    #[serde(default)]
    pub execution_timeout_ms: Option<i64>,
    /// When the run was created (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When its row last changed (ms since the Unix epoch).
    pub updated_at_ms: i64,
}

/// One journal event of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExportedEvent {
    /// Its position in the exporting store's commit order.
    pub seq: i64,
    /// The step it belongs to (0: run-level).
    pub step: u32,
    /// The numeric event kind (see `docs/journal.md`, "Event kinds").
    pub kind: u16,
    /// The kind's name, for people (`"ActivityCompleted"`, ...; `"unknown"` if it did not decode).
    pub kind_name: String,
    /// When it was committed (ms since the Unix epoch).
    pub recorded_at_ms: i64,
    /// The encoded event, exactly as the journal stores it.
    #[serde(with = "hex")]
    pub payload: Vec<u8>,
    /// The decoded event for people, with its payloads rendered through the type catalog (absent if
    /// the event did not decode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<serde_json::Value>,
}

/// A pending signal of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExportedSignal {
    /// Its inbox id in the exporting store.
    pub id: i64,
    /// The signal's name.
    pub name: String,
    /// The encoded payload.
    #[serde(with = "hex")]
    pub payload: Vec<u8>,
    /// The payload for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Rendered>,
}

/// Why an export document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The document is larger than [`MAX_EXPORT_BYTES`].
    #[error("the export is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The document is not an orchestrator run export.
    #[error("not an orchestrator run export: {message}")]
    NotAnExport {
        /// What was found instead.
        message: String,
    },
    /// The export was written in a format version this build does not read.
    #[error(
        "export format version {found} is not supported (this build reads version {supported}); \
         export the run again with a matching orchestrator version"
    )]
    UnsupportedVersion {
        /// The document's version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The document is not valid JSON or does not match the format.
    #[error("malformed export: {message}")]
    Malformed {
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document parses but its content is invalid (limits, identifiers, events).
    #[error("invalid export of `{workflow_id}`: {message}")]
    Invalid {
        /// The exported run's workflow id (shortened when long).
        workflow_id: String,
        /// What is wrong.
        message: String,
    },
    /// The export could not be written as JSON.
    #[error("cannot write the export as JSON: {message}")]
    Serialize {
        /// The serializer's message.
        message: String,
    },
}

/// The header read before the whole document, so a version mismatch is reported as such.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    format_version: Option<u32>,
}

impl RunExport {
    /// Parses an export document: at most [`MAX_EXPORT_BYTES`], of format [`EXPORT_FORMAT`] at
    /// version [`EXPORT_FORMAT_VERSION`], then [validated](RunExport::validate).
    ///
    /// # Errors
    ///
    /// An [`ExportError`] saying which of these failed.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ExportError> {
        if bytes.len() > MAX_EXPORT_BYTES {
            return Err(ExportError::TooLarge {
                size: bytes.len(),
                max: MAX_EXPORT_BYTES,
            });
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|error| ExportError::NotAnExport {
                message: error.to_string(),
            })?;
        if header.format.as_deref() != Some(EXPORT_FORMAT) {
            return Err(ExportError::NotAnExport {
                message: format!(
                    "`format` is {:?}, expected \"{EXPORT_FORMAT}\"",
                    header
                        .format
                        .as_deref()
                        .map(|text| text.chars().take(64).collect::<String>())
                ),
            });
        }
        match header.format_version {
            Some(EXPORT_FORMAT_VERSION) => {}
            Some(found) => {
                return Err(ExportError::UnsupportedVersion {
                    found,
                    supported: EXPORT_FORMAT_VERSION,
                });
            }
            None => {
                return Err(ExportError::NotAnExport {
                    message: "`format_version` is missing".to_string(),
                });
            }
        }
        let export: RunExport =
            serde_json::from_slice(bytes).map_err(|error| ExportError::Malformed {
                message: error.to_string(),
            })?;
        export.validate()?;
        Ok(export)
    }

    /// Checks what parsing cannot: the identifiers' limits, the event and signal counts, step 0
    /// holding only run-level events, and that every event's payload decodes as its kind.
    ///
    /// # Errors
    ///
    /// [`ExportError::Invalid`] naming the problem.
    pub fn validate(&self) -> Result<(), ExportError> {
        let invalid = |message: String| ExportError::Invalid {
            workflow_id: crate::limits::IdDisplay(&self.run.workflow_id).to_string(),
            message,
        };
        crate::limits::check_workflow_id(&self.run.workflow_id)
            .map_err(|error| invalid(error.to_string()))?;
        if let Some(parent) = &self.run.parent_id {
            crate::limits::check_workflow_id(parent)
                .map_err(|error| invalid(format!("parent: {error}")))?;
        }
        if self.run.workflow_name.is_empty()
            || self.run.workflow_name.len() > crate::limits::MAX_NAME_BYTES
        {
            return Err(invalid(format!(
                "workflow type name of {} bytes",
                self.run.workflow_name.len()
            )));
        }
        if self.events.len() > MAX_EXPORT_EVENTS {
            return Err(invalid(format!(
                "{} events; the limit is {MAX_EXPORT_EVENTS}",
                self.events.len()
            )));
        }
        if self.pending_signals.len() > MAX_EXPORT_SIGNALS {
            return Err(invalid(format!(
                "{} pending signals; the limit is {MAX_EXPORT_SIGNALS}",
                self.pending_signals.len()
            )));
        }
        for signal in &self.pending_signals {
            crate::limits::check_signal_name(&signal.name)
                .map_err(|error| invalid(format!("pending signal #{}: {error}", signal.id)))?;
        }
        let codec = crate::codec::Codec::new(crate::codec::MAX_PAYLOAD_LIMIT);
        for event in &self.events {
            crate::journal::decode_event(&codec, &event.stored())
                .map_err(|reason| invalid(reason.to_string()))?;
        }
        Ok(())
    }

    /// The export as compact JSON.
    ///
    /// # Errors
    ///
    /// [`ExportError::Serialize`] (not expected for exports built by the engine).
    pub fn to_json(&self) -> Result<String, ExportError> {
        serde_json::to_string(self).map_err(|error| ExportError::Serialize {
            message: error.to_string(),
        })
    }

    /// The export as indented JSON (what the CLI writes and fixtures hold).
    ///
    /// # Errors
    ///
    /// [`ExportError::Serialize`] (not expected for exports built by the engine).
    pub fn to_json_pretty(&self) -> Result<String, ExportError> {
        serde_json::to_string_pretty(self).map_err(|error| ExportError::Serialize {
            message: error.to_string(),
        })
    }

    /// The run's events as store rows (for replay and import).
    pub fn stored_events(&self) -> Vec<crate::store::StoredEvent> {
        self.events.iter().map(ExportedEvent::stored).collect()
    }
}

impl ExportedEvent {
    /// This event as a store row.
    pub fn stored(&self) -> crate::store::StoredEvent {
        crate::store::StoredEvent {
            seq: self.seq,
            step: self.step,
            kind: self.kind,
            payload: self.payload.clone(),
            recorded_at_ms: self.recorded_at_ms,
        }
    }
}

#[cfg(test)]
mod tests;
