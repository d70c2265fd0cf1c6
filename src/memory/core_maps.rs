//! A core's address-space map, rebuilt from its segments and `NT_FILE` (what `/proc/PID/maps` said of
//! the process): [`rebuild`], for [`super::core_memory::CoreMemory`].

use std::collections::HashMap;
use std::sync::Arc;

use super::core::{FileMapping, Segment};
use super::maps::{MapEntry, Maps, Perms};

/// The address-space map of the process, rebuilt: one entry per segment, named by `NT_FILE` where a
/// file is mapped, and the file mappings without a segment; the brk heap is the first anonymous mapping after the executable's last one that is
/// not right after it (that one is its `.bss`), within brk's randomisation range.
pub(super) fn rebuild(segments: &[Segment], files: &[FileMapping], exe: &str) -> Maps {
    use goblin::elf::program_header::{PF_R, PF_W, PF_X};
    // One shared name per path; the file mappings by start, and the segments (sorted by address, as
    // `CoreFile` keeps them) with the largest end so far, so that each lookup is a binary search (cores
    // map thousands of files).
    let mut by_path: HashMap<&str, Arc<str>> = HashMap::new();
    let names: Vec<Arc<str>> = files
        .iter()
        .map(|f| by_path.entry(f.path.as_str()).or_insert_with(|| Arc::from(f.path.as_str())).clone())
        .collect();
    let mut by_start: Vec<usize> = (0..files.len()).collect();
    by_start.sort_by_key(|&i| files[i].start);
    let file_at = |a: u64| {
        let i = by_start.partition_point(|&j| files[j].start <= a);
        i.checked_sub(1).map(|i| by_start[i]).filter(|&j| a < files[j].end)
    };
    let perms = |flags: u32| {
        let mut p = *b"---p";
        for (at, (f, c)) in [(PF_R, b'r'), (PF_W, b'w'), (PF_X, b'x')].into_iter().enumerate() {
            if flags & f != 0 {
                p[at] = c;
            }
        }
        Perms::new(std::str::from_utf8(&p).unwrap_or("---p"))
    };
    // One entry per segment, in the segments' order (sorted).
    let of_segments = segments.iter().map(|s| {
        let file = file_at(s.vaddr);
        MapEntry {
            start: s.vaddr,
            end: s.end(),
            perms: perms(s.flags),
            offset: file.map(|j| files[j].offset.saturating_add(s.vaddr - files[j].start)).unwrap_or(0),
            inode: file.map(|_| 1).unwrap_or(0),
            path: file.map(|j| names[j].clone()),
        }
    });
    // File mappings the core has no segment for (gcore leaves out read-only ones, code among them):
    // readable, from the file. `reach[i]`: the largest end of segments 0..=i (segments may overlap).
    let reach: Vec<u64> = segments
        .iter()
        .scan(0u64, |r, s| {
            *r = (*r).max(s.end());
            Some(*r)
        })
        .collect();
    // In order of start, each from where the previous ones end: mappings that overlap (only a corrupt
    // core has them) cannot multiply the entries of the gaps they span, which come out sorted.
    let mut unsegmented = Vec::new();
    let mut done = 0u64;
    for &j in &by_start {
        let (f, name) = (&files[j], &names[j]);
        let mut at = f.start.max(done);
        done = done.max(f.end);
        // Segments that start at or before `at`: 0..i.
        let mut i = segments.partition_point(|s| s.vaddr <= at);
        while at < f.end {
            let covered_to = i.checked_sub(1).map_or(0, |j| reach[j]);
            if covered_to > at {
                at = covered_to.min(f.end);
            } else {
                let next = segments.get(i).map_or(u64::MAX, |s| s.vaddr);
                let end = f.end.min(next);
                unsegmented.push(MapEntry {
                    start: at,
                    end,
                    perms: Perms::new("r--p"),
                    offset: f.offset.saturating_add(at - f.start),
                    inode: 1,
                    path: Some(name.clone()),
                });
                at = end;
            }
            while segments.get(i).is_some_and(|s| s.vaddr <= at) {
                i += 1;
            }
        }
    }
    // Both sorted by start, merged (a segment before a file mapping starting at the same address).
    debug_assert!(unsegmented.is_sorted_by_key(|m| m.start));
    let mut entries = Vec::with_capacity(segments.len() + unsegmented.len());
    let mut rest = unsegmented.into_iter().peekable();
    for m in of_segments {
        while let Some(u) = rest.next_if(|u| u.start < m.start) {
            entries.push(u);
        }
        entries.push(m);
    }
    entries.extend(rest);
    // brk's start is randomised within 1 GiB of the executable's end on 64-bit (32 MiB on 32-bit).
    const BRK_RANGE: u64 = 0x4000_0000;
    if let Some(exe_end) = files.iter().filter(|f| f.path == exe).map(|f| f.end).max() {
        let heap = entries.iter().position(|m| {
            m.path.is_none()
                && m.start > exe_end
                && m.start <= exe_end.saturating_add(BRK_RANGE)
                && m.perms.readable_writable()
        });
        if let Some(i) = heap {
            entries[i].path = Some("[heap]".into());
        }
    }
    Maps { entries }
}
