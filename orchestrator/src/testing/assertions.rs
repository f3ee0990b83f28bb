//! A run's history as a value to assert on: its timeline (see [`inspect`](crate::inspect)) with
//! helpers that fail with the whole timeline in the message.

use std::time::Duration;

use crate::error::Error;
use crate::inspect::{RunDescription, StepEntry, StepKind, StepStatus, Timeline};

/// What a run did, read from its journal: [`TestEngine::history`](super::TestEngine::history).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrator::Error> {
/// use std::time::Duration;
/// use orchestrator::prelude::*;
/// use orchestrator::inspect::StepKind;
/// use orchestrator::testing::TestEngine;
///
/// #[workflow]
/// async fn nap(ctx: WorkflowContext, _: ()) -> Result<(), WorkflowError> {
///     ctx.sleep(Duration::from_secs(3_600)).await?;
///     Ok(())
/// }
///
/// let test = TestEngine::builder().register(nap).start().await?;
/// test.start(nap, "n-1", ()).await?.result().await?;
/// let history = test.history("n-1").await?;
/// assert_eq!(history.step(1).kind, StepKind::Timer);
/// assert_eq!(history.timer(1), Duration::from_secs(3_600));
/// # test.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RunHistory {
    /// Everything [`Engine::describe`](crate::Engine::describe) says about the run.
    pub description: RunDescription,
}

impl super::TestEngine {
    /// The history of run `workflow_id`, to assert on.
    ///
    /// # Errors
    ///
    /// The errors of [`Engine::describe`](crate::Engine::describe).
    pub async fn history(&self, workflow_id: &str) -> Result<RunHistory, Error> {
        Ok(RunHistory {
            description: self.describe(workflow_id).await?,
        })
    }
}

impl RunHistory {
    /// The step-by-step timeline.
    pub fn timeline(&self) -> &Timeline {
        &self.description.timeline
    }

    /// Every step, in order.
    pub fn steps(&self) -> &[StepEntry] {
        &self.description.timeline.steps
    }

    /// Step `step` (1-based).
    ///
    /// # Panics
    ///
    /// If the run has no such step; the message lists the steps it has.
    pub fn step(&self, step: u32) -> &StepEntry {
        match self.steps().iter().find(|entry| entry.step == step) {
            Some(entry) => entry,
            None => panic!(
                "run `{}` has no step {step}; its steps: {}",
                self.description.workflow_id,
                self.summary()
            ),
        }
    }

    /// The duration of the timer at step `step` (fire time minus start time).
    ///
    /// # Panics
    ///
    /// If step `step` is not a timer.
    pub fn timer(&self, step: u32) -> Duration {
        let entry = self.step(step);
        match (entry.kind, entry.fire_at_ms, entry.started_at_ms) {
            (StepKind::Timer, Some(fire), Some(started)) => {
                Duration::from_millis(u64::try_from(fire - started).unwrap_or(0))
            }
            _ => panic!(
                "step {step} of run `{}` is not a timer; its steps: {}",
                self.description.workflow_id,
                self.summary()
            ),
        }
    }

    /// The kinds of the steps, in order.
    pub fn kinds(&self) -> Vec<StepKind> {
        self.steps().iter().map(|entry| entry.kind).collect()
    }

    /// The activities called, in step order (compensations included).
    pub fn activities(&self) -> Vec<&str> {
        self.steps()
            .iter()
            .filter(|entry| entry.kind == StepKind::Activity)
            .filter_map(|entry| entry.name.as_deref())
            .collect()
    }

    /// The compensations that ran, in the order they ran.
    pub fn compensations(&self) -> Vec<&str> {
        self.steps()
            .iter()
            .filter(|entry| entry.compensation)
            .filter_map(|entry| entry.name.as_deref())
            .collect()
    }

    /// How many attempts the activity at step `step` made.
    pub fn attempts(&self, step: u32) -> usize {
        self.step(step).attempts.len()
    }

    /// The steps that failed (activity errors, signal timeouts, failed children).
    pub fn failed_steps(&self) -> Vec<u32> {
        self.steps()
            .iter()
            .filter(|entry| entry.status == StepStatus::Failed)
            .map(|entry| entry.step)
            .collect()
    }

    /// One line per step (`1 activity charge completed; 2 timer completed; ...`), for messages.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .steps()
            .iter()
            .map(|entry| {
                format!(
                    "{} {:?}{} {:?}",
                    entry.step,
                    entry.kind,
                    entry
                        .name
                        .as_deref()
                        .map(|name| format!(" `{name}`"))
                        .unwrap_or_default(),
                    entry.status
                )
            })
            .collect();
        if parts.is_empty() {
            "(none)".to_string()
        } else {
            parts.join("; ")
        }
    }
}
