//! Registered workflow types, erased so the engine can start them by their journaled name.

use std::sync::Arc;

use crate::codec::{Codec, CodecError};
use crate::context::{RunShared, WorkflowContext, run_compensations};
use crate::definition::{BoxFuture, Workflow};
use crate::error::WorkflowError;

/// The future of a running workflow body, producing its encoded output.
pub(crate) type WorkflowFuture = BoxFuture<Result<Vec<u8>, WorkflowError>>;

type Starter = fn(Arc<RunShared>, &[u8]) -> Result<WorkflowFuture, CodecError>;

/// A workflow type with its types erased: it starts a body from an encoded input.
#[derive(Clone, Copy)]
pub(crate) struct ErasedWorkflow {
    pub(crate) name: &'static str,
    start: Starter,
}

impl std::fmt::Debug for ErasedWorkflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasedWorkflow")
            .field("name", &self.name)
            .finish()
    }
}

impl ErasedWorkflow {
    pub(crate) fn of<W: Workflow>() -> Self {
        ErasedWorkflow {
            name: W::NAME,
            start: start_erased::<W>,
        }
    }

    /// Decodes the input and creates the workflow's future.
    pub(crate) fn start(
        &self,
        shared: Arc<RunShared>,
        input: &[u8],
    ) -> Result<WorkflowFuture, CodecError> {
        (self.start)(shared, input)
    }
}

fn start_erased<W: Workflow>(
    shared: Arc<RunShared>,
    input: &[u8],
) -> Result<WorkflowFuture, CodecError> {
    let codec: Codec = shared.codec;
    let input: W::Input = codec.decode(input)?;
    let ctx = WorkflowContext::new(shared);
    // Polled with `logging::is_replaying()` set, for replay-aware log filters.
    let body = crate::logging::ReplayAware::new(ctx.clone(), W::run(ctx.clone(), input));
    Ok(Box::pin(async move {
        match body.await {
            Ok(output) => codec
                .encode(&output)
                .map_err(|error| WorkflowError::Payload {
                    step: 0,
                    message: format!("workflow output: {error}"),
                }),
            Err(WorkflowError::ContinuedAsNew) => Err(WorkflowError::ContinuedAsNew),
            Err(error) => Err(run_compensations(&ctx, error).await),
        }
    }))
}
