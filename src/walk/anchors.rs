//! Where paths start ([`Anchor`]s): the roots (runtime, interpreter and thread states, frames), the
//! frame objects of 3.9/3.10, and the modules (their globals too) and types of the heap, named as a
//! person reads them.

use std::collections::HashMap;

use python_bindings::Layout;

use super::graph::{Graph, Root, RootKind};
use super::names::{Anchor, MODULE};
use crate::cpython::lines;
use crate::cpython::objects::read_str;
use crate::cpython::types::Types;
use crate::memory::{Memory, ReadExt};

/// Where paths start: every root, and the modules (their globals too), types and frames of the heap.
pub fn anchors<M: Memory + ?Sized>(mem: &M, l: &Layout, g: &Graph) -> HashMap<u32, Anchor> {
    let mut out = HashMap::new();
    for (i, r) in g.roots.iter().enumerate() {
        let a = match r.kind {
            RootKind::Runtime => Anchor::new("runtime", "runtime state"),
            RootKind::Interpreter => Anchor::new("runtime", "interpreter state"),
            RootKind::Thread { thread_id } => {
                Anchor { thread: Some(thread_id), ..Anchor::new("runtime", "thread state") }
            }
            RootKind::Frame { .. } => frame_anchor(mem, l, r),
        };
        out.insert(g.root_node(i), a);
    }
    for r in &g.frame_objects {
        if let Some(v) = g.node_at(r.addr) {
            out.insert(v, frame_anchor(mem, l, r));
        }
    }
    let mut types = Types::new(l);
    // Per type number: its instances are types or modules (the only objects that anchor).
    let anchoring: Vec<bool> = g.type_infos.iter().map(|t| t.is_metatype || t.name == MODULE).collect();
    for v in 0..g.objects {
        if !anchoring.get(g.types[v as usize] as usize).copied().unwrap_or(false) {
            continue;
        }
        let Some(info) = g.type_of(v) else { continue };
        let a = g.addr(v);
        if info.is_metatype {
            if let Ok(t) = types.get(mem, a) {
                out.insert(v, Anchor::new("type", t.name.clone()));
            }
        } else if info.name == MODULE {
            let Ok(d) = mem.u64_at(a + l.module.md_dict, "md_dict") else { continue };
            let name = crate::cpython::objects::dict_get_str(mem, l, d, "__name__")
                .ok()
                .flatten()
                .and_then(|n| read_str(mem, l, n).ok())
                .unwrap_or_else(|| "?".into());
            let anchor = Anchor::new("module", name);
            if let Some(dv) = g.node_at(d) {
                out.insert(dv, anchor.clone());
            }
            out.insert(v, anchor);
        }
    }
    out
}

fn frame_anchor<M: Memory + ?Sized>(mem: &M, l: &Layout, r: &Root) -> Anchor {
    let RootKind::Frame { thread_id, code, instr, tlbc, .. } = r.kind else { return Anchor::new("frame", "?") };
    if !super::graph::is_code(mem, l, code) {
        return Anchor { thread: Some(thread_id), ..Anchor::new("frame", "(a frame without code: C entry)") };
    }
    let s = |off: u64| mem.u64_at(code + off, "code field").and_then(|p| read_str(mem, l, p)).ok();
    let function = s(l.code.name);
    let file = s(l.code.filename);
    let def_line = mem.u32_at(code + l.code.firstlineno, "co_firstlineno").ok();
    let line = lines::current_line(mem, l, code, instr, tlbc);
    if line.is_none() {
        log::debug!("frame of {function:?} at {:#x}: no line decoded (position {instr:?}, copy {tlbc:?})", r.addr);
    }
    Anchor {
        kind: "frame".into(),
        name: function.clone().unwrap_or_else(|| "?".into()),
        thread: Some(thread_id),
        function,
        file,
        line,
        def_line,
    }
}
