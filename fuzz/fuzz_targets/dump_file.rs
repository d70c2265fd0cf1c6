//! Fuzz target: the reader of `memspy dump` files and the analyses run on what it reads (paths,
//! dominators, `why` rows, owners). The input is a dump's body — its sections, uncompressed — which the
//! target compresses behind a valid header, so that mutations reach the section decoders rather than
//! zstd's checks; the same bytes are also read as a whole file. It must never panic, hang or allocate
//! without bound.
//!
//! With libFuzzer (nightly): `cargo +nightly fuzz run dump_file --features libfuzzer corpus/dump`.
//! On stable: `cargo run --release --bin dump_file -- corpus/dump [SECONDS] [SEED]` mutates the corpus
//! bytes (flips, varint bytes spliced in, cuts) and reports the number of executions.
#![cfg_attr(feature = "libfuzzer", no_main)]

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memspy::debug::fuzz_dump(data);
});

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    const TOKENS: &[&[u8]] =
        &[&[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x80], &[0], &[0x7f], b"END.", b"EDGE", b"OBJS", b"PATH", b"IDOM"];
    memspy::debug::mutate_corpus("corpus/dump", TOKENS, memspy::debug::fuzz_dump);
}
