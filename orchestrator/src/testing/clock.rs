//! The test engine and its virtual clock.
//!
//! A [`TestEngine`] runs an ordinary [`Engine`] on a current-thread tokio runtime whose clock is
//! paused: time moves only when the test engine moves it. The engine's clock (the journal's
//! milliseconds since the epoch) is an affine function of that runtime clock, so timers, retry
//! backoffs, signal timeouts and execution deadlines all run on virtual time.
//!
//! Time jumps in two ways:
//!
//! - **Automatically**, when everything is blocked: a test that awaits a result
//!   (`handle.result().await`) leaves the runtime idle once every run waits for a timer, and the
//!   paused runtime then moves its clock straight to the earliest pending timer. Store calls never
//!   leave the runtime idle (the test engine's store wrapper yields while it waits for the database),
//!   so the clock cannot jump in the middle of I/O, and the wake-up index is loaded in one go (no
//!   periodic page queries to step through).
//! - **By hand**: [`TestEngine::run_until_blocked`] runs everything runnable without moving time,
//!   [`TestEngine::next_wakeup`] says when the next durable wake-up is due, and
//!   [`TestEngine::advance`] moves time forward by a duration, stopping at every wake-up on the way
//!   so each fires at its own time.
//!
//! Timestamps are exact to the millisecond on a runtime whose clock was paused from its start
//! (`#[tokio::test(start_paused = true)]`, `Builder::start_paused(true)`). On a runtime the test
//! engine pauses later, tokio's timers keep a sub-millisecond phase and fire on the next millisecond
//! tick, so wake-ups may be stamped 1 ms after their due time (and histories of the same seed may
//! differ by that millisecond).
//!
//! Virtual time starts at a round instant (a multiple of 2³¹ ms after the epoch, or the one given to
//! [`TestEngineBuilder::start_at_ms`]) and the engine's random numbers come from a seeded generator
//! ([`TestEngineBuilder::seed`]), so the same test produces the same history, timestamps included.

use std::sync::Arc;
use std::time::Duration;

use super::busy_store::{BusyStore, StoreActivity};
use super::mocks::{ActivityMock, MockTable, RawActivity};
use crate::definition::{Activity, Registrable};
use crate::engine::{Engine, EngineBuilder};
use crate::error::{ActivityError, Error};
use crate::journal::EventBody;
use crate::store::{SqliteOptions, SqliteStore, Store};

/// Virtual time starts at the next multiple of this many milliseconds (about 24.9 days) unless told.
const EPOCH_ALIGNMENT_MS: i64 = 1 << 31;

/// How many consecutive scheduler rounds without a store call make the engine count as blocked.
const QUIET_ROUNDS: u32 = 64;

/// The longest real time [`TestEngine::run_until_blocked`] waits for the engine to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// How far ahead the test engine's wake-up pager loads wake-ups: all of them.
const WAKEUP_HORIZON: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Builds a [`TestEngine`]: the workflows and activities under test, mocks, a seed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), orchestrator::Error> {
/// use std::time::Duration;
/// use orchestrator::prelude::*;
/// use orchestrator::testing::TestEngine;
///
/// #[workflow]
/// async fn reminder(ctx: WorkflowContext, days: u64) -> Result<u64, WorkflowError> {
///     ctx.sleep(Duration::from_secs(days * 86_400)).await?;
///     Ok(days)
/// }
///
/// let test = TestEngine::builder().register(reminder).seed(7).start().await?;
/// let started = test.now_ms();
/// let run = test.start(reminder, "r-1", 30).await?;
/// assert_eq!(run.result().await?, 30); // thirty virtual days, milliseconds of real time
/// assert!(test.now_ms() - started >= 30 * 86_400_000);
/// test.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[must_use = "a test engine builder does nothing until `.start()` is awaited"]
pub struct TestEngineBuilder {
    builder: EngineBuilder,
    store: Option<Arc<dyn Store>>,
    mocks: Arc<MockTable>,
    seed: u64,
    start_at_ms: Option<i64>,
}

impl std::fmt::Debug for TestEngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEngineBuilder")
            .field("seed", &self.seed)
            .field("start_at_ms", &self.start_at_ms)
            .field("mocks", &self.mocks)
            .finish_non_exhaustive()
    }
}

impl TestEngineBuilder {
    /// Registers a workflow or an activity (see [`EngineBuilder::register`]).
    pub fn register(mut self, item: impl Registrable) -> Self {
        self.builder = self.builder.register(item);
        self
    }

    /// Adjusts the underlying [`EngineBuilder`] (payload limit, eviction, signal types, ...). Its
    /// store choice is overridden: use [`TestEngineBuilder::store`].
    pub fn configure(mut self, configure: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Self {
        self.builder = configure(self.builder);
        self
    }

    /// Journals to `store` instead of a private in-memory SQLite database.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Seeds the engine's random numbers (retry jitter, `ctx.random_u64()`, `ctx.uuid()`, node id):
    /// the same seed gives the same history. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Starts virtual time at this instant (ms since the Unix epoch; it must not be in the past of
    /// the runtime's clock). Default: the next multiple of 2³¹ ms.
    pub fn start_at_ms(mut self, at_ms: i64) -> Self {
        self.start_at_ms = Some(at_ms);
        self
    }

    /// Replaces activity `A` with `handler` from the start (see [`TestEngine::mock`]).
    pub fn mock<A, F, Fut>(self, activity: A, handler: F) -> Self
    where
        A: Activity,
        F: Fn(A::Input) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<A::Output, ActivityError>> + Send + 'static,
    {
        let _ = activity;
        let _ = self.mocks.mock::<A, F, Fut>(handler);
        self
    }

    /// Starts the test engine on the current runtime, pausing its clock if it is not paused yet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the runtime is not a current-thread runtime (`#[tokio::test]` is one)
    /// or the start instant is in the past, and the errors of [`EngineBuilder::start`].
    pub async fn start(self) -> Result<TestEngine, Error> {
        let flavor = tokio::runtime::Handle::try_current()
            .map(|handle| handle.runtime_flavor())
            .map_err(|_| Error::Config {
                message: "a test engine must be started inside a tokio runtime".to_string(),
            })?;
        if flavor != tokio::runtime::RuntimeFlavor::CurrentThread {
            return Err(Error::Config {
                message: "a test engine needs a current-thread runtime (`#[tokio::test]`, not \
                          `flavor = \"multi_thread\"`): virtual time is the runtime's paused clock"
                    .to_string(),
            });
        }
        if !clock_is_paused() {
            tokio::time::pause();
        }
        fastrand::seed(self.seed);
        let now = crate::clock::now_ms();
        let start = match self.start_at_ms {
            Some(at) if at < now => {
                return Err(Error::Config {
                    message: format!(
                        "virtual time cannot start at {at} ms: the runtime's clock is already at {now} ms"
                    ),
                });
            }
            Some(at) => at,
            None => (now / EPOCH_ALIGNMENT_MS + 1).saturating_mul(EPOCH_ALIGNMENT_MS),
        };
        tokio::time::advance(Duration::from_millis(
            u64::try_from(start - now).unwrap_or(0),
        ))
        .await;
        let inner: Arc<dyn Store> = match self.store {
            Some(store) => store,
            None => Arc::new(SqliteStore::open_with(SqliteOptions::default()).await?),
        };
        let activity = Arc::new(StoreActivity::default());
        let store: Arc<dyn Store> = Arc::new(BusyStore::new(inner, activity.clone()));
        let engine = self
            .builder
            .store(store)
            .wakeup_horizon(WAKEUP_HORIZON)
            .mocks(self.mocks.clone())
            .start()
            .await?;
        let test = TestEngine {
            engine,
            activity,
            mocks: self.mocks,
        };
        test.run_until_blocked().await;
        Ok(test)
    }
}

/// Whether the current runtime's clock is paused: it does not move while real time passes.
fn clock_is_paused() -> bool {
    let before = tokio::time::Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    tokio::time::Instant::now() == before
}

/// An [`Engine`] on virtual time, with activity mocks (see the [module](self) and
/// [`testing`](crate::testing) documentation). Dereferences to the [`Engine`].
pub struct TestEngine {
    engine: Engine,
    activity: Arc<StoreActivity>,
    mocks: Arc<MockTable>,
}

impl std::fmt::Debug for TestEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEngine")
            .field("engine", &self.engine)
            .field("now_ms", &self.now_ms())
            .field("mocks", &self.mocks)
            .finish()
    }
}

impl std::ops::Deref for TestEngine {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl TestEngine {
    /// Starts configuring a test engine.
    pub fn builder() -> TestEngineBuilder {
        TestEngineBuilder {
            builder: Engine::builder(),
            store: None,
            mocks: Arc::default(),
            seed: 0,
            start_at_ms: None,
        }
    }

    /// The engine under test.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Virtual now, in milliseconds since the Unix epoch (the journal's clock).
    pub fn now_ms(&self) -> i64 {
        crate::clock::now_ms()
    }

    /// Runs everything that can run without moving time — workflow code, mocked activities, store
    /// writes, timers already due — until every run is blocked (on a timer, a signal, a retry
    /// backoff, another run) or finished.
    ///
    /// # Panics
    ///
    /// If the engine is still busy after 30 s of real time (a workflow or an activity that never
    /// stops working).
    pub async fn run_until_blocked(&self) {
        let deadline = std::time::Instant::now() + SETTLE_LIMIT;
        let mut quiet = 0;
        let mut last = self.activity.snapshot();
        while quiet < QUIET_ROUNDS {
            tokio::task::yield_now().await;
            let now = self.activity.snapshot();
            if now == last && now.1 == 0 {
                quiet += 1;
            } else {
                quiet = 0;
                last = now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the test engine is still busy after {SETTLE_LIMIT:?} of real time ({} store calls in flight)",
                now.1
            );
        }
    }

    /// When the next durable wake-up is due (ms since the Unix epoch): the earliest pending timer,
    /// signal timeout, execution deadline or activity retry of a running run; `None` if nothing
    /// waits for time. It may be in the past for a run that is due but does not run (paused).
    /// In-memory waits that are not journaled (an activity's own sleeps and timeouts, the engine's
    /// backoffs after store failures or panics) are not included; awaiting a result lets the
    /// runtime reach those by itself.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store cannot be read.
    pub async fn next_wakeup(&self) -> Result<Option<i64>, Error> {
        self.wakeup_after(i64::MIN).await
    }

    /// The earliest durable wake-up strictly after `after_ms`.
    async fn wakeup_after(&self, after_ms: i64) -> Result<Option<i64>, Error> {
        const PAGE: usize = 1_000;
        let store = self.engine.store();
        let wakeups = store.due_wakeups(i64::MAX, PAGE).await?;
        let mut earliest = wakeups
            .iter()
            .map(|wakeup| wakeup.at_ms)
            .find(|at| *at > after_ms);
        if earliest.is_none() && wakeups.len() >= PAGE {
            // More than a page of wake-ups at or before `after_ms`: look beyond them.
            let beyond = store
                .due_wakeups(i64::MAX, usize::MAX)
                .await?
                .into_iter()
                .map(|wakeup| wakeup.at_ms)
                .find(|at| *at > after_ms);
            earliest = beyond;
        }
        for run in store.unfinished_runs().await? {
            if run.state != crate::store::RunState::Running || run.paused.is_some() {
                continue;
            }
            let rows = store.history(&run.workflow_id).await?;
            if let Some(at) = pending_retry(&rows).filter(|at| *at > after_ms) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        Ok(earliest)
    }

    /// Moves virtual time forward by `by`, firing every wake-up on the way at its own time (time
    /// stops at each, and the engine runs until blocked), then runs until blocked at the end.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store cannot be read.
    pub async fn advance(&self, by: Duration) -> Result<(), Error> {
        let target = self
            .now_ms()
            .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX));
        self.advance_to(target).await
    }

    /// Moves virtual time forward to `at_ms` (ms since the Unix epoch), like [`TestEngine::advance`].
    /// An instant in the past does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store cannot be read.
    pub async fn advance_to(&self, at_ms: i64) -> Result<(), Error> {
        self.run_until_blocked().await;
        loop {
            let now = self.now_ms();
            let step_to = match self.wakeup_after(now).await? {
                Some(next) if next < at_ms => next,
                _ => at_ms,
            };
            if step_to <= now {
                return Ok(());
            }
            tokio::time::advance(Duration::from_millis(
                u64::try_from(step_to - now).unwrap_or(0),
            ))
            .await;
            self.run_until_blocked().await;
            if step_to < at_ms && self.wakeup_after(step_to - 1).await? == Some(step_to) {
                // tokio rounds timer deadlines up to its next millisecond tick: on a runtime
                // paused after it started (not `start_paused`), a timer due now fires 1 ms later.
                tokio::time::advance(Duration::from_millis(1)).await;
                self.run_until_blocked().await;
            }
            if step_to >= at_ms {
                return Ok(());
            }
        }
    }

    /// Moves virtual time to the next durable wake-up after now ([`TestEngine::next_wakeup`]) and
    /// runs until blocked; returns the instant it moved to, or `None` (time unchanged) if nothing
    /// waits.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store cannot be read.
    pub async fn advance_to_next_wakeup(&self) -> Result<Option<i64>, Error> {
        self.run_until_blocked().await;
        match self.wakeup_after(self.now_ms()).await? {
            Some(next) => {
                self.advance_to(next).await?;
                Ok(Some(next))
            }
            None => Ok(None),
        }
    }

    /// Moves virtual time to `at_ms` (like [`TestEngine::advance_to`]) and sends signal `name` to
    /// run `workflow_id` then, and runs until blocked.
    ///
    /// # Errors
    ///
    /// The errors of [`Engine::signal`]; [`Error::Store`] when the store cannot be read.
    pub async fn signal_at<T: crate::definition::Payload>(
        &self,
        at_ms: i64,
        workflow_id: &str,
        name: &str,
        payload: T,
    ) -> Result<(), Error> {
        self.advance_to(at_ms).await?;
        self.engine.signal(workflow_id, name, payload).await?;
        self.run_until_blocked().await;
        Ok(())
    }

    /// Replaces activity `A` with `handler` in this engine from now on (its next attempts run the
    /// handler instead of the activity), and returns a handle to script failures and read its calls.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), orchestrator::Error> {
    /// use orchestrator::prelude::*;
    /// use orchestrator::testing::TestEngine;
    ///
    /// #[activity(retry(max_attempts = 5, backoff = "1h..1h"))]
    /// async fn charge(cents: u64) -> Result<String, ActivityError> { unreachable!("mocked") }
    ///
    /// #[workflow]
    /// async fn pay(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    ///     Ok(ctx.call(charge, cents).await?)
    /// }
    ///
    /// let test = TestEngine::builder().register(pay).register(charge).start().await?;
    /// let mock = test
    ///     .mock(charge, |cents| async move { Ok(format!("ok-{cents}")) })
    ///     .fail_times(2, || ActivityError::retryable("gateway down"));
    /// let run = test.start(pay, "p-1", 250).await?;
    /// assert_eq!(run.result().await?, "ok-250"); // two hour-long backoffs, in virtual time
    /// assert_eq!(mock.calls(), 3);
    /// assert_eq!(mock.inputs(), vec![250, 250, 250]);
    /// # test.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn mock<A, F, Fut>(&self, activity: A, handler: F) -> ActivityMock<A>
    where
        A: Activity,
        F: Fn(A::Input) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<A::Output, ActivityError>> + Send + 'static,
    {
        let _ = activity;
        self.engine.catalog().learn_activity::<A>();
        self.mocks.mock::<A, F, Fut>(handler)
    }

    /// Replaces the activity named `name` with `handler` over encoded input and output bytes (for
    /// activities whose type is not at hand).
    pub fn mock_by_name<F, Fut>(&self, name: &str, handler: F) -> ActivityMock<RawActivity>
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Vec<u8>, ActivityError>> + Send + 'static,
    {
        self.mocks.mock_raw(name, handler)
    }

    /// Removes the mock of activity `name`: the real activity runs again. `false` if none was set.
    pub fn unmock(&self, name: &str) -> bool {
        self.mocks.remove(name)
    }
}

/// The retry time of an activity step whose last journaled attempt failed and has no completion
/// and no later attempt start.
fn pending_retry(rows: &[crate::store::StoredEvent]) -> Option<i64> {
    use std::collections::HashMap;
    let codec = crate::codec::Codec::new(crate::codec::MAX_PAYLOAD_LIMIT);
    // Per step: the pending retry time, cleared by a completion or a later attempt start.
    let mut pending: HashMap<u32, Option<(u32, i64)>> = HashMap::new();
    for row in rows {
        let Ok(body) = crate::journal::decode_event(&codec, row) else {
            continue;
        };
        match body {
            EventBody::ActivityAttemptFailed {
                attempt,
                retry_at_ms,
                ..
            } => {
                pending.insert(row.step, Some((attempt, retry_at_ms)));
            }
            EventBody::ActivityAttemptStarted { attempt, .. } => {
                if let Some(Some((failed, _))) = pending.get(&row.step)
                    && attempt > *failed
                {
                    pending.insert(row.step, None);
                }
            }
            body if body.is_completion() => {
                pending.insert(row.step, None);
            }
            _ => {}
        }
    }
    pending.values().flatten().map(|(_, at)| *at).min()
}
