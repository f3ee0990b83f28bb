//! What workflow and activity code sees: [`WorkflowContext`] and [`ActivityContext`].

mod activity;
mod futures;
mod workflow;

pub use activity::ActivityContext;
pub use futures::{ActivityCall, SignalWait, Sleep};
pub use workflow::WorkflowContext;
pub(crate) use workflow::{ActivityInvocation, RunShared};
