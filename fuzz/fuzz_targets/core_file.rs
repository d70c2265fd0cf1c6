//! Fuzz target: the core-file reader (ELF header, program headers, the `PT_NOTE` notes `NT_FILE`,
//! `NT_PRSTATUS`, `NT_PRPSINFO`, `NT_AUXV`, the segments, the bytes of the files a core maps where it
//! has none, their build IDs, the rebuilt address-space map) and a walk of the memory it yields. The
//! input is one ELF core file; the files it maps are taken from its own `MEMSPY` notes
//! (`memspy::debug::core_image`), never from the host. It must never panic, hang or allocate without
//! bound.
//!
//! With libFuzzer (nightly): `cargo +nightly fuzz run core_file --features libfuzzer corpus/core`.
//! On stable: `cargo run --release --bin core_file -- corpus/core [SECONDS] [SEED]` mutates the corpus
//! bytes (flips, words overwritten, tokens spliced in, cuts) and reports the number of executions.
#![cfg_attr(feature = "libfuzzer", no_main)]

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memspy::debug::core_image::fuzz_core(data);
});

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    use memspy::debug::core_image::{fuzz_core, TOKENS};
    memspy::debug::mutate_corpus("corpus/core", TOKENS, fuzz_core);
}
