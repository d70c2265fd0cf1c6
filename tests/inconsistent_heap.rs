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

/// A free-threaded heap (the walk corpus's 3.14.6t capture) with one page whose lists do not add up, as a
/// thread caught between unlinking a block and counting it leaves it: a paused walk refuses it (and is
/// tried again), a walk without pausing takes it and counts it (`scan.inconsistent_pages`).
#[test]
fn an_inconsistent_mimalloc_page_is_refused_paused_and_counted_otherwise() {
    use memspy::cpython::mimalloc;
    use memspy::memory::ReadExt;
    use std::time::Duration;
    let bytes = std::fs::read(repo_root().join("fuzz/corpus/walk/py3.14.6t.img")).expect("the free-threaded image");
    let mut img = memspy::debug::Image::from_bytes(&bytes).expect("image");
    let interp = img.interpreter().expect("interpreter");
    let l = &interp.layout;
    let m = l.mimalloc.as_ref().expect("a free-threaded layout");
    let (clean, summary) = img.walk(false, Duration::from_secs(10)).expect("clean walk");
    assert_eq!(summary.inconsistent_pages, 0);
    // The first page with blocks in use, of the first thread state's heaps.
    let main = img.mem.u64_at(interp.runtime + l.runtime.interpreters_head, "interpreters").expect("interpreter");
    let ts = mimalloc::thread_states(&img.mem, l, main).expect("thread states")[0];
    let page = mimalloc::thread_heaps(&img.mem, l, ts)
        .expect("heaps")
        .expect("initialised heaps")
        .into_iter()
        .flat_map(|h| mimalloc::heap_pages(&img.mem, l, h, true).unwrap_or_default()) // the GC heaps the image holds
        .find(|&p| mimalloc::page_info(&img.mem, l, p).is_ok_and(|i| i.used > 0))
        .expect("a page in use");
    let used = img.mem.u32_at(page + m.page.used, "used").expect("used");
    img.mem.write(page + m.page.used, &(used + 1).to_le_bytes());
    let Err(e) = img.walk(true, Duration::from_secs(10)) else { panic!("a paused walk should refuse the page") };
    assert!(e.to_string().contains(&format!("page {page:#x}: used {}", used + 1)), "{e}");
    let (hist, summary) = img.walk(false, Duration::from_secs(10)).expect("a walk without pausing");
    assert_eq!(summary.inconsistent_pages, 1);
    assert_eq!(hist.rows().iter().map(|r| r.count).sum::<u64>(), clean.rows().iter().map(|r| r.count).sum::<u64>());
}
