//! # orchestrator
//!
//! Embeddable durable execution for Rust. Mark ordinary async functions `#[workflow]` and
//! `#[activity]`; every step's outcome is journaled to SQLite, and after a crash each unfinished workflow
//! is replayed from its journal and continues where it stopped.
//!
//! ```
//! use std::time::Duration;
//! use orchestrator::prelude::*;
//!
//! #[activity(retry(max_attempts = 5, backoff = "10ms..1s"), timeout = "10s")]
//! async fn charge_card(amount_cents: u64) -> Result<String, ActivityError> {
//!     Ok(format!("charge-{amount_cents}"))
//! }
//!
//! #[workflow]
//! async fn checkout(ctx: WorkflowContext, amount_cents: u64) -> Result<String, WorkflowError> {
//!     let charge = ctx.call(charge_card, amount_cents).await?;
//!     let approved: bool = ctx.signal("approval").timeout(Duration::from_secs(60)).await?;
//!     if !approved {
//!         return Err(WorkflowError::failed("not approved"));
//!     }
//!     Ok(charge)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), orchestrator::Error> {
//! # let dir = std::env::temp_dir().join(format!("orch-lib-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let _ = std::fs::remove_file(dir.join("app.db"));
//! let engine = Engine::builder()
//!     .sqlite(dir.join("app.db"))
//!     .register(checkout)
//!     .register(charge_card)
//!     .start()
//!     .await?;
//! let run = engine.start(checkout, "order-42", 1999).await?; // idempotent on the id
//! engine.signal("order-42", "approval", true).await?;
//! assert_eq!(run.result().await?, "charge-1999");
//! engine.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Map of the crate
//!
//! | capability | where |
//! |---|---|
//! | declaring workflows and activities | [`workflow`], [`activity`], [`Workflow`], [`Activity`] |
//! | durable steps: calls, sleeps, signals, `now()`, random, UUIDs | [`WorkflowContext`] |
//! | concurrency inside a workflow | [`join_all`], `futures::join!` (re-exported in the prelude) |
//! | retries and timeouts | [`RetryPolicy`], [`ActivityOptions`] |
//! | starting, signalling, awaiting runs | [`Engine`], [`EngineBuilder`], [`RunHandle`] |
//! | errors, `?` in activities, failure codes | [`Error`], [`WorkflowError`], [`ActivityError`], [`ActivityResultExt`], [`ParkReason`] |
//! | replay-aware logging | [`logging`], [`WorkflowContext::is_replaying`] |
//! | the journal and its encoding | [`journal`], [`codec`] |
//! | exported histories (JSON), import | [`export`], [`Engine::export_run`], [`Engine::import_run`] |
//! | the replay checker (do stored histories replay on this code?) | [`replay`], [`Engine::replay_check`] |
//! | storage backends | [`store`] |
//! | the embedded admin HTTP API (feature `admin`) | `admin`, `EngineBuilder::admin` |
//! | the operator CLI and ops binaries (feature `cli`) | `cli`, the `orchestrator` binary |
//! | testing: virtual time, mocks, history assertions (feature `testing`) | `testing` |
//!
//! The architecture is described in `docs/architecture.md`, the on-disk format in `docs/journal.md`.

#![forbid(unsafe_code)]

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "cli")]
pub mod cli;
mod clock;
pub mod codec;
mod context;
mod definition;
mod engine;
mod error;
pub mod export;
pub mod inspect;
pub mod journal;
pub mod limits;
pub mod logging;
pub mod prelude;
pub mod replay;
mod retry;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::{
    ActivityCall, ActivityContext, ChildCall, Select, Select2, SignalWait, Sleep, WorkflowContext,
};
pub use definition::{
    Activity, ActivityOptions, ActivityOptionsBuilder, BoxFuture, Payload, Registrable,
    Registration, Workflow,
};
pub use engine::{
    AnyOutput, BulkAction, BulkOptions, BulkProblem, BulkProgress, BulkReport, Engine,
    EngineBuilder, Fork, RunHandle, RunStatus, StartRun, Termination,
};
pub use error::{
    ActivityError, ActivityFailure, ActivityResultExt, Error, NonDeterminismError, ParkReason,
    WorkflowError,
};
pub use futures::future::{Either, join_all, try_join_all};
pub use orchestrator_macros::{activity, workflow};
pub use retry::{RetryPolicy, RetryPolicyBuilder};
pub use store::Durability;

/// What the macros' generated code refers to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::{ActivityContext, WorkflowContext};
    pub use crate::definition::{
        Activity, ActivityOptions, BoxFuture, Registrable, Registration, Workflow,
    };
    pub use crate::error::{ActivityError, WorkflowError};
    pub use crate::retry::RetryPolicy;
    pub use std::boxed::Box;
    pub use std::time::Duration;
}
