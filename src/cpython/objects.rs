//! Decoding single objects: an object's head, strings, dicts (keys tables, split values, lookups by
//! name). Everything is read explicitly, field by field, with bounds; nothing remote is ever cast into a
//! Rust struct. Types are in [`super::types`], `sys.getsizeof` in [`super::sizeof`].

use python_bindings::{DictLayout, Layout};

use crate::error::{Error, Result};
use crate::memory::{check_ptr, le_u32, le_u64, MAX_USER_ADDR};
use crate::memory::{Memory, ReadExt, PAGE};

/// Longest string memspy decodes for names (type names, module names, `sys.version`).
pub const MAX_NAME: usize = 4096;
/// Most entries memspy reads from one dict while looking up a name.
const MAX_DICT_ENTRIES: u64 = 1 << 20;
/// How many bytes of each object memspy reads up front (every fixed field it needs lies within, with the
/// free-threaded header 16 bytes longer).
pub const HEAD_BYTES: usize = 96;
/// As much of [`HEAD_BYTES`] as the GIL builds' fixed fields need.
const GIL_HEAD_BYTES: usize = 80;

/// Decoded `str` header fields.
#[derive(Clone, Copy, Debug)]
pub struct StrHeader {
    pub length: u64,
    pub kind: u64,
    pub compact: bool,
    pub ascii: bool,
    /// Address of the characters.
    pub data: u64,
}

pub fn str_header(l: &Layout, addr: u64, head: &[u8], mem: &(impl Memory + ?Sized)) -> Result<StrHeader> {
    let u = &l.unicode;
    let length = le_u64(head, u.length).ok_or_else(|| Error::Corrupt("str header".into()))?;
    let state = le_u32(head, u.state).ok_or_else(|| Error::Corrupt("str header".into()))? as u64;
    let kind = (state >> u.kind_bit) & 7;
    let compact = state & (1 << (u.kind_bit + 3)) != 0;
    let ascii = state & (1 << (u.kind_bit + 4)) != 0;
    if !(matches!(kind, 1 | 2 | 4) || (kind == 0 && !compact)) || length > 1 << 40 {
        return Err(Error::Corrupt(format!("str at {addr:#x}: state {state:#x} length {length}")));
    }
    check_ptr(addr, "str")?;
    let data = if compact {
        addr + if ascii { u.ascii_size } else { u.compact_size }
    } else {
        let p = mem.u64_at(addr + u.compact_size, "str data")?;
        if p >= MAX_USER_ADDR {
            return Err(Error::Corrupt(format!("str at {addr:#x}: data pointer {p:#x}")));
        }
        p
    };
    Ok(StrHeader { length, kind, compact, ascii, data })
}

/// Reads a `str` object's text (names: bounded by [`MAX_NAME`] characters).
pub fn read_str<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64) -> Result<String> {
    read_str_prefix(mem, l, addr, MAX_NAME).map(|(s, _)| s)
}

/// Reads at most `max_chars` characters of a `str` object, and its length in characters.
pub fn read_str_prefix<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, max_chars: usize) -> Result<(String, u64)> {
    check_ptr(addr, "str")?;
    let mut head = [0u8; HEAD_BYTES];
    if !read_head(mem, addr, &mut head) {
        return Err(Error::Corrupt(format!("str at {addr:#x} unreadable")));
    }
    let h = str_header(l, addr, &head, mem)?;
    if h.kind == 0 {
        return Err(Error::Corrupt(format!("str at {addr:#x} is not ready")));
    }
    let n = h.length.min(max_chars as u64) as usize;
    let raw = mem.bytes_at(h.data, n * h.kind as usize, "str data")?;
    let text = match h.kind {
        1 => raw.iter().map(|&b| b as char).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| char::from_u32(u16::from_le_bytes([c[0], c[1]]) as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}'))
            .collect(),
    };
    Ok((text, h.length))
}

/// The header of a `PyDictKeysObject`, decoded for any version.
#[derive(Clone, Copy, Debug)]
pub struct DictKeys {
    pub refcnt: u64,
    /// Number of slots (a power of two).
    pub size: u64,
    pub usable: u64,
    pub nentries: u64,
    /// 0 general, 1 unicode, 2 split (3.11+; 3.9/3.10 always report 0).
    pub kind: u8,
    /// Bytes of the index table.
    pub index_bytes: u64,
    /// Where the entries start, and how big each is.
    pub entries: u64,
    pub entry_size: u64,
}

pub fn dict_keys<M: Memory + ?Sized>(mem: &M, l: &Layout, keys: u64) -> Result<DictKeys> {
    check_ptr(keys, "dict keys")?;
    let mut b = [0u8; 40];
    mem.read_into(keys, &mut b, "dict keys header")?;
    let g = |at| le_u64(&b, at).expect("in bounds");
    let k = match l.dict.kind {
        DictLayout::V39 => {
            let size = g(8);
            if !size.is_power_of_two() || size > 1 << 40 {
                return Err(Error::Corrupt(format!("dict keys at {keys:#x}: size {size}")));
            }
            let ix = if size <= 0xff {
                1
            } else if size <= 0xffff {
                2
            } else if size <= 0xffff_ffff {
                4
            } else {
                8
            };
            DictKeys {
                refcnt: g(0),
                size,
                usable: g(24),
                nentries: g(32),
                kind: 0,
                index_bytes: ix * size,
                entries: keys + 40 + ix * size,
                entry_size: 24,
            }
        }
        DictLayout::V311 | DictLayout::V313 => {
            let log2_size = b[8] as u64;
            let log2_index = b[9] as u64;
            let kind = b[10];
            if log2_size > 40 || log2_index > 43 || kind > 2 {
                return Err(Error::Corrupt(format!("dict keys at {keys:#x}: log2 {log2_size} kind {kind}")));
            }
            DictKeys {
                refcnt: g(0),
                size: 1 << log2_size,
                usable: g(16),
                nentries: g(24),
                kind,
                index_bytes: 1 << log2_index,
                entries: keys + 32 + (1 << log2_index),
                entry_size: if kind == 0 { 24 } else { 16 },
            }
        }
    };
    if k.nentries > k.size || k.nentries > MAX_DICT_ENTRIES * 64 || k.usable > k.size {
        return Err(Error::Corrupt(format!("dict keys at {keys:#x}: {} entries in {} slots", k.nentries, k.size)));
    }
    Ok(k)
}

impl DictKeys {
    /// `_PyDict_KeysSize`.
    pub fn alloc_size(&self, l: &Layout) -> u64 {
        let usable = (self.size << 1) / 3;
        match l.dict.kind {
            DictLayout::V39 => 40 + self.index_bytes + usable * 24,
            _ => 32 + self.index_bytes + usable * self.entry_size,
        }
    }

    /// How many value slots a split dict using these keys has.
    pub fn split_values(&self, l: &Layout) -> u64 {
        match l.dict.kind {
            DictLayout::V39 => (self.size << 1) / 3,
            _ => self.nentries + self.usable,
        }
    }
}

/// Address of the value slot `i` of a split dict's values.
pub fn split_value_slot(l: &Layout, values: u64, i: u64) -> u64 {
    match l.dict.kind {
        DictLayout::V39 | DictLayout::V311 => values + 8 * i,
        DictLayout::V313 => values + 8 + 8 * i,
    }
}

/// Visits the (key, value) pairs of the dict at `dict` (values may be 0 for deleted entries of split
/// tables, which are skipped). `f` returns false to stop early.
pub fn dict_for_each<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    dict: u64,
    mut f: impl FnMut(u64, u64) -> Result<bool>,
) -> Result<()> {
    check_ptr(dict, "dict")?;
    let keys_ptr = mem.u64_at(dict + l.dict.keys, "ma_keys")?;
    let values = mem.u64_at(dict + l.dict.values, "ma_values")?;
    if values >= MAX_USER_ADDR {
        return Err(Error::Corrupt(format!("dict at {dict:#x}: ma_values {values:#x}")));
    }
    let keys = dict_keys(mem, l, keys_ptr)?;
    let n = keys.nentries.min(MAX_DICT_ENTRIES);
    if n == 0 {
        return Ok(());
    }
    let entries = mem.bytes_at(keys.entries, (n * keys.entry_size) as usize, "dict entries")?;
    let vals = if values != 0 {
        let cap = keys.split_values(l).max(n).min(MAX_DICT_ENTRIES);
        Some(mem.bytes_at(split_value_slot(l, values, 0), (cap * 8) as usize, "dict split values")?)
    } else {
        None
    };
    for i in 0..n {
        let e = i * keys.entry_size;
        let (key, value) = if keys.entry_size == 24 {
            (le_u64(&entries, e + 8).unwrap_or(0), le_u64(&entries, e + 16).unwrap_or(0))
        } else {
            (le_u64(&entries, e).unwrap_or(0), le_u64(&entries, e + 8).unwrap_or(0))
        };
        let value = match &vals {
            Some(v) => le_u64(v, i * 8).unwrap_or(0),
            None => value,
        };
        if key == 0 || value == 0 {
            continue;
        }
        if !f(key, value)? {
            break;
        }
    }
    Ok(())
}

/// Looks up a str key in a dict by comparing text (no hashing): for small dicts such as a type's.
pub fn dict_get_str<M: Memory + ?Sized>(mem: &M, l: &Layout, dict: u64, name: &str) -> Result<Option<u64>> {
    if dict == 0 {
        return Ok(None);
    }
    let mut found = None;
    dict_for_each(mem, l, dict, |k, v| {
        // Keys of type dicts are str; compare lengths first to avoid decoding most of them.
        let mut head = [0u8; HEAD_BYTES];
        if !read_head(mem, k, &mut head) {
            return Err(Error::Corrupt(format!("dict key at {k:#x} unreadable")));
        }
        if le_u64(&head, l.unicode.length) == Some(name.len() as u64) {
            if let Ok(s) = read_str(mem, l, k) {
                if s == name {
                    found = Some(v);
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })?;
    Ok(found)
}

/// Reads the first [`HEAD_BYTES`] of an object; at the end of a mapping, what is there.
pub fn read_head<M: Memory + ?Sized>(mem: &M, addr: u64, head: &mut [u8; HEAD_BYTES]) -> bool {
    if mem.read(addr, head).is_ok() {
        return true;
    }
    head.fill(0);
    // What the fields of the GIL builds need (heap images captured before the head grew hold that much),
    // then what is left of the page.
    let avail = (PAGE - (addr % PAGE)).min(HEAD_BYTES as u64) as usize;
    [GIL_HEAD_BYTES, avail]
        .into_iter()
        .any(|n| (16..=HEAD_BYTES).contains(&n) && mem.read(addr, &mut head[..n]).is_ok())
}
