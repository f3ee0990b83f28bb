//! The replay core: matches what workflow code asks for against what the journal recorded.
//!
//! [`ReplayMachine`] is pure — no I/O, no tokio, no clock of its own — so it is tested with plain
//! `#[test]`s on hand-built histories. The engine's driver feeds it (recorded completions in journal
//! order, then live completions) and drains from it the commands to execute and the records to journal.

pub(crate) mod check;
mod machine;
mod step;

pub(crate) use machine::{ActivityResume, Command, ReplayMachine, SideEffectStart};

#[cfg(test)]
mod tests;
