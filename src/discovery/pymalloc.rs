//! Finding pymalloc's state in a process (see [`crate::cpython::pymalloc`] for reading it).
//!
//! 3.9–3.11: static globals of `Objects/obmalloc.c`, found in a `.symtab` ([`super::symbols`]); 3.12:
//! embedded in `PyInterpreterState`; 3.13+: behind the `interp->obmalloc` pointer. Every candidate is
//! validated by the shape of `usedpools` before anything is trusted; when the table offset fails,
//! nearby offsets are scanned (bounded).

use python_bindings::{ObmallocLayout, ObmallocLocation};

use super::{symbols, Interpreter};
use crate::cpython::pymalloc::{read_stats, usedpools_shape, valid_state, Located, Pymalloc, StateAddrs};
use crate::error::{Error, Result};
use crate::memory::{Memory, ReadExt};
use crate::process::Target;

/// How far around the table offset to look for `interp->obmalloc` (bytes, each way).
const SCAN_WINDOW: u64 = 0x400;

/// Finds the allocator state of the main interpreter (`main`, its `PyInterpreterState`).
pub fn locate<M: Memory + ?Sized>(target: &Target, mem: &M, interp: &Interpreter, main: u64) -> Result<Located> {
    let l = &interp.layout;
    let o = &l.obmalloc;
    let unreachable = |detail: String| Error::Other(format!("pymalloc state not reachable: {detail}"));
    match o.location {
        ObmallocLocation::Unused => Err(unreachable("this build allocates with mimalloc".into())),
        ObmallocLocation::StaticSymbols => {
            let names = [
                "usedpools",
                "arenas",
                "maxarenas",
                "narenas_currently_allocated",
                "ntimes_arena_allocated",
                "narenas_highwater",
            ];
            let found = symbols::find(target, &interp.binary, &names).map_err(unreachable)?;
            let a = |n: &str| found.addrs[n];
            if usedpools_shape(mem, o, a("usedpools")).is_none() {
                return Err(unreachable(format!(
                    "usedpools at {:#x} (from {}) does not look like one",
                    a("usedpools"),
                    found.source
                )));
            }
            Ok(Located {
                addrs: StateAddrs::Globals {
                    usedpools: a("usedpools"),
                    arenas: a("arenas"),
                    maxarenas: a("maxarenas"),
                    current: a("narenas_currently_allocated"),
                    total: a("ntimes_arena_allocated"),
                    highwater: a("narenas_highwater"),
                },
                how: format!("static symbols from {}", found.source),
            })
        }
        ObmallocLocation::Embedded { release, debug } => {
            let off = if l.debug_build { debug } else { release };
            let hit = scan(mem, o, main, off, Ok)?;
            hit.map(|(off, at)| Located { addrs: StateAddrs::Struct(at), how: format!("embedded at interp+{off:#x}") })
                .ok_or_else(|| unreachable(format!("no allocator state around interp+{off:#x}")))
        }
        ObmallocLocation::Pointer { release, debug } => {
            let off = if l.debug_build { debug } else { release };
            let hit = scan(mem, o, main, off, |at| mem.u64_at(at, "interp->obmalloc"))?;
            hit.map(|(off, at)| Located {
                addrs: StateAddrs::Struct(at),
                how: format!("interp->obmalloc at +{off:#x}"),
            })
            .ok_or_else(|| unreachable(format!("no interp->obmalloc pointer around interp+{off:#x}")))
        }
    }
}

/// Tries `interp + off` first, then offsets around it (8-byte steps, bounded); `deref` turns the field
/// address into the state address.
fn scan<M: Memory + ?Sized>(
    mem: &M,
    o: &ObmallocLayout,
    interp: u64,
    off: u64,
    deref: impl Fn(u64) -> Result<u64>,
) -> Result<Option<(u64, u64)>> {
    let mut tries = vec![off];
    for d in (8..=SCAN_WINDOW).step_by(8) {
        tries.push(off + d);
        if let Some(x) = off.checked_sub(d) {
            tries.push(x);
        }
    }
    for t in tries {
        let Ok(at) = deref(interp + t) else { continue };
        if valid_state(mem, o, at) {
            if t != off {
                log::info!("allocator state found at interp+{t:#x}, not the table's +{off:#x}");
            }
            return Ok(Some((t, at)));
        }
    }
    Ok(None)
}

/// Locates and reads pymalloc of the main interpreter `main`; never fails for "not there", only says why.
pub fn pymalloc<M: Memory + ?Sized>(target: &Target, mem: &M, interp: &Interpreter, main: u64) -> Result<Pymalloc> {
    let located = match locate(target, mem, interp, main) {
        Ok(x) => x,
        Err(Error::Other(msg)) => return Ok(Pymalloc::Unreachable(msg)),
        Err(e) => return Err(e),
    };
    log::info!("pymalloc state: {}", located.how);
    Ok(match read_stats(mem, &interp.layout, &located)? {
        Some(stats) => Pymalloc::Stats { stats, how: located.how },
        None => Pymalloc::NotInUse(
            "pymalloc is not in use: no arena was ever allocated (the process runs with PYTHONMALLOC=malloc or \
             another allocator)"
                .into(),
        ),
    })
}

/// pymalloc's state in `target`, found once per process and runtime (its place does not change while the
/// process lives); None, with the reason logged, where it cannot be found.
pub fn located(target: &Target, interp: &Interpreter) -> Option<Located> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    /// Per (PID, runtime address, a core file).
    type Found = HashMap<(i32, u64, bool), Option<Located>>;
    static FOUND: OnceLock<Mutex<Found>> = OnceLock::new();
    let key = (target.pid, interp.runtime, target.is_core());
    let found = FOUND.get_or_init(Default::default);
    if let Some(l) = found.lock().ok()?.get(&key) {
        return l.clone();
    }
    let mem = target.memory();
    let main = super::interpreters(&mem, interp).ok()?.last().copied()?;
    let l = match locate(target, &mem, interp, main) {
        Ok(l) => {
            log::debug!("pymalloc state: {}", l.how);
            Some(l)
        }
        Err(e) => {
            log::info!("{e}; objects found by conservative scans are not checked against pymalloc's blocks");
            None
        }
    };
    found.lock().ok()?.insert(key, l.clone());
    l
}
