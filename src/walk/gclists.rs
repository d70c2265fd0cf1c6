//! The GC lists of every interpreter, walked by one thread: generations 0–2 and the permanent
//! generation, each list validated (circular, back links agree, bounded; see [`crate::cpython::gc`]).

use python_bindings::Layout;

use super::{ObjectRecord, WalkSummary};
use crate::cpython::gc;
use crate::cpython::objects::{read_head, HEAD_BYTES};
use crate::cpython::sizeof::getsizeof;
use crate::cpython::types::{TypeInfo, Types};
use crate::error::Result;
use crate::memory::{le_u64, Memory};
use crate::pause::{Control, Interp};

/// Names the walk of the GC lists in a timeout.
pub const WHAT: &str = "walking the GC lists";

/// Decodes a GC-tracked object of `list` whose head was read into `head`: its record (size as
/// `sys.getsizeof` computes it, the type's basic size when that fails) and its type; None when the type
/// cannot be read.
pub(crate) fn decode_tracked<'t, M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    types: &'t mut Types,
    obj: u64,
    head: &[u8; HEAD_BYTES],
    list: usize,
) -> Option<(ObjectRecord, &'t TypeInfo)> {
    let type_addr = le_u64(head, l.object.ob_type).unwrap_or(0);
    let info = match types.get(mem, type_addr) {
        Ok(i) => i,
        Err(e) => {
            log::debug!("object {obj:#x}: type {type_addr:#x}: {e}");
            return None;
        }
    };
    let (size, exact) = match getsizeof(mem, l, obj, head, info) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("object {obj:#x} ({}): size: {e}", info.name);
            (info.basicsize, false)
        }
    };
    let (refcount, immortal) = l.refcount_of(&head[..]).unwrap_or((0, false));
    Some((ObjectRecord { addr: obj, type_addr, size, size_exact: exact, refcount, immortal, list }, info))
}

/// Walks the GC lists of every interpreter in `interps`. With `strict`, inconsistent lists are an error
/// (the target is stopped, so they mean memspy misread the layout or caught a list mid-update); without,
/// the walk keeps what it could read.
#[allow(clippy::too_many_arguments)]
pub fn walk_gc<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    interps: &[Interp],
    types: &mut Types,
    strict: bool,
    control: &Control,
    summary: &mut WalkSummary,
    mut sink: impl FnMut(&ObjectRecord, &TypeInfo),
) -> Result<()> {
    summary.interpreters = interps.len();
    let mut head = [0u8; HEAD_BYTES];
    let mut n = 0u64;
    // Every list head of every interpreter: a walk that reaches another list's head has left its own.
    let all_heads: Vec<u64> = interps.iter().flat_map(|i| i.gc.heads).collect();
    for state in interps.iter().map(|i| i.gc) {
        summary.collecting |= state.collecting;
        if strict {
            state.validate(mem)?;
        }
        for (list, head_addr) in state.heads.iter().enumerate() {
            let others: Vec<u64> = all_heads.iter().copied().filter(|h| h != head_addr).collect();
            let end = gc::walk_list_until(mem, *head_addr, l.gc_head.size, strict, &others, |obj| {
                n += 1;
                control.reported();
                control.tick(n, WHAT)?;
                if !read_head(mem, obj, &mut head) {
                    summary.unreadable += 1;
                    return Ok(());
                }
                let Some((rec, info)) = decode_tracked(mem, l, types, obj, &head, list) else {
                    summary.unreadable += 1;
                    return Ok(());
                };
                if !rec.size_exact {
                    summary.approximate_sizes += 1;
                }
                sink(&rec, info);
                Ok(())
            })?;
            if end.broken {
                summary.broken_lists += 1;
            }
            if list == gc::PERMANENT {
                summary.permanent += end.objects;
            } else {
                summary.generations[l.gc.reported_generation(list)] += end.objects;
            }
        }
    }
    Ok(())
}
