//! The command line: global options (where the runs are, how to print) and the verbs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Operate the runs of an orchestrator service: list, inspect, watch, signal, cancel and repair
/// them, through a running service's admin API (`--url`) or directly on its journal (`--db`).
///
/// Exit codes: 0 done, 1 finding (nondeterminism, some runs of a bulk action failed), 2 usage,
/// 3 no such run, 4 refused, 5 unauthorized, 6 journal unusable, 7 unavailable, 8 internal.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the runs are and how to print.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// A running service's admin API, e.g. http://127.0.0.1:7070 (the way to act on runs that a live
    /// process owns).
    #[arg(long, env = "ORCHESTRATOR_URL", global = true)]
    pub(crate) url: Option<String>,
    /// The admin API's bearer token (better passed in ORCHESTRATOR_TOKEN than on the command line).
    #[arg(
        long,
        env = "ORCHESTRATOR_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// A journal: an SQLite file (read-only while another process owns it) or a postgres:// URL.
    /// Given on the command line, it wins over an ORCHESTRATOR_URL from the environment (and
    /// `--url` over ORCHESTRATOR_DB).
    #[arg(long, env = "ORCHESTRATOR_DB", global = true)]
    pub(crate) db: Option<String>,
    /// The PostgreSQL schema holding the journal (with a postgres:// --db).
    #[arg(
        long,
        env = "ORCHESTRATOR_PG_SCHEMA",
        global = true,
        default_value = "public"
    )]
    pub(crate) pg_schema: String,
    /// Who is recorded as the actor of actions taken directly on a journal (--db); through --url the
    /// token's identity is.
    #[arg(long, env = "ORCHESTRATOR_ACTOR", global = true)]
    pub(crate) actor: Option<String>,
    /// Print JSON (one document, or one line per event for `watch`) instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// When to colour text output (`auto`: on a terminal, unless NO_COLOR is set).
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub(crate) color: ColorWhen,
    /// Seconds to wait for the admin API to answer a request (not for `watch` streams).
    #[arg(long, global = true, default_value_t = 30)]
    pub(crate) timeout: u64,
}

/// When to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorWhen {
    Auto,
    Always,
    Never,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List runs, filtered and paged (in workflow id order).
    List(ListArgs),
    /// Show one run: status, blocked-on line, timeline of steps and attempts, children.
    Show(ShowArgs),
    /// Follow one run (or the run list) live until it finishes.
    Watch(WatchArgs),
    /// Send a signal with a JSON payload.
    Signal(SignalArgs),
    /// Cancel runs (their compensations run).
    Cancel(ReasonVerb),
    /// Pause runs: they start no new step or attempt until resumed.
    Pause(ReasonVerb),
    /// Resume paused runs.
    Resume(PlainVerb),
    /// Drive failed, parked or compensation-failed runs again, on the current code.
    Retry(PlainVerb),
    /// Start a new run replaying another's journal before a step, then live.
    Fork(ForkArgs),
    /// End runs at once, without compensations.
    Terminate(ReasonVerb),
    /// Write a run's history as JSON (for bug reports, fixtures and `replay-check`).
    Export(ExportArgs),
    /// Load histories exported with `export` into the journal.
    Import(ImportArgs),
    /// Replay exported or stored histories against the current code (exit 1 on nondeterminism).
    ReplayCheck(ReplayCheckArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// Filters of a run list.
#[derive(Debug, Args, Default)]
pub(crate) struct Filters {
    /// Only runs in this state (repeatable): running, completed, failed, parked, cancelled,
    /// compensation_failed, terminated.
    #[arg(long = "status", value_name = "STATE")]
    pub(crate) status: Vec<String>,
    /// Only runs of this workflow type.
    #[arg(long = "type", value_name = "WORKFLOW")]
    pub(crate) workflow_type: Option<String>,
    /// Only runs whose id starts with this.
    #[arg(long)]
    pub(crate) id_prefix: Option<String>,
    /// Only runs whose error or park reason contains this text.
    #[arg(long = "error", value_name = "TEXT")]
    pub(crate) error_contains: Option<String>,
    /// Only runs created at or after this time: RFC 3339 (2026-12-02T14:00:00Z), ms since the
    /// epoch, or an age such as 90s, 30m, 6h, 2d.
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Only runs created at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// Only paused (true) or unpaused (false) runs.
    #[arg(long)]
    pub(crate) paused: Option<bool>,
    /// Only children of this run.
    #[arg(long, value_name = "ID")]
    pub(crate) parent: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) filters: Filters,
    /// At most this many runs per page (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
    /// Start after this workflow id (the `next` cursor of the previous page).
    #[arg(long, value_name = "ID")]
    pub(crate) after: Option<String>,
    /// Follow the pages to the end.
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The workflow id.
    pub(crate) id: String,
    /// Also print the payloads (input, output, step values, errors' details) as JSON.
    #[arg(long)]
    pub(crate) payloads: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The workflow id; without one, the run list (with the filters) is watched.
    pub(crate) id: Option<String>,
    #[command(flatten)]
    pub(crate) filters: Filters,
    /// Stop after this many updates.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// With --db: how often to read the journal, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub(crate) interval: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SignalArgs {
    /// The workflow id.
    pub(crate) id: String,
    /// The signal's name.
    pub(crate) name: String,
    /// Its payload as JSON (of the signal's type); `null` when left out.
    pub(crate) payload: Option<String>,
}

/// Where a verb applies: one run, or every run the filters match.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The workflow id (or use --where for many runs).
    #[arg(required_unless_present = "conditions", conflicts_with = "conditions")]
    pub(crate) id: Option<String>,
    /// Act on every run matching `key=value` (repeatable): status, type, id_prefix, paused,
    /// parent_id, error_contains, created_from_ms, created_until_ms, updated_from_ms, updated_until_ms.
    #[arg(long = "where", value_name = "KEY=VALUE", id = "conditions")]
    pub(crate) conditions: Vec<String>,
    /// With --where: only count the matching runs and list the first ids; change nothing.
    #[arg(long, requires = "conditions")]
    pub(crate) dry_run: bool,
    /// With --where: act on at most this many runs.
    #[arg(long, requires = "conditions", value_name = "N")]
    pub(crate) max: Option<u64>,
    /// With --where: really act (without it a bulk action is only a dry run, and refused).
    #[arg(long, short = 'y', requires = "conditions")]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReasonVerb {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Why (recorded in each run's history).
    #[arg(long)]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PlainVerb {
    #[command(flatten)]
    pub(crate) target: Target,
}

#[derive(Debug, Args)]
pub(crate) struct ForkArgs {
    /// The run to fork.
    pub(crate) id: String,
    /// The first step not copied (1 copies nothing).
    #[arg(long, value_name = "STEP")]
    pub(crate) from_step: u32,
    /// The new run's workflow id.
    #[arg(long, value_name = "ID")]
    pub(crate) new_id: String,
    /// A replacement input, as JSON of the workflow's input type.
    #[arg(long, value_name = "JSON")]
    pub(crate) input: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The workflow id.
    pub(crate) id: String,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Exported history files (`-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    /// Import each run under this id prefix (keeps fixtures apart from live runs).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) id_prefix: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayCheckArgs {
    /// Exported history files to check (`-` for standard input).
    #[arg(value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    /// Check these stored runs (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub(crate) ids: Vec<String>,
    /// Check every stored run matching these filters (with no files, ids or filters: every stored
    /// run).
    #[command(flatten)]
    pub(crate) filters: Filters,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

impl Cli {
    /// Parses `args` (the first is the program name). Of `--url` and `--db`, one given on the
    /// command line wins over the other's environment variable; both on the command line is an error.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::parser::ValueSource;
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if cli.global.url.is_some() && cli.global.db.is_some() {
            match (matches.value_source("url"), matches.value_source("db")) {
                (Some(ValueSource::EnvVariable), Some(ValueSource::CommandLine)) => {
                    cli.global.url = None;
                }
                (Some(ValueSource::CommandLine), Some(ValueSource::EnvVariable)) => {
                    cli.global.db = None;
                }
                _ => {
                    return Err(Cli::command().error(
                        clap::error::ErrorKind::ArgumentConflict,
                        "--url and --db name two places: give one (a running service's admin API, or a journal)",
                    ));
                }
            }
        }
        Ok(cli)
    }
}

impl Target {
    /// Refuses the bulk options without `--where`.
    pub(crate) fn check(&self) -> Result<(), super::exit::CliError> {
        if self.id.is_some() && (self.dry_run || self.yes || self.max.is_some()) {
            return Err(super::exit::CliError::usage(
                "--dry-run, --yes and --max go with --where (acting on many runs); drop them to act on one run",
            ));
        }
        Ok(())
    }
}

impl Filters {
    /// Whether any filter is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.status.is_empty()
            && self.workflow_type.is_none()
            && self.id_prefix.is_none()
            && self.error_contains.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.paused.is_none()
            && self.parent.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_verb_takes_an_id_or_conditions_not_both() {
        assert!(Cli::try_parse_from(["orchestrator", "retry", "a"]).is_ok());
        assert!(Cli::try_parse_from(["orchestrator", "retry", "--where", "status=failed"]).is_ok());
        assert!(
            Cli::try_parse_from(["orchestrator", "retry", "a", "--where", "status=failed"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["orchestrator", "retry"]).is_err());
        let Ok(Cli {
            command: Command::Retry(verb),
            ..
        }) = Cli::try_parse_from(["orchestrator", "retry", "a", "--dry-run"])
        else {
            panic!("parses");
        };
        assert!(verb.target.check().is_err());
    }
}
