//! [`FaultInjector`]: a seeded [`StoreHook`] that makes chosen store calls fail the way a real disk or
//! database does, for the fault campaign (`tests/fault_campaign.rs`).
//!
//! Wrap any store with it: `HookedStore::new(inner, FaultInjector::new(seed).rate(0.07))`. While it is
//! switched on ([`FaultInjector::set_enabled`], usable while an engine runs), each eligible call (by
//! [`StoreCall::name`], see [`FaultInjector::calls`]) fails with probability [`FaultInjector::rate`],
//! with one of the enabled [`FaultKind`]s:
//!
//! | kind | what the caller sees | what happened |
//! |---|---|---|
//! | [`FaultKind::Busy`] | [`StoreError::Busy`] | nothing (the call never reached the store) |
//! | [`FaultKind::Io`] | [`StoreError::Io`] | nothing |
//! | [`FaultKind::DiskFull`] | [`StoreError::DiskFull`] | nothing |
//! | [`FaultKind::LostAfterCommit`] | [`StoreError::Io`] ("connection lost after commit") | the write **took effect** |
//!
//! The last kind applies to writes only ([`StoreCall::is_write`]): it is the ambiguous outcome of a
//! connection lost or an `fsync` failing after the commit, which the engine must survive by trusting
//! its journal rather than the error.
//!
//! Decisions come from one [`fastrand::Rng`] seeded with [`FaultInjector::seed`], so a seed fixes the
//! sequence of decisions. Which call receives which decision still depends on how the engine's tasks
//! are scheduled, so a seed reproduces a campaign's fault mix and rate, not its exact interleaving.
//! Every injected fault is counted by kind ([`FaultInjector::injected`]) and by call
//! ([`FaultInjector::injected_by_call`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use orchestrator::store::StoreError;

use crate::store_hooks::{StoreCall, StoreHook};

/// The environment variable that fixes the seed of a campaign ([`seed_from_env`]).
pub const SEED_VARIABLE: &str = "ORCHESTRATOR_FAULT_SEED";

/// The name of every kind of store call ([`StoreCall::name`]); the default eligible set.
pub const ALL_CALLS: [&str; 12] = [
    "create_run",
    "commit",
    "run",
    "history",
    "unfinished_runs",
    "send_signal",
    "pending_signals",
    "request_cancel",
    "value",
    "archived_runs",
    "due_wakeups",
    "list_runs",
];

/// The message of a [`FaultKind::LostAfterCommit`] error.
pub const LOST_AFTER_COMMIT_MESSAGE: &str =
    "connection lost after commit (injected: the write took effect)";

/// The seed in `ORCHESTRATOR_FAULT_SEED` if set (panics if it is not a `u64`), else a random one.
pub fn seed_from_env() -> u64 {
    match std::env::var(SEED_VARIABLE) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VARIABLE}={text:?} is not an unsigned integer")),
        Err(_) => fastrand::u64(..),
    }
}

/// How an injected fault fails a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// The database stayed locked: [`StoreError::Busy`]; nothing was done.
    Busy,
    /// An I/O error: [`StoreError::Io`]; nothing was done.
    Io,
    /// The disk is full: [`StoreError::DiskFull`]; nothing was done.
    DiskFull,
    /// A write took effect but is reported as failed with [`StoreError::Io`]
    /// ([`LOST_AFTER_COMMIT_MESSAGE`]). Writes only.
    LostAfterCommit,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::Busy,
        FaultKind::Io,
        FaultKind::DiskFull,
        FaultKind::LostAfterCommit,
    ];

    /// A short name for reports (`busy`, `io`, `disk_full`, `lost_after_commit`).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Busy => "busy",
            FaultKind::Io => "io",
            FaultKind::DiskFull => "disk_full",
            FaultKind::LostAfterCommit => "lost_after_commit",
        }
    }

    /// The error this kind of fault reports for `operation` (a [`StoreCall::name`]).
    pub fn error(self, operation: &'static str) -> StoreError {
        match self {
            FaultKind::Busy => StoreError::Busy { operation },
            FaultKind::Io => StoreError::Io {
                operation,
                message: "injected I/O error (EIO)".to_string(),
            },
            FaultKind::DiskFull => StoreError::DiskFull { operation },
            FaultKind::LostAfterCommit => StoreError::Io {
                operation,
                message: LOST_AFTER_COMMIT_MESSAGE.to_string(),
            },
        }
    }

    /// Whether the call fails before reaching the store (every kind but
    /// [`FaultKind::LostAfterCommit`]).
    pub fn is_before(self) -> bool {
        self != FaultKind::LostAfterCommit
    }

    fn index(self) -> usize {
        match self {
            FaultKind::Busy => 0,
            FaultKind::Io => 1,
            FaultKind::DiskFull => 2,
            FaultKind::LostAfterCommit => 3,
        }
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// [`FaultKind::Busy`].
    pub busy: u64,
    /// [`FaultKind::Io`].
    pub io: u64,
    /// [`FaultKind::DiskFull`].
    pub disk_full: u64,
    /// [`FaultKind::LostAfterCommit`].
    pub lost_after_commit: u64,
}

impl FaultCounts {
    /// The count of one kind.
    pub fn get(&self, kind: FaultKind) -> u64 {
        match kind {
            FaultKind::Busy => self.busy,
            FaultKind::Io => self.io,
            FaultKind::DiskFull => self.disk_full,
            FaultKind::LostAfterCommit => self.lost_after_commit,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.busy + self.io + self.disk_full + self.lost_after_commit
    }
}

impl fmt::Display for FaultCounts {
    /// `busy=3 io=5 disk_full=2 lost_after_commit=4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in FaultKind::ALL {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{}={}", kind.name(), self.get(kind))?;
        }
        Ok(())
    }
}

/// A seeded [`StoreHook`] failing a fraction of eligible store calls (see the [module](self) docs).
///
/// Built switched off: configure it with the builder methods, wrap the store, start the engine, then
/// [`set_enabled(true)`](FaultInjector::set_enabled).
#[derive(Debug)]
pub struct FaultInjector {
    seed: u64,
    rng: Mutex<fastrand::Rng>,
    enabled: AtomicBool,
    /// The fault rate's `f64` bits.
    rate: AtomicU64,
    calls: Vec<&'static str>,
    kinds: Vec<FaultKind>,
    injected: [AtomicU64; 4],
    by_call: Mutex<BTreeMap<&'static str, u64>>,
    consulted: AtomicU64,
}

impl FaultInjector {
    /// An injector seeded with `seed`: switched off, rate 5%, every call eligible, every kind enabled.
    pub fn new(seed: u64) -> Self {
        FaultInjector {
            seed,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            enabled: AtomicBool::new(false),
            rate: AtomicU64::new(0.05_f64.to_bits()),
            calls: ALL_CALLS.to_vec(),
            kinds: FaultKind::ALL.to_vec(),
            injected: Default::default(),
            by_call: Mutex::new(BTreeMap::new()),
            consulted: AtomicU64::new(0),
        }
    }

    /// The probability (0.0 to 1.0) that an eligible call fails while the injector is on.
    pub fn rate(self, rate: f64) -> Self {
        self.set_rate(rate);
        self
    }

    /// Changes the fault rate; takes effect for the next call (also while an engine runs): e.g. 1.0
    /// for an outage during which every eligible call fails.
    pub fn set_rate(&self, rate: f64) {
        assert!(
            (0.0..=1.0).contains(&rate),
            "a fault rate is a probability, not {rate}"
        );
        self.rate.store(rate.to_bits(), Ordering::Release);
    }

    /// Only calls with these names ([`StoreCall::name`], listed in [`ALL_CALLS`]) may fail. Panics on
    /// an unknown name, so a typo cannot silently disable faults.
    pub fn calls(mut self, names: &[&str]) -> Self {
        self.calls = names
            .iter()
            .map(|name| {
                *ALL_CALLS
                    .iter()
                    .find(|known| *known == name)
                    .unwrap_or_else(|| panic!("no store call is named {name:?}; see ALL_CALLS"))
            })
            .collect();
        self
    }

    /// Only these kinds of fault are injected (duplicates count once).
    pub fn kinds(mut self, kinds: &[FaultKind]) -> Self {
        self.kinds = kinds.to_vec();
        self.kinds.sort_unstable();
        self.kinds.dedup();
        self
    }

    /// Whether the injector starts switched on (default off).
    pub fn enabled(self, on: bool) -> Self {
        self.set_enabled(on);
        self
    }

    /// Switches fault injection on or off; takes effect for the next call (also while an engine runs).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    /// Whether faults are being injected.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The fault rate now.
    pub fn fault_rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Acquire))
    }

    /// The faults injected so far, by kind.
    pub fn injected(&self) -> FaultCounts {
        let get = |kind: FaultKind| self.injected[kind.index()].load(Ordering::Acquire);
        FaultCounts {
            busy: get(FaultKind::Busy),
            io: get(FaultKind::Io),
            disk_full: get(FaultKind::DiskFull),
            lost_after_commit: get(FaultKind::LostAfterCommit),
        }
    }

    /// All faults injected so far.
    pub fn total_injected(&self) -> u64 {
        self.injected().total()
    }

    /// The faults injected so far, by call name.
    pub fn injected_by_call(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.by_call).clone()
    }

    /// How many eligible calls were seen while the injector was on (failed or not).
    pub fn consulted(&self) -> u64 {
        self.consulted.load(Ordering::Acquire)
    }

    fn eligible(&self, call: &StoreCall<'_>) -> bool {
        self.is_enabled() && self.calls.contains(&call.name())
    }

    fn before_kinds(&self) -> Vec<FaultKind> {
        self.kinds
            .iter()
            .copied()
            .filter(|kind| kind.is_before())
            .collect()
    }

    /// How many enabled kinds apply to `call` (the lost-after-commit kind only to writes).
    fn applicable(&self, call: &StoreCall<'_>) -> usize {
        self.before_kinds().len() + usize::from(self.loses_commits() && call.is_write())
    }

    fn loses_commits(&self) -> bool {
        self.kinds.contains(&FaultKind::LostAfterCommit)
    }

    fn count(&self, kind: FaultKind, call: &StoreCall<'_>) {
        self.injected[kind.index()].fetch_add(1, Ordering::AcqRel);
        *lock(&self.by_call).entry(call.name()).or_insert(0) += 1;
    }
}

impl StoreHook for FaultInjector {
    /// With probability `rate × b / k` (`b` enabled kinds that fail before the store is reached, `k`
    /// enabled kinds that apply to the call), fails the call with one of those `b` kinds, chosen
    /// uniformly.
    fn before(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        if !self.eligible(call) {
            return None;
        }
        self.consulted.fetch_add(1, Ordering::AcqRel);
        let before = self.before_kinds();
        if before.is_empty() {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let probability = self.fault_rate() * before.len() as f64 / self.applicable(call) as f64;
        let kind = {
            let mut rng = lock(&self.rng);
            if rng.f64() >= probability {
                return None;
            }
            before[rng.usize(..before.len())]
        };
        self.count(kind, call);
        Some(kind.error(call.name()))
    }

    /// For a write that took effect, reports it as failed ([`FaultKind::LostAfterCommit`]) with
    /// probability `(rate / k) / (1 - rate × b / k)`: given that [`before`](StoreHook::before) let it
    /// through, so that each of the `k` kinds applying to a write hits `rate / k` of them and `rate` of
    /// all writes fail.
    fn after_ok(&self, call: &StoreCall<'_>) -> Option<StoreError> {
        if !call.is_write() || !self.loses_commits() || !self.eligible(call) {
            return None;
        }
        let rate = self.fault_rate();
        #[allow(clippy::cast_precision_loss)]
        let (kinds, before) = (
            self.applicable(call) as f64,
            self.before_kinds().len() as f64,
        );
        let let_through = 1.0 - rate * before / kinds;
        let probability = if let_through <= 0.0 {
            0.0
        } else {
            (rate / kinds / let_through).min(1.0)
        };
        if lock(&self.rng).f64() >= probability {
            return None;
        }
        self.count(FaultKind::LostAfterCommit, call);
        Some(FaultKind::LostAfterCommit.error(call.name()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
