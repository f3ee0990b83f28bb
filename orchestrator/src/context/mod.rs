//! What workflow and activity code sees: [`WorkflowContext`] and [`ActivityContext`].

mod activity;
mod activity_call;
mod child;
mod saga;
mod select;
mod signal;
mod step;
mod timer;
mod workflow;

pub use activity::ActivityContext;
pub(crate) use activity::CancellationFlag;
pub use activity_call::ActivityCall;
pub use child::ChildCall;
pub(crate) use saga::run_compensations;
pub use select::{Select, Select2};
pub use signal::SignalWait;
pub use timer::Sleep;
pub use workflow::WorkflowContext;
pub(crate) use workflow::{ActivityInvocation, RunShared};
