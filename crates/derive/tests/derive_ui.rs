//! The derive's compile errors: each file under `tests/ui` must fail to build with exactly the
//! message beside it (`TRYBUILD=overwrite` rewrites them after a deliberate change).

#[test]
fn refused_events_fail_to_compile_with_a_message_on_the_attribute() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
