//! The replay checker: [`Engine::replay_check`] replays stored or exported histories on the current
//! code, executing nothing, and reports every run that no longer replays.

use std::time::Instant;

use super::check::{CheckOutcome, check_replay_logged};
use super::report::{ReplayOutcome, ReplayReport, ReplaySource, RunReplay};
use crate::codec::Codec;
use crate::engine::Engine;
use crate::error::{Error, ParkReason};
use crate::journal::decode_history;
use crate::store::{RunQuery, Store, StoredEvent};

/// How many runs are read from a store per page.
const PAGE: usize = 1_000;

impl Engine {
    /// Replays each history of `source` against this engine's registered workflows (the current
    /// code) without executing any activity, timer or child, and reports, per run, whether it still
    /// replays — or the step where it would hit nondeterminism with the recorded call and the new
    /// one, an undecodable payload, an unregistered workflow type — and which `ctx.patched` branch
    /// it takes. Nothing is written anywhere. Meant for CI: see `docs/testing.md`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when a store cannot be read. Problems of single runs are in the report.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use orchestrator::prelude::*;
    /// use orchestrator::replay::ReplaySource;
    /// use orchestrator::store::RunQuery;
    ///
    /// #[activity]
    /// async fn greet(name: String) -> Result<String, ActivityError> { Ok(format!("hi {name}")) }
    ///
    /// #[workflow]
    /// async fn hello(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
    ///     Ok(ctx.call(greet, name).await?)
    /// }
    ///
    /// let engine = Engine::builder().in_memory().register(hello).register(greet).start().await?;
    /// engine.start(hello, "h-1", "ann".to_string()).await?.result().await?;
    /// let report = engine.replay_check(ReplaySource::EngineStore(RunQuery::new())).await?;
    /// assert!(report.is_ok(), "{report}");
    /// assert_eq!(report.runs.len(), 1);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn replay_check(&self, source: ReplaySource) -> Result<ReplayReport, Error> {
        let started = Instant::now();
        let mut report = ReplayReport::default();
        match source {
            ReplaySource::EngineStore(query) => {
                let store = self.store().clone();
                self.check_store(store.as_ref(), query, &mut report).await?;
            }
            ReplaySource::Store(store, query) => {
                self.check_store(store.as_ref(), query, &mut report).await?;
            }
            ReplaySource::Exports(exports) => {
                for export in exports {
                    let rows = export.stored_events();
                    report.runs.push(self.check_one(
                        &export.run.workflow_id,
                        &export.run.workflow_name,
                        &export.run.input,
                        &rows,
                    ));
                }
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    async fn check_store(
        &self,
        store: &dyn Store,
        mut query: RunQuery,
        report: &mut ReplayReport,
    ) -> Result<(), Error> {
        query.limit = PAGE;
        loop {
            let page = store.list_runs(&query).await?;
            for run in &page.runs {
                let rows = store.history(&run.workflow_id).await?;
                report.runs.push(self.check_one(
                    &run.workflow_id,
                    &run.workflow_name,
                    &run.input,
                    &rows,
                ));
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Replays one history.
    pub(crate) fn check_one(
        &self,
        workflow_id: &str,
        workflow_name: &str,
        input: &[u8],
        rows: &[StoredEvent],
    ) -> RunReplay {
        let mut run = RunReplay {
            workflow_id: workflow_id.to_string(),
            workflow_name: workflow_name.to_string(),
            events: rows.len(),
            outcome: ReplayOutcome::Ok { finished: false },
            patches: Vec::new(),
        };
        let Some(workflow) = self.workflow(workflow_name) else {
            run.outcome = ReplayOutcome::UnknownWorkflowType {
                name: workflow_name.to_string(),
            };
            return run;
        };
        let codec: Codec = self.codec();
        let history = match decode_history(&codec, rows) {
            Ok(history) => history,
            Err(reason) => {
                run.outcome = outcome_of(reason);
                return run;
            }
        };
        let (outcome, patches) = check_replay_logged(workflow, codec, workflow_id, history, input);
        run.patches = patches;
        run.outcome = match outcome {
            Ok(CheckOutcome::Finished) => ReplayOutcome::Ok { finished: true },
            Ok(CheckOutcome::Waiting | CheckOutcome::ReachedLimit) => {
                ReplayOutcome::Ok { finished: false }
            }
            Err(reason) => outcome_of(reason),
        };
        run
    }
}

fn outcome_of(reason: ParkReason) -> ReplayOutcome {
    match reason {
        ParkReason::NonDeterminism(error) => ReplayOutcome::NonDeterminism {
            step: error.step,
            recorded: error.recorded,
            new_call: error.requested,
        },
        ParkReason::UnknownWorkflowType { name } => ReplayOutcome::UnknownWorkflowType { name },
        ParkReason::UndecodablePayload { .. } | ParkReason::CorruptJournal { .. } => {
            ReplayOutcome::Undecodable {
                message: reason.to_string(),
            }
        }
        ParkReason::Panicked { message, .. } => ReplayOutcome::Panicked { message },
        other => ReplayOutcome::Failed {
            message: other.to_string(),
        },
    }
}
