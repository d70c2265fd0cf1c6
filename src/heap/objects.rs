//! Decoding single objects: type information (qualified names, how to size instances), strings, dicts,
//! and `sys.getsizeof` recomputed from the outside. Everything is read explicitly, field by field, with
//! bounds; nothing remote is ever cast into a Rust struct.

use python_bindings::{flags, DictLayout, Layout, LongLayout};

use crate::error::{Error, Result};
use crate::process::memory::{check_ptr, le_u32, le_u64, MAX_USER_ADDR};
use crate::process::{Memory, ReadExt};

/// Longest string memspy decodes for names (type names, module names, `sys.version`).
pub const MAX_NAME: usize = 4096;
/// Most entries memspy reads from one dict while looking up a name.
const MAX_DICT_ENTRIES: u64 = 1 << 20;
/// Deepest `tp_base` chain followed.
const MAX_BASES: usize = 64;
/// How many bytes of each object memspy reads up front (every fixed field it needs lies within).
pub const HEAD_BYTES: usize = 80;

/// How `sys.getsizeof` sizes instances of a type: the `__sizeof__` the type inherits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeKind {
    /// `object.__sizeof__`: basicsize + itemsize × ob_size.
    Default,
    List,
    Dict,
    Set,
    Int,
    Str,
    ByteArray,
    Type,
    /// 3.9/3.10 frame objects: `f_localsplus[1]` is in the basic size, so one item less.
    Frame,
    /// 3.11+ generators, coroutines and async generators: the embedded frame's slots, per its code.
    Generator,
    /// 3.11+ frame objects: the slots of the frame `f_frame` points to, per its code.
    FrameObject,
    /// `collections.deque`: its blocks.
    Deque,
    /// `collections.OrderedDict`: the dict plus its node array and linked list.
    OrderedDict,
    /// `array.array`: `allocated` items of the descriptor's size.
    Array,
    /// `decimal.Decimal`: the digits, when allocated separately.
    Decimal,
    /// `_io.BufferedReader`/`Writer`/`Random`: the buffer.
    Buffered,
    /// `_io.BytesIO`: its bytes object unless shared.
    BytesIO,
    /// `_struct.Struct`: its format codes.
    Struct,
    /// `code`: 3.9/3.10 cell2arg and opcache; 3.11+ items rounded up to 8; `co_extra` in all.
    Code,
}

/// What memspy knows about one type object.
#[derive(Clone, Debug)]
pub struct TypeInfo {
    pub addr: u64,
    /// `f"{t.__module__}.{t.__qualname__}"`.
    pub name: String,
    pub flags: u64,
    pub basicsize: u64,
    pub itemsize: u64,
    pub kind: SizeKind,
    /// The type (or a base before the one giving `kind`) has its own `__sizeof__` that memspy does not
    /// model: sizes use `kind`'s formula and are approximate.
    pub approx: bool,
    /// Instances are type objects (the type is `type` or a metaclass).
    pub is_metatype: bool,
    /// This is `type` itself.
    pub is_type_type: bool,
}

/// Caches type information while walking one snapshot.
pub struct Types<'l> {
    pub layout: &'l Layout,
    /// Type address → index into `infos`.
    index: super::fasthash::AddrMap<u32>,
    infos: Vec<TypeInfo>,
    /// Direct-mapped front of `index` (type address, index): most lookups need no hashing.
    fast: Box<[(u64, u32)]>,
}

/// Entries of [`Types`]' direct-mapped front table (a power of two).
const FAST_TYPES: usize = 1024;

#[inline]
fn fast_slot(addr: u64) -> usize {
    ((addr >> 4) ^ (addr >> 14)) as usize & (FAST_TYPES - 1)
}

impl<'l> Types<'l> {
    pub fn new(layout: &'l Layout) -> Self {
        Types {
            layout,
            index: Default::default(),
            infos: Vec::new(),
            fast: vec![(0, 0); FAST_TYPES].into_boxed_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.infos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Type information for the type object at `addr`, read once per snapshot.
    #[inline]
    pub fn get<M: Memory + ?Sized>(&mut self, mem: &M, addr: u64) -> Result<&TypeInfo> {
        let f = fast_slot(addr);
        let (a, i) = self.fast[f];
        if a == addr && addr != 0 {
            return Ok(&self.infos[i as usize]);
        }
        let i = match self.index.get(&addr) {
            Some(&i) => i,
            None => {
                let info = self.read(mem, addr)?;
                self.infos.push(info);
                let i = (self.infos.len() - 1) as u32;
                self.index.insert(addr, i);
                i
            }
        };
        self.fast[f] = (addr, i);
        Ok(&self.infos[i as usize])
    }

    fn read<M: Memory + ?Sized>(&mut self, mem: &M, addr: u64) -> Result<TypeInfo> {
        let l = self.layout;
        if addr == 0 || !addr.is_multiple_of(8) || addr >= MAX_USER_ADDR {
            return Err(Error::Corrupt(format!("type pointer {addr:#x} is not aligned")));
        }
        let flags = mem.u64_at(addr + l.tp_flags, "tp_flags")?;
        let basicsize = mem.u64_at(addr + l.tp_basicsize, "tp_basicsize")?;
        let itemsize = mem.u64_at(addr + l.tp_itemsize, "tp_itemsize")?;
        if basicsize == 0 || basicsize > 1 << 24 || itemsize > 1 << 16 {
            return Err(Error::Corrupt(format!(
                "type at {addr:#x}: implausible basicsize {basicsize} / itemsize {itemsize}"
            )));
        }
        let name = type_name(mem, l, addr, flags)?;
        let (kind, approx, is_metatype) = self.size_kind(mem, addr)?;
        let is_type_type = flags & flags::HEAPTYPE == 0 && name == "builtins.type";
        Ok(TypeInfo { addr, name, flags, basicsize, itemsize, kind, approx, is_metatype, is_type_type })
    }

    /// Whether the C type at `t` has the basic size memspy's offsets for `kind` were taken from.
    fn basicsize_is<M: Memory + ?Sized>(&self, mem: &M, t: u64, kind: SizeKind) -> Result<bool> {
        let s = &self.layout.sizeof;
        let want = match kind {
            SizeKind::Deque => s.deque_basicsize,
            SizeKind::OrderedDict => s.odict_basicsize,
            SizeKind::Array => s.array_basicsize,
            SizeKind::Decimal => s.decimal_basicsize,
            SizeKind::Buffered => s.buffered_basicsize,
            SizeKind::BytesIO => s.bytesio_basicsize,
            SizeKind::Struct => s.struct_basicsize,
            // Sized from layout offsets alone.
            _ => return Ok(true),
        };
        Ok(mem.u64_at(t + self.layout.tp_basicsize, "tp_basicsize")? == want)
    }

    /// Walks `tp_base` to find which `__sizeof__` instances get: (formula, approximate, instances are
    /// type objects).
    fn size_kind<M: Memory + ?Sized>(&mut self, mem: &M, addr: u64) -> Result<(SizeKind, bool, bool)> {
        let l = self.layout;
        let mut approx = false;
        let mut t = addr;
        for _ in 0..MAX_BASES {
            if t == 0 {
                break;
            }
            let f = mem.u64_at(t + l.tp_flags, "tp_flags")?;
            if f & flags::HEAPTYPE != 0 {
                if let Some(sizeof) = heap_type_get(mem, l, t, "__sizeof__")? {
                    // Extension types created from a spec (3.10+ array, 3.12+ deque, 3.13+ Decimal, …):
                    // the full name, the C struct's basic size and a C `__sizeof__` must all agree;
                    // a Python class of the same name never gets a C layout this way.
                    // What cannot be read only leaves the size approximate.
                    let recognised = (|| -> Result<Option<SizeKind>> {
                        let name = mem.cstr_at(mem.u64_at(t + l.tp_name, "tp_name")?, MAX_NAME, "tp_name")?;
                        Ok(match modelled_kind(l, &name) {
                            Some(k) if self.basicsize_is(mem, t, k)? && is_method_descriptor(mem, l, sizeof)? => {
                                Some(k)
                            }
                            _ => None,
                        })
                    })();
                    if let Ok(Some(k)) = recognised {
                        return Ok((k, approx, false));
                    }
                    approx = true;
                }
            } else {
                let tp_name_ptr = mem.u64_at(t + l.tp_name, "tp_name")?;
                let name = mem.cstr_at(tp_name_ptr, MAX_NAME, "tp_name")?;
                let known = match name.as_str() {
                    "list" => Some(SizeKind::List),
                    "dict" | "frozendict" => Some(SizeKind::Dict),
                    "set" | "frozenset" => Some(SizeKind::Set),
                    "int" | "bool" => Some(SizeKind::Int),
                    "str" => Some(SizeKind::Str),
                    "bytearray" => Some(SizeKind::ByteArray),
                    "type" => Some(SizeKind::Type),
                    "frame" if l.version.minor <= 10 => Some(SizeKind::Frame),
                    "object" | "tuple" | "bytes" | "float" | "complex" | "function" | "BaseException" => {
                        Some(SizeKind::Default)
                    }
                    _ => None,
                };
                if let Some(k) = modelled_kind(l, &name) {
                    // Static types of the core and of built-in extension modules.
                    if self.basicsize_is(mem, t, k)? {
                        return Ok((k, approx, false));
                    }
                    approx = true;
                }
                // Static types with their own __sizeof__, not modelled: sized by their base's formula.
                let custom = matches!(
                    name.as_str(),
                    "_pickle.Pickler"
                        | "_pickle.Unpickler"
                        | "xml.etree.ElementTree.Element"
                        | "StgDict"
                        | "itertools.product"
                        | "itertools.combinations"
                        | "itertools.combinations_with_replacement"
                        | "itertools.permutations"
                );
                approx |= custom;
                if name == "type" {
                    // Instances of `type` or of any subclass of it are type objects.
                    return Ok((SizeKind::Type, approx, true));
                }
                if let Some(k) = known {
                    return Ok((k, approx, false));
                }
            }
            t = mem.u64_at(t + l.tp_base, "tp_base")?;
            if t >= MAX_USER_ADDR {
                return Err(Error::Corrupt(format!("type at {addr:#x}: implausible tp_base {t:#x}")));
            }
        }
        Ok((SizeKind::Default, approx, false))
    }
}

/// The `__sizeof__` memspy recomputes for a C type of this `tp_name` (static types' names; types
/// created from a spec carry the spec's full name), if any.
fn modelled_kind(l: &Layout, name: &str) -> Option<SizeKind> {
    Some(match name {
        "generator" | "coroutine" | "async_generator" if l.iframe.is_some() => SizeKind::Generator,
        "frame" if l.sizeof.frame_data.is_some() && l.iframe.is_some() => SizeKind::FrameObject,
        "collections.deque" => SizeKind::Deque,
        "collections.OrderedDict" => SizeKind::OrderedDict,
        "array.array" => SizeKind::Array,
        "decimal.Decimal" => SizeKind::Decimal,
        "_io.BufferedReader" | "_io.BufferedWriter" | "_io.BufferedRandom" => SizeKind::Buffered,
        "_io.BytesIO" => SizeKind::BytesIO,
        "_struct.Struct" => SizeKind::Struct,
        "code" => SizeKind::Code,
        _ => return None,
    })
}

/// `f"{t.__module__}.{t.__qualname__}"` for the type object at `addr`.
pub fn type_name<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, flags: u64) -> Result<String> {
    if flags & flags::HEAPTYPE != 0 {
        let qualname_ptr = mem.u64_at(addr + l.ht_qualname, "ht_qualname")?;
        let qualname = read_str(mem, l, qualname_ptr).unwrap_or_else(|_| "?".to_string());
        let dict = mem.u64_at(addr + l.tp_dict, "tp_dict")?;
        let module = match dict_get_str(mem, l, dict, "__module__") {
            Ok(Some(m)) => read_str(mem, l, m).unwrap_or_else(|_| "?".to_string()),
            _ => "?".to_string(),
        };
        Ok(format!("{module}.{qualname}"))
    } else {
        let tp_name_ptr = mem.u64_at(addr + l.tp_name, "tp_name")?;
        let tp_name = mem.cstr_at(tp_name_ptr, MAX_NAME, "tp_name")?;
        Ok(if tp_name.contains('.') { tp_name } else { format!("builtins.{tp_name}") })
    }
}

/// A heap type's own dict entry `name`.
fn heap_type_get<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, name: &str) -> Result<Option<u64>> {
    let dict = mem.u64_at(addr + l.tp_dict, "tp_dict")?;
    dict_get_str(mem, l, dict, name)
}

/// Whether the object at `addr` is a `method_descriptor` (a method implemented in C).
fn is_method_descriptor<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64) -> Result<bool> {
    check_ptr(addr, "method")?;
    let t = mem.u64_at(addr + l.ob_type, "ob_type")?;
    check_ptr(t, "type")?;
    if mem.u64_at(t + l.tp_flags, "tp_flags")? & flags::HEAPTYPE != 0 {
        return Ok(false);
    }
    let name = mem.cstr_at(mem.u64_at(t + l.tp_name, "tp_name")?, MAX_NAME, "tp_name")?;
    Ok(name == "method_descriptor")
}

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
    let kind = (state >> 2) & 7;
    let compact = state & (1 << 5) != 0;
    let ascii = state & (1 << 6) != 0;
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
    check_ptr(addr, "str")?;
    let head = mem.bytes_at(addr, HEAD_BYTES, "str header")?;
    let h = str_header(l, addr, &head, mem)?;
    if h.kind == 0 {
        return Err(Error::Corrupt(format!("str at {addr:#x} is not ready")));
    }
    let n = h.length.min(MAX_NAME as u64) as usize;
    let raw = mem.bytes_at(h.data, n * h.kind as usize, "str data")?;
    Ok(match h.kind {
        1 => raw.iter().map(|&b| b as char).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| char::from_u32(u16::from_le_bytes([c[0], c[1]]) as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}'))
            .collect(),
    })
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
    let k = match l.dict_layout {
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
        match l.dict_layout {
            DictLayout::V39 => 40 + self.index_bytes + usable * 24,
            _ => 32 + self.index_bytes + usable * self.entry_size,
        }
    }

    /// How many value slots a split dict using these keys has.
    pub fn split_values(&self, l: &Layout) -> u64 {
        match l.dict_layout {
            DictLayout::V39 => (self.size << 1) / 3,
            _ => self.nentries + self.usable,
        }
    }
}

/// Address of the value slot `i` of a split dict's values.
pub fn split_value_slot(l: &Layout, values: u64, i: u64) -> u64 {
    match l.dict_layout {
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
    let keys_ptr = mem.u64_at(dict + l.dict_keys, "ma_keys")?;
    let values = mem.u64_at(dict + l.dict_values, "ma_values")?;
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
        let head = mem.bytes_at(k, HEAD_BYTES, "dict key")?;
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

/// `sys.getsizeof(obj)`, recomputed from the object's bytes. `head` holds the first [`HEAD_BYTES`] of the
/// object; `ty` is its type. Returns (size, exact): exact is false where memspy approximates.
pub fn getsizeof<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    addr: u64,
    head: &[u8],
    ty: &TypeInfo,
) -> Result<(u64, bool)> {
    let field = |at: u64| le_u64(head, at).ok_or_else(|| Error::Corrupt("object header".into()));
    let ob_size = || field(l.ob_size).map(|v| v as i64);
    let mut exact = !ty.approx;
    // `object.__sizeof__`. A var-sized type whose size field is not a plausible item count (types that
    // reuse the slot, e.g. generators on 3.11+) gets its basic size and is marked approximate.
    let mut implausible = false;
    let mut default = || -> Result<u64> {
        let mut n = ty.basicsize;
        if ty.itemsize > 0 {
            let items = ob_size()?;
            if (0..1 << 32).contains(&items) {
                n += ty.itemsize * items as u64;
            } else {
                implausible = true;
            }
        }
        Ok(n)
    };
    let sizeof = match ty.kind {
        SizeKind::Default => default()?,
        SizeKind::Frame => default()?.saturating_sub(ty.itemsize).max(ty.basicsize),
        SizeKind::List => ty.basicsize + 8 * field(l.list_allocated)?.min(1 << 40),
        SizeKind::Set => {
            let table = field(l.set_table)?;
            if table != addr + l.set_smalltable {
                ty.basicsize + (field(l.set_mask)?.min(1 << 40) + 1) * 16
            } else {
                ty.basicsize
            }
        }
        SizeKind::Dict => dict_sizeof(mem, l, head, ty)?,
        SizeKind::OrderedDict => {
            let s = &l.sizeof;
            let mut n = dict_sizeof(mem, l, head, ty)?;
            n = n.saturating_add(8 * field(s.odict_fast_nodes_size)?.min(1 << 40));
            if field(s.odict_first)? != 0 {
                n = n.saturating_add(s.odict_node_size * field(l.dict_used)?.min(1 << 40));
            }
            n
        }
        SizeKind::Generator | SizeKind::FrameObject => {
            let f = l.iframe.ok_or_else(|| Error::Corrupt("no frame layout".into()))?;
            let (iframe, base) = if ty.kind == SizeKind::Generator {
                (addr + f.gen_iframe, f.gen_iframe + f.localsplus)
            } else {
                let data = l.sizeof.frame_data.ok_or_else(|| Error::Corrupt("no frame layout".into()))?;
                (mem.u64_at(addr + f.frame_object_frame, "f_frame")?, data + f.localsplus)
            };
            check_ptr(iframe, "frame")?;
            // `f_executable` is a tagged `_PyStackRef` on 3.14+: clear the tag bits.
            let code = mem.u64_at(iframe + f.code, "frame code")? & !7;
            base + 8 * code_frame_slots(mem, l, code)?
        }
        SizeKind::Deque => {
            let s = &l.sizeof;
            let len = ob_size()?;
            let left = field(s.deque_leftindex)? as i64;
            if !(0..1 << 40).contains(&len) || !(0..s.deque_block_len as i64).contains(&left) {
                return Err(Error::Corrupt(format!("deque at {addr:#x}: {len} items from index {left}")));
            }
            let blocks = (left as u64 + len as u64).div_ceil(s.deque_block_len);
            ty.basicsize + blocks * s.deque_block_size
        }
        SizeKind::Array => {
            let s = &l.sizeof;
            let allocated = field(s.array_allocated)?.min(1 << 48);
            let descr = field(s.array_descr)?;
            let itemsize = if allocated == 0 {
                0
            } else {
                check_ptr(descr, "array descriptor")?;
                let b = mem.bytes_at(descr + s.arraydescr_itemsize, 4, "arraydescr.itemsize")?;
                le_u32(&b, 0).unwrap_or(0) as u64
            };
            if itemsize > 16 {
                return Err(Error::Corrupt(format!("array at {addr:#x}: item size {itemsize}")));
            }
            ty.basicsize + allocated * itemsize
        }
        SizeKind::Decimal => {
            let s = &l.sizeof;
            let mpd = mem.bytes_at(addr + s.decimal_mpd, (s.mpd_alloc + 8) as usize, "mpd_t")?;
            let flags = mpd[s.mpd_flags as usize];
            let alloc = le_u64(&mpd, s.mpd_alloc).unwrap_or(0).min(1 << 40);
            ty.basicsize + if flags & s.mpd_dataflags == 0 { 8 * alloc } else { 0 }
        }
        SizeKind::Buffered => {
            let s = &l.sizeof;
            let buffer = mem.u64_at(addr + s.buffered_buffer, "buffered.buffer")?;
            let size = mem.u64_at(addr + s.buffered_buffer_size, "buffered.buffer_size")? as i64;
            ty.basicsize + if buffer != 0 { size.clamp(0, 1 << 40) as u64 } else { 0 }
        }
        SizeKind::BytesIO => {
            let buf = field(l.sizeof.bytesio_buf)?;
            let mut n = ty.basicsize;
            if buf != 0 {
                check_ptr(buf, "BytesIO buffer")?;
                let b = mem.bytes_at(buf, 24, "BytesIO buffer")?;
                let (refs, immortal) = l.decode_refcount(le_u64(&b, l.ob_refcnt).unwrap_or(0));
                if refs <= 1 && !immortal {
                    // `sys.getsizeof` of the bytes object (not a GC type: no pre-header).
                    let bt = le_u64(&b, l.ob_type).unwrap_or(0);
                    check_ptr(bt, "type")?;
                    let basic = mem.u64_at(bt + l.tp_basicsize, "tp_basicsize")?;
                    let items = le_u64(&b, l.ob_size).unwrap_or(0).min(1 << 48);
                    n = n.saturating_add(basic.min(1 << 24) + items);
                }
            }
            n
        }
        SizeKind::Code => code_sizeof(mem, l, addr, ty, default()?)?,
        SizeKind::Struct => {
            let s = &l.sizeof;
            let codes = field(s.struct_codes)?;
            ty.basicsize + s.formatcode_size * (1 + struct_codes(mem, l, codes)?)
        }
        SizeKind::Int => match l.long {
            LongLayout::ObSize => {
                let digits = ob_size()?.unsigned_abs().min(1 << 40);
                if l.version.minor >= 11 {
                    24 + 4 * digits.max(1)
                } else {
                    24 + 4 * digits
                }
            }
            LongLayout::LvTag => ty.basicsize + ty.itemsize * (field(l.ob_size)? >> 3).clamp(1, 1 << 40),
        },
        SizeKind::Str => str_sizeof(mem, l, addr, head)?,
        SizeKind::ByteArray => {
            let alloc = field(l.bytearray_alloc)? as i64;
            ty.basicsize + if alloc > 0 { alloc.min(1 << 48) as u64 + l.sizeof.bytearray_bytes_header } else { 0 }
        }
        SizeKind::Type => {
            let own_flags = mem.u64_at(addr + l.tp_flags, "tp_flags")?;
            if own_flags & flags::HEAPTYPE != 0 {
                let cached = mem.u64_at(addr + l.ht_cached_keys, "ht_cached_keys")?;
                let keys = if cached != 0 { dict_keys(mem, l, cached)?.alloc_size(l) } else { 0 };
                l.heap_type_size.saturating_add(keys)
            } else {
                l.type_size
            }
        }
    };
    if implausible {
        exact = false;
    }
    let own_flags = if ty.is_metatype { mem.u64_at(addr + l.tp_flags, "tp_flags")? } else { 0 };
    let pre = l.getsizeof_preheader(ty.flags, ty.is_metatype, ty.is_type_type, own_flags);
    Ok((sizeof.saturating_add(pre), exact))
}

/// `dict.__sizeof__` (`_PyDict_SizeOf`), with the basic size of the object's own type.
fn dict_sizeof<M: Memory + ?Sized>(mem: &M, l: &Layout, head: &[u8], ty: &TypeInfo) -> Result<u64> {
    let field = |at: u64| le_u64(head, at).ok_or_else(|| Error::Corrupt("object header".into()));
    let keys = dict_keys(mem, l, field(l.dict_keys)?)?;
    let mut n = ty.basicsize;
    if field(l.dict_values)? != 0 {
        n = n.saturating_add(keys.split_values(l).saturating_mul(8));
    }
    if keys.refcnt == 1 {
        n = n.saturating_add(keys.alloc_size(l));
    }
    Ok(n)
}

/// Most slots memspy believes one frame can have (`co_nlocalsplus + co_stacksize`).
const MAX_FRAME_SLOTS: u64 = 1 << 20;

/// `_PyFrame_NumSlotsForCodeObject`: `co_nlocalsplus + co_stacksize` of the code object at `code`.
fn code_frame_slots<M: Memory + ?Sized>(mem: &M, l: &Layout, code: u64) -> Result<u64> {
    let s = &l.sizeof;
    let nlocals_at = s.code_nlocalsplus.ok_or_else(|| Error::Corrupt("no code layout".into()))?;
    check_ptr(code, "code")?;
    let lo = s.code_stacksize.min(nlocals_at);
    let b = mem.bytes_at(code + lo, (s.code_stacksize.max(nlocals_at) - lo + 4) as usize, "code sizes")?;
    let int_at = |at: u64| le_u32(&b, at - lo).map(|v| v as i32 as i64).unwrap_or(-1);
    let (stack, nlocals) = (int_at(s.code_stacksize), int_at(nlocals_at));
    let slots = stack + nlocals;
    if stack < 0 || nlocals < 0 || slots as u64 > MAX_FRAME_SLOTS {
        return Err(Error::Corrupt(format!("code at {code:#x}: {nlocals} locals, stack {stack}")));
    }
    Ok(slots as u64)
}

/// How many format codes a `_struct.Struct` has (its `s_codes` array up to the NULL `fmtdef`).
fn struct_codes<M: Memory + ?Sized>(mem: &M, l: &Layout, codes: u64) -> Result<u64> {
    const BATCH: u64 = 64;
    const MAX_CODES: u64 = 1 << 20;
    let size = l.sizeof.formatcode_size;
    check_ptr(codes, "struct codes")?;
    let mut n = 0;
    while n < MAX_CODES {
        // The array may end anywhere: read a batch, or what remains readable one entry at a time.
        let b = match mem.bytes_at(codes + n * size, (BATCH * size) as usize, "struct codes") {
            Ok(b) => b,
            Err(_) => mem.bytes_at(codes + n * size, 8, "struct codes")?,
        };
        for i in 0..(b.len() as u64).div_ceil(size) {
            if le_u64(&b, i * size).unwrap_or(0) == 0 {
                return Ok(n + i);
            }
        }
        n += (b.len() as u64).div_ceil(size);
    }
    Err(Error::Corrupt(format!("struct codes at {codes:#x}: no end")))
}

/// `str.__sizeof__`.
fn str_sizeof<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, head: &[u8]) -> Result<u64> {
    let u = &l.unicode;
    let h = str_header(l, addr, head, mem)?;
    let mut size = if h.compact && h.ascii {
        u.ascii_size + h.length + 1
    } else if h.compact {
        u.compact_size + (h.length + 1) * h.kind
    } else {
        let data = le_u64(head, u.compact_size).unwrap_or(0);
        u.compact_size + 8 + if data != 0 { (h.length + 1) * h.kind } else { 0 }
    };
    if !(h.compact && h.ascii) {
        let utf8 = le_u64(head, u.utf8).unwrap_or(0);
        if utf8 != 0 && utf8 != h.data {
            size = size.saturating_add(le_u64(head, u.utf8_length).unwrap_or(0).saturating_add(1));
        }
    }
    if let (Some(wstr_at), Some(wlen_at)) = (u.wstr, u.wstr_length) {
        let wstr = le_u64(head, wstr_at).unwrap_or(0);
        let ready = le_u32(head, u.state).unwrap_or(0) & (1 << 7) != 0;
        if wstr != 0 && (!ready || wstr != h.data) {
            let wlen = if h.compact && h.ascii { h.length } else { le_u64(head, wlen_at).unwrap_or(0) };
            size = size.saturating_add(wlen.saturating_add(1).saturating_mul(4));
        }
    }
    Ok(size)
}

/// `code.__sizeof__`; `default` is basicsize + itemsize × ob_size.
fn code_sizeof<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, ty: &TypeInfo, default: u64) -> Result<u64> {
    let s = &l.sizeof;
    let mut size = match &s.code_v39 {
        // 3.11+: `_PyObject_VAR_SIZE`, rounded up to a pointer.
        None => default.div_ceil(8) * 8,
        Some(c) => {
            let mut n = ty.basicsize;
            let cellvars = mem.u64_at(addr + c.cellvars, "co_cellvars")?;
            if mem.u64_at(addr + c.cell2arg, "co_cell2arg")? != 0 && cellvars != 0 {
                n += 8 * mem.u64_at(cellvars + l.ob_size, "len(co_cellvars)")?.min(1 << 20);
            }
            if mem.u64_at(addr + c.opcache, "co_opcache")? != 0 {
                let code = mem.u64_at(addr + c.code, "co_code")?;
                n += mem.u64_at(code + l.ob_size, "len(co_code)")?.min(1 << 32) / 2;
                n += c.opcache_entry * mem.u8_at(addr + c.opcache_size, "co_opcache_size")? as u64;
            }
            n
        }
    };
    let extra = mem.u64_at(addr + s.code_extra, "co_extra")?;
    if extra != 0 {
        let n = mem.u64_at(extra, "co_extra.ce_size")?.min(1 << 16);
        size += 16 + n.saturating_sub(1) * 8;
    }
    Ok(size)
}
