//! `#[derive(BinaryHeader)]` misuse: each case must fail to compile with one readable error
//! pointing at the attribute (snapshots in `tests/ui/*.stderr`; regenerate with
//! `TRYBUILD=overwrite cargo test -p meta-protocol-core --test derive_ui` and read the diff).

#[test]
fn misuse_is_a_compile_error_at_the_attribute() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
