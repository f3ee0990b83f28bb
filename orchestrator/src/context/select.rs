//! Waiting for the first of several durable futures, with the winner journaled.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::Either;

use super::WorkflowContext;

/// The future of [`WorkflowContext::select`]: the index and output of the first branch to finish.
///
/// Branches are polled in order and the first one ready wins; the winner's index is journaled, so replay
/// picks the same branch even if, by then, several are complete. When the select finishes, the losing
/// branches are dropped: their steps are abandoned (activities are told to stop and their results
/// discarded, timers cancelled, signal waits withdrawn without consuming a signal).
#[must_use = "a step does nothing unless awaited"]
pub struct Select<F> {
    ctx: WorkflowContext,
    branches: Vec<Option<F>>,
    step: Option<(u32, Option<u32>)>,
}

impl<F> std::fmt::Debug for Select<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Select")
            .field("branches", &self.branches.len())
            .field("step", &self.step)
            .finish()
    }
}

impl<F: Future + Unpin> Select<F> {
    pub(crate) fn new(ctx: WorkflowContext, branches: Vec<F>) -> Self {
        Select {
            ctx,
            branches: branches.into_iter().map(Some).collect(),
            step: None,
        }
    }
}

impl<F: Future + Unpin> Future for Select<F> {
    type Output = (usize, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (step, recorded) = *this
            .step
            .get_or_insert_with(|| this.ctx.shared.machine().issue_select());
        let mut won = None;
        for (index, slot) in this.branches.iter_mut().enumerate() {
            let Some(branch) = slot.as_mut() else {
                continue;
            };
            if let Poll::Ready(output) = Pin::new(branch).poll(cx) {
                *slot = None;
                let winner = u32::try_from(index).unwrap_or(u32::MAX);
                match recorded {
                    // Replay: only the journaled winner may win; an early finisher's output is dropped.
                    Some(recorded) if recorded != winner => continue,
                    _ => {
                        won = Some((index, output));
                        break;
                    }
                }
            }
        }
        let Some((index, output)) = won else {
            return Poll::Pending;
        };
        if recorded.is_none() {
            let winner = u32::try_from(index).unwrap_or(u32::MAX);
            self::record(&this.ctx, step, winner);
        }
        // Drop the losers now: their steps are abandoned before the next one is issued.
        this.branches.clear();
        Poll::Ready((index, output))
    }
}

fn record(ctx: &WorkflowContext, step: u32, winner: u32) {
    ctx.shared.machine().record_select_winner(step, winner);
}

/// Two differently typed branches, as one type for [`Select`].
pub(crate) type Pair<A, B> = Either<A, B>;

/// Maps `Either<A, B>` of futures to a future of `Either` of outputs.
#[derive(Debug)]
pub(crate) struct EitherBranch<A, B>(pub(crate) Pair<A, B>);

impl<A: Future + Unpin, B: Future + Unpin> Future for EitherBranch<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Either::Left(a) => Pin::new(a).poll(cx).map(Either::Left),
            Either::Right(b) => Pin::new(b).poll(cx).map(Either::Right),
        }
    }
}

/// The future of [`WorkflowContext::select2`].
#[must_use = "a step does nothing unless awaited"]
pub struct Select2<A, B> {
    inner: Select<EitherBranch<A, B>>,
}

impl<A, B> std::fmt::Debug for Select2<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<A: Future + Unpin, B: Future + Unpin> Select2<A, B> {
    pub(crate) fn new(ctx: WorkflowContext, a: A, b: B) -> Self {
        Select2 {
            inner: Select::new(
                ctx,
                vec![
                    EitherBranch(Either::Left(a)),
                    EitherBranch(Either::Right(b)),
                ],
            ),
        }
    }
}

impl<A: Future + Unpin, B: Future + Unpin> Future for Select2<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().inner)
            .poll(cx)
            .map(|(_, output)| output)
    }
}
