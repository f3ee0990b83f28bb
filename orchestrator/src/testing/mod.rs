//! Testing workflows (feature `testing`): a [`TestEngine`] on virtual time, activity mocks,
//! assertions on a run's history, and the replay checker for CI.
//!
//! - **Virtual time** ([`TestEngine`]): a workflow that sleeps 30 days, retries with hour-long
//!   backoffs and waits a week for a signal finishes in milliseconds, with the same history for the
//!   same seed. Time jumps to the next due timer whenever every run is blocked, or by hand
//!   ([`TestEngine::advance`], [`TestEngine::run_until_blocked`], [`TestEngine::next_wakeup`]).
//! - **Mocks** ([`TestEngine::mock`]): replace an activity with a closure, script failures, count
//!   calls and read their inputs.
//! - **History assertions** ([`TestEngine::history`]): the run's timeline as a value
//!   ([`RunHistory`]).
//! - **Replay checks** ([`replay_check`]): do stored or exported histories still replay on the
//!   current code?
//!
//! Use it from `#[tokio::test]` (a current-thread runtime; the test engine pauses its clock). Mocked
//! activities and activities that do no real I/O are what virtual time suits: an activity waiting
//! for a real socket lets the paused clock jump ahead meanwhile. See `docs/testing.md`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), orchestrator::Error> {
//! use std::time::Duration;
//! use orchestrator::prelude::*;
//! use orchestrator::testing::TestEngine;
//!
//! #[workflow]
//! async fn approval(ctx: WorkflowContext, _: ()) -> Result<bool, WorkflowError> {
//!     let answer = ctx.signal::<bool>("approve").timeout(Duration::from_secs(7 * 86_400)).await;
//!     Ok(answer.unwrap_or(false))
//! }
//!
//! let test = TestEngine::builder().register(approval).start().await?;
//! let run = test.start(approval, "a-1", ()).await?;
//! test.advance(Duration::from_secs(3 * 86_400)).await?; // three days pass; still waiting
//! test.signal("a-1", "approve", true).await?;
//! assert!(run.result().await?);
//! # test.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod assertions;
mod busy_store;
mod clock;
mod mocks;
mod replay;

pub use assertions::RunHistory;
pub use clock::{TestEngine, TestEngineBuilder};
pub(crate) use mocks::MockTable;
pub use mocks::{ActivityMock, MockCall, RawActivity};
pub use replay::{HistorySource, MAX_FIXTURE_FILES, ReplayCheckError, read_fixtures, replay_check};
