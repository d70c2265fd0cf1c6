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
    use memspy::debug::{fuzz_snapshot, Rng};
    use std::time::Instant;

    const TOKENS: &[&[u8]] =
        &[b"18446744073709551615", b"-1", b"1e308", b"null", b"\"\"", b"[]", b"{}", b"\"\\u0000\"", b"true", b","];
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "corpus/snapshot".into());
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
            match rng.below(3) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => {
                    let t = TOKENS[rng.below(TOKENS.len() as u64) as usize];
                    b.splice(at..at, t.iter().copied());
                }
                _ => b.truncate(at),
            }
        }
        fuzz_snapshot(&b);
        execs += 1;
    }
    println!("{execs} executions in {:.1} s, {} base files, seed {seed}", start.elapsed().as_secs_f64(), bases.len());
}
