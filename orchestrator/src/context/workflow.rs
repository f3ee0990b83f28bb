//! The workflow context: the only door from workflow code to durable steps.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::ActivityContext;
use super::activity_call::ActivityCall;
use super::child::ChildCall;
use super::saga::Compensation;
use super::select::{Select, Select2};
use super::signal::SignalWait;
use super::timer::Sleep;
use crate::codec::{Codec, CodecError};
use crate::definition::{Activity, ActivityOptions, BoxFuture, Payload, Workflow};
use crate::error::{ActivityError, ParkReason, WorkflowError};
use crate::journal::SideEffectKind;
use crate::replay::{ReplayMachine, SideEffectStart};

/// Runs one attempt of an activity on encoded input, producing encoded output.
pub(crate) type ErasedActivity =
    fn(Codec, ActivityContext, Vec<u8>) -> BoxFuture<Result<Vec<u8>, ActivityError>>;

/// How the driver invokes an activity the workflow asked for.
#[derive(Clone)]
pub(crate) struct ActivityInvocation {
    pub(crate) input: Vec<u8>,
    pub(crate) options: ActivityOptions,
    pub(crate) invoke: ErasedActivity,
}

impl std::fmt::Debug for ActivityInvocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityInvocation")
            .field("input_len", &self.input.len())
            .field("options", &self.options)
            .finish()
    }
}

impl ActivityInvocation {
    /// The invocation of activity `A` with `input`.
    pub(crate) fn of<A: Activity>(codec: Codec, input: &A::Input) -> Result<Self, CodecError> {
        Ok(ActivityInvocation {
            input: codec.encode(input)?,
            options: A::options(),
            invoke: invoke_erased::<A>,
        })
    }
}

/// Decodes the input, runs one attempt of `A`, encodes the output.
fn invoke_erased<A: Activity>(
    codec: Codec,
    ctx: ActivityContext,
    input: Vec<u8>,
) -> BoxFuture<Result<Vec<u8>, ActivityError>> {
    Box::pin(async move {
        let input: A::Input = codec
            .decode(&input)
            .map_err(|error| ActivityError::Payload {
                message: error.to_string(),
            })?;
        let output = A::run(ctx, input).await?;
        codec
            .encode(&output)
            .map_err(|error| ActivityError::Payload {
                message: error.to_string(),
            })
    })
}

/// The state one run shares between its context (inside workflow code) and its driver.
#[derive(Debug)]
pub(crate) struct RunShared {
    pub(crate) workflow_id: Arc<str>,
    pub(crate) codec: Codec,
    machine: Mutex<ReplayMachine<ActivityInvocation>>,
    compensations: Mutex<Vec<Compensation>>,
    /// The engine's type catalog and this run's workflow type, to learn payload types as code runs.
    catalog: Option<(Arc<crate::inspect::Catalog>, &'static str)>,
}

impl RunShared {
    pub(crate) fn new(
        workflow_id: Arc<str>,
        codec: Codec,
        machine: ReplayMachine<ActivityInvocation>,
    ) -> Self {
        RunShared {
            workflow_id,
            codec,
            machine: Mutex::new(machine),
            compensations: Mutex::new(Vec::new()),
            catalog: None,
        }
    }

    /// Lets the run teach `catalog` the payload types its code uses (workflow type `workflow`).
    pub(crate) fn with_catalog(
        mut self,
        catalog: Arc<crate::inspect::Catalog>,
        workflow: &'static str,
    ) -> Self {
        self.catalog = Some((catalog, workflow));
        self
    }

    /// Records a payload type in the engine's catalog, if any.
    pub(crate) fn learn(&self, teach: impl FnOnce(&crate::inspect::Catalog, &str)) {
        if let Some((catalog, workflow)) = &self.catalog {
            teach(catalog, workflow);
        }
    }

    /// The compensations registered so far, in registration order.
    pub(crate) fn compensations(&self) -> MutexGuard<'_, Vec<Compensation>> {
        self.compensations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the replay machine. The lock is never held across user code (closures, serde impls,
    /// wakers, drops of user futures), so a poisoned lock only means a panic inside the machine itself;
    /// its state is still consistent enough to park the run.
    pub(crate) fn machine(&self) -> MachineGuard<'_> {
        MachineGuard {
            guard: Some(
                self.machine
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            ),
        }
    }
}

/// The lock of a run's replay machine. Dropping it releases the lock, then wakes the steps delivered
/// meanwhile: a waker is user code (a combinator's) and may call back into the context.
pub(crate) struct MachineGuard<'a> {
    guard: Option<MutexGuard<'a, ReplayMachine<ActivityInvocation>>>,
}

impl std::ops::Deref for MachineGuard<'_> {
    type Target = ReplayMachine<ActivityInvocation>;

    fn deref(&self) -> &Self::Target {
        match &self.guard {
            Some(guard) => guard,
            None => unreachable!("the guard is only taken by drop"),
        }
    }
}

impl std::ops::DerefMut for MachineGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.guard {
            Some(guard) => guard,
            None => unreachable!("the guard is only taken by drop"),
        }
    }
}

impl Drop for MachineGuard<'_> {
    fn drop(&mut self) {
        let woken = match self.guard.take() {
            Some(mut guard) => guard.take_woken(),
            None => return,
        };
        for waker in woken {
            waker.wake();
        }
    }
}

/// The handle a `#[workflow]` function uses for everything durable.
///
/// Each method that touches the outside world is a *step*: its outcome is journaled, and when the run is
/// replayed after a crash, the journaled outcome is returned instead of doing the work again. Workflow
/// code must reach the outside world only through this context (no direct I/O, clocks or randomness),
/// so that replay takes the same path.
///
/// Step futures are lazy: a step is numbered and started when its future is first polled, and steps
/// polled together (`futures::join!`, [`join_all`](crate::join_all)) replay identically because their
/// completions are delivered in journal order.
///
/// ```
/// use std::time::Duration;
/// use orchestrator::prelude::*;
///
/// #[activity(retry(max_attempts = 3, backoff = "10ms..1s"))]
/// async fn double(x: u64) -> Result<u64, ActivityError> {
///     Ok(x * 2)
/// }
///
/// #[workflow]
/// async fn pipeline(ctx: WorkflowContext, x: u64) -> Result<u64, WorkflowError> {
///     let (a, b) = futures::join!(ctx.call(double, x), ctx.call(double, x + 1));
///     ctx.sleep(Duration::from_millis(5)).await?;
///     Ok(a? + b?)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrator::Error> {
/// let engine = Engine::builder().in_memory().register(pipeline).register(double).start().await?;
/// let run = engine.start(pipeline, "pipeline-1", 10).await?;
/// assert_eq!(run.result().await?, 42);
/// engine.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WorkflowContext {
    pub(crate) shared: Arc<RunShared>,
}

impl WorkflowContext {
    pub(crate) fn new(shared: Arc<RunShared>) -> Self {
        WorkflowContext { shared }
    }

    /// The id of this workflow run.
    pub fn workflow_id(&self) -> &str {
        &self.shared.workflow_id
    }

    /// Whether this code is re-running steps the journal already holds (after a crash, a restart or an
    /// eviction from memory), rather than running for the first time. Use it to keep side-effect-free
    /// extras such as log lines or metrics from repeating on every replay; never to change which steps
    /// the workflow takes (that breaks determinism). See [`crate::logging`] for a process-wide filter.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[activity]
    /// async fn reserve(sku: String) -> Result<u32, ActivityError> { Ok(7) }
    ///
    /// #[workflow]
    /// async fn order(ctx: WorkflowContext, sku: String) -> Result<u32, WorkflowError> {
    ///     let slot = ctx.call(reserve, sku.clone()).await?;
    ///     if !ctx.is_replaying() {
    ///         tracing::info!(%sku, slot, "reserved"); // once, not on every replay
    ///     }
    ///     Ok(slot)
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(order).register(reserve).start().await?;
    /// # assert_eq!(engine.start(order, "o-1", "sku-1".into()).await?.result().await?, 7);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_replaying(&self) -> bool {
        self.shared.machine().is_replaying()
    }

    /// Calls an activity: runs it (with its retry policy and timeout) unless the journal already holds
    /// its outcome. Several inputs are passed as a tuple.
    pub fn call<A: Activity>(&self, activity: A, input: A::Input) -> ActivityCall<A> {
        let _ = activity;
        self.shared
            .learn(|catalog, _| catalog.learn_activity::<A>());
        ActivityCall::new(
            self.clone(),
            ActivityInvocation::of::<A>(self.shared.codec, &input),
        )
    }

    /// Registers a compensation (saga step): if the workflow later fails, is cancelled or times out,
    /// `activity` is called with `input` — after the workflow function returns its error, in reverse
    /// order of registration, each call journaled and retried per the activity's policy. Register it
    /// right after the step it undoes succeeded.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[activity]
    /// async fn charge(amount: u64) -> Result<String, ActivityError> { Ok(format!("ch-{amount}")) }
    /// #[activity]
    /// async fn refund(charge_id: String) -> Result<(), ActivityError> { Ok(()) }
    /// #[activity]
    /// async fn ship(charge_id: String) -> Result<(), ActivityError> {
    ///     Err(ActivityError::non_retryable("no courier"))
    /// }
    ///
    /// #[workflow]
    /// async fn order(ctx: WorkflowContext, amount: u64) -> Result<(), WorkflowError> {
    ///     let charge_id = ctx.call(charge, amount).await?;
    ///     ctx.compensate_with(refund, charge_id.clone());
    ///     ctx.call(ship, charge_id).await?; // fails: `refund` runs, then the run fails
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(order).start().await?;
    /// # let run = engine.start(order, "order-1", 10).await?;
    /// # assert!(matches!(run.result().await, Err(Error::WorkflowFailed { .. })));
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn compensate_with<A: Activity>(&self, activity: A, input: A::Input) {
        let _ = activity;
        self.shared
            .learn(|catalog, _| catalog.learn_compensation::<A>());
        let compensation = Compensation {
            name: A::NAME,
            invocation: ActivityInvocation::of::<A>(self.shared.codec, &input),
        };
        self.shared.compensations().push(compensation);
    }

    /// Starts a child workflow with its own id and waits for its output. The child is a run of its own
    /// (visible, signalable, resumable); starting it is journaled, so a crash never starts it twice.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn invoice(ctx: WorkflowContext, amount: u64) -> Result<u64, WorkflowError> {
    ///     Ok(amount + amount / 5) // with tax
    /// }
    ///
    /// #[workflow]
    /// async fn month_end(ctx: WorkflowContext, amounts: Vec<u64>) -> Result<u64, WorkflowError> {
    ///     let mut total = 0;
    ///     for (i, amount) in amounts.into_iter().enumerate() {
    ///         let id = format!("{}/invoice-{i}", ctx.workflow_id());
    ///         total += ctx.child(invoice, id, amount).await?;
    ///     }
    ///     Ok(total)
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(invoice).register(month_end).start().await?;
    /// let run = engine.start(month_end, "2026-11", vec![100, 50]).await?;
    /// assert_eq!(run.result().await?, 180);
    /// assert_eq!(engine.status("2026-11/invoice-1").await?, RunStatus::Completed);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn child<W: Workflow>(
        &self,
        workflow: W,
        workflow_id: impl Into<String>,
        input: W::Input,
    ) -> ChildCall<W> {
        let _ = workflow;
        self.shared
            .learn(|catalog, _| catalog.learn_workflow::<W>());
        ChildCall::child(self.clone(), workflow_id.into(), &input)
    }

    /// Waits for the outcome of any other run of workflow type `W`, by its id.
    pub fn workflow_result<W: Workflow>(
        &self,
        workflow: W,
        workflow_id: impl Into<String>,
    ) -> ChildCall<W> {
        let _ = workflow;
        ChildCall::existing(self.clone(), workflow_id.into())
    }

    /// Waits for the first of `branches` to finish; returns its index and output. The winner is
    /// journaled, so replay picks the same branch. Losers are dropped (see [`Select`]).
    ///
    /// All branches must have one type `F` (a `Vec<F>`). For two differently typed branches use
    /// [`select2`](WorkflowContext::select2); for more, map each to one output type and box it:
    ///
    /// ```
    /// use std::time::Duration;
    /// use futures::future::{BoxFuture, FutureExt};
    /// use orchestrator::prelude::*;
    ///
    /// #[activity]
    /// async fn quote(provider: String) -> Result<u64, ActivityError> { Ok(provider.len() as u64) }
    ///
    /// /// What ended the wait.
    /// enum First {
    ///     Quote(Result<u64, WorkflowError>),
    ///     Cancelled(Result<String, WorkflowError>),
    ///     Deadline(Result<(), WorkflowError>),
    /// }
    ///
    /// #[workflow]
    /// async fn best_quote(ctx: WorkflowContext, _input: ()) -> Result<u64, WorkflowError> {
    ///     let branches: Vec<BoxFuture<'static, First>> = vec![
    ///         Box::pin(ctx.call(quote, "acme".to_string()).map(First::Quote)),
    ///         Box::pin(ctx.signal::<String>("cancel").map(First::Cancelled)),
    ///         Box::pin(ctx.sleep(Duration::from_secs(60)).map(First::Deadline)),
    ///     ];
    ///     match ctx.select(branches).await.1 {
    ///         First::Quote(price) => price,
    ///         First::Cancelled(_) | First::Deadline(_) => Ok(0),
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(best_quote).register(quote).start().await?;
    /// # assert_eq!(engine.start(best_quote, "q-1", ()).await?.result().await?, 4);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// `BoxFuture<'static, T>` is `Pin<Box<dyn Future<Output = T> + Send>>`; the boxes cost one allocation per
    /// branch.
    pub fn select<F: Future + Unpin>(&self, branches: Vec<F>) -> Select<F> {
        Select::new(self.clone(), branches)
    }

    /// Waits for the first of two differently typed durable futures.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orchestrator::prelude::*;
    /// use orchestrator::Either;
    ///
    /// #[workflow]
    /// async fn approval(ctx: WorkflowContext, _input: ()) -> Result<bool, WorkflowError> {
    ///     let answer = ctx.signal::<bool>("approve");
    ///     let deadline = ctx.sleep(Duration::from_millis(20));
    ///     Ok(match ctx.select2(answer, deadline).await {
    ///         Either::Left(answer) => answer?,
    ///         Either::Right(expired) => { expired?; false }
    ///     })
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(approval).start().await?;
    /// # let run = engine.start(approval, "a-1", ()).await?;
    /// # assert_eq!(run.result().await?, false);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn select2<A: Future + Unpin, B: Future + Unpin>(&self, a: A, b: B) -> Select2<A, B> {
        Select2::new(self.clone(), a, b)
    }

    /// Publishes `value` under `key` for outside code to read with
    /// [`Engine::get_state`](crate::Engine::get_state) or await with
    /// [`Engine::wait_state`](crate::Engine::wait_state). Journaled with the run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn import(ctx: WorkflowContext, files: u32) -> Result<(), WorkflowError> {
    ///     for done in 1..=files {
    ///         ctx.sleep(Duration::from_millis(1)).await?;
    ///         ctx.set_state("progress", &format!("{done}/{files}"))?;
    ///     }
    ///     Ok(())
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(import).start().await?;
    /// let run = engine.start(import, "import-7", 3).await?;
    /// let first: String = engine.wait_state("import-7", "progress").await?;
    /// assert!(first.ends_with("/3"));
    /// run.result().await?;
    /// let last: Option<String> = engine.get_state("import-7", "progress").await?;
    /// assert_eq!(last.as_deref(), Some("3/3"));
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_state<T: Payload>(&self, key: &str, value: &T) -> Result<(), WorkflowError> {
        self.shared
            .learn(|catalog, workflow| catalog.learn_state::<T>(workflow, key));
        let bytes = self.shared.codec.encode(value);
        let mut machine = self.shared.machine();
        match bytes {
            Ok(bytes) => {
                machine.publish_state(key.to_string(), bytes);
                Ok(())
            }
            Err(error) => Err(WorkflowError::Payload {
                step: machine.steps_issued() + 1,
                message: format!("state `{key}`: {error}"),
            }),
        }
    }

    /// A versioning marker for changing the code of running workflows: `true` for runs that reach this
    /// point on code that has the change `change_id`, `false` when replaying a journal recorded before
    /// it. See `docs/versioning.md`.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[activity]
    /// async fn old_check(x: u64) -> Result<u64, ActivityError> { Ok(x) }
    /// #[activity]
    /// async fn new_check(x: u64) -> Result<u64, ActivityError> { Ok(x * 2) }
    ///
    /// #[workflow]
    /// async fn scoring(ctx: WorkflowContext, x: u64) -> Result<u64, WorkflowError> {
    ///     if ctx.patched("use-new-check") {
    ///         Ok(ctx.call(new_check, x).await?)
    ///     } else {
    ///         Ok(ctx.call(old_check, x).await?)
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(scoring).start().await?;
    /// # assert_eq!(engine.start(scoring, "s-1", 21).await?.result().await?, 42);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn patched(&self, change_id: &str) -> bool {
        self.shared.machine().patched(change_id)
    }

    /// Ends this run and starts a fresh run of the same workflow id with `input` and an empty journal
    /// (for unbounded loops). Return the value it gives as the workflow's error:
    /// `return Err(ctx.continue_as_new(my_workflow, next_input));`. The previous run stays inspectable
    /// (or is pruned) per the engine's retention setting
    /// ([`EngineBuilder::keep_continued_runs`](crate::EngineBuilder::keep_continued_runs)).
    /// Unconsumed signals and published state carry over to the next run.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn counter(ctx: WorkflowContext, input: (u64, u64)) -> Result<u64, WorkflowError> {
    ///     let (mut count, target) = input;
    ///     for _ in 0..10 {
    ///         if count == target {
    ///             return Ok(count);
    ///         }
    ///         count += 1;
    ///         ctx.set_state("count", &count)?;
    ///     }
    ///     // Ten steps per run: the journal never grows past them.
    ///     Err(ctx.continue_as_new(counter, (count, target)))
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().keep_continued_runs(2).register(counter).start().await?;
    /// let run = engine.start(counter, "counter", (0, 35)).await?;
    /// assert_eq!(run.result().await?, 35);
    /// assert_eq!(engine.archived_runs("counter").await?.len(), 2);
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn continue_as_new<W: Workflow>(&self, workflow: W, input: W::Input) -> WorkflowError {
        let _ = workflow;
        match self.shared.codec.encode(&input) {
            Ok(bytes) => {
                self.shared.machine().request_continue_as_new(bytes);
                WorkflowError::ContinuedAsNew
            }
            Err(error) => WorkflowError::Payload {
                step: 0,
                message: format!("continue-as-new input: {error}"),
            },
        }
    }

    /// Sleeps durably: the timer survives restarts and fires once, at the journaled time.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(self.clone(), duration)
    }

    /// Waits for the next signal named `name` sent to this workflow
    /// (see [`Engine::signal`](crate::Engine::signal)). Signals are delivered in the order they were
    /// sent, each exactly once; add [`.timeout(..)`](SignalWait::timeout) to stop waiting.
    pub fn signal<T: Payload>(&self, name: &str) -> SignalWait<T> {
        self.shared
            .learn(|catalog, workflow| catalog.learn_signal::<T>(workflow, name));
        SignalWait::new(self.clone(), name.to_string())
    }

    /// The current time, journaled: replay returns the time recorded when the step first ran.
    pub fn now(&self) -> SystemTime {
        let fresh = SystemTime::now();
        let nanos = fresh
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let recorded: u64 = self.record(SideEffectKind::Now, nanos);
        SystemTime::UNIX_EPOCH + Duration::from_nanos(recorded)
    }

    /// A random number, journaled.
    pub fn random_u64(&self) -> u64 {
        self.record(SideEffectKind::Random, fastrand::u64(..))
    }

    /// A random (version 4) UUID, journaled.
    pub fn uuid(&self) -> uuid::Uuid {
        let fresh = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
        self.record(SideEffectKind::Uuid, fresh)
    }

    /// Runs `produce` once and journals its value; replay returns the journaled value without running it.
    /// For small non-deterministic computations that need no retry (use an activity for I/O).
    ///
    /// `produce` must not use the context (no steps, `now()`, `random_u64()`, ... inside it): on replay
    /// it does not run, so the steps it asked for would be missing. Doing so parks the run with
    /// [`ParkReason::ContextInSideEffect`]; take such values before the closure and move them in.
    ///
    /// ```
    /// use orchestrator::prelude::*;
    ///
    /// #[workflow]
    /// async fn ticket(ctx: WorkflowContext, _input: ()) -> Result<String, WorkflowError> {
    ///     let seed = ctx.random_u64(); // outside the closure
    ///     ctx.side_effect(move || format!("T-{}", seed % 1000))
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// # let engine = Engine::builder().in_memory().register(ticket).start().await?;
    /// # assert!(engine.start(ticket, "t-1", ()).await?.result().await?.starts_with("T-"));
    /// # engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn side_effect<T: Payload>(&self, produce: impl FnOnce() -> T) -> Result<T, WorkflowError> {
        let codec = self.shared.codec;
        let start = self
            .shared
            .machine()
            .begin_side_effect(SideEffectKind::Closure);
        // The machine is unlocked: `produce` and `T`'s serde impls are user code.
        let (step, bytes) = match start {
            SideEffectStart::Stopped => {
                return Err(WorkflowError::Payload {
                    step: self.shared.machine().steps_issued(),
                    message: "the run is stopping".to_string(),
                });
            }
            SideEffectStart::Recorded { step, value } => (step, value),
            SideEffectStart::Fresh { step } => match codec.encode(&produce()) {
                Ok(bytes) => {
                    self.shared.machine().finish_side_effect(
                        step,
                        SideEffectKind::Closure,
                        bytes.clone(),
                    );
                    (step, bytes)
                }
                Err(error) => {
                    self.shared.machine().abort_side_effect(step);
                    return Err(WorkflowError::Payload {
                        step,
                        message: error.to_string(),
                    });
                }
            },
        };
        match codec.decode(&bytes) {
            Ok(value) => Ok(value),
            Err(error) => {
                self.shared.machine().fail(undecodable::<T>(step, &error));
                Err(WorkflowError::Payload {
                    step,
                    message: error.to_string(),
                })
            }
        }
    }

    /// Journals `fresh` (or returns the journaled value on replay). On a damaged record the run is
    /// parked and `fresh` is returned; the driver stops the run before anything else happens.
    fn record<T: Payload + Copy>(&self, kind: SideEffectKind, fresh: T) -> T {
        let codec = self.shared.codec;
        // Encoded before the lock is taken: no serde code runs under it.
        let encoded = codec.encode(&fresh);
        let recorded = self.shared.machine().side_effect(kind, || encoded);
        match recorded {
            Ok(Some((step, bytes))) => match codec.decode(&bytes) {
                Ok(value) => value,
                Err(error) => {
                    self.shared.machine().fail(undecodable::<T>(step, &error));
                    fresh
                }
            },
            Ok(None) => fresh,
            Err(error) => {
                // A `Copy` primitive always encodes; if not, park rather than diverge.
                let mut machine = self.shared.machine();
                let step = machine.steps_issued();
                machine.fail(undecodable::<T>(step, &error));
                fresh
            }
        }
    }
}

pub(crate) fn undecodable<T>(step: u32, error: &CodecError) -> ParkReason {
    ParkReason::UndecodablePayload {
        step,
        type_name: std::any::type_name::<T>().to_string(),
        message: error.to_string(),
    }
}

/// Marker so `PhantomData` of output types stays `Send`/`Sync` whatever `T` is.
pub(crate) type Marker<T> = PhantomData<fn() -> T>;
