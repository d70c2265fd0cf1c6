//! Fuzz target: the snapshot reader of `memspy diff` (a report's JSON, parsed, diffed, rendered).
//! It must never panic, hang or allocate without bound, whatever the file holds.
//!
//! With libFuzzer (nightly): `cargo +nightly fuzz run snapshot_json --features libfuzzer corpus/snapshot`.
//! On stable: `cargo run --release --bin snapshot_json -- corpus/snapshot [SECONDS] [SEED]` mutates the
//! corpus bytes (flips, JSON tokens and digits spliced in, cuts) and reports the number of executions.
#![cfg_attr(feature = "libfuzzer", no_main)]

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memspy::debug::fuzz_snapshot(data);
});

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    const TOKENS: &[&[u8]] =
        &[b"18446744073709551615", b"-1", b"1e308", b"null", b"\"\"", b"[]", b"{}", b"\"\\u0000\"", b"true", b","];
    memspy::debug::mutate_corpus("corpus/snapshot", TOKENS, memspy::debug::fuzz_snapshot);
}
