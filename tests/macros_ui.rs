//! Compile-time behaviour of `#[workflow]` and `#[activity]`: what they accept (`ui/pass`, which also run)
//! and the errors they report (`ui/fail`, compared with the committed `.stderr` files).
//!
//! After changing a message, regenerate the expectations with
//! `TRYBUILD=overwrite cargo test -p orchestrator-tests --test macros_ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
