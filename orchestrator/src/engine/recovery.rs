//! Resuming the unfinished runs of a journal in the background, after `EngineBuilder::start` has
//! returned.
//!
//! Recovery lists the unfinished (running or parked) runs once and loads each through the same path as
//! a wake-up ([`Engine::load_and_drive`]), a few at a time. That path skips a run already in memory and
//! serializes with every other load of the same run, so a run started, signalled or woken by its
//! timer while recovery is still going on is driven once: whichever comes first loads it, the other
//! finds it driven. A run that finished meanwhile is left alone (its record is read again before it is
//! loaded).

use std::sync::{Arc, Weak};

use futures::StreamExt;
use tokio::sync::watch;

use super::{Engine, EngineInner, STORE_REVIVAL};

/// How many runs are loaded at once: enough to keep the store's reader busy while drivers replay.
const PARALLEL_LOADS: usize = 8;

/// Loads every unfinished run, then reports `true` on `done`. Stops early if the engine shuts down
/// or is dropped (the runs resume at the next start).
pub(super) async fn run(engine: Weak<EngineInner>, done: Arc<watch::Sender<bool>>) {
    let Some(ids) = unfinished(&engine).await else {
        return;
    };
    if !ids.is_empty() {
        tracing::info!(runs = ids.len(), "resuming unfinished workflows");
    }
    futures::stream::iter(ids)
        .for_each_concurrent(PARALLEL_LOADS, |id| {
            let engine = engine.clone();
            async move {
                let Some(inner) = engine.upgrade() else {
                    return;
                };
                let engine = Engine { inner };
                if !engine.is_shutting_down() {
                    engine.load_and_drive(id, true).await;
                }
            }
        })
        .await;
    if let Some(inner) = engine.upgrade()
        && !inner
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    {
        tracing::debug!("recovery finished");
        done.send_replace(true);
    }
}

/// The ids of the unfinished runs, read again after a backoff while the store fails; `None` once the
/// engine is gone or shutting down.
async fn unfinished(engine: &Weak<EngineInner>) -> Option<Vec<Arc<str>>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let engine = Engine {
            inner: engine.upgrade()?,
        };
        if engine.is_shutting_down() {
            return None;
        }
        match engine.inner.store.unfinished_runs().await {
            Ok(runs) => {
                return Some(
                    runs.into_iter()
                        .map(|run| Arc::from(run.workflow_id.as_str()))
                        .collect(),
                );
            }
            Err(error) => {
                let wait = STORE_REVIVAL.backoff(attempt, fastrand::f64());
                tracing::warn!(%error, attempt, ?wait, "could not list unfinished runs; trying again");
                drop(engine);
                tokio::time::sleep(wait).await;
            }
        }
    }
}
