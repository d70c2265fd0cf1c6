//! Which built-in table serves a build: the GIL table of its version or the free-threaded one, and
//! the GC layout a `_Py_DebugOffsets` size points to. (Kept apart from both table files, which do not
//! import each other's choices.)

use crate::gc::GcLayout;
use crate::layout::Layout;
use crate::version::Version;
use crate::versions::{CLASSIC_GC, GC_315, GENERATIONAL_314_GC, INCREMENTAL_314_GC};

impl Layout {
    /// The built-in table for a version and build (free-threaded or not).
    pub fn builtin_build(version: Version, free_threaded: bool) -> Option<Layout> {
        if free_threaded {
            crate::free_threaded::builtin(version)
        } else {
            Layout::builtin(version)
        }
    }

    /// The GC layout that a `gc.size` value read from `_Py_DebugOffsets` points to, for the versions where
    /// the struct changed inside a patch series (3.14.0–3.14.4 incremental vs 3.14.5+ generational).
    pub fn gc_layout_for_size(&self, gc_size: u64) -> Option<GcLayout> {
        let known: &[GcLayout] = match self.version.minor {
            m if self.mimalloc.is_some() => crate::free_threaded::gc_layouts(m),
            9..=13 => &[CLASSIC_GC],
            14 => &[INCREMENTAL_314_GC, GENERATIONAL_314_GC],
            15 => &[GC_315],
            _ => &[],
        };
        known.iter().find(|g| g.size == gc_size).copied()
    }
}
