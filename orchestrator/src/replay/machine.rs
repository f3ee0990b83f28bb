//! The replay state machine of one run.

use std::collections::{HashMap, HashSet};
use std::task::Waker;
use std::time::Duration;

use super::step::{StepRequest, describe, matches};
use crate::error::{NonDeterminismError, ParkReason};
use crate::journal::{Event, EventBody, History, SideEffectKind};

/// Where an interrupted activity resumes: after which attempt, and when the next one is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActivityResume {
    /// The last attempt that failed.
    pub(crate) failed_attempts: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    pub(crate) retry_at_ms: i64,
}

/// Work the driver must start because the journal holds no outcome for it yet.
#[derive(Debug)]
pub(crate) enum Command<A> {
    /// Run an activity (`payload` carries what the driver needs to invoke it).
    Activity {
        step: u32,
        name: &'static str,
        input_fingerprint: u64,
        resume: Option<ActivityResume>,
        payload: A,
    },
    /// Arm a timer.
    Timer { step: u32, fire_at_ms: i64 },
    /// Wait for a signal, until an optional deadline.
    Signal {
        step: u32,
        name: String,
        deadline_ms: Option<i64>,
    },
}

/// Matches the steps a workflow asks for against its journal, and hands out their outcomes.
///
/// Generic over `A`, the payload attached to activity commands, so the core never sees how activities
/// are invoked.
#[derive(Debug)]
pub(crate) struct ReplayMachine<A> {
    history: History,
    next_step: u32,
    /// Index of the next recorded completion to deliver.
    replay_cursor: usize,
    /// Steps asked for whose outcome has not been delivered yet.
    waiting: HashSet<u32>,
    /// Delivered outcomes not yet taken by their step future.
    outcomes: HashMap<u32, EventBody>,
    wakers: HashMap<u32, Waker>,
    commands: Vec<Command<A>>,
    records: Vec<Event>,
    failure: Option<ParkReason>,
}

impl<A> ReplayMachine<A> {
    /// A machine replaying `history`.
    pub(crate) fn new(history: History) -> Self {
        ReplayMachine {
            history,
            next_step: 1,
            replay_cursor: 0,
            waiting: HashSet::new(),
            outcomes: HashMap::new(),
            wakers: HashMap::new(),
            commands: Vec::new(),
            records: Vec::new(),
            failure: None,
        }
    }

    /// Why the run cannot go on, if it cannot.
    pub(crate) fn failure(&self) -> Option<&ParkReason> {
        self.failure.as_ref()
    }

    /// Stops the run: nothing more is issued or delivered.
    pub(crate) fn fail(&mut self, reason: ParkReason) {
        if self.failure.is_none() {
            self.failure = Some(reason);
        }
    }

    /// Whether recorded completions remain to be delivered.
    #[cfg(test)]
    pub(crate) fn is_replaying(&self) -> bool {
        self.replay_cursor < self.history.completions().len()
    }

    /// The number of steps asked for so far.
    pub(crate) fn steps_issued(&self) -> u32 {
        self.next_step - 1
    }

    /// Assigns the next step number to `request`, checking it against the journal. On a mismatch the
    /// machine fails with a nondeterminism error and the step never resolves.
    fn assign(&mut self, request: &StepRequest) -> u32 {
        let step = self.next_step;
        self.next_step += 1;
        let recorded = self
            .history
            .completion(step)
            .or_else(|| self.history.records(step).first());
        if let Some(recorded) = recorded {
            if !matches(request, recorded) {
                self.fail(ParkReason::NonDeterminism(NonDeterminismError {
                    step,
                    recorded: describe(recorded),
                    requested: request.to_string(),
                }));
            }
        }
        step
    }

    /// The workflow calls an activity.
    pub(crate) fn issue_activity(
        &mut self,
        name: &'static str,
        input_fingerprint: u64,
        payload: A,
    ) -> u32 {
        let request = StepRequest::Activity {
            name,
            input_fingerprint,
        };
        let step = self.assign(&request);
        if self.failure.is_some() {
            return step;
        }
        self.waiting.insert(step);
        if self.history.completion(step).is_none() {
            let resume = self
                .history
                .records(step)
                .iter()
                .filter_map(|record| match record {
                    EventBody::ActivityAttemptFailed {
                        attempt,
                        retry_at_ms,
                        ..
                    } => Some(ActivityResume {
                        failed_attempts: *attempt,
                        retry_at_ms: *retry_at_ms,
                    }),
                    _ => None,
                })
                .max_by_key(|resume| resume.failed_attempts);
            self.commands.push(Command::Activity {
                step,
                name,
                input_fingerprint,
                resume,
                payload,
            });
        }
        step
    }

    /// The workflow sleeps for `duration`; `now_ms` is the wall clock used if the timer is new.
    pub(crate) fn issue_timer(&mut self, duration: Duration, now_ms: i64) -> u32 {
        let step = self.assign(&StepRequest::Timer { duration });
        if self.failure.is_some() {
            return step;
        }
        self.waiting.insert(step);
        if self.history.completion(step).is_none() {
            let recorded = self
                .history
                .records(step)
                .iter()
                .find_map(|record| match record {
                    EventBody::TimerStarted { fire_at_ms } => Some(*fire_at_ms),
                    _ => None,
                });
            let fire_at_ms = match recorded {
                Some(fire_at_ms) => fire_at_ms,
                None => {
                    let fire_at_ms = now_ms.saturating_add(duration_ms(duration));
                    self.records.push(Event {
                        step,
                        body: EventBody::TimerStarted { fire_at_ms },
                    });
                    fire_at_ms
                }
            };
            self.commands.push(Command::Timer { step, fire_at_ms });
        }
        step
    }

    /// The workflow waits for a signal named `name`, giving up after `timeout` if one is given.
    pub(crate) fn issue_signal(
        &mut self,
        name: String,
        timeout: Option<Duration>,
        now_ms: i64,
    ) -> u32 {
        let step = self.assign(&StepRequest::Signal {
            name: name.clone(),
            timeout,
        });
        if self.failure.is_some() {
            return step;
        }
        self.waiting.insert(step);
        if self.history.completion(step).is_none() {
            let recorded = self
                .history
                .records(step)
                .iter()
                .find_map(|record| match record {
                    EventBody::SignalWaitStarted { deadline_ms, .. } => Some(*deadline_ms),
                    _ => None,
                });
            let deadline_ms = match (recorded, timeout) {
                (Some(deadline_ms), _) => Some(deadline_ms),
                (None, Some(timeout)) => {
                    let deadline_ms = now_ms.saturating_add(duration_ms(timeout));
                    self.records.push(Event {
                        step,
                        body: EventBody::SignalWaitStarted {
                            name: name.clone(),
                            deadline_ms,
                        },
                    });
                    Some(deadline_ms)
                }
                (None, None) => None,
            };
            self.commands.push(Command::Signal {
                step,
                name,
                deadline_ms,
            });
        }
        step
    }

    /// The workflow asks for a non-deterministic value: the recorded one on replay, else `fresh`'s
    /// (which is then recorded). `None` when the machine has failed.
    pub(crate) fn side_effect<E>(
        &mut self,
        kind: SideEffectKind,
        fresh: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Option<(u32, Vec<u8>)>, E> {
        let step = self.assign(&StepRequest::SideEffect { kind });
        if self.failure.is_some() {
            return Ok(None);
        }
        let recorded = self
            .history
            .records(step)
            .iter()
            .find_map(|record| match record {
                EventBody::SideEffect { value, .. } => Some(value.clone()),
                _ => None,
            });
        match recorded {
            Some(value) => Ok(Some((step, value))),
            None => {
                let value = fresh()?;
                self.records.push(Event {
                    step,
                    body: EventBody::SideEffect {
                        kind,
                        value: value.clone(),
                    },
                });
                Ok(Some((step, value)))
            }
        }
    }

    /// The outcome of `step` if it has been delivered (taken once); otherwise remembers `waker`.
    pub(crate) fn poll_step(&mut self, step: u32, waker: &Waker) -> Option<EventBody> {
        if self.failure.is_some() {
            return None;
        }
        match self.outcomes.remove(&step) {
            Some(outcome) => {
                self.wakers.remove(&step);
                Some(outcome)
            }
            None => {
                self.wakers.insert(step, waker.clone());
                None
            }
        }
    }

    /// Commands to execute, in the order they were issued.
    pub(crate) fn take_commands(&mut self) -> Vec<Command<A>> {
        std::mem::take(&mut self.commands)
    }

    /// New records (timers started, side effects) to journal before any command runs.
    pub(crate) fn take_records(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.records)
    }

    /// Delivers the next recorded completion. Returns `false` when none is left (or the machine failed).
    /// A completion for a step the code has not asked for is a nondeterminism error.
    pub(crate) fn replay_next(&mut self) -> bool {
        if self.failure.is_some() {
            return false;
        }
        let Some(event) = self.history.completions().get(self.replay_cursor).cloned() else {
            return false;
        };
        self.replay_cursor += 1;
        if !self.waiting.contains(&event.step) {
            let mut waiting: Vec<u32> = self.waiting.iter().copied().collect();
            waiting.sort_unstable();
            self.fail(ParkReason::NonDeterminism(NonDeterminismError {
                step: event.step,
                recorded: describe(&event.body),
                requested: format!(
                    "nothing: the code has asked for {} steps and waits at {:?}",
                    self.next_step - 1,
                    waiting
                ),
            }));
            return false;
        }
        self.deliver(event.step, event.body);
        true
    }

    /// Delivers a live completion that has just been journaled.
    pub(crate) fn resolve(&mut self, step: u32, outcome: EventBody) {
        if self.failure.is_none() && self.waiting.contains(&step) {
            self.deliver(step, outcome);
        }
    }

    /// Whether `step` was asked for and still waits for its outcome.
    #[cfg(test)]
    pub(crate) fn is_waiting(&self, step: u32) -> bool {
        self.waiting.contains(&step)
    }

    fn deliver(&mut self, step: u32, outcome: EventBody) {
        self.waiting.remove(&step);
        self.outcomes.insert(step, outcome);
        if let Some(waker) = self.wakers.remove(&step) {
            waker.wake();
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
