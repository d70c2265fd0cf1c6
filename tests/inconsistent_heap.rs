//! A paused read that finds the heap inconsistent every time it pauses (fixtures/broken_list.py: one GC
//! list with a back link broken for good, through ctypes) gives up after its retries with one line that
//! names the check that failed, and leaves the target running. On every interpreter of the matrix.

mod common;

use common::*;
use memspy::cpython::gc::checks;
use memspy::error::Error;
use memspy::pause::MAX_INCONSISTENT_RETRIES;

#[test]
fn a_heap_inconsistent_after_the_retries_names_the_failed_check() {
    let d = discover_interpreters();
    if d.interpreters.is_empty() {
        return skip_or_fail(NO_INTERPRETER);
    }
    for interp in &d.interpreters {
        let what = interp.label();
        let (mut fixture, truth) = start_settled(interp, "broken_list.py", &[]).expect("fixture");
        let pid = fixture.pid.to_string();
        let out = run_memspy(["top", &pid, "--once"]).expect("run memspy");
        assert!(!out.timed_out, "{what}: memspy hung");
        let line = assert_one_line_error(out.status, &out.stderr, &what);
        let e = Error::StillInconsistent {
            pid: fixture.pid as i32,
            pauses: MAX_INCONSISTENT_RETRIES + 1,
            check: checks::BACK_LINK.into(),
            detail: ANY.into(),
        };
        assert!(shows_error(&line, &e), "{what}: {line}");
        eprintln!("{what}: {line}");
        // The detail is what the check saw: the victim's link (forward) or the GC head it now points at
        // (backward, from the other end of the list).
        let addr = |k: &str| format!("{:#x}", truth[k].as_u64().expect("address in the truth"));
        assert!(line.contains(&addr("victim")) || line.contains(&addr("other")), "{what}: {line}; truth {truth}");
        assert!(fixture.exited().is_none(), "{what}: the target exited: {}", fixture.stderr_text());
        assert_ne!(fixture.proc_state(), Some('t'), "{what}: the target was left stopped");
    }
}
