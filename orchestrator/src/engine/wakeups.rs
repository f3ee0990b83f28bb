//! Waking runs that left memory: a timer index paged in from the store.
//!
//! A run evicted from memory leaves its timers in the store's wake-up index. This service keeps in
//! memory only the wake-ups due within the next horizon (loaded with one query per horizon, so an idle
//! engine does almost nothing), sleeps until the earliest, and resumes that run from its journal if it is
//! not in memory. A run evicted with a wake-up inside the current horizon — or inside the horizon of a
//! page query still in flight, whose snapshot may predate the run's timer — hands it over directly, so
//! no timer waits for the next page. The service starts before recovery, so runs evicted while the
//! engine recovers are covered too.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Engine, EngineInner};
use crate::clock::{now_ms, until};
use crate::store::{StoreError, Wakeup};

/// How far ahead wake-ups are loaded from the store.
pub(crate) const HORIZON: Duration = Duration::from_secs(60);
/// The most wake-ups loaded by one query.
const PAGE: usize = 10_000;

/// The in-memory part of the wake-up index.
#[derive(Debug, Default)]
pub(crate) struct Wakeups {
    state: Mutex<WakeupState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct WakeupState {
    due: BTreeSet<(i64, Arc<str>)>,
    /// Wake-ups up to this time (ms) are all in `due`.
    loaded_until: i64,
    /// The horizon of the page query in flight (0: none). A wake-up scheduled meanwhile may have been
    /// committed after the query's snapshot, so it is kept here rather than left to that query.
    loading_until: i64,
}

impl Wakeups {
    fn state(&self) -> std::sync::MutexGuard<'_, WakeupState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An evicted run must be woken at `at_ms`.
    pub(crate) fn schedule(&self, id: Arc<str>, at_ms: i64) {
        let mut state = self.state();
        // Beyond the loaded horizon (and the one being loaded) the next page query finds it in the
        // store: its timer was committed before it was scheduled.
        if at_ms <= state.loaded_until.max(state.loading_until) {
            let earliest = state.due.first().map(|(at, _)| *at);
            state.due.insert((at_ms, id));
            drop(state);
            if earliest.is_none_or(|earliest| at_ms < earliest) {
                self.changed.notify_one();
            }
        }
    }
}

/// A page query in flight: its horizon and its outcome.
type PageQuery = Pin<Box<dyn Future<Output = (i64, Result<Vec<Wakeup>, StoreError>)> + Send>>;

/// Runs the wake-up service until the engine shuts down or is dropped.
///
/// A page query runs beside the timers already loaded (it may be slow on a large journal or a busy
/// reader): the runs due meanwhile are woken on time, and so are the ones scheduled meanwhile.
pub(crate) async fn run(
    engine: Weak<EngineInner>,
    wakeups: Arc<Wakeups>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut page: Option<PageQuery> = None;
    loop {
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let engine_now = Engine { inner };
        if engine_now.is_shutting_down() {
            return;
        }
        let now = now_ms();
        let horizon_ms =
            i64::try_from(engine_now.inner.settings.wakeup_horizon.as_millis()).unwrap_or(i64::MAX);
        if page.is_none() && wakeups.state().loaded_until <= now {
            let horizon = now.saturating_add(horizon_ms);
            wakeups.state().loading_until = horizon;
            let store = engine_now.inner.store.clone();
            page = Some(Box::pin(async move {
                (horizon, store.due_wakeups(horizon, PAGE).await)
            }));
        }
        // Wake everything due.
        let due: Vec<Arc<str>> = {
            let mut state = wakeups.state();
            let mut due = Vec::new();
            while let Some((at, _)) = state.due.first() {
                if *at > now {
                    break;
                }
                if let Some((_, id)) = state.due.pop_first() {
                    due.push(id);
                }
            }
            due
        };
        for id in due {
            engine_now.wake(&id);
        }
        let next = {
            let state = wakeups.state();
            let earliest = state.due.first().map_or(i64::MAX, |(at, _)| *at);
            if page.is_some() {
                earliest.min(now.saturating_add(horizon_ms))
            } else {
                earliest.min(state.loaded_until)
            }
        };
        let changed = wakeups.changed.notified();
        drop(engine_now);
        let loading = async {
            match page.as_mut() {
                Some(query) => query.await,
                None => std::future::pending().await,
            }
        };
        let mut loaded = None;
        tokio::select! {
            biased;
            result = shutdown.changed() => {
                if result.is_err() || *shutdown.borrow() {
                    return;
                }
            }
            outcome = loading => loaded = Some(outcome),
            _ = changed => {}
            _ = tokio::time::sleep(until(next)) => {}
        }
        if let Some((horizon, outcome)) = loaded {
            page = None;
            install(&wakeups, horizon, outcome);
        }
    }
}

/// Adds a page of wake-ups to the index (or schedules a retry after a failed query).
fn install(wakeups: &Wakeups, horizon: i64, outcome: Result<Vec<Wakeup>, StoreError>) {
    // One critical section: a wake-up scheduled during the query is either already in `due` or
    // scheduled after the page is in.
    let mut state = wakeups.state();
    state.loading_until = 0;
    match outcome {
        Ok(page) => {
            let full = page.len() >= PAGE;
            state.loaded_until = match (full, page.last()) {
                (true, Some(last)) => last.at_ms,
                _ => horizon,
            };
            for wakeup in page {
                state
                    .due
                    .insert((wakeup.at_ms, Arc::from(wakeup.workflow_id.as_str())));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "could not load due wake-ups; retrying");
            state.loaded_until = now_ms().saturating_add(1_000);
        }
    }
}
