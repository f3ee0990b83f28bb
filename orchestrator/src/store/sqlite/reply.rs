//! Waiting for the writer or reader thread's reply: look for it for a moment before sleeping.
//!
//! A task that awaits a oneshot reply from a store thread normally lets its runtime worker park; when
//! the reply comes, the thread has to wake the worker again. On a virtual machine that wake-up of an
//! idle core costs tens of microseconds, sometimes more than a whole commit without fsync, and a lone
//! workflow pays it on every step. So while the store is quiet, the one task that waits keeps looking
//! for its reply for up to [`SqliteOptions::spin_wait`](super::SqliteOptions::spin_wait), yielding
//! between looks (to other threads, then to the runtime's other tasks), and only then sleeps.
//!
//! Under load this would be waste — workers are awake anyway and the writer thread needs the CPU — so
//! at most one task spins per store, and only while at most [`QUIET`] requests are outstanding; a
//! spinner that sees the store get busy goes to sleep at once. An idle store spins never.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

use crate::store::StoreError;

/// The most outstanding requests (this one included) at which a waiter still spins.
const QUIET: usize = 2;

/// The replies a store's callers wait for: how many are outstanding, and who spins.
#[derive(Debug)]
pub(super) struct Replies {
    spin: Duration,
    outstanding: AtomicUsize,
    spinner: AtomicBool,
}

impl Replies {
    /// Waiters spin for up to `spin` (zero: never).
    pub(super) fn new(spin: Duration) -> Self {
        Replies {
            spin,
            outstanding: AtomicUsize::new(0),
            spinner: AtomicBool::new(false),
        }
    }

    /// Counts a request as outstanding until the returned guard is dropped (when its reply has been
    /// taken, or the caller gave up).
    fn outstanding(&self) -> Outstanding<'_> {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        Outstanding { replies: self }
    }

    /// Waits for the reply to a request just sent, spinning first if the store is quiet. The request
    /// counts as outstanding until its reply has been taken (or this future is dropped).
    pub(super) async fn wait<T>(
        &self,
        mut response: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let _request = self.outstanding();
        if let Some(_spinning) = self.try_spin() {
            let until = Instant::now() + self.spin;
            loop {
                match response.try_recv() {
                    Ok(reply) => return reply,
                    Err(TryRecvError::Closed) => return Err(StoreError::Closed),
                    Err(TryRecvError::Empty) => {}
                }
                if Instant::now() >= until || !self.is_quiet() {
                    break;
                }
                // Give the core to another thread first (the writer may be waiting for it: a spinner
                // that only yields to tokio can hold it for a whole scheduler time slice), then
                // let the runtime run its other tasks.
                std::thread::yield_now();
                tokio::task::yield_now().await;
            }
        }
        response.await.map_err(|_| StoreError::Closed)?
    }

    fn is_quiet(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) <= QUIET
    }

    /// The spinner's slot, if spinning is enabled, the store is quiet and nobody else spins.
    fn try_spin(&self) -> Option<Spinning<'_>> {
        if self.spin.is_zero() || !self.is_quiet() {
            return None;
        }
        self.spinner
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Spinning { replies: self })
    }
}

/// An outstanding request (see [`Replies::outstanding`]).
#[derive(Debug)]
struct Outstanding<'a> {
    replies: &'a Replies,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.replies.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The spinner's slot, given back when dropped (also when the waiting future is dropped).
struct Spinning<'a> {
    replies: &'a Replies,
}

impl Drop for Spinning<'_> {
    fn drop(&mut self) {
        self.replies.spinner.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits with `replies` for a reply of `value` that a thread sends after `delay`.
    async fn reply_after(replies: &Replies, delay: Duration, value: u32) -> Option<u32> {
        let (tx, rx) = oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = tx.send(Ok::<u32, StoreError>(value));
        });
        let reply = replies.wait(rx).await.ok();
        let _ = sender.join();
        reply
    }

    #[tokio::test]
    async fn a_reply_is_taken_while_spinning_or_awaited_after_the_spin() {
        // (spin, the reply's delay): the reply comes during the spin, or long after it.
        let cases = [
            (Duration::from_secs(5), Duration::from_millis(2)),
            (Duration::from_micros(50), Duration::from_millis(20)),
        ];
        for (value, (spin, delay)) in (7..).zip(cases) {
            let replies = Replies::new(spin);
            assert_eq!(reply_after(&replies, delay, value).await, Some(value));
            assert_eq!(replies.outstanding.load(Ordering::Acquire), 0);
            assert!(!replies.spinner.load(Ordering::Acquire));
        }
    }

    #[tokio::test]
    async fn a_dropped_reply_is_closed() {
        let replies = Replies::new(Duration::from_millis(1));
        let (tx, rx) = oneshot::channel::<Result<u32, StoreError>>();
        drop(tx);
        assert!(matches!(replies.wait(rx).await, Err(StoreError::Closed)));
    }

    #[test]
    fn only_one_waiter_spins_and_only_while_quiet() {
        let replies = Replies::new(Duration::from_millis(1));
        let first = replies.outstanding();
        let spinning = replies.try_spin();
        assert!(spinning.is_some());
        assert!(replies.try_spin().is_none(), "a second spinner");
        drop(spinning);
        let second = replies.outstanding();
        let third = replies.outstanding();
        assert!(replies.try_spin().is_none(), "spinning with 3 outstanding");
        drop((first, second, third));
        assert!(replies.try_spin().is_some());
        assert!(Replies::new(Duration::ZERO).try_spin().is_none());
    }

    #[tokio::test]
    async fn a_spinner_that_gives_up_frees_its_slot() {
        let replies = Replies::new(Duration::from_secs(5));
        let (_tx, rx) = oneshot::channel::<Result<u32, StoreError>>();
        let waited = tokio::time::timeout(Duration::from_millis(5), replies.wait(rx)).await;
        assert!(waited.is_err());
        assert_eq!(replies.outstanding.load(Ordering::Acquire), 0);
        assert!(!replies.spinner.load(Ordering::Acquire));
    }
}
