//! Starting and stopping the work of steps: activity tasks, timers, signal waits, awaited runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{AwaitedRun, Driver, DriverMsg, InFlightActivity, SignalWaitState};
use crate::clock::until;
use crate::context::{ActivityInvocation, CancellationFlag};
use crate::engine::activity_task::ActivityTask;
use crate::journal::{Event, EventBody};
use crate::replay::Command;
use crate::store::{Commit, StoreError};

/// Runs an activity task's first poll right here, in the driver's task, and spawns it only if it is
/// not done by then. An activity that finishes without waiting (a cache hit, a validation, a no-op)
/// costs no task and no cross-thread wake-up; its outcome is in the driver's channel when this
/// returns. One that waits continues as its own task, polled by tokio from then on.
fn start_activity(task: ActivityTask) -> Option<JoinHandle<()>> {
    let mut future: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(task.run());
    // A no-op waker: if the first poll is pending, the spawned task's first poll registers the real
    // one (and looks at the state afresh, so nothing that happened in between is missed).
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(()) => None,
        Poll::Pending => Some(tokio::spawn(future)),
    }
}

impl Driver {
    /// Starts the work a command asks for. `journaled_start`: the attempt of an activity whose
    /// start was journaled with the poll's records.
    pub(super) async fn start(
        &mut self,
        command: Command<ActivityInvocation>,
        journaled_start: Option<u32>,
    ) -> Result<(), StoreError> {
        match command {
            Command::Activity {
                step,
                name,
                input_fingerprint,
                resume,
                payload,
            } => {
                let cancellation = CancellationFlag::default();
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
                    halt: self.halt.subscribe(),
                    cancellation: cancellation.clone(),
                    run_no: self.run_no,
                    lease: self.lease.clone(),
                    journaled_start,
                    #[cfg(feature = "testing")]
                    mocks: self.mocks.clone(),
                };
                let task = start_activity(task);
                self.activities.insert(
                    step,
                    InFlightActivity {
                        name,
                        input_fingerprint,
                        cancellation,
                        task,
                    },
                );
            }
            Command::Timer { step, fire_at_ms } => {
                let timer = self.after(until(fire_at_ms), DriverMsg::TimerDue { step });
                self.timers.insert(step, (fire_at_ms, timer));
            }
            Command::Signal {
                step,
                name,
                deadline_ms,
            } => {
                let deadline = deadline_ms.map(|deadline| {
                    let task = self.after(until(deadline), DriverMsg::SignalDeadline { step });
                    (deadline, task)
                });
                self.signal_waits
                    .insert(step, SignalWaitState { name, deadline });
            }
            Command::Child {
                step,
                workflow_name,
                child_id,
                input,
                started,
                cancel_with_parent,
            } => {
                if !started {
                    let parent = self.shared.workflow_id.to_string();
                    let created = self
                        .engine
                        .start_child(&workflow_name, &child_id, input, &parent)
                        .await?;
                    if let Err(error) = created {
                        // The child could not be started: that is the step's outcome.
                        let body = EventBody::RunFinished {
                            workflow_id: child_id,
                            result: Err(error),
                        };
                        return self.complete(step, body, None).await;
                    }
                    let record = Event {
                        step,
                        body: EventBody::ChildStarted {
                            workflow_name,
                            child_id: child_id.clone(),
                        },
                    };
                    let events = self.encode_events(&[record])?;
                    self.commit(Commit::events(self.workflow_id(), events))
                        .await?;
                }
                self.await_run(step, child_id, cancel_with_parent);
            }
            Command::AwaitRun { step, workflow_id } => {
                self.await_run(step, workflow_id, false);
            }
        }
        Ok(())
    }

    fn await_run(&mut self, step: u32, workflow_id: String, cancel_with_parent: bool) {
        let engine = self.engine.clone();
        let tx = self.tx.clone();
        let awaited = workflow_id.clone();
        let waiter = tokio::spawn(async move {
            if let Some(result) = engine.run_outcome(&awaited).await {
                let _ = tx.send(DriverMsg::RunFinished {
                    step,
                    workflow_id: awaited,
                    result,
                });
            }
        });
        self.awaited.insert(
            step,
            AwaitedRun {
                workflow_id,
                cancel_with_parent,
                waiter,
            },
        );
    }

    /// Stops the work of a step whose future was dropped or interrupted; its outcome is discarded.
    pub(super) fn abandon(&mut self, step: u32) {
        if let Some(activity) = self.activities.remove(&step) {
            activity.cancellation.cancel();
            // The task stops at its next await point if it honours the flag; its result is ignored.
            drop(activity.task);
        }
        if let Some((_, timer)) = self.timers.remove(&step) {
            timer.abort();
        }
        if let Some(wait) = self.signal_waits.remove(&step)
            && let Some((_, deadline)) = wait.deadline
        {
            deadline.abort();
        }
        if let Some(awaited) = self.awaited.remove(&step) {
            awaited.waiter.abort();
            if awaited.cancel_with_parent {
                let engine = self.engine.clone();
                let reason = format!("parent `{}` abandoned it", self.workflow_id());
                tokio::spawn(async move {
                    engine.cancel_child(&awaited.workflow_id, &reason).await;
                });
            }
        }
    }

    /// Sends `message` to this driver after `wait`.
    pub(super) fn after(&self, wait: Duration, message: DriverMsg) -> JoinHandle<()> {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = tx.send(message);
        })
    }

    /// Stops every task the driver started (when the driver ends).
    pub(super) fn stop_all_work(&mut self) {
        for (_, activity) in self.activities.drain() {
            if let Some(task) = activity.task {
                task.abort();
            }
        }
        for (_, (_, timer)) in self.timers.drain() {
            timer.abort();
        }
        for (_, wait) in std::mem::take(&mut self.signal_waits) {
            if let Some((_, deadline)) = wait.deadline {
                deadline.abort();
            }
        }
        for (_, awaited) in self.awaited.drain() {
            awaited.waiter.abort();
        }
        if let Some(deadline) = self.deadline_timer.take() {
            deadline.abort();
        }
    }

    /// After shutdown began: journal the outcomes of activity attempts still running, within the grace
    /// period; start nothing new.
    pub(super) async fn drain(&mut self) {
        if let Err(error) = self.journal(Vec::new()).await {
            tracing::warn!(workflow_id = %self.workflow_id(), %error, "could not journal delivered completions during shutdown");
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        while !self.activities.is_empty() {
            let message = tokio::select! {
                biased;
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
                            let commit = Commit::events(self.workflow_id(), events);
                            self.commit(commit).await
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
