//! The names most programs need: `use orchestrator::prelude::*;`.

pub use crate::context::{ActivityContext, WorkflowContext};
pub use crate::definition::{ActivityOptions, Workflow};
pub use crate::engine::{Engine, RunHandle, RunStatus};
pub use crate::error::{ActivityError, ActivityResultExt, Error, WorkflowError};
pub use crate::retry::RetryPolicy;
pub use crate::{activity, workflow};
pub use futures;
