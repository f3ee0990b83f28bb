//! The run table: everything this engine keeps in memory about a run, behind one lock.
//!
//! One slot per run this process knows of: whether a load of it from the store is in flight, the
//! channel of its driver when it is resident, the watch its waiters follow (its [`Phase`]), how many
//! replays in a row panicked, and (with leases) this node's lease on it. A slot exists only while one
//! of those is set; it is dropped as soon as the last one is cleared.
//!
//! The invariants the engine relies on are kept here, each by one method under the one lock:
//! - **one driver per run**: [`RunTable::register_driver`] refuses a second channel;
//! - **one load at a time**: [`RunTable::begin_load`] refuses while a load is in flight or a driver
//!   is resident;
//! - **a message either reaches the driver or wakes the run**: [`RunTable::send`] and
//!   [`RunTable::release_idle`] take the same lock, so a driver leaving memory either has the message
//!   in its queue (and stays) or is gone before it is sent (and the sender wakes the run);
//! - **waiters of a run nobody drives re-read the store**: dropping the phase watch of a run that is
//!   not resident closes their receivers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::driver::DriverMsg;
use super::lease::RunLease;
use super::{Channel, Phase};

/// What this process keeps about one run.
#[derive(Default)]
struct Slot {
    /// The channel of the run's driver, while one is resident (or about to be: see
    /// [`RunTable::register_driver`]).
    driver: Option<mpsc::UnboundedSender<DriverMsg>>,
    /// The driver's halt flag (set with `driver`, cleared with it).
    halt: Option<Arc<watch::Sender<bool>>>,
    /// A load of the run from the store is in flight.
    loading: bool,
    /// What waiters of the run follow.
    phase: Option<watch::Sender<Phase>>,
    /// How many replays in a row panicked.
    panics: u32,
    /// With leases: this node's lease on the run.
    lease: Option<Arc<RunLease>>,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.driver.is_none()
            && !self.loading
            && self.phase.is_none()
            && self.panics == 0
            && self.lease.is_none()
    }
}

/// Every run this process holds state for.
#[derive(Default)]
pub(crate) struct RunTable {
    slots: Mutex<HashMap<Arc<str>, Slot>>,
}

/// A load of one run, admitted by [`RunTable::begin_load`]; ends with [`RunTable::end_load`].
#[must_use = "a load must be ended with RunTable::end_load"]
pub(crate) struct LoadTicket(());

impl RunTable {
    fn slots(&self) -> MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to the slot of `id` (created if missing, dropped if left empty).
    fn update<R>(&self, id: &str, change: impl FnOnce(&mut Slot) -> R) -> R {
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(id) {
            let result = change(slot);
            if slot.is_empty() {
                slots.remove(id);
            }
            return result;
        }
        let mut slot = Slot::default();
        let result = change(&mut slot);
        if !slot.is_empty() {
            slots.insert(Arc::from(id), slot);
        }
        result
    }

    /// Reads the slot of `id` (`None` if this process keeps nothing about it).
    fn read<R>(&self, id: &str, look: impl FnOnce(Option<&Slot>) -> R) -> R {
        look(self.slots().get(id))
    }

    // --- Drivers -------------------------------------------------------------------------------

    /// Whether a driver of this engine drives the run now.
    pub(crate) fn is_resident(&self, id: &str) -> bool {
        self.read(id, |slot| slot.is_some_and(|slot| slot.driver.is_some()))
    }

    /// Whether the run is resident or being loaded.
    pub(crate) fn is_busy(&self, id: &str) -> bool {
        self.read(id, |slot| {
            slot.is_some_and(|slot| slot.driver.is_some() || slot.loading)
        })
    }

    /// Registers a new driver channel for `id`. `None` if one is registered already: one driver per
    /// run.
    pub(crate) fn register_driver(&self, id: &str) -> Option<Channel> {
        self.update(id, |slot| {
            if slot.driver.is_some() {
                return None;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let halt = Arc::new(watch::channel(false).0);
            slot.driver = Some(tx.clone());
            slot.halt = Some(halt.clone());
            Some(Channel { tx, rx, halt })
        })
    }

    /// Removes the driver channel of `id` if it is `channel`. `true` if it was.
    pub(crate) fn withdraw(&self, id: &str, channel: &mpsc::UnboundedSender<DriverMsg>) -> bool {
        self.update(id, |slot| {
            let ours = slot
                .driver
                .as_ref()
                .is_some_and(|registered| registered.same_channel(channel));
            if ours {
                slot.driver = None;
                slot.halt = None;
            }
            ours
        })
    }

    /// Removes the driver channel of `id`, whatever it is (its driver ended).
    pub(crate) fn remove_driver(&self, id: &str) {
        self.update(id, |slot| {
            slot.driver = None;
            slot.halt = None;
        });
    }

    /// Removes the channel of an idle driver unless a message is waiting for it. `true` if the
    /// driver may leave memory: every later message finds no driver and wakes the run instead.
    pub(crate) fn release_idle(&self, id: &str, rx: &mpsc::UnboundedReceiver<DriverMsg>) -> bool {
        self.update(id, |slot| {
            if !rx.is_empty() {
                return false;
            }
            slot.driver = None;
            slot.halt = None;
            true
        })
    }

    /// Sends `message` to the run's resident driver. `false` if there is none (the caller wakes the
    /// run, or leaves it to the node that holds it).
    pub(crate) fn send(&self, id: &str, message: DriverMsg) -> bool {
        self.read(id, |slot| {
            slot.and_then(|slot| slot.driver.as_ref())
                .is_some_and(|driver| driver.send(message).is_ok())
        })
    }

    /// Raises the halt flag of the run's resident driver (an operator paused it): it starts nothing
    /// more. `false` if no driver is resident.
    pub(crate) fn halt(&self, id: &str) -> bool {
        self.read(id, |slot| {
            slot.and_then(|slot| slot.halt.as_ref())
                .map(|halt| halt.send_replace(true))
                .is_some()
        })
    }

    // --- Loads ---------------------------------------------------------------------------------

    /// Admits a load of `id` from the store, unless it is resident or another load is in flight.
    pub(crate) fn begin_load(&self, id: &str) -> Option<LoadTicket> {
        self.update(id, |slot| {
            if slot.driver.is_some() || slot.loading {
                return None;
            }
            slot.loading = true;
            Some(LoadTicket(()))
        })
    }

    /// Ends a load admitted by [`RunTable::begin_load`].
    pub(crate) fn end_load(&self, id: &str, ticket: LoadTicket) {
        let LoadTicket(()) = ticket;
        self.update(id, |slot| slot.loading = false);
    }

    /// Whether a load of `id` is in flight.
    pub(crate) fn is_loading(&self, id: &str) -> bool {
        self.read(id, |slot| slot.is_some_and(|slot| slot.loading))
    }

    // --- Waiters -------------------------------------------------------------------------------

    /// Tells the waiters of `id` its new phase.
    pub(crate) fn publish(&self, id: &str, phase: Phase) {
        self.update(id, |slot| match &slot.phase {
            Some(sender) => {
                sender.send_replace(phase);
            }
            None => slot.phase = Some(watch::channel(phase).0),
        });
    }

    /// A receiver of the phase of `id` (a run not known here is taken as active until the store
    /// says otherwise).
    pub(crate) fn subscribe(&self, id: &str) -> watch::Receiver<Phase> {
        self.update(id, |slot| match &slot.phase {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(Phase::Active);
                slot.phase = Some(sender);
                receiver
            }
        })
    }

    /// Drops the waiters' watch of `id` unless a driver is resident (its receivers close, and their
    /// holders re-read the store).
    pub(crate) fn release_waiters(&self, id: &str) {
        self.update(id, |slot| {
            if slot.driver.is_none() {
                slot.phase = None;
            }
        });
    }

    /// The run's outcome is in the store: tells its waiters (`phase`), and forgets its waiters' watch,
    /// its panic count and its lease (revoked).
    pub(crate) fn settle(&self, id: &str, phase: Phase) {
        let lease = self.update(id, |slot| {
            slot.panics = 0;
            if let Some(sender) = slot.phase.take() {
                sender.send_replace(phase);
            }
            slot.lease.take()
        });
        if let Some(lease) = lease {
            lease.revoke();
        }
    }

    // --- Panics --------------------------------------------------------------------------------

    /// Counts one more panicking replay of `id`; returns how many in a row.
    pub(crate) fn count_panic(&self, id: &str) -> u32 {
        self.update(id, |slot| {
            slot.panics = slot.panics.saturating_add(1);
            slot.panics
        })
    }

    /// Forgets the panics of `id` (a fresh run replaced it).
    pub(crate) fn clear_panics(&self, id: &str) {
        self.update(id, |slot| slot.panics = 0);
    }

    // --- Leases --------------------------------------------------------------------------------

    /// This node's lease on `id`.
    pub(crate) fn lease(&self, id: &str) -> Option<Arc<RunLease>> {
        self.read(id, |slot| slot.and_then(|slot| slot.lease.clone()))
    }

    /// Records that `node` holds `id` under `epoch`, confirmed by a request sent at `sent`: renews
    /// the lease held, or replaces a revoked one.
    pub(crate) fn hold(
        &self,
        id: &str,
        node: &Arc<str>,
        epoch: i64,
        sent: tokio::time::Instant,
        duration: Duration,
    ) {
        self.update(id, |slot| match &slot.lease {
            Some(held) if !held.is_revoked() => held.renewed(epoch, sent, duration),
            _ => slot.lease = Some(RunLease::new(node.clone(), epoch, sent, duration)),
        });
    }

    /// Forgets (and revokes) this node's lease on `id`, if it is held under `epoch` (any epoch if
    /// `None`). Returns it.
    pub(crate) fn drop_lease(&self, id: &str, epoch: Option<i64>) -> Option<Arc<RunLease>> {
        let lease = self.update(id, |slot| {
            let matches = slot
                .lease
                .as_ref()
                .is_some_and(|held| epoch.is_none_or(|epoch| held.epoch() == epoch));
            if matches { slot.lease.take() } else { None }
        });
        if let Some(lease) = &lease {
            lease.revoke();
        }
        lease
    }

    /// The runs this node holds a lease on, with the epochs.
    pub(crate) fn held_epochs(&self) -> Vec<(Arc<str>, i64)> {
        self.slots()
            .iter()
            .filter_map(|(id, slot)| slot.lease.as_ref().map(|lease| (id.clone(), lease.epoch())))
            .collect()
    }

    /// Whether this node still holds `id` under `epoch`.
    pub(crate) fn holds_epoch(&self, id: &str, epoch: i64) -> bool {
        self.read(id, |slot| {
            slot.and_then(|slot| slot.lease.as_ref())
                .is_some_and(|lease| lease.epoch() == epoch)
        })
    }

    /// How many runs the table keeps state for (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_driver_per_run_and_one_load_at_a_time() {
        let table = RunTable::default();
        let load = table.begin_load("a").expect("first load");
        assert!(table.begin_load("a").is_none(), "a second load waits");
        let channel = table.register_driver("a").expect("first driver");
        assert!(table.register_driver("a").is_none(), "one driver per run");
        table.end_load("a", load);
        assert!(
            table.begin_load("a").is_none(),
            "a resident run is not loaded"
        );
        assert!(table.halt("a"));
        assert!(*channel.halt.borrow(), "the driver's flag is raised");
        assert!(table.withdraw("a", &channel.tx));
        assert!(!table.halt("a"), "no driver, nothing to halt");
        assert_eq!(table.len(), 0, "an empty slot is dropped");
    }

    #[test]
    fn a_message_reaches_the_driver_or_finds_it_gone() {
        let table = RunTable::default();
        let Channel { mut rx, .. } = table.register_driver("a").expect("driver");
        assert!(table.send("a", DriverMsg::Deadline));
        assert!(!table.release_idle("a", &rx), "a queued message keeps it");
        assert!(matches!(rx.try_recv(), Ok(DriverMsg::Deadline)));
        assert!(table.release_idle("a", &rx));
        assert!(
            !table.send("a", DriverMsg::Deadline),
            "gone: the sender wakes it"
        );
    }

    #[test]
    fn settling_closes_the_waiters_and_forgets_the_run() {
        let table = RunTable::default();
        let waiter = table.subscribe("a");
        assert_eq!(table.count_panic("a"), 1);
        assert_eq!(table.count_panic("a"), 2);
        let node: Arc<str> = Arc::from("n");
        table.hold(
            "a",
            &node,
            3,
            tokio::time::Instant::now(),
            Duration::from_secs(5),
        );
        let lease = table.lease("a").expect("held");
        table.settle("a", Phase::Active);
        assert!(lease.is_revoked());
        assert!(waiter.has_changed().is_err(), "the watch is dropped");
        assert_eq!(table.len(), 0);
        assert_eq!(table.count_panic("a"), 1, "counting starts again");
    }
}
