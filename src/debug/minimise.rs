//! Smaller images of the same heap, for the fuzz corpus.

use std::time::Duration;

use super::{coalesce, walk_memory, Image, Recorder};
use crate::cpython::types::Types;
use crate::discovery::{self, Interpreter};
use crate::error::{Error, Result};
use crate::memory::{FakeMemory, ReadExt};
use crate::pause;

/// Allocated blocks a page of a free-threaded heap keeps in a minimised image.
const BLOCKS_PER_PAGE: usize = 16;

impl Image {
    /// A smaller image of the same heap, for the fuzz corpus: each GC list keeps at most `keep` objects
    /// whose type's name contains one of `prefer` (in list order) and `others` other objects, relinked into
    /// a consistent list (flag bits kept), and only what a walk of that reads is kept.
    ///
    /// A free-threaded build's heap has no GC lists: each page queue of its GC heaps keeps its first
    /// `others` pages (the heap's page count set to match).
    pub fn minimise(&self, prefer: &[&str], keep: usize, others: usize) -> Result<Image> {
        let interp = self.interpreter()?;
        let l = &interp.layout;
        let mut mem = self.mem.clone();
        if l.mimalloc.is_some() {
            self.cut_heaps(&interp, &mut mem, others.max(1))?;
        } else {
            self.cut_lists(&interp, &mut mem, prefer, keep, others)?;
        }
        let rec = Recorder { inner: mem, reads: Default::default() };
        if self.debug_offsets {
            discovery::runtime_debug_offsets(&rec, 0, self.runtime)?;
        }
        walk_memory(&rec, &interp, true, Duration::from_secs(600))?;
        Ok(Image { mem: coalesce(rec.reads.into_inner()), ..self.clone() })
    }

    /// Each page queue of each thread's GC heaps cut after `pages` pages.
    fn cut_heaps(&self, interp: &Interpreter, mem: &mut FakeMemory, pages: usize) -> Result<()> {
        use crate::cpython::mimalloc as mi;
        let l = &interp.layout;
        let m = l.mimalloc.ok_or_else(|| Error::Other("not a free-threaded layout".into()))?;
        for it in pause::read_interps(&self.mem, interp)? {
            for ts in mi::thread_states(&self.mem, l, it.addr)? {
                let Some(heaps) = mi::thread_heaps(&self.mem, l, ts)? else { continue };
                for (tag, _) in m.gc_heaps {
                    let Some(&heap) = heaps.get(tag as usize) else { continue };
                    let mut kept = 0u64;
                    for q in 0..m.heap.queues {
                        let mut p = self.mem.u64_at(heap + m.heap.pages + q * m.heap.queue_size, "queue")?;
                        for n in 1..=pages {
                            if p == 0 {
                                break;
                            }
                            kept += 1;
                            self.cut_page(l, mem, p, BLOCKS_PER_PAGE)?;
                            let next = self.mem.u64_at(p + m.page.next, "mi_page_t.next")?;
                            if n == pages {
                                mem.put_u64(p + m.page.next, 0);
                            }
                            p = next;
                        }
                    }
                    mem.put_u64(heap + m.heap.page_count, kept);
                }
            }
        }
        Ok(())
    }

    /// A page of a free-threaded heap cut after its first `keep` allocated blocks: its capacity ends
    /// there, the blocks before that which are not allocated make its one free list (the local and
    /// thread-free lists emptied), and `used` counts the rest, as mimalloc keeps it.
    fn cut_page(&self, l: &python_bindings::Layout, mem: &mut FakeMemory, p: u64, keep: usize) -> Result<()> {
        use crate::cpython::mimalloc as mi;
        let m = l.mimalloc.ok_or_else(|| Error::Other("not a free-threaded layout".into()))?;
        let page = mi::page_info(&self.mem, l, p)?;
        let live = mi::live_blocks(&self.mem, &page, &Default::default(), false, &mut Default::default())?;
        if live.len() <= keep {
            return Ok(());
        }
        let n = (live[keep - 1] - page.start) / page.bsize + 1;
        let free: Vec<u64> =
            (0..n).map(|i| page.start + i * page.bsize).filter(|b| live.binary_search(b).is_err()).collect();
        for (i, &b) in free.iter().enumerate() {
            mem.put_u64(b, free.get(i + 1).copied().unwrap_or(0));
        }
        mem.put_u64(p + m.page.free, free.first().copied().unwrap_or(0));
        mem.put_u64(p + m.page.local_free, 0);
        mem.put_u64(p + m.page.xthread_free, 0);
        mem.write(p + m.page.capacity, &(n as u16).to_le_bytes());
        mem.write(p + m.page.used, &((n - free.len() as u64) as u32).to_le_bytes());
        Ok(())
    }

    /// Each GC list relinked through at most `keep` objects whose type's name contains one of `prefer`
    /// and `others` other objects.
    fn cut_lists(
        &self,
        interp: &Interpreter,
        mem: &mut FakeMemory,
        prefer: &[&str],
        keep: usize,
        others: usize,
    ) -> Result<()> {
        let l = &interp.layout;
        let mut types = Types::new(l);
        for it in pause::read_interps(&self.mem, interp)? {
            for head in it.gc.heads {
                let mut objs = Vec::new();
                crate::cpython::gc::walk_list(&self.mem, head, l.gc_head.size, true, |o| {
                    objs.push(o);
                    Ok(())
                })?;
                let (mut kept, mut other) = (0, 0);
                let mut ring = vec![head];
                for o in objs {
                    let ty = self.mem.u64_at(o + l.object.ob_type, "ob_type")?;
                    let preferred = types.get(&self.mem, ty).is_ok_and(|t| prefer.iter().any(|p| t.name.contains(p)));
                    if preferred && kept < keep {
                        kept += 1;
                    } else if !preferred && other < others {
                        other += 1;
                    } else {
                        continue;
                    }
                    ring.push(o - l.gc_head.size);
                }
                for (i, &node) in ring.iter().enumerate() {
                    let next = ring[(i + 1) % ring.len()];
                    let prev = ring[(i + ring.len() - 1) % ring.len()];
                    // A capture holds only the head's link the walk followed: add the other.
                    for (at, link) in [(node, next), (node + 8, prev)] {
                        match self.mem.u64_at(at, "gc link") {
                            Ok(old) => mem.put_u64(at, link | (old & 3)),
                            Err(_) => mem.add(at, link.to_le_bytes().to_vec()),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
