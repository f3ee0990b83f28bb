//! A service's own ops binary, as `docs/operations.md` describes it: the orchestrator CLI with the
//! workflows of `cli_workflows` registered (so payloads render and JSON converts with `--db`).

fn main() -> std::process::ExitCode {
    orchestrator::cli::main_with(orchestrator_tests::cli_workflows::register)
}
