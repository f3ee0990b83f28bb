//! `Engine::fork`: a new run whose journal is a prefix of another run's, replayed and continued live.
//!
//! The prefix before step `N` is every event of the source with `1 <= step < N`, in journal order
//! (with concurrent steps, completions of steps below `N` that were journaled after a step `>= N`
//! are kept, in their order). Run-level events (step 0: interruptions, operator actions) are not
//! copied, nor is the source's inbox: signals consumed by copied steps are replayed from their
//! copied receipts, and signals the source has not consumed stay with the source.

use std::sync::Arc;

use super::not_applicable;
use crate::clock::now_ms;
use crate::codec::{Codec, CodecError};
use crate::definition::Payload;
use crate::engine::{Engine, RunHandle};
use crate::error::Error;
use crate::journal::{Event, History, OperatorAction, decode_events, encode_event};
use crate::replay::check::check_replay;
use crate::store::{CreateOutcome, ForkRun, NewRun};

const ACTION: &str = "fork";

type EncodeInput = Box<dyn FnOnce(&Codec) -> Result<Vec<u8>, CodecError> + Send>;

/// What [`Engine::fork`] creates: a run `new_id` replaying the source's journal before step
/// `from_step`, then running live; by `actor`, with the source's input or a replacement.
///
/// ```
/// use orchestrator::Fork;
///
/// let fork = Fork::new(3, "order-42-fix").actor("alice").input(42_u64);
/// assert_eq!(fork.from_step(), 3);
/// assert_eq!(fork.new_id(), "order-42-fix");
/// ```
pub struct Fork {
    from_step: u32,
    new_id: String,
    actor: String,
    input: Option<EncodeInput>,
}

impl std::fmt::Debug for Fork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fork")
            .field("from_step", &self.from_step)
            .field("new_id", &self.new_id)
            .field("actor", &self.actor)
            .field("new_input", &self.input.is_some())
            .finish()
    }
}

impl Fork {
    /// A fork that copies the steps before `from_step` (1: none) into the new run `new_id`, by the
    /// actor `"unknown"` with the source's input unless told otherwise.
    pub fn new(from_step: u32, new_id: impl Into<String>) -> Self {
        Fork {
            from_step,
            new_id: new_id.into(),
            actor: "unknown".to_string(),
            input: None,
        }
    }

    /// Who forks (recorded in both runs' histories).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    /// A replacement workflow input (of the workflow's input type: a value that does not decode as
    /// it is refused before anything is created).
    pub fn input(mut self, value: impl Payload) -> Self {
        self.input = Some(Box::new(move |codec: &Codec| codec.encode(&value)));
        self
    }

    /// A replacement workflow input already encoded with the journal's codec (for remote callers,
    /// e.g. the admin API, that converted it from another representation).
    pub fn encoded_input(mut self, bytes: Vec<u8>) -> Self {
        self.input = Some(Box::new(move |_: &Codec| Ok(bytes)));
        self
    }

    /// The first step that is not copied (the new run executes it live).
    pub fn from_step(&self) -> u32 {
        self.from_step
    }

    /// The new run's workflow id.
    pub fn new_id(&self) -> &str {
        &self.new_id
    }
}

impl Engine {
    /// Creates the run `fork.new_id()` from the journal of `workflow_id` before step
    /// `fork.from_step()`: it replays that prefix (nothing in it runs again) and continues live on
    /// the current code, with the source's input or [`Fork::input`]. The source is left as it is
    /// (it may be running, finished or parked); both runs record the fork in their history
    /// ([`OperatorAction::ForkedFrom`] / [`OperatorAction::ForkedTo`]), in the same transaction that
    /// creates the new run. Steps completed out of order are copied by step number, see
    /// `docs/journal.md`.
    ///
    /// Before anything is created, the prefix is replayed on the current code with the new input
    /// without executing anything: if it no longer replays, the fork is refused with the
    /// nondeterminism error, which names the step.
    ///
    /// # Errors
    ///
    /// - [`Error::NotApplicable`] (nothing created) when the prefix does not replay on the current
    ///   code with this input, when `new_id` is taken, when `from_step` is 0.
    /// - [`Error::UnregisteredWorkflow`] when the source's workflow type is not registered here.
    /// - [`Error::NotFound`], [`Error::InvalidIdentifier`], [`Error::Store`], [`Error::Codec`].
    ///
    /// ```
    /// use orchestrator::prelude::*;
    /// use orchestrator::Fork;
    ///
    /// #[activity]
    /// async fn price(item: u32) -> Result<u32, ActivityError> { Ok(item * 10) }
    ///
    /// #[workflow]
    /// async fn quote(ctx: WorkflowContext, item: u32) -> Result<u32, WorkflowError> {
    ///     let base = ctx.call(price, item).await?;
    ///     let extra = ctx.call(price, 1).await?;
    ///     Ok(base + extra)
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(quote).register(price).start().await?;
    /// engine.start(quote, "quote-1", 4).await?.result().await?;
    /// // Keep step 1 (the first price), run step 2 and what follows again.
    /// let fork = engine.fork("quote-1", Fork::new(2, "quote-1-again").actor("alice")).await?;
    /// assert_eq!(fork.typed(quote).await?.result().await?, 50);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fork(&self, workflow_id: &str, fork: Fork) -> Result<RunHandle, Error> {
        crate::limits::check_workflow_id(workflow_id)?;
        crate::limits::check_workflow_id(&fork.new_id)?;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let new_id = fork.new_id.clone();
        if fork.from_step == 0 {
            return Err(not_applicable(
                workflow_id,
                ACTION,
                "steps are numbered from 1: fork from step 1 to copy nothing",
            ));
        }
        let source = self.run_record(workflow_id).await?;
        let workflow =
            self.workflow(&source.workflow_name)
                .ok_or_else(|| Error::UnregisteredWorkflow {
                    name: source.workflow_name.clone(),
                })?;
        if self.inner.store.run(&new_id).await?.is_some() {
            return Err(taken(workflow_id, &new_id));
        }
        let input = match fork.input {
            Some(encode) => encode(&self.codec())?,
            None => source.input.clone(),
        };
        let rows = self.inner.store.history(workflow_id).await?;
        let events = decode_events(&self.codec(), &rows).map_err(|reason| {
            not_applicable(
                workflow_id,
                ACTION,
                format!("its journal cannot be read: {reason}"),
            )
        })?;
        let prefix: Vec<Event> = events
            .into_iter()
            .filter(|event| event.step >= 1 && event.step < fork.from_step)
            .collect();
        let history = History::new(prefix.clone()).map_err(|reason| {
            not_applicable(
                workflow_id,
                ACTION,
                format!("its journal is damaged: {reason}"),
            )
        })?;
        // Nothing is created unless the prefix replays on this code with this input.
        check_replay(
            workflow,
            self.codec(),
            &new_id,
            history,
            &input,
            fork.from_step,
        )
        .map_err(|reason| {
            not_applicable(
                workflow_id,
                ACTION,
                format!(
                    "the journal before step {} does not replay on the current code: {reason}",
                    fork.from_step
                ),
            )
        })?;
        let codec = self.codec();
        let mut copied = Vec::with_capacity(prefix.len() + 1);
        copied.push(self.operator_event(
            OperatorAction::ForkedFrom {
                source_id: workflow_id.to_string(),
                from_step: fork.from_step,
            },
            &fork.actor,
        )?);
        for event in &prefix {
            copied.push(encode_event(&codec, event)?);
        }
        let source_events = vec![self.operator_event(
            OperatorAction::ForkedTo {
                new_id: new_id.clone(),
                from_step: fork.from_step,
            },
            &fork.actor,
        )?];
        let (deadline_ms, execution_timeout_ms) = match source.execution_timeout_ms {
            Some(timeout) => (Some(now_ms().saturating_add(timeout)), Some(timeout)),
            None => (None, None),
        };
        let sent = tokio::time::Instant::now();
        let lease = self.initial_lease();
        let created = self
            .inner
            .store
            .fork_run(ForkRun {
                run: NewRun {
                    workflow_id: new_id.clone(),
                    workflow_name: source.workflow_name.clone(),
                    input,
                    parent_id: None,
                    deadline_ms,
                    execution_timeout_ms,
                    owner: lease.clone(),
                    events: Vec::new(),
                    paused: None,
                },
                events: copied,
                source_id: workflow_id.to_string(),
                source_events,
            })
            .await?;
        if let CreateOutcome::Existing(_) = created {
            return Err(taken(workflow_id, &new_id));
        }
        tracing::info!(workflow_id, new_id = %new_id, from_step = fork.from_step, actor = %fork.actor, "run forked by an operator");
        if let Some(lease) = lease {
            self.hold(&new_id, lease.epoch, sent);
        }
        self.load_and_drive(Arc::from(new_id.as_str()), false).await;
        Ok(RunHandle::new(self.clone(), new_id))
    }
}

fn taken(workflow_id: &str, new_id: &str) -> Error {
    not_applicable(
        workflow_id,
        ACTION,
        format!(
            "a run with the id `{}` exists already",
            crate::limits::IdDisplay(new_id)
        ),
    )
}
