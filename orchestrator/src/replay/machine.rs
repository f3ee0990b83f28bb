//! The replay state machine of one run.

use std::collections::{HashMap, HashSet};
use std::task::Waker;
use std::time::Duration;

use super::step::{StepRequest, describe, matches};
use crate::error::{NonDeterminismError, ParkReason};
use crate::journal::{Event, EventBody, History, Interrupt, SideEffectKind};

/// Where an interrupted activity resumes: after which attempt, and when the next one is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActivityResume {
    /// The highest attempt number journaled for the step, started or failed: every one counts
    /// toward the retry budget, those cut short by a crash too.
    pub(crate) last_attempt: u32,
    /// When the next attempt is due (ms since the Unix epoch) if the last attempt failed; `None` if
    /// it was cut short (started, no outcome journaled): the next one may start at once.
    pub(crate) retry_at_ms: Option<i64>,
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
    /// Start a child run (unless `started`, when it already exists) and await its outcome.
    Child {
        step: u32,
        workflow_name: String,
        child_id: String,
        input: Vec<u8>,
        started: bool,
        cancel_with_parent: bool,
    },
    /// Await the outcome of another run.
    AwaitRun { step: u32, workflow_id: String },
}

impl<A> Command<A> {
    /// The step the command is for.
    pub(crate) fn step(&self) -> u32 {
        match self {
            Command::Activity { step, .. }
            | Command::Timer { step, .. }
            | Command::Signal { step, .. }
            | Command::Child { step, .. }
            | Command::AwaitRun { step, .. } => *step,
        }
    }
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
    /// Steps whose work must stop: dropped before completion, or resolved by an interruption.
    abandoned: Vec<u32>,
    /// Every step ever dropped or interrupted while waiting: a journaled completion for one of them
    /// (possible when a graceful shutdown journaled the results of both branches of an undecided
    /// `select`) is skipped on replay, since the code no longer waits for it.
    discarded: HashSet<u32>,
    /// The interruption that arrived, once it has (and was not ignored by a shielded rollback).
    interrupted: Option<Interrupt>,
    /// Whether an interruption was delivered at all (the journal holds at most one).
    interrupt_seen: bool,
    /// An interruption no step has observed yet (nothing was waiting when it arrived).
    unobserved_interrupt: Option<Interrupt>,
    continue_as_new: Option<Vec<u8>>,
    /// Set while compensations run: interruptions no longer resolve steps.
    shielded: bool,
    failure: Option<ParkReason>,
    /// The side effect whose closure (user code, run outside the machine's lock) is running: the
    /// workflow must not ask for steps from inside it.
    producing: Option<u32>,
    /// Wakers of delivered steps, woken by the caller once it has released the machine (a waker is
    /// user code: it may call back into the context).
    woken: Vec<Waker>,
    /// For a dry run (see `replay::check`): the first step the code must not be given; asking for it
    /// stops the machine instead.
    stop_at: Option<u32>,
    /// Whether the code asked for `stop_at` (or a later step).
    stop_reached: bool,
    /// For a replay check: the `patched` calls and the branch each took (`None`: not logged).
    patch_log: Option<Vec<super::PatchUse>>,
}

/// How a side effect starts: see [`ReplayMachine::begin_side_effect`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SideEffectStart {
    /// The machine has failed: nothing is produced or recorded.
    Stopped,
    /// The journal holds the value: return it, do not produce it again.
    Recorded { step: u32, value: Vec<u8> },
    /// Produce the value, then hand it to [`ReplayMachine::finish_side_effect`].
    Fresh { step: u32 },
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
            abandoned: Vec::new(),
            discarded: HashSet::new(),
            interrupted: None,
            interrupt_seen: false,
            unobserved_interrupt: None,
            continue_as_new: None,
            shielded: false,
            failure: None,
            producing: None,
            woken: Vec::new(),
            stop_at: None,
            stop_reached: false,
            patch_log: None,
        }
    }

    /// Makes this machine log its `patched` calls (see [`ReplayMachine::take_patch_log`]).
    pub(crate) fn log_patches(&mut self) {
        self.patch_log = Some(Vec::new());
    }

    /// The `patched` calls logged since [`ReplayMachine::log_patches`].
    pub(crate) fn take_patch_log(&mut self) -> Vec<super::PatchUse> {
        self.patch_log.take().unwrap_or_default()
    }

    fn log_patch(&mut self, change_id: &str, step: u32, branch: super::PatchBranch) {
        if let Some(log) = &mut self.patch_log {
            log.push(super::PatchUse {
                change_id: change_id.to_string(),
                step,
                branch,
            });
        }
    }

    /// Makes this machine a dry run that stops (nothing issued, nothing recorded) as soon as the code
    /// asks for step `step` or a later one; see [`ReplayMachine::stop_reached`].
    pub(crate) fn stop_at(&mut self, step: u32) {
        self.stop_at = Some(step);
    }

    /// Whether the code asked for the step given to [`ReplayMachine::stop_at`] (or a later one).
    pub(crate) fn stop_reached(&self) -> bool {
        self.stop_reached
    }

    /// From now on, interruptions do not resolve steps (a rollback runs to its end).
    pub(crate) fn shield(&mut self) {
        self.shielded = true;
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
    pub(crate) fn is_replaying(&self) -> bool {
        self.replay_cursor < self.history.completions().len()
    }

    /// The number of steps asked for so far.
    pub(crate) fn steps_issued(&self) -> u32 {
        self.next_step - 1
    }

    /// Whether an interruption was delivered (even one a rollback ignored).
    pub(crate) fn interrupt_seen(&self) -> bool {
        self.interrupt_seen
    }

    /// The interruption (cancellation, timeout) this run received, if any.
    pub(crate) fn interrupted(&self) -> Option<&Interrupt> {
        self.interrupted.as_ref()
    }

    /// The number of events in the journal this machine started from.
    pub(crate) fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Assigns the next step number to `request`, checking it against the journal. On a mismatch the
    /// machine fails with a nondeterminism error and the step never resolves.
    fn assign(&mut self, request: &StepRequest) -> u32 {
        let step = self.next_step;
        self.next_step += 1;
        if self.failure.is_none() && self.stop_at.is_some_and(|stop| step >= stop) {
            // A dry run reached the steps it must not execute: stop here, before anything is issued.
            self.stop_reached = true;
            self.fail(ParkReason::CorruptJournal {
                message: format!("dry run stopped at step {step}"),
            });
            return step;
        }
        self.refuse_inside_side_effect(step, || request.to_string());
        let recorded = self
            .history
            .completion(step)
            .or_else(|| self.history.records(step).first());
        if let Some(recorded) = recorded
            && !matches(request, recorded)
        {
            self.fail(ParkReason::NonDeterminism(NonDeterminismError {
                step,
                recorded: describe(recorded),
                requested: request.to_string(),
            }));
        }
        step
    }

    /// Starts waiting on `step`. Returns `false` (no command needed) if its outcome is journaled, if
    /// the machine failed, or if an unobserved interruption resolves it at once.
    fn wait_on(&mut self, step: u32) -> bool {
        if self.failure.is_some() {
            return false;
        }
        self.waiting.insert(step);
        if self.history.completion(step).is_some() {
            return false;
        }
        if !self.shielded
            && let Some(interrupt) = self.unobserved_interrupt.take()
        {
            self.abandoned.push(step);
            self.deliver(step, EventBody::Interrupted { interrupt });
            return false;
        }
        true
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
        if !self.wait_on(step) {
            return step;
        }
        let failed = self
            .history
            .records(step)
            .iter()
            .filter_map(|record| match record {
                EventBody::ActivityAttemptFailed {
                    attempt,
                    retry_at_ms,
                    ..
                } => Some(ActivityResume {
                    last_attempt: *attempt,
                    retry_at_ms: Some(*retry_at_ms),
                }),
                _ => None,
            })
            .max_by_key(|resume| resume.last_attempt);
        // An attempt started after the last failure (or with none) was cut short: it counts.
        let started = match self.history.last_attempt_start(step) {
            Some(EventBody::ActivityAttemptStarted {
                name: started_name,
                input_fingerprint: started_fingerprint,
                attempt,
                ..
            }) if started_name == name && *started_fingerprint == input_fingerprint => *attempt,
            _ => 0,
        };
        let resume = match failed {
            Some(failed) if failed.last_attempt >= started => Some(failed),
            _ if started > 0 => Some(ActivityResume {
                last_attempt: started,
                retry_at_ms: None,
            }),
            _ => None,
        };
        self.commands.push(Command::Activity {
            step,
            name,
            input_fingerprint,
            resume,
            payload,
        });
        step
    }

    /// The workflow sleeps for `duration`; `now_ms` is the wall clock used if the timer is new.
    pub(crate) fn issue_timer(&mut self, duration: Duration, now_ms: i64) -> u32 {
        let step = self.assign(&StepRequest::Timer { duration });
        if !self.wait_on(step) {
            return step;
        }
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
        if !self.wait_on(step) {
            return step;
        }
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
        step
    }

    /// The workflow starts a child run and awaits it.
    pub(crate) fn issue_child(
        &mut self,
        workflow_name: String,
        child_id: String,
        input: Vec<u8>,
        cancel_with_parent: bool,
    ) -> u32 {
        let step = self.assign(&StepRequest::Child {
            workflow_name: workflow_name.clone(),
            child_id: child_id.clone(),
        });
        if !self.wait_on(step) {
            return step;
        }
        let started = self
            .history
            .records(step)
            .iter()
            .any(|record| matches!(record, EventBody::ChildStarted { .. }));
        self.commands.push(Command::Child {
            step,
            workflow_name,
            child_id,
            input,
            started,
            cancel_with_parent,
        });
        step
    }

    /// The workflow awaits the outcome of another run.
    pub(crate) fn issue_await_run(&mut self, workflow_id: String) -> u32 {
        let step = self.assign(&StepRequest::AwaitRun {
            workflow_id: workflow_id.clone(),
        });
        if self.wait_on(step) {
            self.commands.push(Command::AwaitRun { step, workflow_id });
        }
        step
    }

    /// The workflow waits for the first of several steps; returns the step and the journaled winner.
    pub(crate) fn issue_select(&mut self) -> (u32, Option<u32>) {
        let step = self.assign(&StepRequest::Select);
        let winner = self
            .history
            .records(step)
            .iter()
            .find_map(|record| match record {
                EventBody::SelectWinner { winner } => Some(*winner),
                _ => None,
            });
        (step, winner)
    }

    /// Records the winner of a live select.
    pub(crate) fn record_select_winner(&mut self, step: u32, winner: u32) {
        if self.failure.is_none() && self.history.records(step).is_empty() {
            self.records.push(Event {
                step,
                body: EventBody::SelectWinner { winner },
            });
        }
    }

    /// The workflow publishes `value` under `key`. `true` if it is new (to be journaled), `false` on
    /// replay.
    pub(crate) fn publish_state(&mut self, key: String, value: Vec<u8>) -> bool {
        let step = self.assign(&StepRequest::PublishState { key: key.clone() });
        if self.failure.is_some() || !self.history.records(step).is_empty() {
            return false;
        }
        self.records.push(Event {
            step,
            body: EventBody::StatePublished { key, value },
        });
        true
    }

    /// The versioning marker: `true` on runs that reach it with the change (the marker is journaled),
    /// `false` when replaying a journal recorded before the change (no step is consumed).
    pub(crate) fn patched(&mut self, change_id: &str) -> bool {
        let step = self.next_step;
        self.refuse_inside_side_effect(step, || format!("patch marker `{change_id}`"));
        let recorded = self
            .history
            .completion(step)
            .or_else(|| self.history.records(step).first());
        match recorded {
            Some(EventBody::PatchMarker { change_id: id }) if id == change_id => {
                self.next_step += 1;
                self.log_patch(change_id, step, super::PatchBranch::Recorded);
                true
            }
            // The journal has something else here: it was recorded by code without this change.
            Some(_) => {
                self.log_patch(change_id, step, super::PatchBranch::Old);
                false
            }
            None if self.history.last_step() >= step => {
                self.log_patch(change_id, step, super::PatchBranch::Old);
                false
            }
            None => {
                self.log_patch(change_id, step, super::PatchBranch::Live);
                self.next_step += 1;
                if self.failure.is_none() {
                    self.records.push(Event {
                        step,
                        body: EventBody::PatchMarker {
                            change_id: change_id.to_string(),
                        },
                    });
                }
                true
            }
        }
    }

    /// The workflow asks for a non-deterministic value: the recorded one on replay, else `fresh`'s
    /// (which is then recorded). `None` when the machine has failed. `fresh` runs under the caller's
    /// lock of the machine, so it must be engine code (encoding a primitive); user closures go through
    /// [`ReplayMachine::begin_side_effect`] instead.
    pub(crate) fn side_effect<E>(
        &mut self,
        kind: SideEffectKind,
        fresh: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Option<(u32, Vec<u8>)>, E> {
        match self.begin_side_effect(kind) {
            SideEffectStart::Stopped => Ok(None),
            SideEffectStart::Recorded { step, value } => Ok(Some((step, value))),
            SideEffectStart::Fresh { step } => match fresh() {
                Ok(value) => {
                    self.finish_side_effect(step, kind, value.clone());
                    Ok(Some((step, value)))
                }
                Err(error) => {
                    self.abort_side_effect(step);
                    Err(error)
                }
            },
        }
    }

    /// Numbers a side effect and returns its recorded value, or asks the caller to produce it. After
    /// [`SideEffectStart::Fresh`], the caller releases the machine, produces the value (user code) and
    /// calls [`ReplayMachine::finish_side_effect`] (or [`ReplayMachine::abort_side_effect`]); a step
    /// asked for in between fails the run (the closure would not run on replay, so its steps would
    /// shift every later step number).
    pub(crate) fn begin_side_effect(&mut self, kind: SideEffectKind) -> SideEffectStart {
        let step = self.assign(&StepRequest::SideEffect { kind });
        if self.failure.is_some() {
            return SideEffectStart::Stopped;
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
            Some(value) => SideEffectStart::Recorded { step, value },
            None => {
                self.producing = Some(step);
                SideEffectStart::Fresh { step }
            }
        }
    }

    /// Records the value produced for the side effect `step` (see
    /// [`ReplayMachine::begin_side_effect`]). Nothing is recorded if the machine failed meanwhile.
    pub(crate) fn finish_side_effect(&mut self, step: u32, kind: SideEffectKind, value: Vec<u8>) {
        self.abort_side_effect(step);
        if self.failure.is_none() {
            self.records.push(Event {
                step,
                body: EventBody::SideEffect { kind, value },
            });
        }
    }

    /// The value of side effect `step` could not be produced (it did not encode): nothing is recorded.
    pub(crate) fn abort_side_effect(&mut self, step: u32) {
        if self.producing == Some(step) {
            self.producing = None;
        }
    }

    /// Fails the run if a side effect's closure is running: `requested` (a step, a marker) was asked
    /// for from inside it.
    fn refuse_inside_side_effect(&mut self, step: u32, requested: impl FnOnce() -> String) {
        if let Some(side_effect) = self.producing {
            self.fail(ParkReason::ContextInSideEffect {
                side_effect,
                step,
                requested: requested(),
            });
        }
    }

    /// The workflow asks to end this run and start a fresh one with `input`.
    pub(crate) fn request_continue_as_new(&mut self, input: Vec<u8>) {
        let step = self.next_step;
        self.refuse_inside_side_effect(step, || "continue-as-new".to_string());
        self.continue_as_new = Some(input);
    }

    /// When the workflow body has returned: the journal's part it never reached, as a nondeterminism
    /// error (the code no longer asks for steps the journal recorded).
    pub(crate) fn unreached_history(&self) -> Option<NonDeterminismError> {
        if let Some(event) = self.history.completions().get(self.replay_cursor) {
            return Some(NonDeterminismError {
                step: event.step,
                recorded: describe(&event.body),
                requested: "nothing: the workflow returned before reaching it".to_string(),
            });
        }
        let last = self.history.last_step();
        if last >= self.next_step {
            let recorded = self
                .history
                .completion(last)
                .or_else(|| self.history.records(last).first())
                .map(describe)
                .unwrap_or_default();
            return Some(NonDeterminismError {
                step: last,
                recorded,
                requested: format!(
                    "nothing: the workflow returned after {} steps",
                    self.next_step - 1
                ),
            });
        }
        None
    }

    /// The input of the next run, if the workflow continued as new.
    pub(crate) fn continue_as_new(&self) -> Option<&[u8]> {
        self.continue_as_new.as_deref()
    }

    /// The outcome of `step` if it has been delivered (taken once); otherwise remembers `waker`.
    /// Also returns the waker no longer needed, for the caller to drop once it has released the
    /// machine (a waker is user code).
    pub(crate) fn poll_step(
        &mut self,
        step: u32,
        waker: Waker,
    ) -> (Option<EventBody>, Option<Waker>) {
        if self.failure.is_some() {
            return (None, Some(waker));
        }
        match self.outcomes.remove(&step) {
            Some(outcome) => {
                let _registered = self.wakers.remove(&step);
                (Some(outcome), Some(waker))
            }
            None => (None, self.wakers.insert(step, waker)),
        }
    }

    /// The step future was dropped: stop waiting for it (its work is stopped, its outcome discarded).
    /// Returns its waker, for the caller to drop once it has released the machine.
    #[must_use = "the waker must be dropped outside the machine's lock"]
    pub(crate) fn abandon(&mut self, step: u32) -> Option<Waker> {
        self.outcomes.remove(&step);
        let waker = self.wakers.remove(&step);
        if self.waiting.remove(&step) {
            self.commands.retain(|command| command.step() != step);
            self.abandoned.push(step);
            self.discarded.insert(step);
        }
        waker
    }

    /// Commands to execute, in the order they were issued. Empty while replaying: what is still
    /// outstanding is only known once the journal has been delivered.
    pub(crate) fn take_commands(&mut self) -> Vec<Command<A>> {
        if self.is_replaying() || self.failure.is_some() {
            return Vec::new();
        }
        let waiting = &self.waiting;
        let mut commands = std::mem::take(&mut self.commands);
        commands.retain(|command| waiting.contains(&command.step()));
        commands
    }

    /// New records (timers started, side effects, markers) to journal before any command runs.
    pub(crate) fn take_records(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.records)
    }

    /// Steps whose work must stop (dropped futures, interrupted waits).
    pub(crate) fn take_abandoned(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.abandoned)
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
        if let EventBody::Interrupted { interrupt } = event.body {
            self.interrupt(interrupt);
            return true;
        }
        if self.discarded.contains(&event.step) {
            // The code dropped (or an interruption resolved) this step before this completion.
            return true;
        }
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

    /// The run is cancelled or timed out: every waiting step resolves with the interruption (and its
    /// work is stopped); if none is waiting, the next step to wait does. Only the first counts.
    pub(crate) fn interrupt(&mut self, interrupt: Interrupt) {
        if self.interrupt_seen || self.failure.is_some() {
            return;
        }
        self.interrupt_seen = true;
        if self.shielded {
            // A rollback is under way because the workflow failed on its own: it runs to its end and
            // the run's outcome stays that failure.
            return;
        }
        self.interrupted = Some(interrupt.clone());
        let mut waiting: Vec<u32> = self.waiting.iter().copied().collect();
        if waiting.is_empty() {
            self.unobserved_interrupt = Some(interrupt);
            return;
        }
        waiting.sort_unstable();
        for step in waiting {
            self.abandoned.push(step);
            self.discarded.insert(step);
            self.deliver(
                step,
                EventBody::Interrupted {
                    interrupt: interrupt.clone(),
                },
            );
        }
    }

    fn deliver(&mut self, step: u32, outcome: EventBody) {
        self.waiting.remove(&step);
        self.outcomes.insert(step, outcome);
        self.woken.extend(self.wakers.remove(&step));
    }

    /// The wakers of the steps delivered since the last call, for the caller to wake once it has
    /// released the machine (waker code must not run under the machine's lock).
    pub(crate) fn take_woken(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.woken)
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
