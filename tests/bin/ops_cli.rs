//! A service's own ops binary, as `docs/operations.md` describes it: the orchestrator CLI with the
//! workflows of `cli_workflows` registered (so payloads render and JSON converts with `--db`). With
//! `OPS_CLI_CODE=v2` in the environment it registers the changed `checkout` (`checkout_v2`), as a
//! later deploy would.

use orchestrator_tests::cli_workflows;

fn main() -> std::process::ExitCode {
    if std::env::var("OPS_CLI_CODE").as_deref() == Ok("v2") {
        orchestrator::cli::main_with(cli_workflows::register_changed)
    } else {
        orchestrator::cli::main_with(cli_workflows::register)
    }
}
