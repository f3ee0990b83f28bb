//! Waking runs that left memory: a timer index paged in from the store.
//!
//! A run evicted from memory leaves its timers in the store's wake-up index. This service keeps in
//! memory only the wake-ups due within the next horizon (loaded with one query per horizon, so an idle
//! engine does almost nothing), sleeps until the earliest, and resumes that run from its journal if it is
//! not in memory. A run evicted with a wake-up inside the current horizon hands it over directly.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Engine, EngineInner};
use crate::clock::{now_ms, until};

/// How far ahead wake-ups are loaded from the store.
const HORIZON: Duration = Duration::from_secs(60);
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
        // Beyond the loaded horizon the next page query finds it in the store.
        if at_ms <= state.loaded_until {
            let earliest = state.due.first().map(|(at, _)| *at);
            state.due.insert((at_ms, id));
            drop(state);
            if earliest.is_none_or(|earliest| at_ms < earliest) {
                self.changed.notify_one();
            }
        }
    }
}

/// Runs the wake-up service until the engine shuts down or is dropped.
pub(crate) async fn run(
    engine: Weak<EngineInner>,
    wakeups: Arc<Wakeups>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let engine_now = Engine { inner };
        if engine_now.is_shutting_down() {
            return;
        }
        let now = now_ms();
        let reload = wakeups.state().loaded_until <= now;
        if reload {
            let horizon = now.saturating_add(HORIZON.as_millis() as i64);
            match engine_now.inner.store.due_wakeups(horizon, PAGE).await {
                Ok(page) => {
                    let full = page.len() >= PAGE;
                    let mut state = wakeups.state();
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
                    wakeups.state().loaded_until = now.saturating_add(1_000);
                }
            }
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
            let earliest = state.due.first().map(|(at, _)| *at);
            earliest.map_or(state.loaded_until, |at| at.min(state.loaded_until))
        };
        let changed = wakeups.changed.notified();
        drop(engine_now);
        tokio::select! {
            biased;
            result = shutdown.changed() => {
                if result.is_err() || *shutdown.borrow() {
                    return;
                }
            }
            _ = changed => {}
            _ = tokio::time::sleep(until(next)) => {}
        }
    }
}
