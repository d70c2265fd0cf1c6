//! A target with a subinterpreter (fixtures/subinterp.py): memspy walks every interpreter's heap. The
//! subinterpreter's `SubOnly` instances and the main interpreter's `MainOnly` instances must be counted
//! exactly (count and bytes = K × the `sys.getsizeof` measured inside each interpreter), in the full-heap
//! and the GC-only mode, and the report must say two interpreters were walked; on every CPython found.
//!
//! Run with `cargo test --test subinterpreters -- --nocapture` to see the per-interpreter lines.
//! Env: MEMSPY_TEST_PYTHONS=path:path limits the interpreters.

mod common;

use common::*;

fn check(interp: &Interpreter) -> Result<String, String> {
    let (fixture, truth) = start_settled(interp, "subinterp.py", &[])?;
    if let Some(why) = truth["unsupported"].as_str() {
        return Err(format!("the fixture could not create a subinterpreter: {why}"));
    }
    let k = |key: &str| truth[key].as_u64().ok_or_else(|| format!("truth has no {key}: {truth}"));
    let (sub_k, main_k, sub_size, main_size) = (k("sub_k")?, k("main_k")?, k("sub_size")?, k("main_size")?);
    let mut seen = Vec::new();
    for extra in [&[][..], &["--gc-only"][..]] {
        let (r, _) = memspy_top_json_with(fixture.pid, extra)?;
        let coverage = r["coverage"].as_str().unwrap_or("?").to_string();
        let row =
            |name: &str| -> (u64, u64) {
                r["types"].as_array().into_iter().flatten().filter(|t| t["type"] == name).fold((0, 0), |(c, b), t| {
                    (c + t["count"].as_u64().unwrap_or(0), b + t["bytes"].as_u64().unwrap_or(0))
                })
            };
        let want = [("__main__.SubOnly", sub_k, sub_size), ("__main__.MainOnly", main_k, main_size)];
        for (name, count, size) in want {
            let got = row(name);
            if got != (count, count * size) {
                return Err(format!("{coverage}: {name}: memspy {got:?}, target ({count}, {})", count * size));
            }
        }
        if r["interpreters"] != 2 {
            return Err(format!("{coverage}: interpreters {} (want 2)", r["interpreters"]));
        }
        seen.push(coverage);
    }
    Ok(format!(
        "{} and {}: SubOnly {sub_k}×{sub_size} B, MainOnly {main_k}×{main_size} B, 2 interpreters",
        seen[0], seen[1]
    ))
}

#[test]
fn every_interpreter_of_the_process_is_walked() {
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    let mut failed = 0;
    for interp in &d.interpreters {
        match check(interp) {
            Ok(line) => eprintln!("{:<10} ok    {line}", interp.label()),
            Err(e) => {
                eprintln!("{:<10} FAIL  {e}", interp.label());
                failed += 1;
            }
        }
    }
    eprintln!(
        "subinterpreters: {} interpreters, {} passed, {failed} failed",
        d.interpreters.len(),
        d.interpreters.len() - failed
    );
    assert_eq!(failed, 0, "{failed} of {} interpreters differ (see above)", d.interpreters.len());
}
