//! The generic `orchestrator` binary's main, built inside the tests crate (a binary of another
//! package cannot be located by the tests): no workflows registered.

fn main() -> std::process::ExitCode {
    orchestrator::cli::main()
}
