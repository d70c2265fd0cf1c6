//! Fuzz target: walk a heap image (a captured `_PyRuntime` + GC heap, mutated) with memspy's walker.
//! It must never panic, hang or allocate without bound, whatever the image holds.
//!
//! With libFuzzer (nightly): `cargo +nightly fuzz run walk_image --features libfuzzer corpus/walk`.
//! On stable: `cargo run --release -- corpus/walk [SECONDS] [SEED]` mutates the corpus with memspy's own
//! mutator (`memspy::debug::mutate`) and reports the number of executions.
#![cfg_attr(feature = "libfuzzer", no_main)]

#[cfg(feature = "libfuzzer")]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    memspy::debug::fuzz_one(data);
});

#[cfg(not(feature = "libfuzzer"))]
fn main() {
    use memspy::debug::{fuzz_one, mutate, Image, Rng};
    use std::time::{Duration, Instant};

    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "corpus/walk".into());
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let mut bases = Vec::new();
    for e in std::fs::read_dir(&dir).expect("corpus directory").flatten() {
        let bytes = std::fs::read(e.path()).expect("corpus file");
        match Image::from_bytes(&bytes) {
            Ok(img) => bases.push(img),
            Err(err) => eprintln!("{}: {err}", e.path().display()),
        }
    }
    assert!(!bases.is_empty(), "no images in {dir}");
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let mut execs = 0u64;
    let mut slowest = Duration::ZERO;
    while start.elapsed().as_secs_f64() < secs {
        let mut img = bases[rng.below(bases.len() as u64) as usize].clone();
        let rounds = 1 + rng.below(32) as u32;
        mutate(&mut img, &mut rng, rounds);
        let t = Instant::now();
        fuzz_one(&img.to_bytes());
        slowest = slowest.max(t.elapsed());
        execs += 1;
    }
    println!(
        "{execs} executions in {:.1} s (slowest {slowest:?}), {} base images, seed {seed}",
        start.elapsed().as_secs_f64(),
        bases.len()
    );
}
