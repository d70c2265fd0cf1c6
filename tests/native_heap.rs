//! Heaps made by real C extensions from PyPI — numpy, and pandas (built with Cython) — in the venvs of
//! `scripts/venvs.sh`, one per interpreter: `fixtures/native_heap.py` holds strings, floats and bytes
//! only in native buffers (numpy object arrays, a deque's blocks, a DataFrame's object column), numeric
//! arrays, numpy scalars and dtypes, and probe objects of types a conservative scan used to invent.
//!
//! Checked exactly, per venv:
//! - differential: growing the heap in the same process by K2 − K1 units adds exactly units × (K2 − K1)
//!   objects of each unit type (3 str per unit: the object array, the deque, the DataFrame column);
//! - the probe types (decimal.Context, defaultdict, attrgetter, _thread.lock, the DataFrame, ndarray):
//!   memspy's count equals the in-process closure's; `--gc-only` equals `gc.get_objects()`;
//! - bytes: `numpy.ndarray`, the numpy scalars and dtypes equal the closure's `sys.getsizeof` sums;
//! - names: no type named `?`, and Cython's types by the name Python gives them, counted as the closure.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const K1: &str = "001000";
const K2: &str = "021000";

/// Per type: (count, bytes) of a memspy report.
fn rows(report: &Value) -> BTreeMap<String, (u64, u64)> {
    report["types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (t["type"].as_str().unwrap_or("").to_string(), (u(&t["count"]), u(&t["bytes"]))))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn wait_for_file(path: &Path, fx: &mut Fixture) -> Result<Value, String> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = fx.exited() {
            return Err(format!("fixture exited ({}): {}", describe_exit(status), tail(&fx.stderr_text(), 2000)));
        }
        if start.elapsed() > FIXTURE_TIMEOUT {
            return Err(format!("no {} within {} s", path.display(), FIXTURE_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One run of the fixture in `venv`: the problems found, and a line of figures.
fn check(venv: &Venv) -> Result<(Vec<String>, String), String> {
    let mut fx = Fixture::spawn(&venv.interp, "native_heap.py", &[K1, K2])?;
    let t1 = fx.wait_for_truth(FIXTURE_TIMEOUT)?;
    fx.wait_until_paused(Duration::from_secs(30))?;
    let (r1, _) = memspy_top_json(fx.pid)?;
    let (g1, _) = memspy_top_json_with(fx.pid, &["--gc-only"])?;
    // SAFETY: kill has no memory preconditions; the fixture is our child.
    unsafe { libc::kill(fx.pid as i32, libc::SIGUSR1) };
    let path2 = PathBuf::from(format!("{}.2", fx.truth_path.display()));
    let t2 = wait_for_file(&path2, &mut fx)?;
    fx.wait_until_paused(Duration::from_secs(30))?;
    let (r2, _) = memspy_top_json(fx.pid)?;
    let (m1, m2, gc) = (rows(&r1), rows(&r2), rows(&g1));
    let count = |m: &BTreeMap<String, (u64, u64)>, t: &str| m.get(t).map(|r| r.0).unwrap_or(0);
    let bytes = |m: &BTreeMap<String, (u64, u64)>, t: &str| m.get(t).map(|r| r.1).unwrap_or(0);
    let closure = |k: &str, t: &str| u(&t1[k][t]);
    let mut problems = Vec::new();
    let grown = u(&t2["k"]) - u(&t1["k"]);
    let mut figures = Vec::new();
    for (t, units) in t1["units"].as_object().into_iter().flatten() {
        let want = u(units) * grown;
        let got = count(&m2, t) as i64 - count(&m1, t) as i64;
        figures.push(format!("{t} +{got}"));
        if got != want as i64 {
            problems.push(format!("{t}: grew by {got} from K={} to K={}, expected {want}", t1["k"], t2["k"]));
        }
    }
    let mut probes: Vec<String> = t1["probes"].as_object().into_iter().flatten().map(|(t, _)| t.clone()).collect();
    probes.push(t1["dataframe"]["type"].as_str().unwrap_or("pandas.DataFrame").to_string());
    probes.push("numpy.ndarray".into());
    for t in &probes {
        let (want, got) = (closure("closure", t), count(&m1, t));
        if want != got {
            problems.push(format!("{t}: memspy counts {got}, the in-process closure {want}"));
        }
        let (want, got) = (closure("gc_objects", t), count(&gc, t));
        if want != got {
            problems.push(format!("{t}: memspy --gc-only counts {got}, gc.get_objects() {want}"));
        }
    }
    let mut sized: Vec<String> = vec!["numpy.ndarray".into()];
    sized.extend(t1["scalar_getsizeof"].as_object().into_iter().flatten().map(|(t, _)| t.clone()));
    sized.extend(
        t1["dtype_getsizeof"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, d)| d["type"].as_str().map(String::from)),
    );
    sized.sort();
    sized.dedup();
    for t in &sized {
        let (want, got) = (closure("closure_bytes", t), bytes(&m1, t));
        if want != got || count(&m1, t) != closure("closure", t) {
            problems.push(format!(
                "{t}: memspy {} objects, {got} bytes; sys.getsizeof in-process {} objects, {want} bytes",
                count(&m1, t),
                closure("closure", t)
            ));
        }
    }
    for (t, _) in m1.iter().chain(gc.iter()) {
        if t.starts_with('?') {
            problems.push(format!("{t}: a type memspy could not name"));
        }
    }
    // A __sizeof__ memspy does not model (pandas' is Python code: a deep memory_usage) is marked.
    let exact = |t: &str| {
        r1["types"].as_array().into_iter().flatten().find(|r| r["type"] == t).and_then(|r| r["bytes_exact"].as_bool())
    };
    for t in t1["python_sizeof"].as_array().into_iter().flatten().filter_map(|t| t.as_str()) {
        if exact(t) == Some(true) {
            problems.push(format!("{t}: its __sizeof__ is Python code, yet memspy calls its bytes exact"));
        }
    }
    for t in &sized {
        if exact(t) == Some(false) {
            problems.push(format!("{t}: memspy calls its bytes approximate"));
        }
    }
    let cython: Vec<&String> = t1["closure"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(t, _)| t)
        .filter(|t| t.contains("cython_function_or_method"))
        .collect();
    if cython.is_empty() {
        problems.push("the fixture holds no Cython function (is pandas installed?)".into());
    }
    for t in cython {
        if count(&m1, t) != closure("closure", t) {
            problems.push(format!("{t}: memspy counts {}, the closure {}", count(&m1, t), closure("closure", t)));
        }
    }
    let ndarray = format!("ndarray {} B", bytes(&m1, "numpy.ndarray"));
    let scan = &r1["scan"];
    Ok((
        problems,
        format!(
            "{}; probes as the closure; {ndarray}; {} native blocks scanned, {} candidates rejected",
            figures.join(", "),
            scan["native_blocks"],
            scan["rejected_candidates"]
        ),
    ))
}

#[test]
fn heaps_of_numpy_and_pandas_are_exact() {
    let venvs = venvs();
    if venvs.is_empty() {
        return skip_or_fail(&format!(
            "no venv with numpy and pandas in {} (run scripts/venvs.sh)",
            venvs_dir().display()
        ));
    }
    let mut failed = Vec::new();
    for v in &venvs {
        // The target's own state may change between its two snapshots (a cache filled, an object freed
        // by the interpreter's housekeeping): a difference is confirmed by a second process.
        let mut result = check(v);
        if !matches!(&result, Ok((p, _)) if p.is_empty()) {
            eprintln!("  {:<14} retrying after: {:?}", v.name, result.as_ref().map(|r| &r.0));
            result = check(v);
        }
        match result {
            Ok((problems, figures)) if problems.is_empty() => {
                eprintln!("  {:<14} Python {:<8} ok    {figures}", v.name, v.interp.full_version)
            }
            Ok((problems, _)) => {
                eprintln!("  {:<14} Python {:<8} FAILED ({})", v.name, v.interp.full_version, v.packages);
                for p in &problems {
                    eprintln!("      {p}");
                }
                failed.push(v.name.clone());
            }
            Err(e) => {
                eprintln!("  {:<14} FAILED: {e}", v.name);
                failed.push(v.name.clone());
            }
        }
    }
    eprintln!("native_heap: {} venvs, {} passed, {} failed", venvs.len(), venvs.len() - failed.len(), failed.len());
    assert!(failed.is_empty(), "native heaps not exact on: {}", failed.join(", "));
}
