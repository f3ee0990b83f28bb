//! The `orchestrator` operator CLI (cargo feature `cli`): `cargo install orchestrator --features cli`.
//! Everything lives in the library's `cli` module; see `orchestrator --help` and
//! `docs/operations.md` ("Operator CLI").

fn main() -> std::process::ExitCode {
    orchestrator::cli::main()
}
