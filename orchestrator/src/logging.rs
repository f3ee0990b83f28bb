//! Replay-aware logging: a workflow's log lines printed once, not again on every replay.
//!
//! After a crash, a restart or an eviction from memory, a run's workflow code runs again from the
//! start and the journal hands back the recorded step results. Code between the steps runs again too,
//! so a plain `tracing::info!` in a workflow prints once per replay. Two ways to avoid it:
//!
//! - In the workflow, ask [`WorkflowContext::is_replaying`](crate::WorkflowContext::is_replaying)
//!   before logging.
//! - Once for the whole process, drop the events that workflow code emits while it replays: wrap the
//!   subscriber in [`SkipReplayed`], or, with `tracing-subscriber` layers, filter on [`is_replaying`]:
//!   `fmt::layer().with_filter(filter_fn(|_| !orchestrator::logging::is_replaying()))`.
//!
//! "Replaying" means the journal still holds completions the code has not been given back: the code
//! is re-running what it ran before. Lines between the last journaled completion and the crash ran
//! before too, but nothing recorded that, so they print again once (as in Temporal's SDKs). Activities
//! are never replayed, so their logs need no filter.
//!
//! ```
//! use orchestrator::logging::SkipReplayed;
//! use orchestrator::prelude::*;
//!
//! #[workflow]
//! async fn greet(ctx: WorkflowContext, name: String) -> Result<(), WorkflowError> {
//!     tracing::info!(%name, "greeting"); // dropped by `SkipReplayed` when replayed
//!     if !ctx.is_replaying() {
//!         // Or decide in the workflow itself.
//!     }
//!     Ok(())
//! }
//!
//! # struct Quiet;
//! # impl tracing::Subscriber for Quiet {
//! #     fn enabled(&self, _: &tracing::Metadata<'_>) -> bool { true }
//! #     fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id { tracing::span::Id::from_u64(1) }
//! #     fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
//! #     fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
//! #     fn event(&self, _: &tracing::Event<'_>) {}
//! #     fn enter(&self, _: &tracing::span::Id) {}
//! #     fn exit(&self, _: &tracing::span::Id) {}
//! # }
//! # let your_subscriber = Quiet;
//! // At startup, around whatever subscriber the service uses:
//! tracing::subscriber::set_global_default(SkipReplayed::new(your_subscriber))
//!     .expect("no other global subscriber");
//! ```

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;

use crate::context::WorkflowContext;

thread_local! {
    /// Whether this thread is polling workflow code that replays journaled steps.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling code is workflow code re-running steps the journal already holds (see the
/// [module docs](self)). `false` outside workflow code (activities, the engine, the rest of the
/// program). Cheap: one thread-local read, so it can back a `tracing` filter.
pub fn is_replaying() -> bool {
    REPLAYING.with(Cell::get)
}

/// A `tracing` subscriber that passes everything to `S` except the events emitted by workflow code
/// while it replays (see [`is_replaying`]), so each log line of a workflow is printed once.
///
/// Spans are passed on unchanged; only events are dropped.
#[derive(Debug, Clone, Default)]
pub struct SkipReplayed<S> {
    inner: S,
}

impl<S> SkipReplayed<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        SkipReplayed { inner }
    }

    /// The wrapped subscriber.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Subscriber> Subscriber for SkipReplayed<S> {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Whether an event is dropped changes from poll to poll: never let it be cached as "always".
        if self.inner.register_callsite(metadata).is_never() {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values)
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows)
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        !is_replaying() && self.inner.event_enabled(event)
    }

    fn event(&self, event: &Event<'_>) {
        if !is_replaying() {
            self.inner.event(event)
        }
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span)
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span)
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> Current {
        self.inner.current_span()
    }
}

/// Workflow code, polled with [`is_replaying`] telling whether it replays.
pub(crate) struct ReplayAware<F> {
    ctx: WorkflowContext,
    body: F,
}

impl<F> ReplayAware<F> {
    pub(crate) fn new(ctx: WorkflowContext, body: F) -> Self {
        ReplayAware { ctx, body }
    }
}

impl<F: Future + Unpin> Future for ReplayAware<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _flag = Flag::set(self.ctx.is_replaying());
        Pin::new(&mut self.body).poll(cx)
    }
}

/// Sets the thread's flag and restores the previous value when dropped (also on a panic).
struct Flag {
    previous: bool,
}

impl Flag {
    fn set(replaying: bool) -> Self {
        Flag {
            previous: REPLAYING.with(|flag| flag.replace(replaying)),
        }
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        REPLAYING.with(|flag| flag.set(self.previous));
    }
}
