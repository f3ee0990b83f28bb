//! The CLI's exit codes and its error: what went wrong, what to do about it, and the code a script
//! sees.

use std::process::ExitCode;

use crate::error::Error;
use crate::store::StoreError;

/// The exit code of an `orchestrator` command. Documented in `docs/operations.md` ("Operator CLI").
///
/// | code | meaning |
/// |---|---|
/// | 0 | done |
/// | 1 | done, with a finding: `replay-check` found a history that does not replay (nondeterminism, named with its step; or undecodable, unknown type, panic); a bulk action failed on some runs |
/// | 2 | usage: bad arguments, a malformed id, filter or JSON payload |
/// | 3 | no such run (or endpoint) |
/// | 4 | refused: the action does not apply to the run (finished, not failed, ...), the journal is owned by a running process (use `--url`), the server is read-only, or `--yes` is missing |
/// | 5 | unauthorized: a missing or wrong token, or a Host the server refuses |
/// | 6 | the journal is unusable here: missing, not a journal, another application's database, a schema too new or too old |
/// | 7 | unavailable: the service cannot be reached, is shutting down, or its store is busy |
/// | 8 | internal: an unexpected answer or failure (a bug: please report it) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: done, with a finding (nondeterminism found, some runs of a bulk action failed).
    Finding,
    /// 2: bad arguments or input.
    Usage,
    /// 3: no such run.
    NotFound,
    /// 4: the action was refused.
    Refused,
    /// 5: missing or wrong credentials.
    Unauthorized,
    /// 6: the journal cannot be used.
    Journal,
    /// 7: the service or store cannot be reached right now.
    Unavailable,
    /// 8: an unexpected failure.
    Internal,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Finding => 1,
            Exit::Usage => 2,
            Exit::NotFound => 3,
            Exit::Refused => 4,
            Exit::Unauthorized => 5,
            Exit::Journal => 6,
            Exit::Unavailable => 7,
            Exit::Internal => 8,
        }
    }

    /// The exit code as a process result.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// A failed command: what went wrong, what to do, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// A stable machine-readable code (the admin API's codes, plus the CLI's own).
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
}

impl CliError {
    pub(crate) fn new(exit: Exit, code: &str, message: impl Into<String>) -> Self {
        CliError {
            exit,
            code: code.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, "usage", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        CliError::new(Exit::Internal, "internal", message)
    }

    /// An error answered by the admin API (`{"error": {"code", "message"}}`) or produced by the
    /// engine (through the same codes).
    pub(crate) fn from_api(code: &str, message: impl Into<String>) -> Self {
        let exit = exit_of_code(code);
        let error = CliError::new(exit, code, message);
        match code {
            "unauthorized" => error.hint(
                "pass the service's admin token with --token or the ORCHESTRATOR_TOKEN environment variable",
            ),
            "read_only" => error.hint("this admin API is configured read-only: nothing can be changed through it"),
            "forbidden_host" => error.hint("address the server as 127.0.0.1 or localhost, or configure a token on it"),
            "not_found" => error.hint("list runs with `orchestrator list` (or `list --id-prefix ...`) to find the id"),
            "unknown_payload_type" => error.hint(
                "the engine does not know this payload's Rust type: declare it with EngineBuilder::signal_type, or act through the service (--url) whose code has seen it",
            ),
            "body_too_large" => error.hint(
                "the service's AdminConfig::body_limit (1 MiB by default) bounds what it accepts: raise it for large histories, or use --db with your own ops binary",
            ),
            "unregistered_workflow" => error.hint(
                "this needs the workflow's code: act through the service that registers it (--url), or build your own ops binary with orchestrator::cli::main_with",
            ),
            _ => error,
        }
    }

    /// What the engine said, with the CLI's hints.
    pub(crate) fn from_engine(error: &Error) -> Self {
        if let Error::Store(store) = error {
            return CliError::from_store(store);
        }
        let api = crate::admin::errors::ApiError::of(error);
        CliError::from_api(api.code, api.message)
    }

    /// A store that cannot be opened or used, with what to do.
    pub(crate) fn from_store(error: &StoreError) -> Self {
        let message = error.to_string();
        match error {
            StoreError::NotADatabase { .. } | StoreError::ForeignDatabase { .. } => {
                CliError::new(Exit::Journal, "not_a_journal", message)
                    .hint("--db takes an orchestrator journal file (or a postgres:// URL)")
            }
            StoreError::SchemaTooNew { .. } | StoreError::FormatTooNew { .. } => {
                CliError::new(Exit::Journal, "schema_too_new", message).hint(
                    "install the orchestrator CLI of the same (or a newer) version as the service that wrote it",
                )
            }
            StoreError::SchemaTooOld { .. } => CliError::new(Exit::Journal, "schema_too_old", message)
                .hint("start the service (a newer orchestrator) on it once to migrate it, or use a CLI of the journal's version"),
            StoreError::Inaccessible { .. } | StoreError::Corrupt { .. } => {
                CliError::new(Exit::Journal, "journal_unusable", message)
            }
            StoreError::AlreadyOpen { .. } | StoreError::EngineRunning { .. } => CliError::new(
                Exit::Refused,
                "journal_owned",
                format!("{message}: changing its runs from here would race that process"),
            )
            .hint("act through that service's admin API with --url http://127.0.0.1:7070 (read-only verbs work with --db while it runs)"),
            StoreError::ReadOnly { .. } => CliError::new(Exit::Refused, "read_only", message)
                .hint("act through the owning service's admin API with --url"),
            StoreError::Closed => CliError::new(Exit::Unavailable, "shutting_down", message),
            other if other.is_retryable() => {
                CliError::new(Exit::Unavailable, "store_unavailable", message)
                    .hint("the store is busy or unreachable: try again")
            }
            _ => CliError::new(Exit::Internal, "store_error", message),
        }
    }
}

/// The exit code of an admin API error code.
fn exit_of_code(code: &str) -> Exit {
    match code {
        "not_found" | "no_such_endpoint" | "gone" => Exit::NotFound,
        "run_finished"
        | "not_applicable"
        | "workflow_id_conflict"
        | "unregistered_workflow"
        | "read_only"
        | "journal_owned"
        | "confirm" => Exit::Refused,
        "unauthorized" | "forbidden_host" | "cross_site" => Exit::Unauthorized,
        "not_a_journal" | "schema_too_new" | "schema_too_old" | "journal_unusable"
        | "no_journal" => Exit::Journal,
        "unavailable" | "shutting_down" | "store_unavailable" | "too_many_streams"
        | "unreachable" => Exit::Unavailable,
        "bad_id"
        | "bad_query"
        | "invalid_identifier"
        | "bad_payload"
        | "invalid_body"
        | "malformed_json"
        | "body_too_large"
        | "unknown_payload_type"
        | "usage"
        | "method_not_allowed"
        | "unsupported_media_type" => Exit::Usage,
        _ => Exit::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let all = [
            (Exit::Ok, 0),
            (Exit::Finding, 1),
            (Exit::Usage, 2),
            (Exit::NotFound, 3),
            (Exit::Refused, 4),
            (Exit::Unauthorized, 5),
            (Exit::Journal, 6),
            (Exit::Unavailable, 7),
            (Exit::Internal, 8),
        ];
        for (exit, code) in all {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        assert_eq!(CliError::from_api("not_found", "x").exit, Exit::NotFound);
        assert_eq!(
            CliError::from_api("unauthorized", "x").exit,
            Exit::Unauthorized
        );
        assert_eq!(CliError::from_api("run_finished", "x").exit, Exit::Refused);
        assert_eq!(
            CliError::from_api("something_new", "x").exit,
            Exit::Internal
        );
        let owned = CliError::from_store(&StoreError::AlreadyOpen {
            path: "a.db".into(),
            owner: "pid 1".into(),
        });
        assert_eq!(owned.exit, Exit::Refused);
        assert!(owned.hint.unwrap().contains("--url"));
    }
}
