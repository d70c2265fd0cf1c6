//! The cyclic GC's state and its generation lists.

use python_bindings::Layout;

use crate::error::{Error, Result};
use crate::memory::MAX_USER_ADDR;
use crate::memory::{Memory, ReadExt};

/// Most objects memspy follows in one GC list before calling it corrupt.
pub const MAX_LIST: u64 = 1 << 31;

/// Where one interpreter's GC lists are, plus the counters read with them.
#[derive(Clone, Copy, Debug)]
pub struct GcState {
    /// Address of `interp->gc`.
    pub addr: u64,
    /// Absolute addresses of the list heads: generations 0, 1, 2 (in `gc.get_objects(i)` order), then
    /// the permanent generation.
    pub heads: [u64; 4],
    pub collecting: bool,
    pub enabled: bool,
}

/// Which list an object was found in.
pub const PERMANENT: usize = 3;
/// Not in any GC list (found by the full-heap walk).
pub const UNTRACKED: usize = usize::MAX;

impl GcState {
    pub fn read<M: Memory + ?Sized>(mem: &M, l: &Layout, interp: u64) -> Result<GcState> {
        crate::memory::check_ptr(interp, "interpreter state")?;
        let addr = interp + l.interp.gc;
        let g = &l.gc;
        let mut gens = g.generations;
        // The Debian 3.13 GC-head patch moves the generations array: trust the generation0 pointer.
        if let Some(ptr_off) = g.generation0_ptr {
            let gen0 = mem.u64_at(addr + ptr_off, "gc.generation0")?;
            if gen0 >= addr && gen0 < addr.saturating_add(g.size) && gen0 != addr + gens[0] {
                let moved = gen0 - addr;
                log::debug!("generation0 at gc+{moved:#x} instead of gc+{:#x}: shifted layout", gens[0]);
                gens = g.generations_from(moved);
            }
        }
        if let Some(vs) = g.visited_space {
            // Incremental collector: gc.get_objects(1) is old[visited_space], (2) the other.
            if mem.u32_at(addr + vs, "gc.visited_space")? & 1 == 1 {
                gens.swap(1, 2);
            }
        }
        let mut collecting = mem.u32_at(addr + g.collecting, "gc.collecting")? != 0;
        if let Some(f) = g.frame {
            collecting |= mem.u64_at(addr + f, "gc.frame")? != 0;
        }
        let enabled = mem.u32_at(addr + g.enabled, "gc.enabled")? != 0;
        Ok(GcState {
            addr,
            heads: [addr + gens[0], addr + gens[1], addr + gens[2], addr + g.permanent],
            collecting,
            enabled,
        })
    }

    /// Checks that each head starts a well-formed circular list (head->next->prev == head).
    pub fn validate<M: Memory + ?Sized>(&self, mem: &M) -> Result<()> {
        for head in self.heads {
            let next = mem.u64_at(head, "gc list head")? & !3;
            let next = crate::memory::check_ptr(next, "gc list head")?;
            let prev_of_next = mem.u64_at(next + 8, "gc list")? & !3;
            if prev_of_next != head {
                return Err(list_check(
                    checks::CIRCULAR,
                    format!("GC list at {head:#x} is not circular ({next:#x}->prev = {prev_of_next:#x})"),
                ));
            }
        }
        Ok(())
    }
}

/// The checks a strict walk of a GC list makes, by name (the `check` of [`Error::ListCheck`]).
pub mod checks {
    /// `head->next->prev == head` for each list head, before a walk.
    pub const CIRCULAR: &str = "each list head starts a circular list (head->next->prev == head)";
    /// Each node's link back is the node before it.
    pub const BACK_LINK: &str = "each object links back to the one before it";
    /// A link is a non-null, aligned user-space address.
    pub const POINTER: &str = "each link is an aligned user-space pointer";
    /// A list returns to its own head (Brent's cycle check).
    pub const CYCLE: &str = "the list returns to its head";
    /// A list does not run into the head of another list.
    pub const OTHER_HEAD: &str = "the list stays off the other lists' heads";
    /// A list holds at most `MAX_LIST` objects.
    pub const LENGTH: &str = "the list holds at most MAX_LIST objects";
    /// The walks from both ends of a list stop where the other stopped.
    pub const MEET: &str = "the walks from both ends of a list meet";
}

fn list_check(check: &'static str, detail: String) -> Error {
    Error::ListCheck { check, detail }
}

/// How a list walk ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListEnd {
    pub objects: u64,
    /// The list broke off (only tolerated in `--nonblocking` mode).
    pub broken: bool,
}

/// Walks one GC list, calling `visit` with each object's address (the `PyGC_Head` + 16). With `strict`,
/// an inconsistent link is an error; otherwise the walk stops there and reports `broken`.
pub fn walk_list<M: Memory + ?Sized>(
    mem: &M,
    head: u64,
    head_size: u64,
    strict: bool,
    visit: impl FnMut(u64) -> Result<()>,
) -> Result<ListEnd> {
    walk_list_until(mem, head, head_size, strict, &[], visit)
}

/// [`walk_list`], also stopping (as a broken list) at any of `other_heads`: the heads of the other GC
/// lists. In a target that runs while it is read, objects can move to another list between two reads,
/// and the walk would then go round that other list forever. A cycle that never returns to `head`
/// (corrupt memory, or a list spliced away mid-walk) is found by Brent's algorithm in O(1) memory.
pub fn walk_list_until<M: Memory + ?Sized>(
    mem: &M,
    head: u64,
    head_size: u64,
    strict: bool,
    other_heads: &[u64],
    mut visit: impl FnMut(u64) -> Result<()>,
) -> Result<ListEnd> {
    let mut end = ListEnd::default();
    let mut prev = head;
    let mut node = mem.u64_at(head, "gc list head")? & !3;
    // Brent: `mark` is a node seen at step `power`; meeting it again means a cycle without `head`.
    let mut mark = head;
    let mut power = 1u64;
    let mut steps = 0u64;
    let broken = |end: &mut ListEnd, check: &'static str, why: String| -> Result<()> {
        if strict {
            return Err(list_check(check, format!("GC list at {head:#x}: {why}")));
        }
        log::debug!("GC list at {head:#x} broke off: {why}");
        end.broken = true;
        Ok(())
    };
    while node != head {
        if end.objects >= MAX_LIST {
            return Err(list_check(checks::LENGTH, format!("GC list at {head:#x} has more than {MAX_LIST} objects")));
        }
        if node == mark {
            broken(&mut end, checks::CYCLE, format!("cycle through {node:#x} that does not return to the head"))?;
            break;
        }
        if other_heads.contains(&node) {
            broken(&mut end, checks::OTHER_HEAD, format!("ran into another list's head {node:#x}"))?;
            break;
        }
        steps += 1;
        if steps == power {
            mark = node;
            power = power.saturating_mul(2);
            steps = 0;
        }
        if node >= MAX_USER_ADDR {
            broken(&mut end, checks::POINTER, format!("wild pointer {node:#x}"))?;
            break;
        }
        let mut links = [0u8; 16];
        match mem.read_into(node, &mut links, "PyGC_Head") {
            Ok(()) => {}
            Err(e) if !strict => {
                log::debug!("GC list at {head:#x} broke off: {e}");
                end.broken = true;
                break;
            }
            Err(e) => return Err(e),
        };
        let next = u64::from_le_bytes(links[0..8].try_into().expect("8")) & !3;
        let back = u64::from_le_bytes(links[8..16].try_into().expect("8")) & !3;
        if back != prev || node % 8 != 0 || next == 0 || next >= MAX_USER_ADDR {
            if strict {
                return Err(if back != prev {
                    list_check(
                        checks::BACK_LINK,
                        format!("GC list at {head:#x}: object {node:#x} links back to {back:#x}, expected {prev:#x}"),
                    )
                } else {
                    list_check(checks::POINTER, format!("GC list at {head:#x}: object {node:#x} links to {next:#x}"))
                });
            }
            end.broken = true;
            break;
        }
        visit(node + head_size)?;
        end.objects += 1;
        prev = node;
        node = next;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;

    fn ring(f: &mut FakeMemory, head: u64, nodes: &[u64]) {
        let all: Vec<u64> = std::iter::once(head).chain(nodes.iter().copied()).collect();
        for (i, n) in all.iter().enumerate() {
            let next = all[(i + 1) % all.len()];
            let prev = all[(i + all.len() - 1) % all.len()];
            f.put_u64(*n, next | if i % 2 == 0 { 1 } else { 0 });
            f.put_u64(*n + 8, prev | 2);
        }
    }

    #[test]
    fn walks_and_masks_flag_bits() {
        let mut f = FakeMemory::new();
        f.add(0x1000, vec![0; 0x1000]);
        ring(&mut f, 0x1000, &[0x1100, 0x1200, 0x1300]);
        let mut seen = vec![];
        let end = walk_list(&f, 0x1000, 16, true, |o| {
            seen.push(o);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![0x1110, 0x1210, 0x1310]);
        assert_eq!(end, ListEnd { objects: 3, broken: false });
    }

    #[test]
    fn broken_links_are_detected() {
        let mut f = FakeMemory::new();
        f.add(0x1000, vec![0; 0x1000]);
        ring(&mut f, 0x1000, &[0x1100, 0x1200, 0x1300]);
        f.put_u64(0x1200 + 8, 0x1500);
        assert!(walk_list(&f, 0x1000, 16, true, |_| Ok(())).is_err());
        let end = walk_list(&f, 0x1000, 16, false, |_| Ok(())).unwrap();
        assert_eq!(end, ListEnd { objects: 1, broken: true });
        // A cycle that never returns to the head is cut by the back-link check too.
        let mut f = FakeMemory::new();
        f.add(0x1000, vec![0; 0x1000]);
        ring(&mut f, 0x1000, &[0x1100, 0x1200]);
        f.put_u64(0x1200, 0x1100);
        assert!(walk_list(&f, 0x1000, 16, true, |_| Ok(())).is_err());
    }
}
