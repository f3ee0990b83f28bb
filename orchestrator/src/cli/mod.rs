//! The operator CLI (cargo feature `cli`): the `orchestrator` binary, and the library behind it so a
//! service can build **its own** ops binary with its workflows registered.
//!
//! ```text
//! orchestrator --url http://127.0.0.1:7070 list --status failed
//! orchestrator --url http://127.0.0.1:7070 show order-42
//! orchestrator --url http://127.0.0.1:7070 retry order-42
//! orchestrator --db app.db list --since 2h          # read-only next to the running service
//! orchestrator --db app.db retry --where status=failed --dry-run
//! ```
//!
//! Runs are reached in one of two ways:
//! - `--url` (+ `--token` or `ORCHESTRATOR_TOKEN`): a running service's admin API
//!   ([`EngineBuilder::admin`]): the normal way, and the only one to act on the runs of a live process
//!   that owns an SQLite journal.
//! - `--db PATH` or `--db postgres://...`: the journal itself, through an engine that drives nothing
//!   ([`EngineBuilder::drive_runs`]). An SQLite file owned by a running process is opened read-only:
//!   `list`, `show`, `watch` work, changing verbs are refused (use `--url`). Without an owner, and on
//!   PostgreSQL, changing verbs act directly; the runs they make runnable are driven by the service.
//!
//! The generic `orchestrator` binary knows no workflow types, so it shows payloads of unknown types
//! as opaque bytes and cannot convert JSON inputs or signal payloads for them. A service's own ops
//! binary registers them:
//!
//! ```no_run
//! use orchestrator::prelude::*;
//!
//! #[workflow]
//! async fn checkout(ctx: WorkflowContext, amount: u64) -> Result<u64, WorkflowError> {
//!     Ok(amount)
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     orchestrator::cli::main_with(|engine| engine.register(checkout))
//! }
//! ```
//!
//! Output is text with colour on a terminal (never with `NO_COLOR`), or JSON with `--json`. Exit
//! codes are listed in [`Exit`]; errors say what to do.

mod act;
mod args;
mod backend;
mod exit;
mod filters;
mod history;
mod output;
mod read;
mod show;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::CommandFactory;

pub use args::Cli;
pub use exit::{CliError, Exit};

use crate::engine::{Engine, EngineBuilder};
use args::{Command, Global};
use backend::journal::{Access, Journal};
use backend::{Action, Backend};

/// The generic `orchestrator` binary: parses the process's arguments, runs the command, returns its
/// exit code. No workflow types are registered (see [`main_with`]).
pub fn main() -> ExitCode {
    main_with(|builder| builder)
}

/// A service's own ops binary: like [`main`], with `workflows` registering the service's workflows,
/// activities and payload types on the builder of the engine used with `--db` (so payloads render
/// as JSON, and JSON inputs and signal payloads convert). The engine drives nothing.
pub fn main_with(workflows: impl FnOnce(EngineBuilder) -> EngineBuilder) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            output::print_error(
                &CliError::internal(format!("cannot start the async runtime: {error}")),
                false,
            );
            return Exit::Internal.exit_code();
        }
    };
    runtime.block_on(run(std::env::args_os(), workflows))
}

/// Parses `args` (the first is the program name), runs the command, and returns its exit code.
/// For binaries that already run an async runtime.
pub async fn run<I, T>(args: I, workflows: impl FnOnce(EngineBuilder) -> EngineBuilder) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_args(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    execute(cli, workflows).await.exit_code()
}

/// Runs a parsed command; prints its output and any error. Returns its exit code.
pub async fn execute(cli: Cli, workflows: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Exit {
    output::init_color(cli.global.color);
    let json = cli.global.json;
    match dispatch(cli, workflows).await {
        Ok(exit) => exit,
        Err(error) => {
            output::print_error(&error, json);
            error.exit
        }
    }
}

/// Whether a command only reads runs.
fn access(command: &Command) -> Access {
    match command {
        Command::List(_) | Command::Show(_) | Command::Watch(_) | Command::ReplayCheck(_) => {
            Access::Read
        }
        Command::Export(_) | Command::Completions(_) => Access::Read,
        Command::Cancel(verb) | Command::Pause(verb) | Command::Terminate(verb)
            if verb.target.id.is_none() && (verb.target.dry_run || !verb.target.yes) =>
        {
            Access::Read
        }
        Command::Resume(verb) | Command::Retry(verb)
            if verb.target.id.is_none() && (verb.target.dry_run || !verb.target.yes) =>
        {
            Access::Read
        }
        _ => Access::Write,
    }
}

async fn dispatch(
    cli: Cli,
    workflows: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> Result<Exit, CliError> {
    if let Command::Completions(args) = &cli.command {
        let mut command = Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(args.shell, &mut command, "orchestrator", &mut out);
        output::print(&String::from_utf8_lossy(&out));
        return Ok(Exit::Ok);
    }
    // Usage errors first: nothing is opened for a command that cannot run.
    match &cli.command {
        Command::Cancel(verb) | Command::Pause(verb) | Command::Terminate(verb) => {
            verb.target.check()?;
        }
        Command::Resume(verb) | Command::Retry(verb) => verb.target.check()?,
        _ => {}
    }
    let backend = open(&cli.global, access(&cli.command), workflows).await?;
    let result = command(backend.as_ref(), &cli.command, cli.global.json).await;
    backend.close().await;
    result
}

/// Opens the backend `global` names.
async fn open(
    global: &Global,
    access: Access,
    workflows: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> Result<Box<dyn Backend>, CliError> {
    match (&global.url, &global.db) {
        (Some(url), _) => Ok(Box::new(backend::http::Http::new(
            url,
            global.token.clone(),
            Duration::from_secs(global.timeout.max(1)),
        )?)),
        (None, Some(db)) => {
            let actor = global.actor.clone().unwrap_or_else(default_actor);
            if actor.trim().is_empty() || actor.len() > crate::limits::MAX_NAME_BYTES {
                return Err(CliError::usage("--actor is a name of 1 to 1024 bytes"));
            }
            let builder = workflows(Engine::builder());
            Ok(Box::new(
                Journal::open(db, &global.pg_schema, access, builder, actor).await?,
            ))
        }
        (None, None) => Err(CliError::usage("no runs to reach: say where they are").hint(
            "--url http://127.0.0.1:7070 (a running service's admin API) or --db path/to/journal.db / --db postgres://... (or ORCHESTRATOR_URL / ORCHESTRATOR_DB)",
        )),
    }
}

/// Who acts on a journal directly, when `--actor` is not given: `cli:$USER`.
fn default_actor() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
        Ok(user) if !user.trim().is_empty() => format!("cli:{}", output::safe(&user)),
        _ => "cli".to_string(),
    }
}

async fn command(backend: &dyn Backend, command: &Command, json: bool) -> Result<Exit, CliError> {
    match command {
        Command::List(args) => read::list(backend, args, json).await,
        Command::Show(args) => read::show(backend, args, json).await,
        Command::Watch(args) => read::watch(backend, args, json).await,
        Command::Signal(args) => act::signal(backend, args, json).await,
        Command::Fork(args) => act::fork(backend, args, json).await,
        Command::Cancel(verb) => {
            let action = Action::Cancel {
                reason: verb.reason.clone(),
            };
            act::targeted(backend, &verb.target, action, json).await
        }
        Command::Pause(verb) => {
            let action = Action::Pause {
                reason: verb.reason.clone(),
            };
            act::targeted(backend, &verb.target, action, json).await
        }
        Command::Terminate(verb) => {
            let action = Action::Terminate {
                reason: verb.reason.clone(),
            };
            act::targeted(backend, &verb.target, action, json).await
        }
        Command::Resume(verb) => act::targeted(backend, &verb.target, Action::Resume, json).await,
        Command::Retry(verb) => act::targeted(backend, &verb.target, Action::Retry, json).await,
        Command::Export(args) => history::export(backend, args, json).await,
        Command::Import(args) => history::import(backend, args, json).await,
        Command::ReplayCheck(args) => history::replay_check(backend, args, json).await,
        Command::Completions(_) => Ok(Exit::Ok),
    }
}
