//! `sys.getsizeof`, recomputed from an object's bytes: the `__sizeof__` of each modelled type plus the
//! pre-header the interpreter adds.

use python_bindings::extensions::NUMPY_2;
use python_bindings::{flags, Layout, LongLayout};

use super::objects::{dict_keys, str_header};
use super::types::{SizeKind, TypeInfo};
use crate::error::{Error, Result};
use crate::memory::{check_ptr, le_u32, le_u64};
use crate::memory::{Memory, ReadExt};

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
    let ob_size = || field(l.object.ob_size).map(|v| v as i64);
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
        SizeKind::List => ty.basicsize + 8 * field(l.list.allocated)?.min(1 << 40),
        SizeKind::Set => {
            let table = field(l.set.table)?;
            if table != addr + l.set.smalltable {
                ty.basicsize + (field(l.set.mask)?.min(1 << 40) + 1) * 16
            } else {
                ty.basicsize
            }
        }
        SizeKind::Dict => dict_sizeof(mem, l, head, ty)?,
        SizeKind::OrderedDict => {
            let s = &l.sizeof;
            let mut n = dict_sizeof(mem, l, head, ty)?;
            n = n.saturating_add(8 * field(s.odict.fast_nodes_size)?.min(1 << 40));
            if field(s.odict.first)? != 0 {
                n = n.saturating_add(s.odict.node_size * field(l.dict.used)?.min(1 << 40));
            }
            n
        }
        SizeKind::Generator | SizeKind::FrameObject => {
            let f = l.iframe.ok_or_else(|| Error::Corrupt("no frame layout".into()))?;
            let (iframe, base) = if ty.kind == SizeKind::Generator {
                (addr + f.gen_iframe, f.gen_iframe + f.localsplus)
            } else {
                let data = l.sizeof.frame.frame_data().ok_or_else(|| Error::Corrupt("no frame layout".into()))?;
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
            let left = field(s.deque.leftindex)? as i64;
            if !(0..1 << 40).contains(&len) || !(0..s.deque.block_len as i64).contains(&left) {
                return Err(Error::Corrupt(format!("deque at {addr:#x}: {len} items from index {left}")));
            }
            let blocks = (left as u64 + len as u64).div_ceil(s.deque.block_len);
            ty.basicsize + blocks * s.deque.block_size
        }
        SizeKind::Array => {
            let s = &l.sizeof;
            let allocated = field(s.array.allocated)?.min(1 << 48);
            let descr = field(s.array.descr)?;
            let itemsize = if allocated == 0 {
                0
            } else {
                check_ptr(descr, "array descriptor")?;
                let b = mem.bytes_at(descr + s.array.descr_itemsize, 4, "arraydescr.itemsize")?;
                le_u32(&b, 0).unwrap_or(0) as u64
            };
            if itemsize > 16 {
                return Err(Error::Corrupt(format!("array at {addr:#x}: item size {itemsize}")));
            }
            ty.basicsize + allocated * itemsize
        }
        SizeKind::Decimal => {
            let s = &l.sizeof;
            let mpd = mem.bytes_at(addr + s.decimal.mpd, (s.decimal.mpd_alloc + 8) as usize, "mpd_t")?;
            let flags = mpd[s.decimal.mpd_flags as usize];
            let alloc = le_u64(&mpd, s.decimal.mpd_alloc).unwrap_or(0).min(1 << 40);
            ty.basicsize + if flags & s.decimal.mpd_dataflags == 0 { 8 * alloc } else { 0 }
        }
        SizeKind::Buffered => {
            let s = &l.sizeof;
            let buffer = mem.u64_at(addr + s.buffered.buffer, "buffered.buffer")?;
            let size = mem.u64_at(addr + s.buffered.buffer_size, "buffered.buffer_size")? as i64;
            ty.basicsize + if buffer != 0 { size.clamp(0, 1 << 40) as u64 } else { 0 }
        }
        SizeKind::BytesIO => {
            let buf = field(l.sizeof.bytesio.buf)?;
            let mut n = ty.basicsize;
            let shared = match l.sizeof.bytesio.buf_shared {
                Some(at) => mem.u32_at(addr + at, "bytesio.buf_shared")? != 0,
                None => false,
            };
            if buf != 0 && !shared {
                check_ptr(buf, "BytesIO buffer")?;
                let b = mem.bytes_at(buf, l.object.ob_size as usize + 8, "BytesIO buffer")?;
                let (refs, immortal) = l.refcount_of(&b).unwrap_or((0, false));
                if refs <= 1 && !immortal {
                    // `sys.getsizeof` of the bytes object (not a GC type: no pre-header).
                    let bt = le_u64(&b, l.object.ob_type).unwrap_or(0);
                    check_ptr(bt, "type")?;
                    let basic = mem.u64_at(bt + l.type_.tp_basicsize, "tp_basicsize")?;
                    let items = le_u64(&b, l.object.ob_size).unwrap_or(0).min(1 << 48);
                    n = n.saturating_add(basic.min(1 << 24) + items);
                }
            }
            n
        }
        SizeKind::Code => code_sizeof(mem, l, addr, ty, default()?)?,
        SizeKind::NumpyScalar(itemsize) => ty.basicsize + itemsize,
        SizeKind::NdArray => match ndarray_sizeof(mem, l, addr, head, ty)? {
            Some(n) => n,
            None => {
                exact = false;
                ty.basicsize
            }
        },
        SizeKind::Struct => {
            let s = &l.sizeof;
            let codes = field(s.struct_.codes)?;
            ty.basicsize + s.struct_.formatcode_size * (1 + struct_codes(mem, l, codes)?)
        }
        SizeKind::Int => match l.long {
            LongLayout::ObSize { min_one_digit } => {
                let digits = ob_size()?.unsigned_abs().min(1 << 40);
                if min_one_digit {
                    24 + 4 * digits.max(1)
                } else {
                    24 + 4 * digits
                }
            }
            LongLayout::LvTag => ty.basicsize + ty.itemsize * (field(l.object.ob_size)? >> 3).clamp(1, 1 << 40),
        },
        SizeKind::Str => str_sizeof(mem, l, addr, head)?,
        SizeKind::ByteArray => {
            let alloc = field(l.bytearray.alloc)? as i64;
            ty.basicsize + if alloc > 0 { alloc.min(1 << 48) as u64 + l.sizeof.bytearray_bytes_header } else { 0 }
        }
        SizeKind::Type => {
            let own_flags = mem.u64_at(addr + l.type_.tp_flags, "tp_flags")?;
            if own_flags & flags::HEAPTYPE != 0 {
                let cached = mem.u64_at(addr + l.heap_type.ht_cached_keys, "ht_cached_keys")?;
                let keys = if cached != 0 { dict_keys(mem, l, cached)?.alloc_size(l) } else { 0 };
                l.heap_type.size.saturating_add(keys)
            } else {
                l.type_.size
            }
        }
    };
    if implausible {
        exact = false;
    }
    let own_flags = if ty.is_metatype { mem.u64_at(addr + l.type_.tp_flags, "tp_flags")? } else { 0 };
    let pre = l.getsizeof_preheader(ty.flags, ty.is_metatype, ty.is_type_type, own_flags);
    Ok((sizeof.saturating_add(pre), exact))
}

/// `dict.__sizeof__` (`_PyDict_SizeOf`), with the basic size of the object's own type.
fn dict_sizeof<M: Memory + ?Sized>(mem: &M, l: &Layout, head: &[u8], ty: &TypeInfo) -> Result<u64> {
    let field = |at: u64| le_u64(head, at).ok_or_else(|| Error::Corrupt("object header".into()));
    let keys = dict_keys(mem, l, field(l.dict.keys)?)?;
    let mut n = ty.basicsize;
    if field(l.dict.values)? != 0 {
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
    let nlocals_at = s.code.nlocalsplus.ok_or_else(|| Error::Corrupt("no code layout".into()))?;
    check_ptr(code, "code")?;
    let lo = s.code.stacksize.min(nlocals_at);
    let b = mem.bytes_at(code + lo, (s.code.stacksize.max(nlocals_at) - lo + 4) as usize, "code sizes")?;
    let int_at = |at: u64| le_u32(&b, at - lo).map(|v| v as i32 as i64).unwrap_or(-1);
    let (stack, nlocals) = (int_at(s.code.stacksize), int_at(nlocals_at));
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
    let size = l.sizeof.struct_.formatcode_size;
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
    let mut size = match &s.code.v39 {
        // 3.11+: `_PyObject_VAR_SIZE`, rounded up to a pointer.
        None => default.div_ceil(8) * 8,
        Some(c) => {
            let mut n = ty.basicsize;
            let cellvars = mem.u64_at(addr + c.cellvars, "co_cellvars")?;
            if mem.u64_at(addr + c.cell2arg, "co_cell2arg")? != 0 && cellvars != 0 {
                n += 8 * mem.u64_at(cellvars + l.object.ob_size, "len(co_cellvars)")?.min(1 << 20);
            }
            if mem.u64_at(addr + c.opcache, "co_opcache")? != 0 {
                let code = mem.u64_at(addr + c.code, "co_code")?;
                n += mem.u64_at(code + l.object.ob_size, "len(co_code)")?.min(1 << 32) / 2;
                n += c.opcache_entry * mem.u8_at(addr + c.opcache_size, "co_opcache_size")? as u64;
            }
            n
        }
    };
    let extra = mem.u64_at(addr + s.code.extra, "co_extra")?;
    if extra != 0 {
        let n = mem.u64_at(extra, "co_extra.ce_size")?.min(1 << 16);
        size += 16 + n.saturating_sub(1) * 8;
    }
    Ok(size)
}

/// `ndarray.__sizeof__` (numpy 2): the basic size, the dimensions and strides (`2 * nd` intp), and the
/// data when the array owns it (`prod(shape) * itemsize`). None when the dtype is not numpy 2's.
fn ndarray_sizeof<M: Memory + ?Sized>(
    mem: &M,
    l: &Layout,
    addr: u64,
    head: &[u8],
    ty: &TypeInfo,
) -> Result<Option<u64>> {
    let np = &NUMPY_2;
    let Some(a) = NdArray::read(mem, l, addr, head)? else { return Ok(None) };
    let mut n = ty.basicsize + 16 * a.nd;
    if a.flags & np.owndata != 0 {
        n += a.items.saturating_mul(a.elsize);
    }
    Ok(Some(n))
}

/// A numpy 2 array, decoded.
#[derive(Clone, Copy, Debug)]
pub struct NdArray {
    pub data: u64,
    pub nd: u64,
    /// The product of its dimensions.
    pub items: u64,
    pub flags: u64,
    pub elsize: u64,
    pub base: u64,
    pub descr: u64,
    /// `descr->flags` has `NPY_ITEM_REFCOUNT`, and `type_num` is `NPY_OBJECT`.
    pub item_refcount: bool,
    pub object_items: bool,
}

impl NdArray {
    /// The array at `addr` (its first bytes in `head`); None when its dtype is not numpy 2's.
    pub fn read<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, head: &[u8]) -> Result<Option<NdArray>> {
        let np = &NUMPY_2;
        let word = |at: u64| le_u64(head, at).ok_or_else(|| Error::Corrupt("ndarray header".into()));
        let nd = le_u32(head, np.nd).ok_or_else(|| Error::Corrupt("ndarray header".into()))? as u64;
        if nd > np.max_dims {
            return Err(Error::Corrupt(format!("ndarray at {addr:#x}: {nd} dimensions")));
        }
        let descr = check_ptr(word(np.descr)?, "ndarray descr")?;
        let mut d = [0u8; 48];
        mem.read_into(descr, &mut d, "dtype")?;
        let dtype_type = le_u64(&d, l.object.ob_type).unwrap_or(0);
        let dtype_basicsize =
            mem.u64_at(check_ptr(dtype_type, "dtype type")? + l.type_.tp_basicsize, "tp_basicsize")?;
        if dtype_basicsize < np.descr_basicsize_min {
            return Ok(None);
        }
        let elsize = le_u64(&d, np.descr_elsize).unwrap_or(0);
        let descr_flags = le_u64(&d, np.descr_flags).unwrap_or(0);
        let type_num = le_u32(&d, np.descr_type_num).unwrap_or(0);
        let mut items = 1u64;
        if nd > 0 {
            let dims = mem.bytes_at(check_ptr(word(np.dimensions)?, "ndarray dimensions")?, 8 * nd as usize, "dims")?;
            for c in dims.chunks_exact(8) {
                let dim = i64::from_le_bytes(c.try_into().expect("8 bytes"));
                if !(0..1 << 48).contains(&dim) {
                    return Err(Error::Corrupt(format!("ndarray at {addr:#x}: dimension {dim}")));
                }
                items = items.saturating_mul(dim as u64);
            }
        }
        if elsize > 1 << 32 || items > 1 << 48 {
            return Err(Error::Corrupt(format!("ndarray at {addr:#x}: {items} items of {elsize} bytes")));
        }
        Ok(Some(NdArray {
            data: word(np.data)?,
            nd,
            items,
            flags: le_u32(head, np.flags).unwrap_or(0) as u64,
            elsize,
            base: word(np.base)?,
            descr,
            item_refcount: descr_flags & np.item_refcount != 0,
            object_items: type_num == np.object_type_num,
        }))
    }
}
