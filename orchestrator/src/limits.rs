//! Size limits on the identifiers the engine's API accepts, checked before the store is touched.
//!
//! | Identifier | Limit | Checked by |
//! |---|---|---|
//! | workflow id | [`MAX_WORKFLOW_ID_BYTES`] (1 KiB) | `start`, `handle`, `signal`, `cancel`, `get_state`, `wait_state`, `status`, `archived_runs` |
//! | child workflow id | [`MAX_WORKFLOW_ID_BYTES`] | `ctx.child`, `ctx.workflow_result` (fails the step with `WorkflowError::ChildStart`) |
//! | signal name, state key | [`MAX_NAME_BYTES`] (1 KiB) | `signal`, `get_state`, `wait_state` |
//!
//! A workflow waiting for a signal whose name is over the limit never receives one (it cannot be
//! sent). Workflow and activity names come from the `#[workflow]`/`#[activity]` macros (Rust identifiers), so
//! they need no runtime check. An identifier over its limit is refused with
//! [`Error::InvalidIdentifier`](crate::Error::InvalidIdentifier). In error messages, workflow ids longer
//! than [`SHOWN_ID_CHARS`] characters are shortened to a prefix and their length.
//!
//! ```
//! use orchestrator::limits::{MAX_WORKFLOW_ID_BYTES, check_workflow_id};
//!
//! assert!(check_workflow_id("order-42").is_ok());
//! assert!(check_workflow_id(&"x".repeat(MAX_WORKFLOW_ID_BYTES + 1)).is_err());
//! ```

use std::fmt;

use crate::error::Error;

/// The longest workflow id accepted, in bytes (UTF-8): 1 KiB.
pub const MAX_WORKFLOW_ID_BYTES: usize = 1024;

/// The longest signal name or state key accepted, in bytes (UTF-8).
pub const MAX_NAME_BYTES: usize = 1024;

/// How many characters of a workflow id an error message shows before shortening it.
pub const SHOWN_ID_CHARS: usize = 64;

/// What kind of identifier [`Error::InvalidIdentifier`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentifierKind {
    /// A workflow id.
    WorkflowId,
    /// A signal name.
    SignalName,
    /// A published state's key.
    StateKey,
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentifierKind::WorkflowId => "workflow id",
            IdentifierKind::SignalName => "signal name",
            IdentifierKind::StateKey => "state key",
        })
    }
}

/// Refuses a workflow id longer than [`MAX_WORKFLOW_ID_BYTES`].
pub fn check_workflow_id(workflow_id: &str) -> Result<(), Error> {
    check(
        IdentifierKind::WorkflowId,
        workflow_id,
        MAX_WORKFLOW_ID_BYTES,
    )
}

/// Refuses a signal name longer than [`MAX_NAME_BYTES`].
pub fn check_signal_name(name: &str) -> Result<(), Error> {
    check(IdentifierKind::SignalName, name, MAX_NAME_BYTES)
}

/// Refuses a state key longer than [`MAX_NAME_BYTES`].
pub fn check_state_key(key: &str) -> Result<(), Error> {
    check(IdentifierKind::StateKey, key, MAX_NAME_BYTES)
}

fn check(kind: IdentifierKind, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::InvalidIdentifier {
            kind,
            len: value.len(),
            max,
            prefix: shortened(value),
        });
    }
    Ok(())
}

/// `value` itself if short, else its first [`SHOWN_ID_CHARS`] characters and its length.
pub(crate) fn shortened(value: &str) -> String {
    IdDisplay(value).to_string()
}

/// Displays a workflow id, shortened to a prefix and its length when long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdDisplay<'a>(pub(crate) &'a str);

impl fmt::Display for IdDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_ID_CHARS) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_are_shown_as_a_prefix_and_a_length() {
        let long = "é".repeat(100);
        let shown = shortened(&long);
        assert!(shown.ends_with("… (200 bytes)"), "{shown}");
        assert_eq!(shown.chars().filter(|c| *c == 'é').count(), SHOWN_ID_CHARS);
        assert_eq!(shortened("order-42"), "order-42");
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(check_workflow_id(&"a".repeat(MAX_WORKFLOW_ID_BYTES)).is_ok());
        assert!(check_workflow_id(&"a".repeat(MAX_WORKFLOW_ID_BYTES + 1)).is_err());
        assert!(check_signal_name(&"a".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(check_state_key(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
    }
}
