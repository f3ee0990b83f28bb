//! Activity mocks: replace an activity (by type or by name) with a closure for one test engine,
//! script failures, and assert how often and with what input it was called.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::codec::Codec;
use crate::context::ActivityContext;
use crate::definition::{Activity, BoxFuture};
use crate::error::ActivityError;

type Handler = Arc<
    dyn Fn(Codec, ActivityContext, Vec<u8>) -> BoxFuture<Result<Vec<u8>, ActivityError>>
        + Send
        + Sync,
>;

/// One call of a mocked activity (one attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockCall {
    /// The run that called it.
    pub workflow_id: String,
    /// The step of the call.
    pub step: u32,
    /// The attempt (1-based).
    pub attempt: u32,
    /// The encoded input.
    pub input: Vec<u8>,
}

/// The mock of one activity: its handler, its scripted failures and its calls.
pub(crate) struct MockEntry {
    handler: Handler,
    failures: Mutex<VecDeque<ActivityError>>,
    calls: Mutex<Vec<MockCall>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockEntry {
    /// Runs one attempt of the mock: a scripted failure if one is left, else the handler.
    pub(crate) fn invoke(
        &self,
        codec: Codec,
        ctx: ActivityContext,
        input: Vec<u8>,
    ) -> BoxFuture<Result<Vec<u8>, ActivityError>> {
        lock(&self.calls).push(MockCall {
            workflow_id: ctx.workflow_id().to_string(),
            step: ctx.step(),
            attempt: ctx.attempt(),
            input: input.clone(),
        });
        if let Some(error) = lock(&self.failures).pop_front() {
            return Box::pin(async move { Err(error) });
        }
        (self.handler)(codec, ctx, input)
    }
}

/// The mocks of a test engine, by activity name (consulted before each attempt).
#[derive(Default)]
pub(crate) struct MockTable {
    entries: Mutex<HashMap<String, Arc<MockEntry>>>,
}

impl std::fmt::Debug for MockTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = lock(&self.entries).keys().cloned().collect();
        f.debug_struct("MockTable").field("mocked", &names).finish()
    }
}

impl MockTable {
    pub(crate) fn get(&self, name: &str) -> Option<Arc<MockEntry>> {
        lock(&self.entries).get(name).cloned()
    }

    fn install(&self, name: &str, handler: Handler) -> Arc<MockEntry> {
        let entry = Arc::new(MockEntry {
            handler,
            failures: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
        });
        lock(&self.entries).insert(name.to_string(), entry.clone());
        entry
    }

    /// Replaces activity `A` with `handler` (typed input and output).
    pub(crate) fn mock<A, F, Fut>(&self, handler: F) -> ActivityMock<A>
    where
        A: Activity,
        F: Fn(A::Input) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A::Output, ActivityError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |codec: Codec, _ctx, bytes: Vec<u8>| {
            let handler = handler.clone();
            Box::pin(async move {
                let input: A::Input = codec.decode(&bytes).map_err(|error| {
                    ActivityError::non_retryable(format!(
                        "the mock of `{}` could not decode its input: {error}",
                        A::NAME
                    ))
                })?;
                let output = handler(input).await?;
                codec.encode(&output).map_err(|error| {
                    ActivityError::non_retryable(format!(
                        "the mock of `{}` could not encode its output: {error}",
                        A::NAME
                    ))
                })
            })
        });
        ActivityMock {
            entry: self.install(A::NAME, erased),
            name: A::NAME.to_string(),
            _activity: PhantomData,
        }
    }

    /// Replaces the activity named `name` with `handler` over encoded bytes.
    pub(crate) fn mock_raw<F, Fut>(&self, name: &str, handler: F) -> ActivityMock<RawActivity>
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, ActivityError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |_codec, _ctx, bytes: Vec<u8>| {
            let handler = handler.clone();
            Box::pin(async move { handler(bytes).await })
        });
        ActivityMock {
            entry: self.install(name, erased),
            name: name.to_string(),
            _activity: PhantomData,
        }
    }

    /// Removes the mock of `name`: the real activity runs again.
    pub(crate) fn remove(&self, name: &str) -> bool {
        lock(&self.entries).remove(name).is_some()
    }
}

/// The type parameter of a mock installed by name ([`TestEngine::mock_by_name`](super::TestEngine::mock_by_name)):
/// its inputs are bytes.
#[derive(Debug, Clone, Copy)]
pub enum RawActivity {}

/// A handle on an installed mock: script failures, read its calls.
///
/// Returned by [`TestEngine::mock`](super::TestEngine::mock); cheap to clone.
pub struct ActivityMock<A> {
    entry: Arc<MockEntry>,
    name: String,
    _activity: PhantomData<fn() -> A>,
}

impl<A> Clone for ActivityMock<A> {
    fn clone(&self) -> Self {
        ActivityMock {
            entry: self.entry.clone(),
            name: self.name.clone(),
            _activity: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for ActivityMock<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityMock")
            .field("activity", &self.name)
            .field("calls", &self.calls())
            .finish()
    }
}

impl<A> ActivityMock<A> {
    /// Makes the next `times` calls fail with `error()` before the handler runs again (e.g. fail
    /// twice, then succeed). Scripted failures queue up across calls of this method.
    pub fn fail_times(self, times: usize, error: impl Fn() -> ActivityError) -> Self {
        let mut failures = lock(&self.entry.failures);
        for _ in 0..times {
            failures.push_back(error());
        }
        drop(failures);
        self
    }

    /// How many times the mock was called (attempts, scripted failures included).
    pub fn calls(&self) -> usize {
        lock(&self.entry.calls).len()
    }

    /// Every call, in order.
    pub fn call_log(&self) -> Vec<MockCall> {
        lock(&self.entry.calls).clone()
    }

    /// The mocked activity's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<A: Activity> ActivityMock<A> {
    /// The inputs of every call, decoded, in order.
    ///
    /// # Panics
    ///
    /// If a recorded input does not decode as `A::Input` (it was encoded from it, so it does).
    #[allow(clippy::expect_used)]
    pub fn inputs(&self) -> Vec<A::Input> {
        let codec = Codec::new(crate::codec::MAX_PAYLOAD_LIMIT);
        lock(&self.entry.calls)
            .iter()
            .map(|call| {
                codec
                    .decode(&call.input)
                    .expect("a mocked activity's recorded input decodes as its input type")
            })
            .collect()
    }
}
