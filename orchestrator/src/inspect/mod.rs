//! Inspecting runs: [`Engine::describe`] returns a [`RunDescription`] — status, what the run is
//! [blocked on](BlockedOn), its step-by-step [`Timeline`], and its payloads
//! [rendered as JSON](Rendered) — for any run, finished or not, read from the store alone (so it
//! works for runs another node drives, evicted, parked or finished runs).
//!
//! Payloads are bincode, which is not self-describing: the engine keeps a catalog of the Rust types
//! it saw (registered workflows and activities, the types code used for `ctx.call`, `ctx.signal`,
//! `ctx.set_state` in this process, and types declared with
//! [`EngineBuilder::signal_type`](crate::EngineBuilder::signal_type) /
//! [`state_type`](crate::EngineBuilder::state_type)). A payload whose type it does not know, or
//! that does not decode, is shown as [`Rendered::Opaque`] (size and hex prefix), never an error.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), orchestrator::Error> {
//! use orchestrator::prelude::*;
//! use orchestrator::inspect::{BlockedOn, Rendered};
//!
//! #[workflow]
//! async fn approval(ctx: WorkflowContext, amount: u64) -> Result<bool, WorkflowError> {
//!     let approved: bool = ctx.signal("approve").timeout(std::time::Duration::from_secs(3600)).await?;
//!     Ok(approved && amount < 1_000)
//! }
//!
//! let engine = Engine::builder().in_memory().register(approval).start().await?;
//! let run = engine.start(approval, "loan-7", 250).await?;
//! let mut description = engine.describe("loan-7").await?;
//! # for _ in 0..500 {
//! #     if matches!(description.blocked_on, BlockedOn::Signal { .. }) { break; }
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! #     description = engine.describe("loan-7").await?;
//! # }
//! assert_eq!(description.input, Rendered::Json(serde_json::json!(250)));
//! assert!(matches!(description.blocked_on, BlockedOn::Signal { ref name, .. } if name == "approve"));
//! println!("{}", description.blocked_on); // signal `approve` (deadline 2026-…Z, step 1)
//! engine.signal("loan-7", "approve", true).await?;
//! assert!(run.result().await?);
//! # engine.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod blocked_on;
pub(crate) mod catalog;
mod description;
mod render;
mod timeline;

pub use blocked_on::BlockedOn;
pub(crate) use catalog::Catalog;
pub use description::{
    ArchivedRunSummary, ChildSummary, MAX_CHILDREN, PauseInfo, PendingSignal, PublishedValue,
    RunDescription,
};
pub use render::{MAX_RENDERED_JSON, Rendered, rfc3339};
pub use timeline::{
    Attempt, AttemptOutcome, ErrorView, MAX_TIMELINE_STEPS, OperatorActionView, RunEvent,
    RunEventKind, StepEntry, StepKind, StepStatus, Timeline, UndecodableEvent,
};

use crate::engine::Engine;
use crate::error::Error;

impl Engine {
    /// Everything known about run `workflow_id`: status, blocked-on reason, timeline, payloads as
    /// JSON, pending signals, published state, children, lease holder and operator actions. Read
    /// from the store only: works for any run, whether this engine drives it or not (another node's,
    /// evicted, parked, finished). See the [`inspect`](crate::inspect) module.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no run has this id, [`Error::Store`] when the store fails. An
    /// undecodable payload or journal row never fails the call: it shows as opaque or in
    /// [`Timeline::undecodable`].
    pub async fn describe(&self, workflow_id: &str) -> Result<RunDescription, Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        let store = self.store().clone();
        let registered = |name: &str| self.workflow(name).is_some();
        let sources = description::Sources {
            store: store.as_ref(),
            codec: self.codec(),
            catalog: self.catalog(),
            registered: &registered,
            node: self.node_id(),
        };
        description::describe(&sources, workflow_id).await
    }

    /// Sends signal `name` to run `workflow_id` with a JSON payload, converted through the signal's
    /// type in the engine's catalog (declared with
    /// [`EngineBuilder::signal_type`](crate::EngineBuilder::signal_type), or learned when a run of
    /// that workflow type waited for it in this process). For the admin API and tools that have no
    /// Rust type at hand.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPayloadType`] when the catalog lacks the signal's type (nothing is sent),
    /// [`Error::InvalidJson`] when `payload` does not match it, and the errors of
    /// [`Engine::signal`].
    pub async fn signal_json(
        &self,
        workflow_id: &str,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<(), Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        crate::limits::check_signal_name(name)?;
        let run = self
            .store()
            .run(workflow_id)
            .await?
            .ok_or_else(|| Error::NotFound {
                workflow_id: workflow_id.to_string(),
            })?;
        let what = || {
            format!(
                "signal `{name}` of workflow `{}`",
                run.workflow_name.as_str()
            )
        };
        let ty = description::require(self.catalog().signal(&run.workflow_name, name), what)?;
        let bytes = ty
            .parse(&self.codec(), payload)
            .map_err(|message| Error::InvalidJson {
                what: what(),
                message,
            })?;
        self.signal_encoded(workflow_id, name, bytes).await
    }

    /// Converts a JSON workflow input into the encoded input of workflow type `workflow_name` (for
    /// starting or forking runs from the admin API).
    #[allow(dead_code)]
    pub(crate) fn input_from_json(
        &self,
        workflow_name: &str,
        input: serde_json::Value,
    ) -> Result<Vec<u8>, Error> {
        let what = || format!("the input of workflow `{workflow_name}`");
        let ty = description::require(
            self.catalog()
                .workflow(workflow_name)
                .map(|signature| signature.input),
            what,
        )?;
        ty.parse(&self.codec(), input)
            .map_err(|message| Error::InvalidJson {
                what: what(),
                message,
            })
    }
}

#[cfg(test)]
mod tests;
