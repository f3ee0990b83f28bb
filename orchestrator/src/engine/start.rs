//! Starting a run: [`StartRun`], the options-carrying future `Engine::start` returns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::launch::Creation;
use super::{Engine, RunHandle};
use crate::clock::now_ms;
use crate::definition::Workflow;
use crate::error::Error;
use crate::store::NewRun;

/// A request to start a run, returned by [`Engine::start`]; `.await` it to start the run. It is a
/// [`Future`], so many starts can be awaited together (`join_all`, `try_join_all`):
///
/// ```
/// # use orchestrator::prelude::*;
/// # #[workflow]
/// # async fn report(ctx: WorkflowContext, _input: ()) -> Result<u32, WorkflowError> { Ok(1) }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrator::Error> {
/// # let engine = Engine::builder().in_memory().register(report).start().await?;
/// let starts = (0..3).map(|day| engine.start(report, format!("report-{day}"), ()));
/// let runs = orchestrator::try_join_all(starts).await?;
/// assert_eq!(runs.len(), 3);
/// # engine.shutdown().await;
/// # Ok(())
/// # }
/// ```
///
///
/// ```
/// # use orchestrator::prelude::*;
/// # #[workflow]
/// # async fn report(ctx: WorkflowContext, _input: ()) -> Result<u32, WorkflowError> { Ok(1) }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrator::Error> {
/// # let engine = Engine::builder().in_memory().register(report).start().await?;
/// use std::time::Duration;
///
/// let run = engine
///     .start(report, "report-2026-11", ())
///     .execution_timeout(Duration::from_secs(3600))
///     .await?;
/// assert_eq!(run.result().await?, 1);
/// # engine.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[must_use = "a start request does nothing unless awaited"]
pub struct StartRun<W: Workflow> {
    request: Option<StartRequest<W>>,
    running: Option<Pin<Box<dyn Future<Output = StartResult<W>> + Send>>>,
}

type StartResult<W> = Result<RunHandle<<W as Workflow>::Output>, Error>;

/// What a start asks for, until its first poll.
struct StartRequest<W: Workflow> {
    engine: Engine,
    workflow_id: String,
    input: W::Input,
    execution_timeout: Option<Duration>,
}

// No field is ever pinned in place: the request is moved into the boxed future on the first poll.
impl<W: Workflow> Unpin for StartRun<W> {}

impl<W: Workflow> std::fmt::Debug for StartRun<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("StartRun");
        debug.field("workflow", &W::NAME);
        if let Some(request) = &self.request {
            debug
                .field(
                    "workflow_id",
                    &crate::limits::IdDisplay(&request.workflow_id),
                )
                .field("execution_timeout", &request.execution_timeout);
        }
        debug.field("started", &self.running.is_some()).finish()
    }
}

impl<W: Workflow> StartRun<W> {
    pub(super) fn new(engine: Engine, workflow_id: String, input: W::Input) -> Self {
        StartRun {
            request: Some(StartRequest {
                engine,
                workflow_id,
                input,
                execution_timeout: None,
            }),
            running: None,
        }
    }

    /// Limits the whole run to `timeout`, measured durably from its start. When it expires the run is
    /// interrupted like a cancellation, with [`WorkflowError::TimedOut`](crate::WorkflowError::TimedOut):
    /// compensations run and the run fails.
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        if let Some(request) = &mut self.request {
            request.execution_timeout = Some(timeout);
        }
        self
    }
}

impl<W: Workflow> StartRequest<W> {
    async fn run(self) -> Result<RunHandle<W::Output>, Error> {
        crate::limits::check_workflow_id(&self.workflow_id)?;
        let engine = self.engine;
        if engine.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        if !engine.drives_runs() {
            return Err(Error::Config {
                message: "this engine was built with `drive_runs(false)`: it starts no runs (start them from an engine that drives them)".to_string(),
            });
        }
        let erased = engine
            .workflow(W::NAME)
            .ok_or_else(|| Error::UnregisteredWorkflow {
                name: W::NAME.to_string(),
            })?;
        let input = engine.codec().encode(&self.input)?;
        let deadline_ms = self.execution_timeout.map(|timeout| {
            now_ms().saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
        });
        let execution_timeout_ms = self
            .execution_timeout
            .map(|timeout| i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let run = NewRun {
            workflow_id: self.workflow_id.clone(),
            workflow_name: W::NAME.to_string(),
            input,
            parent_id: None,
            deadline_ms,
            execution_timeout_ms,
            owner: engine.initial_lease(),
            events: Vec::new(),
            paused: None,
        };
        match engine.create_and_drive(run, erased).await? {
            Creation::Existing(existing) if existing.workflow_name != W::NAME => {
                return Err(Error::WorkflowIdConflict {
                    workflow_id: self.workflow_id,
                    existing: existing.workflow_name,
                    requested: W::NAME.to_string(),
                });
            }
            Creation::Created | Creation::Existing(_) => {}
        }
        Ok(RunHandle::new(engine, self.workflow_id))
    }
}

impl<W: Workflow> Future for StartRun<W> {
    type Output = Result<RunHandle<W::Output>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(request) = this.request.take() {
            this.running = Some(Box::pin(request.run()));
        }
        match &mut this.running {
            Some(running) => {
                let outcome = running.as_mut().poll(cx);
                if outcome.is_ready() {
                    this.running = None;
                }
                outcome
            }
            None => Poll::Ready(Err(Error::Config {
                message: "a start request was polled after it completed".to_string(),
            })),
        }
    }
}
