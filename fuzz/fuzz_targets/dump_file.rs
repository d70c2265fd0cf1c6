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
    use memspy::debug::{fuzz_dump, Rng};
    use std::time::Instant;

    const TOKENS: &[&[u8]] = &[&[0xff, 0xff, 0xff, 0xff, 0x0f], &[0x80], &[0], &[0x7f], b"END.", b"EDGE", b"OBJS"];
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "corpus/dump".into());
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let bases: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    assert!(!bases.is_empty(), "no files in {dir}");
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let mut execs = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut b = bases[rng.below(bases.len() as u64) as usize].clone();
        for _ in 0..1 + rng.below(8) {
            if b.is_empty() {
                break;
            }
            let at = rng.below(b.len() as u64) as usize;
            match rng.below(4) {
                0 | 1 => b[at] ^= 1 << rng.below(8),
                2 => {
                    let t = TOKENS[rng.below(TOKENS.len() as u64) as usize];
                    b.splice(at..at, t.iter().copied());
                }
                _ => b.truncate(at),
            }
        }
        fuzz_dump(&b);
        execs += 1;
    }
    println!("{execs} executions in {:.1} s, {} base files, seed {seed}", start.elapsed().as_secs_f64(), bases.len());
}
