//! The line a frame is executing, as `frame.f_lineno` gives it: the frame's position in its code
//! object's bytecode (read while the target is stopped, [`frame_position`]), looked up in the code
//! object's line table ([`current_line`]). The three table formats (`python_bindings::LineTable`) are
//! decoded by [`line_at`] with explicit byte reads and bounded loops; anything malformed gives None.

use python_bindings::{Layout, LineTable};

use crate::memory::{Memory, ReadExt};

/// Most bytes of a line table read (CPython's tables take a few bytes per line).
pub const MAX_TABLE: u64 = 1 << 20;
/// Most code units of bytecode a code object is believed to have.
const MAX_CODE_UNITS: u64 = 1 << 24;
/// Most entries of a free-threaded code object's bytecode copies (`co_tlbc`) believed.
const MAX_TLBC: u64 = 1 << 16;
/// Bytes per `_Py_CODEUNIT`.
const CODE_UNIT: u64 = 2;

/// Where a frame is in its code, read at `frame` (a frame object on 3.9/3.10, else a
/// `_PyInterpreterFrame`): `f_lasti` sign-extended, or the instruction pointer; and on free-threaded
/// 3.14t+ which copy of the bytecode it runs (`tlbc_index`). None where it could not be read.
pub fn frame_position<M: Memory + ?Sized>(mem: &M, l: &Layout, frame: u64) -> (Option<u64>, Option<u32>) {
    if let Some(fo) = l.frame_object {
        let lasti = mem.u32_at(frame + fo.lasti, "frame->f_lasti").ok();
        return (lasti.map(|v| v as i32 as i64 as u64), None);
    }
    let Some(fl) = l.iframe else { return (None, None) };
    let instr = mem.u64_at(frame + fl.instr, "frame->instr_ptr").ok().filter(|p| *p != 0);
    let tlbc = fl.tlbc_index.and_then(|at| mem.u32_at(frame + at, "frame->tlbc_index").ok());
    (instr, tlbc.filter(|i| (*i as i32) >= 0))
}

/// The line the frame runs, given its code object and [`frame_position`]: None when the frame's
/// position, the bytecode or the line table could not be read or decoded (or the table gives the
/// instruction no line). Before the first instruction it is `co_firstlineno`, as CPython says.
pub fn current_line<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    code: u64,
    instr: Option<u64>,
    tlbc: Option<u32>,
) -> Option<u32> {
    let first = mem.u32_at(code + l.code.firstlineno, "co_firstlineno").ok()? as i32;
    let instr = instr?;
    let offset = match l.code.code_adaptive {
        // f_lasti: an offset already, in units of `lasti_unit` bytes.
        None => (instr as i64).checked_mul(l.frame_object?.lasti_unit as i64)?,
        Some(at) => {
            let units = mem.u64_at(code + l.object.ob_size, "code ob_size").ok()?;
            if units == 0 || units > MAX_CODE_UNITS {
                return None;
            }
            let len = units * CODE_UNIT;
            match offset_in(instr, code + at, len) {
                Some(o) => o,
                None => {
                    let copy = thread_copy(mem, l, code, tlbc?)?;
                    log::trace!("a frame of code {code:#x} runs its thread's bytecode copy {tlbc:?} at {copy:#x}");
                    offset_in(instr, copy, len)?
                }
            }
        }
    };
    if offset < 0 {
        return u32::try_from(first).ok();
    }
    let table = bytes_object(mem, l, code + l.code.linetable)?;
    line_at(l.code.line_table, &table, first, offset as u64).and_then(|n| u32::try_from(n).ok())
}

/// The offset in bytes of `instr` in the bytecode at `start` (`len` bytes), or None outside it. One code
/// unit before the start is the position of a frame that has run nothing yet (3.11/3.12 `prev_instr`).
fn offset_in(instr: u64, start: u64, len: u64) -> Option<i64> {
    let end = start.checked_add(len)?;
    (instr.checked_add(CODE_UNIT)? >= start && instr < end).then(|| instr.wrapping_sub(start) as i64)
}

/// Free-threaded 3.14t+: where copy `index` of the code object's bytecode is (`co_tlbc->entries[index]`).
fn thread_copy<M: Memory + ?Sized>(mem: &M, l: &Layout, code: u64, index: u32) -> Option<u64> {
    let array = mem.u64_at(code + l.code.tlbc?, "co_tlbc").ok().filter(|a| *a != 0)?;
    let size = mem.u64_at(array, "co_tlbc->size").ok()?;
    if index as u64 >= size.min(MAX_TLBC) {
        return None;
    }
    mem.u64_at(array + 8 + 8 * index as u64, "co_tlbc->entries").ok().filter(|e| *e != 0)
}

/// The contents of the bytes object pointed to at `at` (checked to be a `bytes`, bounded).
fn bytes_object<M: Memory + ?Sized>(mem: &M, l: &Layout, at: u64) -> Option<Vec<u8>> {
    let b = mem.u64_at(at, "co_linetable").ok().filter(|b| *b != 0)?;
    let name = mem
        .u64_at(b + l.object.ob_type, "line table type")
        .and_then(|t| mem.u64_at(t + l.type_.tp_name, "tp_name"))
        .and_then(|n| mem.cstr_at(n, 16, "tp_name"))
        .ok()?;
    if name != "bytes" {
        return None;
    }
    let len = mem.u64_at(b + l.object.ob_size, "line table size").ok()?;
    if len > MAX_TABLE {
        return None;
    }
    mem.bytes_at(b + l.scalars.bytes_sval, len as usize, "line table").ok()
}

/// The line of the instruction at byte offset `addr` of a code object whose first line is `first`,
/// from its line table in `format`. None: the table gives no line there, or it is malformed.
pub fn line_at(format: LineTable, table: &[u8], first: i32, addr: u64) -> Option<i32> {
    let line = match format {
        LineTable::Lnotab => lnotab(table, first as i64, addr),
        LineTable::Pep626 => pep626(table, first as i64, addr),
        LineTable::Locations => locations(table, first as i64, addr),
    }?;
    i32::try_from(line).ok()
}

/// 3.9: pairs (offset increment, line increment); the line of the last pair whose offset is at most
/// `addr` (`PyCode_Addr2Line`).
fn lnotab(t: &[u8], mut line: i64, addr: u64) -> Option<i64> {
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let mut at = 0u64;
    for pair in t.chunks_exact(2) {
        at += pair[0] as u64;
        if at > addr {
            break;
        }
        line += pair[1] as i8 as i64;
    }
    Some(line)
}

/// 3.10: pairs (range length in bytes, line delta; -128: the range has no line), ranges back to back
/// from offset 0.
fn pep626(t: &[u8], mut line: i64, addr: u64) -> Option<i64> {
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let mut end = 0u64;
    for pair in t.chunks_exact(2) {
        let start = end;
        end += pair[0] as u64;
        let delta = pair[1] as i8;
        let this = (delta != -128).then(|| {
            line += delta as i64;
            line
        });
        if (start..end).contains(&addr) {
            return this;
        }
    }
    None
}

/// 3.11+: the location table. Each entry starts with a byte with bit 7 set: bits 3–6 a code, bits 0–2
/// the entry's length in code units less one; the line delta depends on the code (15: no line, 14 and
/// 13: a signed varint after the header, 10–12: code − 10, else 0); column bytes follow.
fn locations(t: &[u8], mut line: i64, addr: u64) -> Option<i64> {
    let mut i = 0;
    let mut end = 0u64;
    while i < t.len() {
        let head = t[i];
        if head & 0x80 == 0 {
            return None;
        }
        let code = (head >> 3) & 15;
        let start = end;
        end += ((head & 7) as u64 + 1) * CODE_UNIT;
        line += match code {
            13 | 14 => signed_varint(t, i + 1)?,
            10..=12 => code as i64 - 10,
            _ => 0,
        };
        if (start..end).contains(&addr) {
            return (code != 15).then_some(line);
        }
        i += 1;
        while i < t.len() && t[i] & 0x80 == 0 {
            i += 1;
        }
    }
    None
}

/// A varint of the location table at `i`: 6-bit groups, least significant first, bit 6 set on every
/// group but the last.
fn varint(t: &[u8], mut i: usize) -> Option<u64> {
    let mut b = *t.get(i)?;
    let mut v = (b & 63) as u64;
    let mut shift = 0;
    while b & 64 != 0 {
        i += 1;
        shift += 6;
        if shift > 30 {
            return None;
        }
        b = *t.get(i)?;
        v |= ((b & 63) as u64) << shift;
    }
    Some(v)
}

/// A signed varint: the varint's low bit is the sign of the rest.
fn signed_varint(t: &[u8], i: usize) -> Option<i64> {
    let v = varint(t, i)?;
    let m = (v >> 1) as i64;
    Some(if v & 1 != 0 { -m } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_pairs() {
        // Offsets 0 → line 10, 6 → 11, 50 → 16, 350 → 15 (254 + 46: an increment split in two).
        let t = [0, 0, 6, 1, 44, 5, 254, 0, 46, 0xff];
        let at = |a| line_at(LineTable::Lnotab, &t, 10, a);
        let got: Vec<Option<i32>> = [0, 5, 6, 49, 50, 349, 350, 9999].map(at).to_vec();
        assert_eq!(got, [10, 10, 11, 11, 16, 16, 15, 15].map(Some));
        assert_eq!(line_at(LineTable::Lnotab, &[], 7, 40), Some(7));
        assert_eq!(line_at(LineTable::Lnotab, &[2], 7, 0), None, "an odd length is malformed");
    }

    #[test]
    fn pep626_ranges() {
        // [0,6) line 2, [6,50) 3, [50,304) 8, [304,354) 8 (a length over 254 split in two), [354,364) no
        // line, [364,380) 9, an empty range at line 136, [380,384) 209.
        let t = [6, 1, 44, 1, 254, 5, 50, 0, 10, 0x80, 16, 1, 0, 127, 4, 73];
        let at = |a| line_at(LineTable::Pep626, &t, 1, a);
        let got: Vec<Option<i32>> = [0, 5, 6, 50, 303, 304, 353, 354, 363, 364, 379, 380, 383, 384].map(at).to_vec();
        let want = [2, 2, 3, 8, 8, 8, 8, 0, 0, 9, 9, 209, 209, 0].map(|l| (l != 0).then_some(l));
        assert_eq!(got, want);
        assert_eq!(line_at(LineTable::Pep626, &[6, 1, 44], 1, 0), None, "an odd length is malformed");
    }

    /// A location table entry's header byte: `code`, `units` code units long.
    fn head(code: u8, units: u8) -> u8 {
        0x80 | code << 3 | (units - 1)
    }

    #[test]
    fn location_table_entries() {
        let t = [
            head(13, 1), // no columns, line +0 (varint 0): line 20 for [0,2)
            0,
            head(11, 2), // one line, +1, columns: line 21 for [2,6)
            4,
            9,
            head(3, 8), // short form: same line 21 for [6,22)
            0x21,
            head(14, 1), // long form: +70 (varint 140: 12 | 64, then 2): line 91 for [22,24)
            12 | 64,
            2,
            0,
            1,
            1,
            head(15, 3), // no location: [24,30)
            head(13, 1), // -5 (varint 11): line 86 for [30,32)
            11,
            head(10, 1), // one line, +0
            1,
            2,
        ];
        let at = |a| line_at(LineTable::Locations, &t, 20, a);
        let got: Vec<Option<i32>> = [0, 1, 2, 5, 6, 21, 22, 24, 29, 30, 32, 34].map(at).to_vec();
        let want = [20, 20, 21, 21, 21, 21, 91, 0, 0, 86, 86, 0].map(|l| (l != 0).then_some(l));
        assert_eq!(got, want);
    }

    #[test]
    fn location_tables_malformed() {
        // Starts inside an entry, a varint cut short, a varint too long.
        assert_eq!(line_at(LineTable::Locations, &[0x05, head(13, 1), 0], 1, 0), None);
        assert_eq!(line_at(LineTable::Locations, &[head(13, 1), 64], 1, 0), None);
        assert_eq!(line_at(LineTable::Locations, &[head(14, 1), 64 | 1, 64, 64, 64, 64, 64, 1], 1, 0), None);
        assert_eq!(line_at(LineTable::Locations, &[], 1, 0), None);
        // A line beyond i32 is no line.
        assert_eq!(line_at(LineTable::Lnotab, &[0, 100], i32::MAX, 0), None);
    }

    #[test]
    fn offsets_in_the_bytecode() {
        assert_eq!(offset_in(0x1000, 0x1000, 8), Some(0));
        assert_eq!(offset_in(0x1006, 0x1000, 8), Some(6));
        assert_eq!(offset_in(0x0ffe, 0x1000, 8), Some(-2), "nothing run yet (prev_instr)");
        assert_eq!(offset_in(0x1008, 0x1000, 8), None);
        assert_eq!(offset_in(0x0ffc, 0x1000, 8), None);
        assert_eq!(offset_in(u64::MAX, u64::MAX - 4, 8), None);
    }
}
