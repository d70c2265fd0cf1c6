//! The roots of the full walk: `_PyRuntime`, every interpreter and thread state (scanned conservatively)
//! and every thread's frames.

use python_bindings::ThreadFrame;

use super::full::FullWalk;
use super::graph::{self, Root, RootKind};
use super::refs;
use crate::cpython::lines;
use crate::discovery::Interpreter;
use crate::error::Result;
use crate::memory::fasthash::AddrSet;
use crate::memory::{Memory, ReadExt, PAGE};
use crate::pause::Interp;

/// Most threads and frames per thread followed.
const MAX_THREADS: usize = 1 << 16;
const MAX_FRAMES: usize = 1 << 20;

impl<M: Memory + ?Sized> FullWalk<'_, M> {
    /// Scans a region (not an object) for object pointers: roots.
    pub fn scan_region(&mut self, addr: u64, len: u64) {
        let mut at = addr;
        let end = addr + len;
        while at < end {
            let n = (end - at).min(64 * 1024);
            match self.mem.bytes_at(at, n as usize, "root region") {
                Ok(b) => refs::conservative(&b, &mut self.scratch),
                Err(_) => {
                    // Partly unmapped (a struct at the end of a mapping): page by page.
                    let mut p = at;
                    while p < at + n {
                        let q = ((p & !(PAGE - 1)) + PAGE).min(at + n);
                        if let Ok(b) = self.mem.bytes_at(p, (q - p) as usize, "root region") {
                            refs::conservative(&b, &mut self.scratch);
                        }
                        p = q;
                    }
                }
            }
            self.flush();
            at += n;
        }
    }

    /// The roots of every interpreter: runtime, interpreter and thread states, and thread frames.
    pub fn scan_roots(&mut self, interp: &Interpreter, interps: &[Interp]) -> Result<()> {
        let l = self.l;
        if let Some(g) = self.graph.as_mut() {
            g.root(RootKind::Runtime, interp.runtime, Vec::new());
        }
        self.scan_region(interp.runtime, l.runtime.size);
        for ip in interps.iter().map(|i| i.addr) {
            if let Some(g) = self.graph.as_mut() {
                g.root(RootKind::Interpreter, ip, Vec::new());
            }
            self.scan_region(ip, l.interp.size);
            if self.graph.is_some() {
                // The fields memspy knows hold objects are exact references (the scan marked them
                // conservative, as every word of the struct).
                for off in [l.interp.modules, l.interp.sysdict, l.interp.builtins] {
                    if let Ok(w) = self.mem.u64_at(ip + off, "interpreter field") {
                        self.scratch.push(w);
                    }
                }
                self.flush();
            }
            let mut ts = self.mem.u64_at(ip + l.interp.threads_head, "threads.head")?;
            let mut seen = AddrSet::default();
            while ts != 0 && seen.len() < MAX_THREADS && seen.insert(ts) {
                let thread_id = self.mem.u64_at(ts + l.tstate.thread_id, "tstate->thread_id").unwrap_or(0);
                if let Some(g) = self.graph.as_mut() {
                    g.root(RootKind::Thread { thread_id }, ts, Vec::new());
                }
                self.scan_region(ts, l.tstate.size);
                let frame = match l.tstate.frame {
                    ThreadFrame::Object(off) => {
                        let f = self.mem.u64_at(ts + off, "tstate->frame").unwrap_or(0);
                        self.scratch.push(f);
                        self.label_frame_objects(f, thread_id);
                        0
                    }
                    ThreadFrame::CFrame { cframe, current } => {
                        let cf = self.mem.u64_at(ts + cframe, "tstate->cframe").unwrap_or(0);
                        if cf == 0 {
                            0
                        } else {
                            self.mem.u64_at(cf + current, "cframe->current_frame").unwrap_or(0)
                        }
                    }
                    ThreadFrame::Direct(off) => self.mem.u64_at(ts + off, "tstate->current_frame").unwrap_or(0),
                };
                self.walk_frames(frame, thread_id);
                ts = self.mem.u64_at(ts + l.tstate.next, "tstate->next").unwrap_or(0);
            }
        }
        Ok(())
    }

    /// 3.9/3.10, recording the graph: the frame objects of a thread's stack, from the innermost along
    /// `f_back`, with their locals.
    fn label_frame_objects(&mut self, mut f: u64, thread_id: u64) {
        let (Some(g), Some(fo)) = (self.graph.as_mut(), self.l.frame_object) else { return };
        let mut depth = 0;
        while f != 0 && f.is_multiple_of(8) && (depth as usize) < MAX_FRAMES {
            let Ok(code) = self.mem.u64_at(f + fo.code, "frame->f_code") else { break };
            let locals = graph::frame_object_locals(self.mem, self.l, f, code);
            let (instr, tlbc) = lines::frame_position(self.mem, self.l, f);
            let kind = RootKind::Frame { thread_id, code, depth, instr, tlbc };
            g.frame_objects.push(Root { kind, addr: f, locals });
            f = self.mem.u64_at(f + fo.back, "frame->f_back").unwrap_or(0);
            depth += 1;
        }
    }

    fn walk_frames(&mut self, mut f: u64, thread_id: u64) {
        let Some(fl) = self.l.iframe else {
            self.flush();
            return;
        };
        let mut n = 0;
        while f != 0 && f.is_multiple_of(8) && n < MAX_FRAMES {
            let mut locals = Vec::new();
            if let Some(g) = self.graph.as_mut() {
                let mut code = refs::untag(self.l, self.mem.u64_at(f + fl.code, "frame->f_code").unwrap_or(0));
                if let Some(o) = fl.c_entry {
                    // A C entry's shim frame (3.12) runs none of its code: a C entry, as on 3.13+.
                    if self.mem.u8_at(f + o.at, "frame->owner").is_ok_and(|v| v == o.cstack) {
                        code = 0;
                    }
                }
                locals = graph::iframe_locals(self.mem, self.l, f, code);
                let (instr, tlbc) = lines::frame_position(self.mem, self.l, f);
                g.root(RootKind::Frame { thread_id, code, depth: n as u32, instr, tlbc }, f, locals.clone());
            }
            let read = match refs::iframe_refs(self.mem, self.l, f, &mut self.scratch) {
                Ok(k) => k,
                Err(e) => {
                    log::debug!("frame at {f:#x}: {e}");
                    self.decode_errors += 1;
                    break;
                }
            };
            // The stack top of the frame that is running is not kept up to date (it lives in the eval
            // loop's registers): its locals beyond it are references all the same.
            self.scratch.extend(locals.iter().filter(|(slot, _)| *slot as u64 >= read).map(|(_, w)| *w));
            self.flush();
            f = self.mem.u64_at(f + fl.previous, "frame->previous").unwrap_or(0);
            n += 1;
        }
    }
}
