//! How much the heap changed under a walk that did not stop the target (`--nonblocking`): the walk keeps
//! a sample of the objects it found (one in 256, chosen by address) with their types, and once it is done
//! each is read again. One that is gone or another object now was counted from a state the target has
//! left; the share of the sample that changed says how approximate the report is.

use python_bindings::{Layout, RefcountScheme};
use serde::{Deserialize, Serialize};

use crate::memory::{le_u64, Memory};

/// One address in 2^SHIFT_OUT is sampled (256): few enough to read again one by one in tens of
/// milliseconds, enough to tell a share of a percent.
const SHIFT_OUT: u32 = 8;

/// Whether the object at `addr` is one of the sample (a hash of its address: the same whatever order
/// or thread finds it).
#[inline]
pub fn sampled(addr: u64) -> bool {
    (addr >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHIFT_OUT) == 0
}

/// Of the objects sampled, how many had changed once the walk was over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub checked: u64,
    pub changed: u64,
}

impl Changed {
    /// The share of the sample that changed, in percent.
    pub fn percent(&self) -> f64 {
        100.0 * self.changed as f64 / self.checked.max(1) as f64
    }
}

/// Whether the first word of a mortal object reads as a free list's link (a pointer written over the
/// refcount when the object was freed): bits 32–47 set, where a count (and 3.14's overflow word) never
/// reaches.
fn freed_link(first: u64) -> bool {
    (first >> 32) & 0xffff != 0
}

/// Reads the objects of `samples` (address, type when found) again in `mem`, the target as it is now.
/// One has changed when its head cannot be read, its type is another, or it was freed: refcount 0, or
/// (builds whose first word is the refcount) an allocator's free-list link over it.
pub fn recheck<M: Memory + ?Sized>(mem: &M, l: &Layout, samples: &mut Vec<(u64, u64)>) -> Changed {
    samples.sort_unstable();
    samples.dedup_by_key(|s| s.0);
    let first_word_is_refcount = !matches!(l.refcount, RefcountScheme::Biased { .. }) && l.object.ob_refcnt == 0;
    let mut head = vec![0u8; l.object.ob_type as usize + 8];
    let mut changed = 0;
    for &(addr, ty) in samples.iter() {
        let same = mem.read(addr, &mut head).is_ok()
            && le_u64(&head, l.object.ob_type) == Some(ty)
            && match l.refcount_of(&head) {
                Some((_, true)) => true,
                Some((rc, false)) => rc > 0 && !(first_word_is_refcount && le_u64(&head, 0).is_some_and(freed_link)),
                None => false,
            };
        changed += !same as u64;
    }
    Changed { checked: samples.len() as u64, changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;

    #[test]
    fn one_in_256_addresses_is_sampled() {
        let n = (0..256_000u64).filter(|&i| sampled(0x7f00_0000_0000 + 16 * i)).count();
        assert!((800..1200).contains(&n), "{n}");
    }

    #[test]
    fn gone_retyped_and_freed_objects_count_as_changed() {
        let l = python_bindings::versions::V3_12;
        let head = |rc: u64, ty: u64| [rc.to_le_bytes(), ty.to_le_bytes()].concat();
        let mut m = FakeMemory::new();
        m.add(0x1000, head(3, 0x9000));
        m.add(0x2000, head(3, 0x9100));
        m.add(0x3000, head(0x7f12_3456_7000, 0x9000));
        m.add(0x4000, head(0, 0x9000));
        let mut samples =
            vec![(0x1000, 0x9000), (0x2000, 0x9000), (0x3000, 0x9000), (0x4000, 0x9000), (0x5000, 0x9000)];
        assert_eq!(recheck(&m, &l, &mut samples), Changed { checked: 5, changed: 4 });
    }
}
