//! No user code runs under an engine lock: closures, serde impls of user payloads, wakers of user
//! combinators and drops of user futures may call back into the workflow context without hanging the
//! run. What the engine cannot replay (the context used inside a side effect's closure) parks the run
//! with a typed reason instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use orchestrator::ParkReason;
use orchestrator::prelude::*;
use orchestrator_tests::{TestDb, finish, stop};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------------------------------
// A side effect's closure that uses the context.

#[workflow]
async fn random_inside_side_effect(ctx: WorkflowContext, _input: ()) -> Result<u64, WorkflowError> {
    let inner = ctx.clone();
    ctx.side_effect(move || inner.random_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_effect_closure_that_uses_the_context_parks_the_run() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(random_inside_side_effect)
        .start()
        .await
        .unwrap();
    let run = engine
        .start(random_inside_side_effect, "closure-1", ())
        .await
        .unwrap();
    match finish(&run).await {
        Err(Error::RunParked {
            reason:
                ParkReason::ContextInSideEffect {
                    side_effect: 1,
                    step: 2,
                    requested,
                },
            ..
        }) => assert!(requested.contains("Random"), "{requested}"),
        other => panic!("expected a park naming the side effect, got {other:?}"),
    }
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// Serde impls of a side effect's value that use the context.

/// The context the payload types below reach, one slot per test.
type Slot = Mutex<Option<WorkflowContext>>;
static SERIALIZING: Slot = Mutex::new(None);
static DESERIALIZING: Slot = Mutex::new(None);

fn context_in(slot: &Slot) -> Option<WorkflowContext> {
    slot.lock().unwrap().clone()
}

/// A value whose `Serialize` impl asks the context for a patch marker.
#[derive(Debug, Deserialize)]
struct Chatty(u64);

impl Serialize for Chatty {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(ctx) = context_in(&SERIALIZING) {
            let _ = ctx.patched("chatty");
        }
        self.0.serialize(serializer)
    }
}

#[workflow]
async fn chatty_side_effect(ctx: WorkflowContext, _input: ()) -> Result<u64, WorkflowError> {
    *SERIALIZING.lock().unwrap() = Some(ctx.clone());
    let value = ctx.side_effect(|| Chatty(7))?;
    Ok(value.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_effect_value_whose_serialize_uses_the_context_parks_the_run() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(chatty_side_effect)
        .start()
        .await
        .unwrap();
    let run = engine
        .start(chatty_side_effect, "serialize-1", ())
        .await
        .unwrap();
    let result = finish(&run).await;
    *SERIALIZING.lock().unwrap() = None;
    assert!(
        matches!(
            result,
            Err(Error::RunParked {
                reason: ParkReason::ContextInSideEffect { side_effect: 1, .. },
                ..
            })
        ),
        "{result:?}"
    );
    stop(engine).await;
}

/// A value whose `Deserialize` impl draws a (journaled) random number from the context.
#[derive(Debug, Serialize)]
struct Salted(u64);

impl<'de> Deserialize<'de> for Salted {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        if let Some(ctx) = context_in(&DESERIALIZING) {
            let _ = ctx.random_u64();
        }
        Ok(Salted(value))
    }
}

#[workflow]
async fn salted_side_effect(ctx: WorkflowContext, _input: ()) -> Result<u64, WorkflowError> {
    *DESERIALIZING.lock().unwrap() = Some(ctx.clone());
    let value = ctx.side_effect(|| Salted(9))?;
    *DESERIALIZING.lock().unwrap() = None;
    Ok(value.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_effect_value_whose_deserialize_uses_the_context_completes() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(salted_side_effect)
        .start()
        .await
        .unwrap();
    let run = engine
        .start(salted_side_effect, "deserialize-1", ())
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), 9);
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// A combinator's waker that uses the context when it is woken.

/// Wakes the waker it wraps after asking the context for a side effect.
struct ProbingWaker {
    ctx: WorkflowContext,
    inner: Waker,
    probes: Arc<AtomicUsize>,
}

impl Wake for ProbingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.ctx.side_effect(|| 0u8);
        self.probes.fetch_add(1, Ordering::SeqCst);
        self.inner.wake_by_ref();
    }
}

/// Polls `F` with a [`ProbingWaker`].
struct Probed<F> {
    ctx: WorkflowContext,
    inner: Pin<Box<F>>,
    probes: Arc<AtomicUsize>,
}

impl<F: Future> Future for Probed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(ProbingWaker {
            ctx: self.ctx.clone(),
            inner: cx.waker().clone(),
            probes: self.probes.clone(),
        }));
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

static PROBES: std::sync::LazyLock<Arc<AtomicUsize>> =
    std::sync::LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

#[workflow]
async fn probed_sleep(ctx: WorkflowContext, _input: ()) -> Result<(), WorkflowError> {
    Probed {
        ctx: ctx.clone(),
        inner: Box::pin(ctx.sleep(Duration::from_millis(10))),
        probes: PROBES.clone(),
    }
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waker_that_uses_the_context_does_not_hang_the_run() {
    let db = TestDb::new();
    let engine = db.builder().register(probed_sleep).start().await.unwrap();
    let run = engine.start(probed_sleep, "waker-1", ()).await.unwrap();
    finish(&run).await.unwrap();
    assert!(PROBES.load(Ordering::SeqCst) >= 1, "the waker was woken");
    stop(engine).await;
}

// ---------------------------------------------------------------------------------------------------
// A select branch whose drop uses the context.

/// A branch that draws a journaled random number when it is dropped.
struct DropProbe<F> {
    ctx: WorkflowContext,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for DropProbe<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<F> Drop for DropProbe<F> {
    fn drop(&mut self) {
        let _ = self.ctx.random_u64();
    }
}

#[workflow]
async fn select_with_dropping_branches(
    ctx: WorkflowContext,
    _input: (),
) -> Result<usize, WorkflowError> {
    let branch = |millis| DropProbe {
        ctx: ctx.clone(),
        inner: Box::pin(ctx.sleep(Duration::from_millis(millis))),
    };
    let (winner, fired) = ctx.select(vec![branch(3_600_000), branch(5)]).await;
    fired?;
    Ok(winner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_branch_whose_drop_uses_the_context_completes() {
    let db = TestDb::new();
    let engine = db
        .builder()
        .register(select_with_dropping_branches)
        .start()
        .await
        .unwrap();
    let run = engine
        .start(select_with_dropping_branches, "select-drop-1", ())
        .await
        .unwrap();
    assert_eq!(finish(&run).await.unwrap(), 1);
    stop(engine).await;
}
