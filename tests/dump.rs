//! `memspy dump` files: the bad ones each give one line and a non-zero exit (not a dump, empty,
//! truncated, corrupt, of a newer format), `--no-values` keeps no contents, and a dump that cannot be
//! completed leaves no file behind. (What a dump answers — `top`, `why`, `retained` on it — is checked
//! against the fixtures' truth on every interpreter in tests/why.rs.)

mod common;

use std::fs;
use std::path::Path;

use common::*;
use memspy::cpython::values::Value;
use memspy::error::Error;

/// Starts gc_heap.py on the first interpreter of the matrix and dumps it to `dir/name`.
fn dumped(dir: &Path, name: &str, extra: &[&str]) -> Option<(Fixture, String)> {
    let d = discover_interpreters();
    let Some(interp) = d.interpreters.first() else {
        skip_or_fail(NO_INTERPRETER);
        return None;
    };
    let mut fixture = Fixture::spawn(interp, "gc_heap.py", &[]).expect("fixture starts");
    fixture.wait_for_truth(FIXTURE_TIMEOUT).expect("fixture writes its truth");
    let file = dir.join(name).to_str().expect("UTF-8 temp path").to_string();
    let pid = fixture.pid.to_string();
    let mut args = vec!["dump", pid.as_str(), "-o", file.as_str()];
    args.extend_from_slice(extra);
    let out = run_memspy(&args).expect("memspy runs");
    assert!(out.success(), "memspy dump failed: {}", out.stderr);
    Some((fixture, file))
}

fn one_line(args: &[&str], what: &str) -> String {
    let out = run_memspy(args).expect("memspy runs");
    assert!(!out.timed_out, "{what}: memspy hung");
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{what}: exit status; stderr: {}", out.stderr);
    assert_one_line_error(out.status, &out.stderr, what)
}

#[test]
fn bad_files_give_one_line_each() {
    let dir = TempDir::new("bad-dumps").expect("temp dir");
    let Some((_fixture, good)) = dumped(dir.path(), "good.memspy", &[]) else { return };
    let bytes = fs::read(&good).expect("the dump");
    let write = |name: &str, b: &[u8]| {
        let p = dir.path().join(name).to_str().expect("UTF-8").to_string();
        fs::write(&p, b).expect("write");
        p
    };
    for (name, content) in [("text.memspy", b"not a dump at all\n".to_vec()), ("empty.memspy", Vec::new())] {
        let p = write(name, &content);
        for cmd in [&["top", p.as_str(), "--once"][..], &["why", p.as_str(), "--type", "dict"][..]] {
            let line = one_line(cmd, name);
            assert!(shows_error(&line, &Error::NotADump { path: p.clone() }), "{name}: {line}");
        }
    }
    let mut newer = bytes.clone();
    newer[16..20].copy_from_slice(&99u32.to_le_bytes());
    let p = write("newer.memspy", &newer);
    let line = one_line(&["top", &p, "--once"], "newer format");
    let e = Error::DumpTooNew { path: p.clone(), found: 99, supported: memspy::store::FORMAT, ours: "0.1.0".into() };
    assert!(shows_error(&line, &e) || line.contains("newer than this memspy reads"), "{line}");
    // Cut anywhere after the header, or with bytes of the body changed: truncated or corrupt.
    for (name, b) in [
        ("cut-early.memspy", bytes[..bytes.len() / 8].to_vec()),
        ("cut-late.memspy", bytes[..bytes.len() - 7].to_vec()),
        ("flipped.memspy", {
            let mut f = bytes.clone();
            let mid = f.len() / 2;
            for x in &mut f[mid..mid + 64] {
                *x ^= 0x5a;
            }
            f
        }),
    ] {
        let p = write(name, &b);
        let line = one_line(&["why", &p, "--type", "dict"], name);
        assert!(line.contains(&p) && line.contains("truncated or corrupt"), "{name}: {line}");
    }
}

#[test]
fn no_values_keeps_no_contents() {
    let dir = TempDir::new("no-values").expect("temp dir");
    let Some((fixture, with)) = dumped(dir.path(), "with.memspy", &[]) else { return };
    let without = dir.path().join("without.memspy").to_str().expect("UTF-8").to_string();
    let pid = fixture.pid.to_string();
    let out = run_memspy(["dump", &pid, "-o", &without, "--no-values"]).expect("memspy runs");
    assert!(out.success(), "{}", out.stderr);
    let read = |p: &str| memspy::store::read(Path::new(p), true).expect("the dump reads");
    let (a, b) = (read(&with), read(&without));
    assert!(a.header.values && !b.header.values, "the header says whether values are in");
    let contents = |d: &memspy::store::Dump| {
        let g = d.graph.as_ref().expect("graph");
        (0..g.objects).filter(|&v| matches!(d.names.value(v), Some(v) if !matches!(v, Value::Len { .. }))).count()
    };
    let script_named = |d: &memspy::store::Dump| {
        let g = d.graph.as_ref().expect("graph");
        (0..g.objects).any(|v| matches!(d.names.value(v), Some(Value::Str { text, .. }) if text.contains("gc_heap")))
    };
    assert!(contents(&a) > 1000 && script_named(&a), "a dump with values has str values");
    assert_eq!(contents(&b), 0, "--no-values: only lengths");
    assert!(b.names.strings.iter().all(|s| !s.starts_with('\'')), "--no-values: no key text but identifiers");
    // The same objects and edges either way.
    let (ga, gb) = (a.graph.as_ref().expect("graph"), b.graph.as_ref().expect("graph"));
    assert_eq!((ga.objects, ga.targets.len()), (gb.objects, gb.targets.len()));
}

#[test]
fn a_dump_that_cannot_be_completed_leaves_no_file() {
    let dir = TempDir::new("no-partial").expect("temp dir");
    // The name is a non-empty directory: the dump is written, and its final rename fails.
    let target = dir.path().join("taken");
    fs::create_dir_all(target.join("inside")).expect("mkdir");
    let Some((fixture, _)) = dumped(dir.path(), "first.memspy", &[]) else { return };
    let pid = fixture.pid.to_string();
    let t = target.to_str().expect("UTF-8");
    let line = one_line(&["dump", &pid, "-o", t], "rename onto a directory");
    assert!(line.contains(&format!("cannot write {t}")), "{line}");
    let left: Vec<String> = fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
}

#[test]
fn gc_figures_of_a_dump_are_those_of_the_process() {
    let dir = TempDir::new("dump-gc").expect("temp dir");
    let Some((fixture, file)) = dumped(dir.path(), "gc.memspy", &[]) else { return };
    let pid = fixture.pid.to_string();
    let (live, _) = run_memspy_json(&["gc", &pid, "--json"]).expect("gc of the process");
    let (saved, _) = run_memspy_json(&["gc", &file, "--json"]).expect("gc of the dump");
    // gc_heap.py is idle once it has written its truth: the figures do not move between the two reads.
    for k in ["enabled", "thresholds", "counts", "generations", "permanent", "garbage", "stats", "pid"] {
        assert_eq!(live[k], saved[k], "{k}: live {} vs dump {}", live[k], saved[k]);
    }
    assert_eq!(saved["file"].as_str(), Some(file.as_str()));
}

#[test]
fn the_reader_survives_mutated_dumps() {
    // A smoke run of fuzz/fuzz_targets/dump_file.rs's entry point on its corpus (the fuzzer runs longer).
    let base = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dump/tiny.body")).expect("corpus");
    memspy::debug::fuzz_dump(&base);
    let mut rng = memspy::debug::Rng(0x5eed);
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(b.len() as u64) as usize;
            match rng.below(3) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b.insert(at, [0x80, 0xff, 0][rng.below(3) as usize]),
                _ => b.truncate(at.max(1)),
            }
        }
        memspy::debug::fuzz_dump(&b);
    }
}

#[test]
fn stat_of_a_dump_says_what_it_holds() {
    let dir = TempDir::new("dump-stat").expect("temp dir");
    let Some((fixture, file)) = dumped(dir.path(), "stat.memspy", &[]) else { return };
    let pid = fixture.pid.to_string();
    let (top, _) = run_memspy_json(&["top", &file, "--once", "--json"]).expect("top of the dump");
    let (s, _) = run_memspy_json(&["stat", &file, "--json"]).expect("stat of the dump");
    assert_eq!(s["pid"].as_str().map(String::from).unwrap_or_else(|| s["pid"].to_string()), pid);
    assert_eq!(s["python_objects"]["objects"], top["totals"]["objects"]);
    assert_eq!(s["python_objects"]["bytes"], top["totals"]["bytes"]);
    assert!(s["rss"].as_u64().unwrap_or(0) > 0 && s["writable_bytes"].as_u64().unwrap_or(0) > 0, "{s}");
}
