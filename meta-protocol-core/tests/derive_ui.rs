//! `#[derive(BinaryHeader)]` at compile time: each misuse in `tests/ui/*.rs` fails with one
//! readable error pointing at the attribute responsible (snapshots in `tests/ui/*.stderr`;
//! regenerate with `TRYBUILD=overwrite cargo test -p meta-protocol-core --test derive_ui` and
//! read the diff), and `tests/ui/pass/*.rs` compiles without warnings.

#[test]
fn misuse_is_a_compile_error_at_the_attribute() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
