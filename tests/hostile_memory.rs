//! The walker against synthetic and corrupt memory: valid synthetic heaps give exact answers; corrupt
//! ones (cycles, wild pointers, huge sizes, unterminated names, self-referencing bases, absurd dict
//! keys) give an error or a partial answer, never a panic, a hang or an unbounded allocation. Also: heap
//! images captured from a live target walk like the target itself, and a stable-toolchain fuzz run over
//! the corpus in fuzz/corpus/walk.
//!
//! Every test here runs under an allocator that records the largest single allocation.

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use memspy::debug::core_image::{core_from_image, fuzz_core, open_core, walk_core, TOKENS};
use memspy::debug::{fuzz_one, mutate, mutate_bytes, Image, Rng, Synth};
use memspy::memory::ReadExt;
use memspy::memory::{FakeMemory, MAX_READ};

struct Watch;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static ALLOC: Watch = Watch;

/// No allocation anywhere in this test binary may exceed this (the synthetic arena is 4 MiB; memspy's
/// read cap is 64 MiB).
const ALLOC_CAP: usize = MAX_READ + (1 << 20);

fn assert_allocations_bounded() {
    let max = LARGEST.load(Ordering::Relaxed);
    assert!(max <= ALLOC_CAP, "an allocation of {max} bytes happened (cap {ALLOC_CAP})");
}

/// A heap with two types: 5 `list`s in gen 0, 3 `demo.Thing`s in gen 2, 1 frozen `demo.Thing`.
fn sample() -> (Synth, u64, u64) {
    let mut s = Synth::new();
    let list_t = s.static_type("list", 40, 0);
    let thing_t = s.static_type("demo.Thing", 48, 0);
    for _ in 0..5 {
        let o = s.object(list_t, 40, 0);
        let l = s.layout.clone();
        s.mem.put_u64(o + l.list.allocated, 4);
    }
    for _ in 0..3 {
        s.object(thing_t, 48, 2);
    }
    s.object(thing_t, 48, 3);
    (s, list_t, thing_t)
}

/// Walks an image strictly and leniently, in bounded time, without panicking; returns the strict result.
fn walk_both(img: &Image) -> Result<(memspy::analysis::Histogram, memspy::walk::WalkSummary), memspy::Error> {
    let start = Instant::now();
    let strict = img.walk(true, Duration::from_secs(5));
    let _ = img.walk(false, Duration::from_secs(5));
    assert!(start.elapsed() < Duration::from_secs(12), "walk took {:?}", start.elapsed());
    assert_allocations_bounded();
    strict
}

#[test]
fn synthetic_heap_is_walked_exactly() {
    let (s, _, _) = sample();
    let (hist, summary) = walk_both(&s.image()).expect("valid synthetic heap");
    assert_eq!(summary.generations, [5, 0, 3]);
    assert_eq!(summary.permanent, 1);
    assert_eq!(summary.unreadable, 0);
    let rows = hist.rows();
    let list = rows.iter().find(|r| r.name == "builtins.list").expect("list row");
    assert_eq!((list.count, list.bytes), (5, 5 * (40 + 8 * 4 + 16)));
    let thing = rows.iter().find(|r| r.name == "demo.Thing").expect("Thing row");
    assert_eq!((thing.count, thing.frozen, thing.bytes), (4, 1, 4 * (48 + 16)));
}

#[test]
fn cycle_that_never_returns_to_the_head() {
    let (mut s, _, _) = sample();
    let g = s.list(0).to_vec();
    // g[4] -> g[1], with consistent back links along the loop g1 -> g2 -> g3 -> g4 -> g1: only the head's
    // own links still point into it.
    s.mem.put_u64(g[4], g[1]);
    s.mem.put_u64(g[1] + 8, g[4]);
    let img = s.image();
    assert!(img.walk(true, Duration::from_secs(5)).is_err(), "strict walk must refuse a cycle");
    let start = Instant::now();
    let (_, summary) = img.walk(false, Duration::from_secs(30)).expect("lenient walk keeps what it read");
    assert!(start.elapsed() < Duration::from_secs(5), "cycle detection took {:?}", start.elapsed());
    assert_eq!(summary.broken_lists, 1);
    assert!(summary.generations[0] <= 5, "{:?}", summary.generations);
    assert_allocations_bounded();
}

#[test]
fn a_list_that_runs_into_another_lists_head() {
    let (mut s, _, _) = sample();
    let g0 = s.list(0).to_vec();
    let gen1 = s.heads()[1];
    // The last object of gen 0 now links to gen 1's (empty) head, as after a splice mid-walk.
    s.mem.put_u64(g0[4], gen1);
    s.mem.put_u64(gen1 + 8, g0[4]);
    let img = s.image();
    assert!(img.walk(true, Duration::from_secs(5)).is_err());
    let (_, summary) = img.walk(false, Duration::from_secs(5)).expect("lenient");
    assert_eq!(summary.broken_lists, 1);
    assert_eq!(summary.generations[0], 5);
}

#[test]
fn wild_pointers() {
    for wild in [0xdead_beef_0000u64, !7, 1 << 63, 8, 0x7fff_ffff_fff8] {
        // In a list link.
        let (mut s, _, _) = sample();
        let g = s.list(2).to_vec();
        s.mem.put_u64(g[1], wild);
        let _ = walk_both(&s.image());
        // As an object's type.
        let (mut s, _, _) = sample();
        let o = s.list(0)[2] + s.layout.gc_head.size;
        s.mem.put_u64(o + s.layout.object.ob_type, wild);
        let (_, summary) = walk_both(&s.image()).expect("an unreadable object is skipped");
        assert_eq!(summary.unreadable, 1);
        // As the interpreter pointer and a type's name.
        let (mut s, _, thing) = sample();
        s.mem.put_u64(s.runtime + s.layout.runtime.interpreters_head, wild);
        assert!(walk_both(&s.image()).is_err());
        let (mut s, _, _) = sample();
        s.mem.put_u64(thing + s.layout.type_.tp_name, wild);
        let (_, summary) = walk_both(&s.image()).expect("objects of an unreadable type are skipped");
        assert_eq!(summary.unreadable, 4);
    }
}

#[test]
fn huge_sizes() {
    let (mut s, list_t, thing_t) = sample();
    let l = s.layout.clone();
    // A list claiming 2^62 slots, a type claiming an absurd basic size, a var-sized type with a huge
    // item count.
    let o = s.list(0)[0] + l.gc_head.size;
    s.mem.put_u64(o + l.list.allocated, 1 << 62);
    s.mem.put_u64(thing_t + l.type_.tp_basicsize, 1 << 60);
    let var_t = s.static_type("demo.Var", 32, 8);
    let v = s.object(var_t, 32, 1);
    s.mem.put_u64(v + l.object.ob_size, u64::MAX);
    let (hist, summary) = walk_both(&s.image()).expect("absurd sizes are contained");
    assert_eq!(summary.unreadable, 4, "the 4 objects of the absurd type are skipped");
    assert!(hist.rows().iter().all(|r| r.bytes < 1 << 50), "{:?}", hist.rows());
    let _ = list_t;
}

#[test]
fn unterminated_tp_name() {
    let (mut s, _, thing) = sample();
    let at = s.alloc(64 << 10);
    s.mem.write(at, &vec![b'a'; 64 << 10]);
    s.mem.put_u64(thing + s.layout.type_.tp_name, at);
    let (_, summary) = walk_both(&s.image()).expect("walk goes on");
    assert_eq!(summary.unreadable, 4);
    // Also right at the end of readable memory: no NUL, no more bytes.
    let (mut s, _, thing) = sample();
    let end = Synth::ARENA + Synth::ARENA_SIZE as u64;
    s.mem.write(end - 10, b"abcdefghij");
    s.mem.put_u64(thing + s.layout.type_.tp_name, end - 10);
    let (_, summary) = walk_both(&s.image()).expect("walk goes on");
    assert_eq!(summary.unreadable, 4);
}

#[test]
fn self_referencing_tp_base() {
    let (mut s, _, thing) = sample();
    s.mem.put_u64(thing + s.layout.type_.tp_base, thing);
    let (hist, _) = walk_both(&s.image()).expect("the base chain is bounded");
    assert!(hist.rows().iter().any(|r| r.name == "demo.Thing" && r.count == 4));
    // Two types that are each other's base.
    let (mut s, list_t, thing) = sample();
    s.mem.put_u64(thing + s.layout.type_.tp_base, list_t);
    s.mem.put_u64(list_t + s.layout.type_.tp_base, thing);
    walk_both(&s.image()).expect("bounded");
}

#[test]
fn dict_keys_with_absurd_sizes() {
    let mut s = Synth::new();
    let l = s.layout.clone();
    let dict_t = s.static_type("dict", 48, 0);
    // Keys claiming 2^40 slots and more entries than slots; a values array whose size comes from a huge
    // dk_usable; log2 sizes past 64.
    let cases: [(u8, u8, u64, u64); 4] =
        [(40, 43, u64::MAX, 1 << 40), (63, 63, 1, 1), (3, 3, 2, u64::MAX), (200, 255, 0, 0)];
    for (log2_size, log2_index, usable, nentries) in cases {
        let keys = s.alloc(64);
        s.mem.put_u64(keys, 1);
        s.mem.write(keys + 8, &[log2_size, log2_index, 1]);
        s.mem.put_u64(keys + 16, usable);
        s.mem.put_u64(keys + 24, nentries);
        let d = s.object(dict_t, 48, 0);
        s.mem.put_u64(d + l.dict.keys, keys);
        s.mem.put_u64(d + l.dict.values, keys);
    }
    // A heap type whose tp_dict is such a dict (its name and __sizeof__ lookups read the dict).
    let heap_t = s.static_type("ignored", 32, 0);
    s.mem.put_u64(heap_t + l.type_.tp_flags, python_bindings::flags::HEAPTYPE | python_bindings::flags::HAVE_GC);
    let bad_dict = s.object(dict_t, 48, 1);
    let keys = s.alloc(64);
    s.mem.write(keys + 8, &[30, 32, 1]);
    s.mem.put_u64(keys + 24, 1 << 29);
    s.mem.put_u64(bad_dict + l.dict.keys, keys);
    s.mem.put_u64(heap_t + l.type_.tp_dict, bad_dict);
    s.object(heap_t, 32, 2);
    let (hist, summary) = walk_both(&s.image()).expect("absurd dicts are contained");
    assert_eq!(summary.generations, [4, 1, 1]);
    assert!(hist.rows().iter().all(|r| r.bytes < 1 << 50), "{:?}", hist.rows());
}

#[test]
fn reads_with_remote_lengths_are_capped_before_allocating() {
    let mut f = FakeMemory::new();
    f.add(0x1000, vec![0; 4096]);
    for len in [MAX_READ + 1, usize::MAX / 2, usize::MAX] {
        let e = f.bytes_at(0x1000, len, "test").unwrap_err();
        // The detail is written in src/process/memory.rs.
        assert!(matches!(&e, memspy::Error::Corrupt(detail) if detail.contains("refusing")), "{e}");
    }
    assert_allocations_bounded();
}

#[test]
fn truncated_and_garbage_images_are_refused() {
    let (s, _, _) = sample();
    let bytes = s.image().to_bytes();
    let back = Image::from_bytes(&bytes).expect("round trip");
    assert_eq!(back.mem.regions.len(), s.mem.regions.len());
    for cut in [0, 7, 39, 41, bytes.len() / 2, bytes.len() - 1] {
        assert!(Image::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut huge = bytes.clone();
    huge[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Image::from_bytes(&huge).is_err());
    let mut long = bytes.clone();
    long[48..56].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    assert!(Image::from_bytes(&long).is_err());
    assert_allocations_bounded();
}

fn corpus_dir() -> PathBuf {
    common::repo_root().join("fuzz").join("corpus").join("walk")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The corpus holds real captures (small interpreters of several versions); each one walks cleanly.
#[test]
fn corpus_images_walk_cleanly() {
    let corpus = corpus();
    assert!(corpus.len() >= 2, "fuzz/corpus/walk should hold captured images, found {}", corpus.len());
    let total: usize = corpus.iter().map(|(_, b)| b.len()).sum();
    assert!(total < 1 << 20, "corpus is {total} bytes; keep it under 1 MiB");
    for (name, bytes) in &corpus {
        let img = Image::from_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (hist, summary) = img.walk(true, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.unreadable, 0, "{name}");
        assert_eq!(summary.broken_lists, 0, "{name}");
        let rows = hist.rows();
        // A free-threaded image keeps 16 blocks of each page, where its dicts may not be.
        let want = if img.free_threaded { "builtins.type" } else { "builtins.dict" };
        assert!(rows.iter().any(|r| r.name == want), "{name}: {:?}", &rows[..rows.len().min(5)]);
    }
}

/// The stable fuzz harness (the same entry point as the cargo-fuzz target in fuzz/): mutate corpus and
/// synthetic images, walk them. Iterations via MEMSPY_FUZZ_ITERS (default 300); seed via MEMSPY_FUZZ_SEED.
#[test]
fn fuzz_walk_smoke() {
    let iters: u64 = std::env::var("MEMSPY_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let seed: u64 = std::env::var("MEMSPY_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let mut bases: Vec<Image> = corpus().iter().filter_map(|(_, b)| Image::from_bytes(b).ok()).collect();
    bases.push(sample().0.image());
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    for i in 0..iters {
        let mut img = bases[(i % bases.len() as u64) as usize].clone();
        let rounds = 1 + rng.below(16) as u32;
        mutate(&mut img, &mut rng, rounds);
        let t = Instant::now();
        fuzz_one(&img.to_bytes());
        assert!(t.elapsed() < Duration::from_secs(10), "iteration {i} took {:?}", t.elapsed());
    }
    assert_allocations_bounded();
    eprintln!("fuzz_walk_smoke: {iters} executions in {:?} (seed {seed})", start.elapsed());
}

/// A capture of a live target walks like the target: same per-type counts as memspy's own report.
#[test]
fn captured_image_matches_the_live_target() {
    let d = common::discover_interpreters();
    let Some(interp) = d.interpreters.iter().find(|i| !i.debug).or(d.interpreters.first()) else {
        return common::skip_or_fail(common::NO_INTERPRETER);
    };
    let mut fx = common::Fixture::spawn(interp, "gc_heap.py", &[]).expect("fixture");
    fx.wait_for_truth(common::FIXTURE_TIMEOUT).expect("truth");
    fx.wait_until_paused(common::FIXTURE_TIMEOUT).expect("fixture pauses");
    let session = memspy::commands::Session::attach(fx.pid as i32).expect("attach");
    let img = Image::capture(&session.target, &session.interp, Duration::from_secs(30)).expect("capture");
    let img = Image::from_bytes(&img.to_bytes()).expect("reload");
    let (hist, summary) = img.walk(true, Duration::from_secs(30)).expect("walk image");
    assert_eq!(summary.unreadable, 0);
    // The image holds what a GC-list walk reads, so compare with a --gc-only report.
    let (live, _) = common::memspy_top_json_with(fx.pid, &["--gc-only"]).expect("live report");
    let live_rows: std::collections::BTreeMap<String, u64> = live["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["type"].as_str().unwrap().to_string(), t["count"].as_u64().unwrap()))
        .collect();
    let img_rows: std::collections::BTreeMap<String, u64> =
        hist.rows().into_iter().map(|r| (r.name, r.count)).collect();
    assert_eq!(img_rows, live_rows, "{}", interp.label());
}

/// An image of `interp` started idle (`-I -S`, reading stdin), captured once it can be, the process
/// ended afterwards.
fn capture_idle(interp: &common::Interpreter) -> Image {
    let mut child = std::process::Command::new(&interp.path)
        .args(["-I", "-S", "-c", "import sys; sys.stdin.read()"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let img = capture_when_ready(child.id() as i32, &interp.label(), Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    img
}

/// An image of the process `pid` (named `what` in the failure), tried until memspy can attach and read
/// it, for at most `within`.
fn capture_when_ready(pid: i32, what: &str, within: Duration) -> Image {
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(s) = memspy::commands::Session::attach(pid) {
            if let Ok(img) = Image::capture(&s.target, &s.interp, Duration::from_secs(30)) {
                return img;
            }
        }
        assert!(start.elapsed() < within, "cannot capture {what}");
    }
}

/// Regenerates fuzz/corpus/walk from small live interpreters, minimised (`Image::minimise`):
/// `cargo test --test hostile_memory -- --ignored capture`.
#[test]
#[ignore]
fn capture_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let d = common::discover_interpreters();
    // Two versions (classic layout; debug offsets + 3.14 GC) keep the corpus under 1 MiB.
    for want in ["3.9", "3.14"] {
        let Some(interp) =
            d.interpreters.iter().find(|i| i.version_string().starts_with(&format!("{want}.")) && !i.debug)
        else {
            common::skip_or_fail(&format!("no non-debug Python {want} found; its image is not captured"));
            continue;
        };
        let img = capture_idle(interp);
        // At most 60 objects per GC list: small images make fast fuzzing (see fuzz/README.md).
        let img = img.minimise(&[], 0, 60).expect("minimise");
        let bytes = img.to_bytes();
        eprintln!("{}: {} regions, {} bytes", interp.label(), img.mem.regions.len(), bytes.len());
        std::fs::write(dir.join(format!("py{}.img", interp.version_string())), bytes).unwrap();
    }
}

/// Adds a small image of a numpy/pandas heap to fuzz/corpus/walk (the venv of scripts/venvs.sh for
/// Debian's 3.14): the heap after `import numpy, pandas` and a few arrays and a DataFrame, minimised to
/// at most 40 numpy/pandas objects and 10 others per GC list. `cargo test --test hostile_memory --
/// --ignored capture_native_corpus`.
#[test]
#[ignore]
fn capture_native_corpus() {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cache = std::env::var_os("MEMSPY_CACHE").map(PathBuf::from).unwrap_or(home.join(".cache/memspy"));
    let python = cache.join("venvs/debian-3.14/bin/python");
    if !python.exists() {
        return common::skip_or_fail(&format!("{} missing (scripts/venvs.sh makes it)", python.display()));
    }
    let code = "import numpy, pandas, sys; a = numpy.arange(12.0).reshape(3, 4); s = numpy.array(['x', 'yz']); \
                o = numpy.array([1, 'a', None], dtype=object); \
                df = pandas.DataFrame({'a': [1, 2, 3], 'b': ['p', 'q', 'r']}); g = df.groupby('b'); print('ready', flush=True); sys.stdin.read()";
    let mut child = std::process::Command::new(&python)
        .args(["-I", "-c", code])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Captured once the imports are done and the objects made.
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready", "{} did not start", python.display());
    let img = capture_when_ready(pid, &python.display().to_string(), Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let small = img.minimise(&["numpy", "pandas"], 40, 10).expect("minimise");
    let (hist, summary) = small.walk(true, Duration::from_secs(30)).expect("the minimised image walks");
    let native = hist.rows().iter().filter(|r| r.name.contains("numpy") || r.name.contains("pandas")).count();
    let bytes = small.to_bytes();
    eprintln!(
        "numpy/pandas heap: {} bytes captured, {} bytes minimised ({} objects, {} numpy/pandas types)",
        img.to_bytes().len(),
        bytes.len(),
        summary.generations.iter().sum::<u64>() + summary.permanent,
        native
    );
    assert!(native > 0, "no numpy or pandas type in the minimised image");
    std::fs::write(corpus_dir().join(format!("py{}-numpy-pandas.img", small.version)), bytes).unwrap();
    let _ = hist;
}

/// The image a core of the corpus is written from: the walk corpus's, cut to at most 8 numpy/pandas and 8 other objects per
/// GC list (or 1 page per queue of a free-threaded heap), so that one execution of the core target
/// stays cheap.
fn core_image(bytes: &[u8]) -> Image {
    Image::from_bytes(bytes)
        .and_then(|i| i.minimise(&["numpy", "pandas"], 8, if i.free_threaded { 1 } else { 8 }))
        .unwrap()
}

fn core_corpus_dir() -> PathBuf {
    common::repo_root().join("fuzz").join("corpus").join("core")
}

/// Regenerates fuzz/corpus/core from fuzz/corpus/walk: each image written as an ELF core file
/// (`memspy::debug::core_image`). `cargo test --test hostile_memory -- --ignored core_corpus`.
#[test]
#[ignore]
fn core_corpus() {
    let dir = core_corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in corpus() {
        let img = core_image(&bytes);
        let core = core_from_image(&img);
        eprintln!("{name}: {} bytes as a core", core.len());
        std::fs::write(dir.join(name.replace(".img", ".core")), core).unwrap();
    }
}

/// Each core of fuzz/corpus/core is its walk image's heap: read through the core reader (segments,
/// bytes from the file `NT_FILE` maps where the core has none, the build ID checked) it walks to the
/// same per-type counts as the image, with nothing unreadable.
#[test]
fn core_corpus_walks_as_its_image() {
    let cores: Vec<_> = std::fs::read_dir(core_corpus_dir())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    let images = corpus();
    assert!(cores.len() >= images.len(), "fuzz/corpus/core holds {} cores for {} images", cores.len(), images.len());
    let total: u64 = cores.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    assert!(total < 1 << 20, "fuzz/corpus/core is {total} bytes; keep it under 1 MiB");
    for (name, bytes) in images {
        let img = core_image(&bytes);
        let path = core_corpus_dir().join(name.replace(".img", ".core"));
        let core = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(core, core_from_image(&img), "{}: regenerate it (see core_corpus)", path.display());
        let (mem, _) = open_core(&core).unwrap_or_else(|e| panic!("{name}: {e}"));
        let states: Vec<String> = mem.files().map(|(p, s)| format!("{p}: {}", found(s))).collect();
        assert_eq!(states, ["/usr/bin/python3: found", "/usr/lib/libmissing.so: missing"], "{name}");
        let (hist, summary) = walk_core(&core, true, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (want, _) = img.walk(true, Duration::from_secs(10)).unwrap();
        assert_eq!(summary.unreadable, 0, "{name}");
        let rows = |h: &memspy::analysis::Histogram| -> Vec<(String, u64, u64)> {
            h.rows().into_iter().map(|r| (r.name, r.count, r.bytes)).collect()
        };
        assert_eq!(rows(&hist), rows(&want), "{name}");
    }
}

fn found(s: &memspy::memory::core_memory::FileState) -> &'static str {
    use memspy::memory::core_memory::FileState;
    match s {
        FileState::Found { .. } => "found",
        FileState::Missing { .. } => "missing",
        FileState::Mismatch { .. } => "mismatch",
    }
}

/// The stable harness of the core reader's fuzz target: the corpus cores mutated (bytes flipped,
/// words replaced, cuts), each read and walked in bounded time and memory. MEMSPY_FUZZ_ITERS (default
/// 200) and MEMSPY_FUZZ_SEED as for fuzz_walk_smoke.
#[test]
fn fuzz_core_smoke() {
    let iters: u64 = std::env::var("MEMSPY_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed: u64 = std::env::var("MEMSPY_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    let bases: Vec<Vec<u8>> = corpus().iter().map(|(_, b)| core_from_image(&core_image(b))).collect();
    assert!(!bases.is_empty());
    let mut rng = Rng(seed | 1);
    for i in 0..iters {
        let mut b = bases[(i % bases.len() as u64) as usize].clone();
        mutate_bytes(&mut b, &mut rng, TOKENS);
        let t = Instant::now();
        fuzz_core(&b);
        assert!(t.elapsed() < Duration::from_secs(10), "iteration {i} took {:?}", t.elapsed());
    }
    assert_allocations_bounded();
}

/// Adds a small image of a free-threaded heap to fuzz/corpus/walk (`python3.14t -I -S` of
/// scripts/build-pythons.sh): what the walk of its mimalloc GC heaps reads (thread states, heaps, page
/// queues, pages, free lists, object heads, types), each page queue cut to its first page.
/// `cargo test --test hostile_memory -- --ignored capture_free_threaded_corpus`.
#[test]
#[ignore]
fn capture_free_threaded_corpus() {
    let d = common::discover_interpreters();
    let Some(interp) = d.free_threaded.iter().find(|i| i.minor() == (3, 14)) else {
        return common::skip_or_fail("no free-threaded 3.14 (scripts/build-pythons.sh builds it)");
    };
    let img = capture_idle(interp);
    assert!(img.free_threaded);
    let small = img.minimise(&[], 0, 1).expect("minimise");
    let (hist, summary) = small.walk(true, Duration::from_secs(30)).expect("the minimised image walks");
    let bytes = small.to_bytes();
    eprintln!(
        "{}: {} bytes captured, {} bytes minimised, {} objects of {} types",
        interp.label(),
        img.to_bytes().len(),
        bytes.len(),
        summary.generations.iter().sum::<u64>() + summary.permanent,
        hist.rows().len()
    );
    std::fs::write(corpus_dir().join(format!("py{}.img", interp.label())), bytes).unwrap();
}
