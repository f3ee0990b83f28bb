//! Replay: matching what workflow code asks for against what the journal recorded — and the
//! replay checker built on it ([`Engine::replay_check`](crate::Engine::replay_check)), which tells
//! before a deploy whether stored histories still replay on the new code.
//!
//! The internal `ReplayMachine` is pure — no I/O, no tokio, no clock of its own — so it is tested
//! with plain `#[test]`s on hand-built histories. The engine's driver feeds it (recorded completions
//! in journal order, then live completions) and drains from it the commands to execute and the
//! records to journal.

pub(crate) mod check;
mod checker;
mod machine;
mod report;
mod step;

pub(crate) use machine::{ActivityResume, Command, ReplayMachine, SideEffectStart};
pub use report::{PatchBranch, PatchUse, ReplayOutcome, ReplayReport, ReplaySource, RunReplay};

#[cfg(test)]
mod tests;
