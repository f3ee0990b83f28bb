//! How a run ends: completed, failed, cancelled, compensation failed, continued as new, or parked.

use super::{Driver, DriverExit};
use crate::error::{ParkReason, WorkflowError};
use crate::journal::{Interrupt, encode_park_reason, encode_workflow_error};
use crate::store::{Commit, StatusChange, StoreError};

/// The searchable text of a run's error or park reason: its message, at most 4 KiB.
pub(crate) fn searchable(error: &impl std::fmt::Display) -> String {
    let mut text = error.to_string();
    if text.len() > 4096 {
        let mut end = 4096;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Driver {
    /// Journals the body's result with the matching status change.
    pub(super) async fn finish(
        &mut self,
        result: Result<Vec<u8>, WorkflowError>,
    ) -> Result<DriverExit, StoreError> {
        // A failure raised on the body's last poll (a damaged record, the context used inside a side
        // effect's closure) wins over the result it returned.
        let failure = self.shared.machine().failure().cloned();
        if let Some(reason) = failure {
            return self.park(reason).await;
        }
        let unreached = self.shared.machine().unreached_history();
        if let Some(error) = unreached {
            return self.park(ParkReason::NonDeterminism(error)).await;
        }
        let records = self.shared.machine().take_records();
        let values = super::published_values(&records);
        let mut pending = std::mem::take(&mut self.unjournaled);
        pending.extend(records);
        let events = self.encode_events(&pending)?;
        let continue_input = self.shared.machine().continue_as_new().map(<[u8]>::to_vec);
        let cancelled = matches!(
            self.shared.machine().interrupted(),
            Some(Interrupt::Cancelled { .. })
        );
        let mut error_text = None;
        let (status, exit) = match (result, continue_input) {
            (Err(WorkflowError::ContinuedAsNew), Some(input)) => (
                StatusChange::ContinueAsNew {
                    input,
                    keep_runs: self.keep_runs,
                },
                DriverExit::ContinuedAsNew,
            ),
            (Ok(output), _) => (
                StatusChange::Complete {
                    output: output.clone(),
                },
                DriverExit::Finished {
                    output: Some(output),
                },
            ),
            (Err(error), _) => {
                error_text = Some(searchable(&error));
                let compensation_failed = matches!(error, WorkflowError::CompensationFailed { .. });
                let encoded = match encode_workflow_error(&self.codec, &error) {
                    Ok(bytes) => bytes,
                    Err(codec_error) => {
                        // The error itself is too large: keep its head.
                        let message: String = error.to_string().chars().take(1024).collect();
                        let head = WorkflowError::Application {
                            message: format!("{message}… ({codec_error})"),
                        };
                        encode_workflow_error(&self.codec, &head).map_err(|error| {
                            StoreError::Backend {
                                operation: "encoding a workflow error",
                                message: error.to_string(),
                            }
                        })?
                    }
                };
                let status = if compensation_failed {
                    StatusChange::CompensationFail { error: encoded }
                } else if cancelled {
                    StatusChange::Cancel { error: encoded }
                } else {
                    StatusChange::Fail { error: encoded }
                };
                (status, DriverExit::Finished { output: None })
            }
        };
        let published = !values.is_empty();
        self.commit(Commit {
            workflow_id: self.workflow_id().to_string(),
            events,
            consume_signal: None,
            status: Some(status),
            values,
            run_no: None,
            fence: None,
            error_text,
        })
        .await?;
        if published {
            self.engine.state_published();
        }
        Ok(exit)
    }

    /// Parks the run for `reason`.
    pub(super) async fn park(&mut self, reason: ParkReason) -> Result<DriverExit, StoreError> {
        tracing::error!(workflow_id = %self.workflow_id(), %reason, "run parked");
        let error_text = Some(searchable(&reason));
        let reason =
            encode_park_reason(&self.codec, &reason).map_err(|error| StoreError::Backend {
                operation: "encoding a park reason",
                message: error.to_string(),
            })?;
        // Completions delivered before the divergence are facts: keep them.
        let pending = std::mem::take(&mut self.unjournaled);
        let events = self.encode_events(&pending)?;
        self.commit(Commit {
            workflow_id: self.workflow_id().to_string(),
            events,
            consume_signal: None,
            status: Some(StatusChange::Park { reason }),
            values: Vec::new(),
            run_no: None,
            fence: None,
            error_text,
        })
        .await?;
        Ok(DriverExit::Parked)
    }
}
