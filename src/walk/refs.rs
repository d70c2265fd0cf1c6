//! Which words of an object hold references, per layout kind: the decoding half of the full-heap walk.
//!
//! Built-in containers are decoded exactly (only live slots: list items up to `ob_size`, dict entries
//! up to `dk_nentries`, set table slots, tuple items, frame slots up to the stack top). Everything else
//! is scanned *conservatively*: every aligned word of the object's fixed part (and of a pointer-sized
//! variable part) is a candidate, kept only if it passes the walk's validation (a plausible refcount and
//! a type pointer that is a real type object). See `full.rs` for the validation and its limits.

use python_bindings::{flags, Layout, ManagedDict};

use crate::error::{Error, Result};
use crate::memory::{le_u64, MAX_USER_ADDR};
use crate::memory::{Memory, ReadExt};

use crate::cpython::objects::{dict_keys, split_value_slot, MAX_NAME};
use crate::cpython::sizeof::NdArray;
use crate::memory::fasthash::AddrMap;
use python_bindings::extensions::NUMPY_2;

/// Deepest `tp_base` chain followed.
const MAX_BASES: usize = 64;
/// Items read per remote read when decoding big containers.
pub const BATCH: u64 = 8192;

/// How the references of instances of a type are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    /// int, bool, float, complex, str, bytes: no references.
    Leaf,
    /// bytearray (3.15: its buffer is a `bytes` object).
    ByteArray,
    Tuple,
    List,
    Dict,
    Set,
    /// A type object (`type` or a metaclass instance).
    Type,
    /// 3.11+ generator, coroutine, async generator: an embedded interpreter frame; `origin`: its
    /// `gi_origin_or_finalizer` is a reference (not in a plain generator, which leaves that word as its
    /// allocation found it: a stale pointer there once made a free-threaded walk find an object that only
    /// the interpreter's table of interned constants holds, in some runs and not others).
    Gen {
        origin: bool,
    },
    /// 3.11+ frame object: its interpreter frame is behind `f_frame`.
    FrameObject,
    /// `collections.deque`: its items, block by block.
    Deque,
    /// `numpy.ndarray` (numpy 2): its base, dtype and memory handler; the items of object data it owns.
    NdArray,
    /// Anything else: the body is scanned conservatively.
    Object,
}

/// What the walk knows about one type for decoding its instances.
#[derive(Clone, Copy, Debug)]
pub struct RefInfo {
    pub kind: RefKind,
    pub flags: u64,
    pub basicsize: u64,
    pub itemsize: u64,
    /// `tp_basicsize` of the base that gives `kind`: the type's own fields (slots, `__dict__`,
    /// `__weakref__`, or an unknown C type's fields) are at [base_basicsize, basicsize).
    pub base_basicsize: u64,
    pub dictoffset: i64,
    /// `ht_cached_keys` (heap types; 0 otherwise).
    pub cached_keys: u64,
    /// Value slots of instances without a materialised dict (3.11/3.12 `MANAGED_DICT` types).
    pub shared_values: u64,
}

#[derive(Clone)]
pub struct RefInfos {
    cache: AddrMap<RefInfo>,
    /// Direct-mapped front of `cache`: (type address, info); most lookups need no hashing.
    fast: Box<[(u64, Option<RefInfo>)]>,
}

const FAST_INFOS: usize = 512;

impl Default for RefInfos {
    fn default() -> Self {
        RefInfos { cache: AddrMap::default(), fast: vec![(0, None); FAST_INFOS].into_boxed_slice() }
    }
}

impl RefInfos {
    #[inline]
    pub fn get<M: Memory + ?Sized>(&mut self, mem: &M, l: &Layout, t: u64) -> Result<RefInfo> {
        let f = ((t >> 4) ^ (t >> 13)) as usize & (FAST_INFOS - 1);
        if let (a, Some(r)) = self.fast[f] {
            if a == t {
                return Ok(r);
            }
        }
        let r = match self.cache.get(&t) {
            Some(r) => *r,
            None => {
                let r = read_ref_info(mem, l, t)?;
                self.cache.insert(t, r);
                r
            }
        };
        self.fast[f] = (t, Some(r));
        Ok(r)
    }
}

/// Zeroes, in the bytes of an object read from its offset 16, the words that hold the same pointer as
/// one of the `text` members at these offsets: C strings (`tp_name`, `tp_doc`, and a heap type's
/// `_ht_tpname`, which is its `tp_name`), not references. A string's allocation is not scanned as a
/// native block: the bytes after its end are what the allocation held before, which once read as a
/// pointer to a live static tuple in some runs only.
fn drop_text(b: &mut [u8], text: &[u64]) {
    let ptrs: Vec<u64> = text.iter().filter_map(|&at| le_u64(b, at)).filter(|&p| p != 0).collect();
    for w in b.chunks_exact_mut(8) {
        let v = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        if ptrs.contains(&v) {
            w.fill(0);
        }
    }
}

fn kind_of(l: &Layout, name: &str) -> Option<RefKind> {
    Some(match name {
        "int" | "bool" | "float" | "complex" | "str" | "bytes" => RefKind::Leaf,
        "bytearray" => RefKind::ByteArray,
        "tuple" => RefKind::Tuple,
        "list" => RefKind::List,
        "dict" => RefKind::Dict,
        "set" | "frozenset" => RefKind::Set,
        "type" => RefKind::Type,
        "generator" if l.iframe.is_some() => RefKind::Gen { origin: false },
        "coroutine" | "async_generator" if l.iframe.is_some() => RefKind::Gen { origin: true },
        "frame" if l.iframe.is_some() => RefKind::FrameObject,
        "object" => RefKind::Object,
        _ => return None,
    })
}

fn read_ref_info<M: Memory + ?Sized>(mem: &M, l: &Layout, t: u64) -> Result<RefInfo> {
    let tf = mem.u64_at(t + l.type_.tp_flags, "tp_flags")?;
    let basicsize = mem.u64_at(t + l.type_.tp_basicsize, "tp_basicsize")?;
    let itemsize = mem.u64_at(t + l.type_.tp_itemsize, "tp_itemsize")?;
    let dictoffset = mem.i64_at(t + l.type_.tp_dictoffset, "tp_dictoffset")?;
    let heap = tf & flags::HEAPTYPE != 0;
    let cached_keys = if heap { mem.u64_at(t + l.heap_type.ht_cached_keys, "ht_cached_keys")? } else { 0 };
    let mut shared_values = 0;
    if cached_keys != 0 && matches!(l.managed_dict, ManagedDict::Split311 | ManagedDict::Tagged312) {
        if let Ok(k) = dict_keys(mem, l, cached_keys) {
            shared_values = k.nentries.min(1 << 16);
        }
    }
    let mut kind = RefKind::Object;
    let mut base_basicsize = 16;
    let mut b = t;
    for _ in 0..MAX_BASES {
        if b == 0 {
            break;
        }
        let bf = mem.u64_at(b + l.type_.tp_flags, "tp_flags")?;
        let name_ptr = mem.u64_at(b + l.type_.tp_name, "tp_name")?;
        let name = mem.cstr_at(name_ptr, MAX_NAME, "tp_name")?;
        let b_basicsize = mem.u64_at(b + l.type_.tp_basicsize, "tp_basicsize")?;
        // Extension types memspy has a layout for, static or made from a spec: name and size agree.
        let extension = match name.as_str() {
            "collections.deque" if b_basicsize == l.sizeof.deque.basicsize => Some(RefKind::Deque),
            "numpy.ndarray" if b_basicsize == NUMPY_2.array_basicsize => Some(RefKind::NdArray),
            _ => None,
        };
        let core = if bf & flags::HEAPTYPE == 0 { kind_of(l, &name) } else { None };
        if let Some(k) = extension.or(core) {
            kind = k;
            base_basicsize = b_basicsize;
            break;
        }
        b = mem.u64_at(b + l.type_.tp_base, "tp_base")?;
    }
    if base_basicsize > basicsize || basicsize > 1 << 24 {
        return Err(Error::Corrupt(format!("type at {t:#x}: basicsize {basicsize} < base {base_basicsize}")));
    }
    Ok(RefInfo { kind, flags: tf, basicsize, itemsize, base_basicsize, dictoffset, cached_keys, shared_values })
}

/// The items of the deque at `addr` (`len` of them): from `leftindex` in the left block, block after block
/// along `rightlink`. Only the slots in use are read (the others hold stale pointers).
fn deque_refs<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, len: i64, out: &mut Vec<u64>) -> Result<()> {
    let d = &l.sizeof.deque;
    if !(0..1 << 40).contains(&len) {
        return Err(Error::Corrupt(format!("deque at {addr:#x}: {len} items")));
    }
    let mut block = mem.u64_at(addr + d.leftblock, "deque leftblock")?;
    let mut index = mem.u64_at(addr + d.leftindex, "deque leftindex")?;
    let mut left = len as u64;
    while left > 0 {
        if index >= d.block_len || block == 0 {
            return Err(Error::Corrupt(format!("deque at {addr:#x}: block {block:#x}, index {index}")));
        }
        let n = (d.block_len - index).min(left);
        slots(mem, block + d.block_data + 8 * index, n, out)?;
        left -= n;
        if left > 0 {
            block = mem.u64_at(block + d.block_rightlink, "deque rightlink")?;
            index = 0;
        }
    }
    Ok(())
}

/// The references of a numpy 2 array: its base (the owner of a view's data), its dtype and memory
/// handler; and, when it owns its data, the items of that data if they are objects (a structured dtype
/// with object fields: its data is scanned conservatively). Not numpy 2's: the fields conservatively.
fn ndarray_refs<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, head: &[u8], out: &mut Vec<u64>) -> Result<()> {
    let np = &NUMPY_2;
    let Some(a) = NdArray::read(mem, l, addr, head)? else {
        let b = mem.bytes_at(addr + 16, (np.array_basicsize - 16) as usize, "ndarray")?;
        conservative(&b, out);
        return Ok(());
    };
    out.push(a.base);
    out.push(a.descr);
    out.push(mem.u64_at(addr + np.mem_handler, "ndarray mem_handler")?);
    if a.flags & np.owndata == 0 || !a.item_refcount || a.items == 0 {
        return Ok(());
    }
    if a.object_items && a.elsize == 8 {
        slots(mem, a.data, a.items, out)?;
    } else {
        let len = a.items.saturating_mul(a.elsize).min(1 << 32);
        let mut at = 0;
        while at < len {
            let n = (len - at).min(BATCH * 8);
            with_bytes(mem, a.data + at, n as usize, "ndarray data", |b| conservative(b, out))?;
            at += n;
        }
    }
    Ok(())
}

/// Untags a word that may be a reference: on 3.14+ frames hold `_PyStackRef`s (bit 0 a tag, `bits & 3
/// == 3` a tagged int). Returns 0 for words that cannot be object pointers.
#[inline]
pub fn untag(l: &Layout, w: u64) -> u64 {
    let tagged = l.iframe.is_some_and(|f| f.tagged);
    if w & 7 == 0 {
        w
    } else if tagged && w & 7 == 1 {
        w - 1
    } else {
        0
    }
}

/// Marks a word found by a conservative scan (bit 1: object pointers are 8-aligned): what it points to
/// counts only if the memory there holds it (see [`super::blocks`]).
pub const CONSERVATIVE: u64 = 2;
/// Marks a conservative word found in a native block (bit 2): it may be an object, but a native block it
/// points to is not scanned in turn (only the buffers objects point to are).
pub const FROM_NATIVE: u64 = 4;
/// Both marks.
pub const TAGS: u64 = CONSERVATIVE | FROM_NATIVE;

/// Pushes every 8-aligned pointer-like word of `bytes` to `out`, marked [`CONSERVATIVE`].
pub fn conservative(bytes: &[u8], out: &mut Vec<u64>) {
    for c in bytes.chunks_exact(8) {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        if (4096..MAX_USER_ADDR).contains(&w) && w.is_multiple_of(8) {
            out.push(w | CONSERVATIVE);
        }
    }
}

/// Pushes every word of `bytes` (8-aligned words) to `out`.
pub fn words(bytes: &[u8], out: &mut Vec<u64>) {
    for c in bytes.chunks_exact(8) {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        if w >= 4096 {
            out.push(w);
        }
    }
}

/// Largest read [`with_bytes`] serves from a buffer on the stack.
const STACK_READ: usize = 512;

/// Reads `len` bytes at `addr` and hands them to `f`; small reads (most objects) go through a buffer on
/// the stack rather than an allocation.
fn with_bytes<M: Memory + ?Sized, R>(
    mem: &M,
    addr: u64,
    len: usize,
    what: &'static str,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    if len <= STACK_READ {
        let mut buf = [0u8; STACK_READ];
        mem.read_into(addr, &mut buf[..len], what)?;
        Ok(f(&buf[..len]))
    } else {
        Ok(f(&mem.bytes_at(addr, len, what)?))
    }
}

/// Reads `n` pointer-sized slots at `at`, in batches, into `out`.
pub fn slots<M: Memory + ?Sized>(mem: &M, at: u64, n: u64, out: &mut Vec<u64>) -> Result<()> {
    let mut i = 0;
    while i < n {
        let k = (n - i).min(BATCH);
        with_bytes(mem, at + 8 * i, (8 * k) as usize, "object slots", |b| words(b, out))?;
        i += k;
    }
    Ok(())
}

/// The keys and values of the dict at `d` (keys of shared split tables only when `keys_wanted`).
pub fn dict_refs<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    d: u64,
    head: &[u8],
    seen_keys: &mut impl FnMut(u64) -> bool,
    out: &mut Vec<u64>,
) -> Result<()> {
    let keys_ptr = le_u64(head, l.dict.keys).unwrap_or(0);
    let values = le_u64(head, l.dict.values).unwrap_or(0);
    if keys_ptr == 0 {
        return Ok(());
    }
    let k = dict_keys(mem, l, keys_ptr)?;
    if values != 0 {
        slots(mem, split_value_slot(l, values, 0), k.nentries, out)?;
        if seen_keys(keys_ptr) {
            keys_refs(mem, &k, out)?;
        }
        let _ = d;
        return Ok(());
    }
    let mut i = 0;
    while i < k.nentries {
        let n = (k.nentries - i).min(BATCH);
        with_bytes(mem, k.entries + i * k.entry_size, (n * k.entry_size) as usize, "dict entries", |b| {
            for e in b.chunks_exact(k.entry_size as usize) {
                // General entries are {hash, key, value}; unicode ones {key, value}.
                let skip = if k.entry_size == 24 { 8 } else { 0 };
                words(&e[skip..], out);
            }
        })?;
        i += n;
    }
    Ok(())
}

/// The keys of a keys object (shared split keys, `ht_cached_keys`).
pub fn keys_refs<M: Memory + ?Sized>(mem: &M, k: &crate::cpython::objects::DictKeys, out: &mut Vec<u64>) -> Result<()> {
    let mut i = 0;
    while i < k.nentries {
        let n = (k.nentries - i).min(BATCH);
        with_bytes(mem, k.entries + i * k.entry_size, (n * k.entry_size) as usize, "dict keys", |b| {
            for e in b.chunks_exact(k.entry_size as usize) {
                let at = if k.entry_size == 24 { 8 } else { 0 };
                words(&e[at..at + 8], out);
            }
        })?;
        i += n;
    }
    Ok(())
}

/// The references of an interpreter frame (3.11+) at `f`: code, function, globals, builtins, locals,
/// frame object, and the `localsplus` slots up to the stack top. Returns how many slots it read.
pub fn iframe_refs<M: Memory + ?Sized>(mem: &M, l: &Layout, f: u64, out: &mut Vec<u64>) -> Result<u64> {
    let Some(fl) = l.iframe else { return Ok(0) };
    let head = mem.bytes_at(f, fl.localsplus as usize, "interpreter frame")?;
    for off in [fl.code, fl.func, fl.globals, fl.builtins, fl.locals, fl.frame_obj] {
        if let Some(w) = le_u64(&head, off) {
            let w = untag(l, w);
            if w != 0 {
                out.push(w);
            }
        }
    }
    let n = if fl.stack_pointer {
        let sp = le_u64(&head, fl.stacktop).unwrap_or(0);
        let base = f + fl.localsplus;
        if sp < base || !(sp - base).is_multiple_of(8) {
            0
        } else {
            (sp - base) / 8
        }
    } else {
        let top = crate::memory::le_u32(&head, fl.stacktop).unwrap_or(0) as i32;
        top.max(0) as u64
    };
    if n > 1 << 16 {
        return Err(Error::Corrupt(format!("interpreter frame at {f:#x}: {n} slots")));
    }
    let before = out.len();
    slots(mem, f + fl.localsplus, n, out)?;
    if fl.tagged {
        for w in &mut out[before..] {
            *w = untag(l, *w);
        }
    }
    Ok(n)
}

/// The references of the object at `addr` (whose first bytes are `head`), per its type's kind.
#[allow(clippy::too_many_arguments)]
pub fn object_refs<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    addr: u64,
    head: &[u8],
    ri: &RefInfo,
    seen_keys: &mut impl FnMut(u64) -> bool,
    out: &mut Vec<u64>,
) -> Result<()> {
    let field = |at: u64| le_u64(head, at).unwrap_or(0);
    let ob_size = field(l.object.ob_size) as i64;
    // The kind's own references.
    match ri.kind {
        RefKind::Leaf => {}
        RefKind::ByteArray => {
            if let Some(off) = l.bytearray.bytes_object {
                out.push(mem.u64_at(addr + off, "ob_bytes_object")?);
            }
        }
        RefKind::Tuple => {
            if !(0..1 << 32).contains(&ob_size) {
                return Err(Error::Corrupt(format!("tuple at {addr:#x}: size {ob_size}")));
            }
            slots(mem, addr + l.tuple.item, ob_size as u64, out)?;
        }
        RefKind::List => {
            if !(0..1 << 36).contains(&ob_size) {
                return Err(Error::Corrupt(format!("list at {addr:#x}: size {ob_size}")));
            }
            let items = field(l.list.item);
            if items != 0 {
                slots(mem, items, ob_size as u64, out)?;
            }
        }
        RefKind::Dict => dict_refs(mem, l, addr, head, seen_keys, out)?,
        RefKind::Set => {
            let mask = field(l.set.mask);
            let table = field(l.set.table);
            if mask >= 1 << 36 {
                return Err(Error::Corrupt(format!("set at {addr:#x}: mask {mask}")));
            }
            let mut i = 0;
            while i <= mask {
                let n = (mask + 1 - i).min(BATCH);
                let b = mem.bytes_at(table + 16 * i, (16 * n) as usize, "set table")?;
                for e in b.chunks_exact(16) {
                    words(&e[..8], out);
                }
                i += n;
            }
        }
        RefKind::Type => {
            let own = mem.u64_at(addr + l.type_.tp_flags, "tp_flags")?;
            let size = if own & flags::HEAPTYPE != 0 { l.heap_type.size } else { l.type_.size };
            let size = size.max(ri.basicsize);
            let mut b = mem.bytes_at(addr + 16, (size - 16) as usize, "type object")?;
            drop_text(&mut b, &[l.type_.tp_name - 16, l.type_.tp_doc - 16]);
            conservative(&b, out);
            if own & flags::HEAPTYPE != 0 {
                let ck = mem.u64_at(addr + l.heap_type.ht_cached_keys, "ht_cached_keys")?;
                if ck != 0 && seen_keys(ck) {
                    if let Ok(k) = dict_keys(mem, l, ck) {
                        keys_refs(mem, &k, out)?;
                    }
                }
            }
            return Ok(());
        }
        RefKind::Gen { origin } => {
            let fl = l.iframe.expect("Gen only with frames");
            let mut b = mem.bytes_at(addr + 16, (fl.gen_iframe - 16) as usize, "generator")?;
            if !origin {
                let at = (fl.gen_origin - 16) as usize;
                if let Some(w) = b.get_mut(at..at + 8) {
                    w.fill(0);
                }
            }
            conservative(&b, out);
            iframe_refs(mem, l, addr + fl.gen_iframe, out)?;
        }
        RefKind::FrameObject => {
            let fl = l.iframe.expect("FrameObject only with frames");
            let b = mem.bytes_at(addr + 16, (ri.base_basicsize.max(24) - 16) as usize, "frame object")?;
            conservative(&b, out);
            let f = field(fl.frame_object_frame);
            if f != 0 {
                iframe_refs(mem, l, f, out)?;
            }
        }
        RefKind::Deque => deque_refs(mem, l, addr, ob_size, out)?,
        RefKind::NdArray => ndarray_refs(mem, l, addr, head, out)?,
        RefKind::Object => {}
    }
    // The type's own fields beyond its base: slots, __dict__, __weakref__ (heap types), or the whole
    // body of a C type memspy has no layout for (conservative).
    let start = if ri.kind == RefKind::Object { 16 } else { ri.base_basicsize };
    if ri.basicsize > start {
        with_bytes(mem, addr + start, (ri.basicsize - start) as usize, "object fields", |b| {
            // The `__dict__` slot of a fixed-size instance is an exact reference, the rest conservative.
            let d = ri.dictoffset;
            if ri.itemsize == 0 && d > 0 && (d as u64) >= start && (d as u64) + 8 <= ri.basicsize && d % 8 == 0 {
                let at = (d as u64 - start) as usize;
                conservative(&b[..at], out);
                words(&b[at..at + 8], out);
                conservative(&b[at + 8..], out);
            } else {
                conservative(b, out)
            }
        })?;
    }
    if ri.kind == RefKind::Object && ri.itemsize == 8 && (1..1 << 20).contains(&ob_size) {
        let mut i = 0;
        while i < ob_size as u64 {
            let k = (ob_size as u64 - i).min(BATCH);
            let at = addr + ri.basicsize + 8 * i;
            with_bytes(mem, at, (8 * k) as usize, "object items", |b| conservative(b, out))?;
            i += k;
        }
    }
    // A __dict__ at tp_dictoffset in variable-sized instances (int/tuple/str subclasses, ≤3.11).
    if ri.itemsize > 0 && ri.dictoffset != 0 && ri.flags & flags::MANAGED_DICT == 0 && ri.kind != RefKind::Type {
        let off = if ri.dictoffset > 0 {
            Some(ri.dictoffset as u64)
        } else if (0..1 << 32).contains(&ob_size.abs()) {
            let size = (ri.basicsize + ri.itemsize * ob_size.unsigned_abs() + 7) & !7;
            size.checked_sub(ri.dictoffset.unsigned_abs())
        } else {
            None
        };
        if let Some(off) = off {
            if let Ok(w) = mem.u64_at(addr + off, "instance dict") {
                out.push(w);
            }
        }
    }
    // Managed dicts and values (3.11+).
    if ri.flags & flags::MANAGED_DICT != 0 {
        match l.managed_dict {
            ManagedDict::None => {}
            ManagedDict::Split311 => {
                let mut pre = [0u8; 16];
                mem.read_into(addr - 32, &mut pre, "managed dict")?;
                let values = le_u64(&pre, 0).unwrap_or(0);
                out.push(le_u64(&pre, 8).unwrap_or(0));
                if values != 0 && values.is_multiple_of(8) {
                    slots(mem, values, ri.shared_values, out)?;
                }
            }
            ManagedDict::Tagged312 => {
                let w = mem.u64_at(addr - 24, "managed dict")?;
                if w & 1 == 1 {
                    slots(mem, w.wrapping_add(1), ri.shared_values, out)?;
                } else {
                    out.push(w);
                }
            }
            ManagedDict::Inline313 { dict, .. } => {
                out.push(mem.u64_at(addr - dict, "managed dict")?);
                if ri.flags & flags::INLINE_VALUES != 0 {
                    let mut h = [0u8; 8];
                    mem.read_into(addr + ri.basicsize, &mut h, "inline values")?;
                    let (capacity, valid) = (h[0] as u64, h[3]);
                    if valid != 0 {
                        slots(mem, addr + ri.basicsize + 8, capacity, out)?;
                    }
                }
            }
        }
    }
    let weakref = match l.managed_dict {
        ManagedDict::None | ManagedDict::Split311 => None,
        ManagedDict::Tagged312 => Some(32),
        ManagedDict::Inline313 { weakref, .. } => Some(weakref),
    };
    if let Some(back) = weakref.filter(|_| ri.flags & flags::MANAGED_WEAKREF != 0) {
        out.push(mem.u64_at(addr - back, "managed weakref")?);
    }
    Ok(())
}
