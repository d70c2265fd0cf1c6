//! Type objects: what memspy knows of a type (its qualified name as Python spells it, sizes, flags, how
//! `sys.getsizeof` sizes its instances), cached per walk.

use python_bindings::extensions::{numpy_scalar_itemsize, NUMPY_2};
use python_bindings::{flags, Layout};
use serde::{Deserialize, Serialize};

use super::objects::{dict_get_str, read_str, MAX_NAME};
use crate::error::{Error, Result};
use crate::memory::{check_ptr, MAX_USER_ADDR};
use crate::memory::{Memory, ReadExt};

/// Deepest `tp_base` chain followed.
const MAX_BASES: usize = 64;

/// How `sys.getsizeof` sizes instances of a type: the `__sizeof__` the type inherits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `numpy.ndarray` (numpy 2): its dimensions and strides, and the data it owns.
    NdArray,
    /// numpy's numeric scalars: the basic size plus the item size (given).
    NumpyScalar(u64),
}

/// What memspy knows about one type object.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

#[cfg(test)]
impl TypeInfo {
    /// A plain type named `name` at `addr` (no flags, fixed size `basicsize`): for tests' graphs.
    pub fn plain(addr: u64, name: &str, basicsize: u64) -> TypeInfo {
        TypeInfo {
            addr,
            name: name.into(),
            flags: 0,
            basicsize,
            itemsize: 0,
            kind: SizeKind::Default,
            approx: false,
            is_metatype: false,
            is_type_type: false,
        }
    }
}

/// Caches type information while walking one snapshot.
pub struct Types<'l> {
    pub layout: &'l Layout,
    /// Type address → index into `infos`.
    index: crate::memory::fasthash::AddrMap<u32>,
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
        let flags = mem.u64_at(addr + l.type_.tp_flags, "tp_flags")?;
        let basicsize = mem.u64_at(addr + l.type_.tp_basicsize, "tp_basicsize")?;
        let itemsize = mem.u64_at(addr + l.type_.tp_itemsize, "tp_itemsize")?;
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
            SizeKind::Deque => s.deque.basicsize,
            SizeKind::OrderedDict => s.odict.basicsize,
            SizeKind::Array => s.array.basicsize,
            SizeKind::Decimal => s.decimal.basicsize,
            SizeKind::Buffered => s.buffered.basicsize,
            SizeKind::BytesIO => s.bytesio.basicsize,
            SizeKind::Struct => s.struct_.basicsize,
            SizeKind::NdArray => NUMPY_2.array_basicsize,
            // Sized from layout offsets alone.
            _ => return Ok(true),
        };
        Ok(mem.u64_at(t + self.layout.type_.tp_basicsize, "tp_basicsize")? == want)
    }

    /// Walks `tp_base` to find which `__sizeof__` instances get: (formula, approximate, instances are
    /// type objects).
    fn size_kind<M: Memory + ?Sized>(&mut self, mem: &M, addr: u64) -> Result<(SizeKind, bool, bool)> {
        let l = self.layout;
        // A `__sizeof__` written in Python in any class of the MRO (a mixin is not on the `tp_base`
        // chain): the size memspy computes is not what it returns.
        let mut approx = python_sizeof(mem, l, addr).unwrap_or(false);
        let mut t = addr;
        for _ in 0..MAX_BASES {
            if t == 0 {
                break;
            }
            let f = mem.u64_at(t + l.type_.tp_flags, "tp_flags")?;
            if f & flags::HEAPTYPE != 0 {
                if let Some(sizeof) = heap_type_get(mem, l, t, "__sizeof__")? {
                    // Extension types created from a spec (3.10+ array, 3.12+ deque, 3.13+ Decimal, …):
                    // the full name, the C struct's basic size and a C `__sizeof__` must all agree;
                    // a Python class of the same name never gets a C layout this way.
                    // What cannot be read only leaves the size approximate.
                    let recognised = (|| -> Result<Option<SizeKind>> {
                        let name = mem.cstr_at(mem.u64_at(t + l.type_.tp_name, "tp_name")?, MAX_NAME, "tp_name")?;
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
                let tp_name_ptr = mem.u64_at(t + l.type_.tp_name, "tp_name")?;
                let name = mem.cstr_at(tp_name_ptr, MAX_NAME, "tp_name")?;
                let known = match name.as_str() {
                    "list" => Some(SizeKind::List),
                    "dict" | "frozendict" => Some(SizeKind::Dict),
                    "set" | "frozenset" => Some(SizeKind::Set),
                    "int" | "bool" => Some(SizeKind::Int),
                    "str" => Some(SizeKind::Str),
                    "bytearray" => Some(SizeKind::ByteArray),
                    "type" => Some(SizeKind::Type),
                    "frame" if l.sizeof.frame == python_bindings::FrameSizeof::VarSized => Some(SizeKind::Frame),
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
                // A static type of an extension with a `__sizeof__` of its own in its dict (the core's
                // static types are known above, or listed).
                let own_sizeof = known.is_none() && heap_type_get(mem, l, t, "__sizeof__").ok().flatten().is_some();
                approx |= custom || own_sizeof;
                if name == "type" {
                    // Instances of `type` or of any subclass of it are type objects.
                    return Ok((SizeKind::Type, approx, true));
                }
                if let Some(k) = known {
                    return Ok((k, approx, false));
                }
            }
            t = mem.u64_at(t + l.type_.tp_base, "tp_base")?;
            if t >= MAX_USER_ADDR {
                return Err(Error::Corrupt(format!("type at {addr:#x}: implausible tp_base {t:#x}")));
            }
        }
        Ok((SizeKind::Default, approx, false))
    }
}

impl SizeKind {
    fn numpy_scalar(name: &str) -> Option<SizeKind> {
        numpy_scalar_itemsize(name).map(SizeKind::NumpyScalar)
    }
}

/// The `__sizeof__` memspy recomputes for a C type of this `tp_name` (static types' names; types
/// created from a spec carry the spec's full name), if any.
fn modelled_kind(l: &Layout, name: &str) -> Option<SizeKind> {
    Some(match name {
        "generator" | "coroutine" | "async_generator" if l.iframe.is_some() => SizeKind::Generator,
        "frame" if l.sizeof.frame.frame_data().is_some() && l.iframe.is_some() => SizeKind::FrameObject,
        "collections.deque" => SizeKind::Deque,
        "collections.OrderedDict" => SizeKind::OrderedDict,
        "array.array" => SizeKind::Array,
        "decimal.Decimal" => SizeKind::Decimal,
        "_io.BufferedReader" | "_io.BufferedWriter" | "_io.BufferedRandom" => SizeKind::Buffered,
        "_io.BytesIO" => SizeKind::BytesIO,
        "_struct.Struct" => SizeKind::Struct,
        "code" => SizeKind::Code,
        "numpy.ndarray" => SizeKind::NdArray,
        _ => return SizeKind::numpy_scalar(name),
    })
}

/// The name of the type object at `addr` as Python spells it: `f"{t.__module__}.{t.__qualname__}"` for a
/// heap type whose `__module__` is a str; otherwise what `repr(t)` shows, the `tp_name` (static types
/// without a dot in it are builtins). Cython's types, for one, keep a member descriptor as `__module__`.
pub fn type_name<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, flags: u64) -> Result<String> {
    if flags & flags::HEAPTYPE != 0 {
        let qualname = mem.u64_at(addr + l.heap_type.ht_qualname, "ht_qualname").and_then(|q| str_value(mem, l, q));
        let module = heap_type_get(mem, l, addr, "__module__")
            .and_then(|m| m.ok_or_else(|| Error::Corrupt("no __module__".into())))
            .and_then(|m| str_value(mem, l, m));
        match (module, qualname) {
            (Ok(module), Ok(qualname)) => return Ok(format!("{module}.{qualname}")),
            (m, q) => log::debug!("type at {addr:#x}: __module__ {:?}, __qualname__ {:?}", m.err(), q.err()),
        }
        let tp_name_ptr = mem.u64_at(addr + l.type_.tp_name, "tp_name")?;
        return mem.cstr_at(tp_name_ptr, MAX_NAME, "tp_name");
    }
    let tp_name_ptr = mem.u64_at(addr + l.type_.tp_name, "tp_name")?;
    let tp_name = mem.cstr_at(tp_name_ptr, MAX_NAME, "tp_name")?;
    Ok(if tp_name.contains('.') { tp_name } else { format!("builtins.{tp_name}") })
}

/// The text of `obj` unless its type says it is not a str (no `Py_TPFLAGS_UNICODE_SUBCLASS`).
fn str_value<M: Memory + ?Sized>(mem: &M, l: &Layout, obj: u64) -> Result<String> {
    let ty = mem.u64_at(check_ptr(obj, "object")? + l.object.ob_type, "ob_type")?;
    if let Ok(ty_flags) = mem.u64_at(check_ptr(ty, "type")? + l.type_.tp_flags, "tp_flags") {
        if ty_flags & flags::UNICODE_SUBCLASS == 0 {
            return Err(Error::Corrupt(format!("{obj:#x} is not a str")));
        }
    }
    read_str(mem, l, obj)
}

/// Whether the first class of the MRO of the type at `addr` that defines `__sizeof__` is a heap type whose
/// `__sizeof__` is not a method implemented in C (Python code, as pandas' deep `memory_usage`).
fn python_sizeof<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64) -> Result<bool> {
    let mro = mem.u64_at(addr + l.type_.tp_mro, "tp_mro")?;
    if mro == 0 {
        return Ok(false);
    }
    // Checked before any offset is added to it (found by the fuzz smoke run: a tp_mro near 2^64).
    let mro = check_ptr(mro, "tp_mro")?;
    let n = mem.u64_at(mro + l.object.ob_size, "mro size")?.min(MAX_BASES as u64);
    for i in 0..n {
        let t = check_ptr(mem.u64_at(mro + l.tuple.item + 8 * i, "mro item")?, "mro class")?;
        if mem.u64_at(t + l.type_.tp_dict, "tp_dict")? == 0 {
            // A core static type (3.12+ keeps their dicts elsewhere): C code from here on.
            return Ok(false);
        }
        if let Some(sizeof) = heap_type_get(mem, l, t, "__sizeof__")? {
            return Ok(!is_method_descriptor(mem, l, sizeof)?);
        }
    }
    Ok(false)
}

/// A type's own dict entry `name`.
fn heap_type_get<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, name: &str) -> Result<Option<u64>> {
    let dict = mem.u64_at(addr + l.type_.tp_dict, "tp_dict")?;
    dict_get_str(mem, l, dict, name)
}

/// Whether the object at `addr` is a `method_descriptor` (a method implemented in C).
fn is_method_descriptor<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64) -> Result<bool> {
    check_ptr(addr, "method")?;
    let t = mem.u64_at(addr + l.object.ob_type, "ob_type")?;
    check_ptr(t, "type")?;
    if mem.u64_at(t + l.type_.tp_flags, "tp_flags")? & flags::HEAPTYPE != 0 {
        return Ok(false);
    }
    let name = mem.cstr_at(mem.u64_at(t + l.type_.tp_name, "tp_name")?, MAX_NAME, "tp_name")?;
    Ok(name == "method_descriptor")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;
    use python_bindings::Version;

    #[test]
    fn a_wild_mro_pointer_is_an_error_not_an_overflow() {
        let l = Layout::builtin(Version::new(3, 14, 0)).unwrap();
        let ty = 0x10_0000u64;
        let mut mem = FakeMemory::new();
        mem.add(ty, vec![0; 0x400]);
        mem.put_u64(ty + l.type_.tp_mro, u64::MAX - 7);
        assert!(matches!(python_sizeof(&mem, &l, ty), Err(Error::Corrupt(_))));
    }
}
