//! The driver of one run: polls the workflow body, journals what happens, starts what it asks for.
//!
//! One driver task per active run. It alternates between polling the workflow future until it makes no
//! more progress, journaling the records that poll produced, starting the commands it issued, and
//! delivering exactly one completion — first the journal's recorded ones in order (replay), then live
//! ones as they arrive (each journaled before it is delivered). Delivering one completion at a time, in
//! journal order, is what makes concurrent steps replay identically.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::activity_task::{ActivityTask, panic_message};
use super::registry::WorkflowFuture;
use crate::clock::until;
use crate::codec::Codec;
use crate::context::{ActivityInvocation, RunShared};
use crate::error::{ActivityError, ParkReason, WorkflowError};
use crate::journal::{Event, EventBody, encode_event};
use crate::replay::Command;
use crate::store::{Commit, SignalRecord, StatusChange, Store, StoreError};

/// Messages to a driver from its tasks and from the engine.
#[derive(Debug)]
pub(crate) enum DriverMsg {
    /// An activity step finished for good.
    ActivityDone {
        step: u32,
        attempts: u32,
        result: Result<Vec<u8>, ActivityError>,
    },
    /// An activity task stopped without an outcome because the engine is shutting down.
    ActivityStopped { step: u32 },
    /// A timer's time has come.
    TimerDue { step: u32 },
    /// A signal wait's deadline has come.
    SignalDeadline { step: u32 },
    /// A signal was added to the run's inbox.
    Signal(SignalRecord),
}

/// How a driver ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DriverExit {
    /// The run completed or failed; the outcome is journaled.
    Finished,
    /// The run was parked; the reason is journaled.
    Parked,
    /// The engine shut down; the run resumes at the next start.
    Shutdown,
    /// The store failed; the run resumes at the next start.
    StoreFailed(String),
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
    task: JoinHandle<()>,
}

struct SignalWaitState {
    name: String,
    deadline: Option<JoinHandle<()>>,
}

pub(crate) struct Driver {
    shared: Arc<RunShared>,
    /// Only ever accessed through `&mut self` (`Mutex::get_mut`, no locking): the mutex just makes the
    /// driver `Sync` so `&self` methods can be held across awaits.
    future: std::sync::Mutex<WorkflowFuture>,
    store: Arc<dyn Store>,
    codec: Codec,
    tx: mpsc::UnboundedSender<DriverMsg>,
    rx: mpsc::UnboundedReceiver<DriverMsg>,
    shutdown: watch::Receiver<bool>,
    shutdown_grace: Duration,
    wake: Arc<WakeFlag>,
    waker: Waker,
    activities: HashMap<u32, InFlightActivity>,
    timers: HashMap<u32, JoinHandle<()>>,
    signal_waits: BTreeMap<u32, SignalWaitState>,
    inbox: BTreeMap<i64, SignalRecord>,
    consumed_signals: HashSet<i64>,
}

/// What a driver is built from.
pub(crate) struct DriverParts {
    pub(crate) shared: Arc<RunShared>,
    pub(crate) future: WorkflowFuture,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tx: mpsc::UnboundedSender<DriverMsg>,
    pub(crate) rx: mpsc::UnboundedReceiver<DriverMsg>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) shutdown_grace: Duration,
    pub(crate) inbox: Vec<SignalRecord>,
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
            tx: parts.tx,
            rx: parts.rx,
            shutdown: parts.shutdown,
            shutdown_grace: parts.shutdown_grace,
            wake,
            waker,
            activities: HashMap::new(),
            timers: HashMap::new(),
            signal_waits: BTreeMap::new(),
            inbox: parts
                .inbox
                .into_iter()
                .map(|signal| (signal.id, signal))
                .collect(),
            consumed_signals: HashSet::new(),
        }
    }

    fn workflow_id(&self) -> &str {
        &self.shared.workflow_id
    }

    /// Drives the run until it finishes, is parked, or the engine shuts down.
    pub(crate) async fn run(mut self) -> DriverExit {
        let exit = match self.drive().await {
            Ok(exit) => exit,
            Err(error) => {
                tracing::error!(workflow_id = %self.workflow_id(), %error, "journal write failed; the run resumes at the next start");
                DriverExit::StoreFailed(error.to_string())
            }
        };
        if exit == DriverExit::Shutdown {
            self.drain().await;
        }
        for (_, activity) in self.activities.drain() {
            activity.task.abort();
        }
        for (_, timer) in self.timers.drain() {
            timer.abort();
        }
        for (_, wait) in std::mem::take(&mut self.signal_waits) {
            if let Some(deadline) = wait.deadline {
                deadline.abort();
            }
        }
        exit
    }

    async fn drive(&mut self) -> Result<DriverExit, StoreError> {
        loop {
            // 1. Poll the body until it makes no more progress.
            while self.wake.woken.swap(false, Ordering::AcqRel) {
                if let Poll::Ready(result) = self.poll_body() {
                    return self.finish(result).await;
                }
            }
            let failure = self.shared.machine().failure().cloned();
            if let Some(reason) = failure {
                return self.park(reason).await;
            }
            // 2. Journal what the poll recorded, then start what it asked for.
            let (records, commands) = {
                let mut machine = self.shared.machine();
                (machine.take_records(), machine.take_commands())
            };
            self.journal(records).await?;
            for command in commands {
                self.start(command);
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
            if self.deliver_signal().await? {
                continue;
            }
            tokio::select! {
                message = self.rx.recv() => {
                    if let Some(message) = message {
                        self.handle(message).await?;
                    }
                }
                _ = self.wake.notify.notified() => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        // The engine was dropped without a shutdown: stop all the same.
                        return Ok(DriverExit::Shutdown);
                    }
                }
            }
            if *self.shutdown.borrow() {
                return Ok(DriverExit::Shutdown);
            }
        }
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
                tracing::error!(workflow_id = %self.shared.workflow_id, %message, "workflow panicked");
                Poll::Ready(Err(WorkflowError::Panicked { message }))
            }
        }
    }

    fn encode_events(&self, events: &[Event]) -> Result<Vec<crate::store::NewEvent>, StoreError> {
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

    async fn journal(&self, records: Vec<Event>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let events = self.encode_events(&records)?;
        self.commit(Commit::events(self.workflow_id(), events))
            .await
    }

    /// Commits, retrying transient failures with a short backoff.
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let mut wait = Duration::from_millis(5);
        let mut tries = 0;
        loop {
            match self.store.commit(commit.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_retryable() && tries < 10 => {
                    tracing::warn!(workflow_id = %self.workflow_id(), %error, "transient journal error; retrying");
                    tries += 1;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn start(&mut self, command: Command<ActivityInvocation>) {
        match command {
            Command::Activity {
                step,
                name,
                input_fingerprint,
                resume,
                payload,
            } => {
                let task = ActivityTask {
                    workflow_id: self.shared.workflow_id.clone(),
                    step,
                    name,
                    input_fingerprint,
                    resume,
                    invocation: payload,
                    store: self.store.clone(),
                    codec: self.codec,
                    driver: self.tx.clone(),
                    shutdown: self.shutdown.clone(),
                };
                let task = tokio::spawn(task.run());
                self.activities.insert(
                    step,
                    InFlightActivity {
                        name,
                        input_fingerprint,
                        task,
                    },
                );
            }
            Command::Timer { step, fire_at_ms } => {
                let timer = self.after(until(fire_at_ms), DriverMsg::TimerDue { step });
                self.timers.insert(step, timer);
            }
            Command::Signal {
                step,
                name,
                deadline_ms,
            } => {
                let deadline = deadline_ms.map(|deadline| {
                    self.after(until(deadline), DriverMsg::SignalDeadline { step })
                });
                self.signal_waits
                    .insert(step, SignalWaitState { name, deadline });
            }
        }
    }

    fn after(&self, wait: Duration, message: DriverMsg) -> JoinHandle<()> {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(message);
        })
    }

    /// Journals a completion, then delivers it to the body.
    async fn complete(
        &mut self,
        step: u32,
        body: EventBody,
        signal: Option<i64>,
    ) -> Result<(), StoreError> {
        let events = self.encode_events(&[Event {
            step,
            body: body.clone(),
        }])?;
        self.commit(Commit {
            workflow_id: self.workflow_id().to_string(),
            events,
            consume_signal: signal,
            status: None,
        })
        .await?;
        self.shared.machine().resolve(step, body);
        self.wake.wake_by_ref();
        Ok(())
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
        if let Some(wait) = self.signal_waits.remove(&step) {
            if let Some(deadline) = wait.deadline {
                deadline.abort();
            }
        }
        let body = EventBody::SignalReceived {
            name: signal.name,
            signal_id,
            payload: signal.payload,
        };
        self.complete(step, body, Some(signal_id)).await?;
        Ok(true)
    }

    async fn finish(
        &mut self,
        result: Result<Vec<u8>, WorkflowError>,
    ) -> Result<DriverExit, StoreError> {
        let records = self.shared.machine().take_records();
        let mut events = self.encode_events(&records)?;
        let status = match result {
            Ok(output) => StatusChange::Complete { output },
            Err(error) => {
                let error = match self.codec.encode(&error) {
                    Ok(bytes) => bytes,
                    Err(codec_error) => {
                        // The error itself is too large: keep its head.
                        let message: String = error.to_string().chars().take(1024).collect();
                        events.clear();
                        self.codec
                            .encode(&WorkflowError::Application {
                                message: format!("{message}… ({codec_error})"),
                            })
                            .map_err(|error| StoreError::Backend {
                                operation: "encoding a workflow error",
                                message: error.to_string(),
                            })?
                    }
                };
                StatusChange::Fail { error }
            }
        };
        self.commit(Commit {
            workflow_id: self.workflow_id().to_string(),
            events,
            consume_signal: None,
            status: Some(status),
        })
        .await?;
        Ok(DriverExit::Finished)
    }

    async fn park(&mut self, reason: ParkReason) -> Result<DriverExit, StoreError> {
        tracing::error!(workflow_id = %self.workflow_id(), %reason, "run parked");
        let reason = self
            .codec
            .encode(&reason)
            .map_err(|error| StoreError::Backend {
                operation: "encoding a park reason",
                message: error.to_string(),
            })?;
        self.commit(Commit {
            workflow_id: self.workflow_id().to_string(),
            events: Vec::new(),
            consume_signal: None,
            status: Some(StatusChange::Park { reason }),
        })
        .await?;
        Ok(DriverExit::Parked)
    }

    /// After shutdown began: journal the outcomes of activity attempts still running, within the grace
    /// period; start nothing new.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        while !self.activities.is_empty() {
            let message = tokio::select! {
                message = self.rx.recv() => message,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some(message) = message else { break };
            match message {
                DriverMsg::ActivityDone {
                    step,
                    attempts,
                    result,
                } => {
                    let Some(activity) = self.activities.remove(&step) else {
                        continue;
                    };
                    let body = EventBody::ActivityCompleted {
                        name: activity.name.to_string(),
                        input_fingerprint: activity.input_fingerprint,
                        attempts,
                        result,
                    };
                    let written = match self.encode_events(&[Event { step, body }]) {
                        Ok(events) => {
                            self.commit(Commit::events(self.workflow_id(), events))
                                .await
                        }
                        Err(error) => Err(error),
                    };
                    if let Err(error) = written {
                        tracing::warn!(workflow_id = %self.workflow_id(), step, %error, "could not journal an activity outcome during shutdown");
                    }
                }
                DriverMsg::ActivityStopped { step } => {
                    self.activities.remove(&step);
                }
                _ => {}
            }
        }
    }
}
