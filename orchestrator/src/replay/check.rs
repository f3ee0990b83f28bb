//! Dry-run replay: does a recorded history still replay on the current code?
//!
//! The workflow body is run against a [`ReplayMachine`] over the history, polled by hand: recorded
//! completions are delivered in journal order, nothing is executed (commands and new records are
//! dropped), and the run stops as soon as the code asks for a step at or past a given limit, returns,
//! or waits for something the history does not hold. Used by `Engine::fork` before it creates
//! anything, and meant as the core of a replay checker for CI.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use super::{PatchUse, ReplayMachine};
use crate::codec::Codec;
use crate::context::RunShared;
use crate::engine::ErasedWorkflow;
use crate::error::ParkReason;
use crate::journal::History;

/// How a dry run ended without finding a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckOutcome {
    /// The code asked for the step limit (or a later step): everything before it replayed.
    ReachedLimit,
    /// The code returned (or failed on its own) within the history.
    Finished,
    /// The code waits for steps the history has no outcome for (they would run live).
    Waiting,
}

/// Sets a flag when the body wants to be polled again.
#[derive(Debug, Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Replays `history` with `workflow`'s current code and the encoded `input`, executing nothing,
/// until the code asks for step `stop_at` or later (`u32::MAX`: no limit), returns, or waits for an
/// outcome the history does not have. Fails with the reason the run would be parked for: a
/// nondeterminism error naming the step, an undecodable payload or input, a panic of the code.
pub(crate) fn check_replay(
    workflow: ErasedWorkflow,
    codec: Codec,
    workflow_id: &str,
    history: History,
    input: &[u8],
    stop_at: u32,
) -> Result<CheckOutcome, ParkReason> {
    let mut machine = ReplayMachine::new(history);
    machine.stop_at(stop_at);
    let shared = Arc::new(RunShared::new(Arc::from(workflow_id), codec, machine));
    dry_run(&shared, workflow, input)
}

/// [`check_replay`] over the whole history, also returning the `patched` calls the code made and
/// the branch each took (for the replay checker's report).
pub(crate) fn check_replay_logged(
    workflow: ErasedWorkflow,
    codec: Codec,
    workflow_id: &str,
    history: History,
    input: &[u8],
) -> (Result<CheckOutcome, ParkReason>, Vec<PatchUse>) {
    let mut machine = ReplayMachine::new(history);
    machine.log_patches();
    let shared = Arc::new(RunShared::new(Arc::from(workflow_id), codec, machine));
    let outcome = dry_run(&shared, workflow, input);
    let patches = shared.machine().take_patch_log();
    (outcome, patches)
}

/// Polls `workflow`'s body by hand over the machine in `shared` (see [`check_replay`]).
fn dry_run(
    shared: &Arc<RunShared>,
    workflow: ErasedWorkflow,
    input: &[u8],
) -> Result<CheckOutcome, ParkReason> {
    let mut future =
        workflow
            .start(shared.clone(), input)
            .map_err(|error| ParkReason::UndecodablePayload {
                step: 0,
                type_name: format!("input of `{}`", workflow.name),
                message: error.to_string(),
            })?;
    let woken = Arc::new(Woken(AtomicBool::new(true)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        while woken.0.swap(false, Ordering::AcqRel) {
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
            match polled {
                Err(panic) => {
                    return Err(ParkReason::Panicked {
                        message: crate::engine::panic_message(panic.as_ref()),
                        attempts: 1,
                    });
                }
                Ok(Poll::Ready(_)) => {
                    let machine = shared.machine();
                    if machine.stop_reached() {
                        return Ok(CheckOutcome::ReachedLimit);
                    }
                    if let Some(reason) = machine.failure() {
                        return Err(reason.clone());
                    }
                    if let Some(error) = machine.unreached_history() {
                        return Err(ParkReason::NonDeterminism(error));
                    }
                    return Ok(CheckOutcome::Finished);
                }
                Ok(Poll::Pending) => {}
            }
        }
        let mut machine = shared.machine();
        if machine.stop_reached() {
            return Ok(CheckOutcome::ReachedLimit);
        }
        if let Some(reason) = machine.failure() {
            return Err(reason.clone());
        }
        // Nothing is executed: what the code asked for and recorded is dropped.
        let _ = machine.take_records();
        let _ = machine.take_abandoned();
        let _ = machine.take_commands();
        if machine.replay_next() {
            woken.0.store(true, Ordering::Release);
            continue;
        }
        if let Some(reason) = machine.failure() {
            return Err(reason.clone());
        }
        return Ok(CheckOutcome::Waiting);
    }
}
