//! The driver of one run: polls the workflow body, journals what happens, starts what it asks for.
//!
//! One driver task per active run. It alternates between polling the workflow future until it makes no
//! more progress, journaling the records that poll produced, starting the commands it issued (and
//! stopping the work of steps it abandoned), and delivering exactly one completion — first the
//! journal's recorded ones in order (replay), then live ones as they arrive (each journaled in the same
//! commit as what the next poll produced, before any work that poll asks for starts; a signal's receipt
//! at once). Delivering one completion at a time, in journal order, is what makes concurrent steps
//! replay identically.

mod outcome;
mod work;

pub(crate) use outcome::searchable;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::EngineLink;
use super::activity_task::{immediate_attempt, panic_message};
use super::lease::RunLease;
use super::registry::WorkflowFuture;
use crate::codec::Codec;
use crate::context::{ActivityInvocation, CancellationFlag, RunShared};
use crate::error::{ActivityError, WorkflowError};
use crate::journal::{Event, EventBody, Interrupt, encode_event};
use crate::replay::Command;
use crate::store::{Commit, NewEvent, SignalRecord, Store, StoreError};

/// The values published by `records` (to upsert with them).
fn published_values(records: &[Event]) -> Vec<(String, Vec<u8>)> {
    records
        .iter()
        .filter_map(|event| match &event.body {
            EventBody::StatePublished { key, value } => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

/// Appends to `records` an `ActivityAttemptStarted` event for each activity command whose attempt
/// starts at once (see [`immediate_attempt`]); returns those attempts by step.
fn attempt_starts(
    commands: &[Command<ActivityInvocation>],
    records: &mut Vec<Event>,
) -> HashMap<u32, u32> {
    let mut starts = HashMap::new();
    let mut now = None;
    for command in commands {
        if let Command::Activity {
            step,
            name,
            input_fingerprint,
            resume,
            payload,
        } = command
        {
            let started_at_ms = *now.get_or_insert_with(crate::clock::now_ms);
            if let Some(attempt) = immediate_attempt(*resume, &payload.options.retry, started_at_ms)
            {
                records.push(Event {
                    step: *step,
                    body: EventBody::ActivityAttemptStarted {
                        name: (*name).to_string(),
                        input_fingerprint: *input_fingerprint,
                        attempt,
                        started_at_ms,
                    },
                });
                starts.insert(*step, attempt);
            }
        }
    }
    starts
}

/// Messages to a driver from its tasks and from the engine.
#[derive(Debug)]
pub(crate) enum DriverMsg {
    /// An activity step finished for good.
    ActivityDone {
        step: u32,
        attempts: u32,
        result: Result<Vec<u8>, ActivityError>,
    },
    /// An activity task stopped without an outcome (shutdown, or its step was abandoned).
    ActivityStopped { step: u32 },
    /// A timer's time has come.
    TimerDue { step: u32 },
    /// A signal wait's deadline has come.
    SignalDeadline { step: u32 },
    /// A signal was added to the run's inbox.
    Signal(SignalRecord),
    /// An awaited run (child or other) finished.
    RunFinished {
        step: u32,
        workflow_id: String,
        result: Result<Vec<u8>, WorkflowError>,
    },
    /// The run was cancelled.
    Cancel { reason: String },
    /// The run's execution deadline passed.
    Deadline,
    /// Another node took the run over: stop driving it.
    LeaseLost,
    /// One of the run's activity tasks had a write rejected as stale: stop driving the run.
    WriteRejected,
    /// One of the run's activity tasks could not journal an attempt's start (so the attempt did not
    /// run): stop driving the run; the engine revives it from its journal.
    TaskWriteFailed(StoreError),
    /// This node claimed the run again under a new lease epoch.
    NewEpoch(i64),
    /// An operator paused the run: start nothing new, let in-flight attempts finish and be journaled,
    /// then leave memory.
    Pause,
    /// An operator terminated the run (already recorded in the store): stop at once.
    Terminate,
}

/// How a driver ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DriverExit {
    /// The run finished (completed, failed, cancelled); the outcome is journaled. `output` is the
    /// encoded output of a completed run.
    Finished { output: Option<Vec<u8>> },
    /// The run was parked; the reason is journaled.
    Parked,
    /// The run continued as new: a fresh run of the same id must be driven.
    ContinuedAsNew,
    /// The run was idle (waiting only on timers or signals) and left memory; it must be woken at
    /// `wake_at_ms` (if it waits for a time), or by a signal or cancellation.
    Evicted { wake_at_ms: Option<i64> },
    /// The engine shut down; the run resumes at the next start.
    Shutdown,
    /// Another node took the run over: stop driving it. `rejected_write` if this driver found out by
    /// a journal write being rejected (rather than by a lease renewal).
    LeaseLost { rejected_write: bool, epoch: i64 },
    /// A journal read or write failed (it may have taken effect nonetheless): the engine revives the
    /// run from its journal, the only truth, after a backoff.
    StoreFailed {
        /// The error.
        message: String,
        /// Whether the error is transient (the run's waiters are not told).
        retryable: bool,
    },
    /// The workflow code panicked: the engine replays the run again after a backoff, or parks it.
    Panicked { message: String },
    /// An operator paused the run: its in-flight attempts finished (within the shutdown grace) and
    /// were journaled; it stays out of memory until resumed.
    Paused,
    /// An operator terminated the run: its outcome is in the store; in-flight work was dropped.
    Terminated,
}

/// Wakes the driver when the workflow future wants to be polled.
#[derive(Debug, Default)]
struct WakeFlag {
    woken: AtomicBool,
    notify: Notify,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

struct InFlightActivity {
    name: &'static str,
    input_fingerprint: u64,
    cancellation: CancellationFlag,
    /// `None` if the activity finished in its first poll (see `work::start_activity`).
    task: Option<JoinHandle<()>>,
}

struct SignalWaitState {
    name: String,
    deadline: Option<(i64, JoinHandle<()>)>,
}

struct AwaitedRun {
    workflow_id: String,
    cancel_with_parent: bool,
    waiter: JoinHandle<()>,
}

/// What a driver is built from.
pub(crate) struct DriverParts {
    pub(crate) shared: Arc<RunShared>,
    pub(crate) future: WorkflowFuture,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) engine: EngineLink,
    pub(crate) tx: mpsc::UnboundedSender<DriverMsg>,
    pub(crate) rx: mpsc::UnboundedReceiver<DriverMsg>,
    /// Raised when the run is paused (by the engine at once, by the driver when it reads the pause).
    pub(crate) halt: Arc<watch::Sender<bool>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) shutdown_grace: Duration,
    /// A cancellation requested before this driver started, not yet journaled.
    pub(crate) cancel_reason: Option<String>,
    /// The execution deadline (ms since the Unix epoch) and the timeout it came from.
    pub(crate) deadline: Option<(i64, u64)>,
    pub(crate) history_warning: usize,
    pub(crate) keep_runs: u32,
    /// How long the run may sit idle in memory before it is evicted.
    pub(crate) evict_after: Duration,
    /// Which run of its workflow id this is: every write is fenced to it.
    pub(crate) run_no: i64,
    /// With leases: this node's lease on the run; every write carries its (node, epoch), and no
    /// work starts unless it is usable.
    pub(crate) lease: Option<Arc<RunLease>>,
    /// A run this engine just created, whose channel was registered before the run existed: nothing
    /// can be in its inbox or cancellation flag that did not also reach the channel.
    pub(crate) fresh: bool,
    /// A test engine's activity mocks.
    #[cfg(feature = "testing")]
    pub(crate) mocks: Option<Arc<crate::testing::MockTable>>,
}

pub(crate) struct Driver {
    shared: Arc<RunShared>,
    /// Only ever accessed through `&mut self` (`Mutex::get_mut`, no locking): the mutex just makes the
    /// driver `Sync` so `&self` methods can be held across awaits.
    future: std::sync::Mutex<WorkflowFuture>,
    store: Arc<dyn Store>,
    engine: EngineLink,
    codec: Codec,
    tx: mpsc::UnboundedSender<DriverMsg>,
    rx: mpsc::UnboundedReceiver<DriverMsg>,
    shutdown: watch::Receiver<bool>,
    shutdown_grace: Duration,
    wake: Arc<WakeFlag>,
    waker: Waker,
    activities: HashMap<u32, InFlightActivity>,
    /// Armed timers: fire time (ms since the Unix epoch) and the task that fires them.
    timers: HashMap<u32, (i64, JoinHandle<()>)>,
    signal_waits: BTreeMap<u32, SignalWaitState>,
    awaited: HashMap<u32, AwaitedRun>,
    inbox: BTreeMap<i64, SignalRecord>,
    consumed_signals: HashSet<i64>,
    pending_cancel: Option<String>,
    deadline: Option<(i64, u64)>,
    deadline_timer: Option<JoinHandle<()>>,
    events_written: usize,
    history_warning: usize,
    warned_history: bool,
    keep_runs: u32,
    evict_after: Duration,
    interrupt_journaled: bool,
    /// Whether the cluster loop told this driver its lease is gone.
    told_lease_lost: bool,
    /// See [`DriverParts::fresh`].
    fresh: bool,
    /// Completions delivered to the body and not journaled yet (see `complete`).
    unjournaled: Vec<Event>,
    run_no: i64,
    lease: Option<Arc<RunLease>>,
    /// The message of a panic of the workflow code during the last poll.
    panic: Option<String>,
    /// Raised when the run is paused: the driver and its activity tasks start nothing more.
    halt: Arc<watch::Sender<bool>>,
    /// How an operator asked this driver to stop (pause, terminate), once asked.
    stop: Option<DriverExit>,
    /// What the first poll of a run not created yet left to do (see [`Driver::first_poll`]).
    first: Option<FirstPoll>,
    /// A test engine's activity mocks.
    #[cfg(feature = "testing")]
    mocks: Option<Arc<crate::testing::MockTable>>,
}

/// The outcome of a run's first poll, made before the run's row was written (see
/// [`Driver::first_poll`]): what is left to do once the run exists.
enum FirstPoll {
    /// The body returned at once: its result is journaled (with the run's outcome) once the run exists.
    Returned(Result<Vec<u8>, WorkflowError>),
    /// The body is waiting: `journaled` says whether its records and attempt starts went into the
    /// creation; if not (values to publish, or an encoding failure), they are journaled first.
    Waiting {
        records: Vec<Event>,
        journaled: bool,
        abandoned: Vec<u32>,
        commands: Vec<Command<ActivityInvocation>>,
        starts: HashMap<u32, u32>,
    },
}

impl Driver {
    pub(crate) fn new(parts: DriverParts) -> Self {
        let wake = Arc::new(WakeFlag::default());
        wake.woken.store(true, Ordering::Release);
        let waker = Waker::from(wake.clone());
        Driver {
            codec: parts.shared.codec,
            shared: parts.shared,
            future: std::sync::Mutex::new(parts.future),
            store: parts.store,
            engine: parts.engine,
            tx: parts.tx,
            rx: parts.rx,
            shutdown: parts.shutdown,
            shutdown_grace: parts.shutdown_grace,
            wake,
            waker,
            activities: HashMap::new(),
            timers: HashMap::new(),
            signal_waits: BTreeMap::new(),
            awaited: HashMap::new(),
            inbox: BTreeMap::new(),
            consumed_signals: HashSet::new(),
            pending_cancel: parts.cancel_reason,
            deadline: parts.deadline,
            deadline_timer: None,
            events_written: 0,
            history_warning: parts.history_warning,
            warned_history: false,
            keep_runs: parts.keep_runs,
            evict_after: parts.evict_after,
            interrupt_journaled: false,
            told_lease_lost: false,
            fresh: parts.fresh,
            unjournaled: Vec::new(),
            run_no: parts.run_no,
            lease: parts.lease,
            panic: None,
            halt: parts.halt,
            stop: None,
            first: None,
            #[cfg(feature = "testing")]
            mocks: parts.mocks,
        }
    }

    /// Polls the body of a run that does not exist yet, before its creation: returns the events to
    /// write with its row (what the poll recorded, and the starts of the attempts it asked for), so a
    /// new run's first poll costs no commit of its own. Nothing starts here: the commands wait in the
    /// driver until [`Driver::run`], which the caller only calls once the run exists (if it existed
    /// already, the caller drops this driver, and with it the poll). A panic, a failure (parks), a
    /// result or values to publish leave the creation without events and are handled by `run` as
    /// in any other poll.
    pub(crate) fn first_poll(&mut self) -> Vec<NewEvent> {
        while self.panic.is_none() && self.wake.woken.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(result) = self.poll_body() {
                self.first = Some(FirstPoll::Returned(result));
                return Vec::new();
            }
        }
        if self.panic.is_some() || self.shared.machine().failure().is_some() {
            return Vec::new();
        }
        let (mut records, abandoned, commands) = {
            let mut machine = self.shared.machine();
            (
                machine.take_records(),
                machine.take_abandoned(),
                machine.take_commands(),
            )
        };
        let starts = attempt_starts(&commands, &mut records);
        // Published values go with a commit (the creation carries events only).
        let events = if published_values(&records).is_empty() {
            self.encode_events(&records).ok()
        } else {
            None
        };
        let journaled = events.is_some();
        self.first = Some(FirstPoll::Waiting {
            records: if journaled { Vec::new() } else { records },
            journaled,
            abandoned,
            commands,
            starts,
        });
        let events = events.unwrap_or_default();
        self.events_written += events.len();
        events
    }

    /// Sets the lease of a run created after its driver (see [`Driver::first_poll`]).
    pub(crate) fn set_lease(&mut self, lease: Option<Arc<RunLease>>) {
        self.lease = lease;
    }

    fn workflow_id(&self) -> &str {
        &self.shared.workflow_id
    }

    /// Drives the run until it finishes, is parked, or the engine shuts down.
    pub(crate) async fn run(mut self) -> DriverExit {
        let loaded = if self.fresh {
            Ok(())
        } else {
            self.load_inbox().await
        };
        let exit = match loaded {
            Ok(()) => self.drive().await,
            Err(error) => Err(error),
        };
        let exit = match exit {
            Ok(exit) => exit,
            Err(StoreError::StaleLease { node, epoch, .. }) => {
                tracing::warn!(workflow_id = %self.workflow_id(), %node, epoch, "lease lost: another node drives this run now");
                // Nothing more starts for the run here (its tasks check the lease too).
                if let Some(lease) = &self.lease {
                    lease.revoke_epoch(epoch);
                }
                DriverExit::LeaseLost {
                    rejected_write: !self.told_lease_lost,
                    epoch,
                }
            }
            Err(error) => {
                tracing::error!(workflow_id = %self.workflow_id(), %error, "journal access failed; the run is revived from its journal");
                DriverExit::StoreFailed {
                    message: error.to_string(),
                    retryable: error.is_retryable(),
                }
            }
        };
        if matches!(exit, DriverExit::Shutdown | DriverExit::Paused) {
            self.drain().await;
        }
        self.stop_all_work();
        exit
    }

    /// Loads the signals waiting in the inbox. Runs after the driver is registered with the engine,
    /// so a signal sent meanwhile arrives either here or as a message (duplicates are merged by id).
    async fn load_inbox(&mut self) -> Result<(), StoreError> {
        // A cancellation requested while this driver was being set up is on the run's row. Both reads
        // are queued at once (one round trip to the reader instead of two).
        let id = self.shared.workflow_id.clone();
        let (run, pending) = tokio::join!(self.store.run(&id), self.store.pending_signals(&id));
        if let Some(run) = run? {
            if self.pending_cancel.is_none() {
                self.pending_cancel = run.cancel_reason;
            }
            // Paused while this driver was being set up (the pause's message found no driver).
            if run.paused.is_some() {
                self.request_pause();
            }
        }
        let pending = pending?;
        for signal in pending {
            if !self.consumed_signals.contains(&signal.id) {
                self.inbox.entry(signal.id).or_insert(signal);
            }
        }
        Ok(())
    }

    async fn drive(&mut self) -> Result<DriverExit, StoreError> {
        match self.first.take() {
            Some(FirstPoll::Returned(result)) => {
                let abandoned = self.shared.machine().take_abandoned();
                for step in abandoned {
                    self.abandon(step);
                }
                return self.finish(result).await;
            }
            Some(FirstPoll::Waiting {
                records,
                journaled,
                abandoned,
                commands,
                starts,
            }) => {
                if !journaled {
                    self.journal(records).await?;
                }
                if let Some(exit) = self.launch(abandoned, commands, &starts).await? {
                    return Ok(exit);
                }
            }
            None => {}
        }
        let mut interrupts_checked = false;
        loop {
            // An operator's pause or termination: nothing more is polled or started.
            if let Some(exit) = self.stop_requested() {
                return Ok(exit);
            }
            // 1. Poll the body until it makes no more progress (never again once it panicked: a
            // future that panicked must not be polled again).
            while self.panic.is_none() && self.wake.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(result) = self.poll_body() {
                    // Steps the body dropped or an interruption resolved on its way out must still be
                    // told to stop (cancellation flags, child cancellation) before the run ends.
                    let abandoned = self.shared.machine().take_abandoned();
                    for step in abandoned {
                        self.abandon(step);
                    }
                    return self.finish(result).await;
                }
            }
            if let Some(message) = self.panic.take() {
                return self.stop_after_panic(message).await;
            }
            let failure = self.shared.machine().failure().cloned();
            if let Some(reason) = failure {
                return self.park(reason).await;
            }
            // 2. Journal what the poll recorded, stop what it abandoned, start what it asked for.
            let (mut records, abandoned, commands) = {
                let mut machine = self.shared.machine();
                (
                    machine.take_records(),
                    machine.take_abandoned(),
                    machine.take_commands(),
                )
            };
            // The first attempt of each activity started now is journaled in this same commit,
            // before it runs (no write of its own).
            let starts = attempt_starts(&commands, &mut records);
            self.journal(records).await?;
            if let Some(exit) = self.launch(abandoned, commands, &starts).await? {
                return Ok(exit);
            }
            // 3. Deliver one completion: the journal's next, else a waiting signal, else a live one.
            let replayed = self.shared.machine().replay_next();
            if replayed {
                self.wake.wake_by_ref();
                continue;
            }
            let failure = self.shared.machine().failure().cloned();
            if let Some(reason) = failure {
                return self.park(reason).await;
            }
            if !interrupts_checked {
                // The journal is delivered: now arm the deadline and apply an earlier cancellation.
                interrupts_checked = true;
                if self.arm_interrupts().await? {
                    continue;
                }
            }
            if self.deliver_signal().await? {
                continue;
            }
            // Idle (only timers and signal waits outstanding): leave memory after a while, or at once
            // when too many runs are resident.
            // With leases (several engines share the store) runs stay in memory while owned.
            let idle = self.is_idle() && self.lease.is_none();
            let evict_in = if idle && self.engine.over_capacity() {
                Duration::ZERO
            } else {
                self.evict_after
            };
            let eviction = tokio::time::sleep(evict_in);
            // `biased`: a fixed order (messages before leaving memory), so a seeded simulation
            // reproduces exactly.
            tokio::select! {
                biased;
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        // The engine was dropped without a shutdown: stop all the same.
                        return Ok(DriverExit::Shutdown);
                    }
                }
                message = self.rx.recv() => {
                    if let Some(message) = message {
                        self.handle(message).await?;
                    }
                }
                _ = self.wake.notify.notified() => {}
                _ = eviction, if idle => {
                    if self.engine.release_driver(&self.shared.workflow_id, &mut self.rx) {
                        return Ok(DriverExit::Evicted { wake_at_ms: self.next_wake() });
                    }
                }
            }
            if *self.shutdown.borrow() {
                return Ok(DriverExit::Shutdown);
            }
        }
    }

    /// After a poll's records are journaled: stops the steps it abandoned and starts what it asked
    /// for (`starts`: the attempts whose start was journaled with the records). `Some(exit)` if the
    /// driver must stop instead of starting it: the engine shuts down, or an operator paused or
    /// terminated the run since the poll (its work is asked for again when the run is replayed).
    async fn launch(
        &mut self,
        abandoned: Vec<u32>,
        commands: Vec<Command<ActivityInvocation>>,
        starts: &HashMap<u32, u32>,
    ) -> Result<Option<DriverExit>, StoreError> {
        for step in abandoned {
            self.abandon(step);
        }
        if !commands.is_empty() && !self.lease_usable().await? {
            return Ok(Some(DriverExit::Shutdown));
        }
        if !commands.is_empty()
            && let Some(exit) = self.stop_requested()
        {
            return Ok(Some(exit));
        }
        for command in commands {
            let journaled = starts.get(&command.step()).copied();
            self.start(command, journaled).await?;
        }
        Ok(None)
    }

    /// Whether nothing but time or an outside event can move the run: no activity, child or await in
    /// flight, and the journal fully delivered.
    fn is_idle(&self) -> bool {
        self.activities.is_empty()
            && self.awaited.is_empty()
            && !self.wake.woken.load(Ordering::Acquire)
            && !self.shared.machine().is_replaying()
    }

    /// The earliest time this run must be woken at: a timer, a signal deadline, the execution deadline.
    fn next_wake(&self) -> Option<i64> {
        let timers = self.timers.values().map(|(at, _)| *at);
        let deadlines = self
            .signal_waits
            .values()
            .filter_map(|wait| wait.deadline.as_ref().map(|(at, _)| *at));
        let execution = self
            .deadline
            .filter(|_| self.shared.machine().interrupted().is_none())
            .map(|(at, _)| at);
        timers.chain(deadlines).chain(execution).min()
    }

    fn poll_body(&mut self) -> Poll<Result<Vec<u8>, WorkflowError>> {
        let mut cx = Context::from_waker(&self.waker);
        let future = self
            .future
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(workflow_id = %self.shared.workflow_id, %message, "workflow code panicked");
                self.panic = Some(message);
                Poll::Pending
            }
        }
    }

    /// After the workflow code panicked: keeps the completions it was given (facts from outside, like
    /// activity results, so they do not run again), drops what the panicking poll recorded, and stops.
    async fn stop_after_panic(&mut self, message: String) -> Result<DriverExit, StoreError> {
        self.journal(Vec::new()).await?;
        Ok(DriverExit::Panicked { message })
    }

    fn encode_events(&self, events: &[Event]) -> Result<Vec<NewEvent>, StoreError> {
        events
            .iter()
            .map(|event| {
                encode_event(&self.codec, event).map_err(|error| StoreError::Backend {
                    operation: "encoding an event",
                    message: error.to_string(),
                })
            })
            .collect()
    }

    async fn journal(&mut self, records: Vec<Event>) -> Result<(), StoreError> {
        let mut events = std::mem::take(&mut self.unjournaled);
        if events.is_empty() && records.is_empty() {
            return Ok(());
        }
        let values = published_values(&records);
        events.extend(records);
        let events = self.encode_events(&events)?;
        let mut commit = Commit::events(self.workflow_id(), events);
        commit.values = values;
        let published = !commit.values.is_empty();
        self.commit(commit).await?;
        if published {
            self.engine.state_published();
        }
        Ok(())
    }

    /// Commits. Any failure ends the driver, even a transient one: a write reported as failed may have
    /// taken effect, so retrying it blindly could journal it twice. The engine revives the run from its
    /// journal instead (see `Engine::revive`).
    async fn commit(&mut self, mut commit: Commit) -> Result<(), StoreError> {
        commit.run_no = Some(self.run_no);
        commit.fence = self.fence();
        let count = commit.events.len();
        self.store.commit(commit).await?;
        self.events_written += count;
        let total = self.shared.machine().history_len() + self.events_written;
        if !self.warned_history && total >= self.history_warning {
            self.warned_history = true;
            tracing::warn!(
                workflow_id = %self.workflow_id(),
                events = total,
                limit = self.history_warning,
                "run history is growing past the warning limit; consider continue_as_new"
            );
        }
        Ok(())
    }

    /// Delivers a completion to the body and journals it.
    ///
    /// A completion without a signal is journaled together with what the body does next — in one
    /// commit, before any work the body asks for starts (see `journal`), or with the run's outcome if
    /// the body returns. Nothing outside the process can observe the delivery before that commit, so
    /// a crash in between only means the step runs again (at least once), as if it had not finished;
    /// and the journal order is still the delivery order. A signal's consumption is committed at once.
    async fn complete(
        &mut self,
        step: u32,
        body: EventBody,
        signal: Option<i64>,
    ) -> Result<(), StoreError> {
        let event = Event {
            step,
            body: body.clone(),
        };
        if signal.is_some() {
            let mut events = std::mem::take(&mut self.unjournaled);
            events.push(event);
            let events = self.encode_events(&events)?;
            let mut commit = Commit::events(self.workflow_id(), events);
            commit.consume_signal = signal;
            self.commit(commit).await?;
        } else {
            self.unjournaled.push(event);
        }
        self.shared.machine().resolve(step, body);
        self.wake.wake_by_ref();
        Ok(())
    }

    /// Journals an interruption (step 0, in completion order) and delivers it. Only the first one
    /// counts (the journal holds at most one).
    async fn interrupt(&mut self, interrupt: Interrupt) -> Result<(), StoreError> {
        if self.interrupt_journaled || self.shared.machine().interrupt_seen() {
            return Ok(());
        }
        self.interrupt_journaled = true;
        tracing::info!(workflow_id = %self.workflow_id(), ?interrupt, "run interrupted");
        let mut events = std::mem::take(&mut self.unjournaled);
        events.push(Event {
            step: 0,
            body: EventBody::Interrupted {
                interrupt: interrupt.clone(),
            },
        });
        let events = self.encode_events(&events)?;
        self.commit(Commit::events(self.workflow_id(), events))
            .await?;
        self.shared.machine().interrupt(interrupt);
        self.wake.wake_by_ref();
        Ok(())
    }

    /// After replay: applies a cancellation requested while no driver ran, arms the deadline.
    /// `true` if an interruption was delivered.
    async fn arm_interrupts(&mut self) -> Result<bool, StoreError> {
        if self.shared.machine().interrupt_seen() {
            return Ok(false);
        }
        if let Some(reason) = self.pending_cancel.take() {
            self.interrupt(Interrupt::Cancelled { reason }).await?;
            return Ok(true);
        }
        if let Some((deadline_ms, _)) = self.deadline {
            let wait = crate::clock::until(deadline_ms);
            self.deadline_timer = Some(self.after(wait, DriverMsg::Deadline));
        }
        Ok(false)
    }

    async fn handle(&mut self, message: DriverMsg) -> Result<(), StoreError> {
        match message {
            DriverMsg::ActivityDone {
                step,
                attempts,
                result,
            } => {
                let Some(activity) = self.activities.remove(&step) else {
                    return Ok(());
                };
                let body = EventBody::ActivityCompleted {
                    name: activity.name.to_string(),
                    input_fingerprint: activity.input_fingerprint,
                    attempts,
                    result,
                };
                self.complete(step, body, None).await
            }
            DriverMsg::ActivityStopped { step } => {
                self.activities.remove(&step);
                Ok(())
            }
            DriverMsg::TimerDue { step } => {
                if self.timers.remove(&step).is_some() {
                    self.complete(step, EventBody::TimerFired, None).await?;
                }
                Ok(())
            }
            DriverMsg::SignalDeadline { step } => {
                if let Some(wait) = self.signal_waits.remove(&step) {
                    let body = EventBody::SignalTimedOut { name: wait.name };
                    self.complete(step, body, None).await?;
                }
                Ok(())
            }
            DriverMsg::Signal(signal) => {
                if !self.consumed_signals.contains(&signal.id) {
                    self.inbox.entry(signal.id).or_insert(signal);
                }
                Ok(())
            }
            DriverMsg::RunFinished {
                step,
                workflow_id,
                result,
            } => {
                if self.awaited.remove(&step).is_some() {
                    let body = EventBody::RunFinished {
                        workflow_id,
                        result,
                    };
                    self.complete(step, body, None).await?;
                }
                Ok(())
            }
            DriverMsg::Cancel { reason } => self.interrupt(Interrupt::Cancelled { reason }).await,
            DriverMsg::LeaseLost => {
                self.told_lease_lost = true;
                Err(self.stale())
            }
            DriverMsg::WriteRejected => Err(self.stale()),
            DriverMsg::TaskWriteFailed(error) => Err(error),
            DriverMsg::NewEpoch(epoch) => {
                // The shared lease already carries it (the cluster loop updated it first).
                tracing::debug!(workflow_id = %self.workflow_id(), epoch, "run claimed again under a new epoch");
                Ok(())
            }
            DriverMsg::Deadline => {
                let timeout_ms = self.deadline.map(|(_, timeout)| timeout).unwrap_or(0);
                self.interrupt(Interrupt::TimedOut { timeout_ms }).await
            }
            DriverMsg::Pause => {
                self.request_pause();
                Ok(())
            }
            DriverMsg::Terminate => {
                self.stop = Some(DriverExit::Terminated);
                Ok(())
            }
        }
    }

    /// How an operator asked this driver to stop, if it did: a termination or pause message it read,
    /// or the halt flag the engine raised before the pause message arrives.
    fn stop_requested(&mut self) -> Option<DriverExit> {
        if self.stop.is_none() && *self.halt.borrow() {
            self.request_pause();
        }
        self.stop.take()
    }

    /// Stops the run for a pause: its activity tasks start no further attempt, and the drive loop
    /// returns [`DriverExit::Paused`] (a termination asked for meanwhile wins).
    fn request_pause(&mut self) {
        self.halt.send_replace(true);
        if self.stop.is_none() {
            self.stop = Some(DriverExit::Paused);
        }
    }

    /// The (node, epoch) this run's writes carry, with leases.
    fn fence(&self) -> Option<(String, i64)> {
        self.lease.as_ref().map(|lease| lease.fence())
    }

    /// The error that ends a driver whose lease is gone.
    fn stale(&self) -> StoreError {
        let (node, epoch) = self.fence().unwrap_or_default();
        StoreError::StaleLease {
            workflow_id: self.workflow_id().to_string(),
            node,
            epoch,
        }
    }

    /// Before starting any work (activity, timer, child): waits, if the lease's local deadline has
    /// passed, until a renewal confirms it. `Err(StaleLease)` if the lease is lost; `Ok(false)` if the
    /// engine shuts down meanwhile. Without leases: `Ok(true)` at once.
    async fn lease_usable(&mut self) -> Result<bool, StoreError> {
        let Some(lease) = self.lease.clone() else {
            return Ok(true);
        };
        tokio::select! {
            biased;
            usable = lease.usable() => {
                if usable {
                    Ok(true)
                } else {
                    // Revoked elsewhere (a renewal missed the run, or a task's write was rejected
                    // and the driver has not read its message yet): not this driver's write.
                    self.told_lease_lost = true;
                    Err(self.stale())
                }
            }
            _ = self.shutdown.changed() => Ok(false),
        }
    }

    /// Hands the oldest matching inbox signal to the earliest wait for it. `true` if one was delivered.
    async fn deliver_signal(&mut self) -> Result<bool, StoreError> {
        let matched = self.signal_waits.iter().find_map(|(step, wait)| {
            self.inbox
                .values()
                .find(|signal| signal.name == wait.name)
                .map(|signal| (*step, signal.id))
        });
        let Some((step, signal_id)) = matched else {
            return Ok(false);
        };
        let Some(signal) = self.inbox.remove(&signal_id) else {
            return Ok(false);
        };
        self.consumed_signals.insert(signal_id);
        if let Some(wait) = self.signal_waits.remove(&step)
            && let Some((_, deadline)) = wait.deadline
        {
            deadline.abort();
        }
        let body = EventBody::SignalReceived {
            name: signal.name,
            signal_id,
            payload: signal.payload,
        };
        self.complete(step, body, Some(signal_id)).await?;
        Ok(true)
    }
}
