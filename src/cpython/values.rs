//! The short value of an object, what makes a heap readable without its bytes: the first characters of
//! a `str`, the first bytes of a `bytes`, an `int` that fits 64 bits, a `float`, the length of a list,
//! tuple or dict. Read with bounds, like every decoding here; an object whose value cannot be read has
//! none.

use python_bindings::{flags, Layout, LongLayout};
use serde::{Deserialize, Serialize};

use super::objects::read_str_prefix;
use crate::memory::{le_u64, Memory, ReadExt};

/// Most characters of a `str` and bytes of a `bytes` kept.
pub const VALUE_PREFIX: usize = 64;
/// Most digits (30 bits each) of an `int` read: three hold every 64-bit value.
const MAX_DIGITS: u64 = 3;

/// What an object holds, shortly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Value {
    /// The first [`VALUE_PREFIX`] characters and the length in characters.
    Str {
        text: String,
        len: u64,
    },
    /// The first [`VALUE_PREFIX`] bytes and the length.
    Bytes {
        data: Vec<u8>,
        len: u64,
    },
    Int {
        value: i64,
    },
    Float {
        value: f64,
    },
    /// A list's, tuple's or dict's number of items.
    Len {
        len: u64,
    },
}

/// Which value an instance of a type has (from the type's flags and name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    None,
    Str,
    Bytes,
    Int,
    Float,
    /// `ob_size` (lists, tuples).
    Size,
    /// `ma_used`.
    DictLen,
}

impl ValueKind {
    pub fn of(type_flags: u64, type_name: &str) -> ValueKind {
        if type_flags & flags::UNICODE_SUBCLASS != 0 {
            ValueKind::Str
        } else if type_flags & flags::BYTES_SUBCLASS != 0 {
            ValueKind::Bytes
        } else if type_flags & flags::LONG_SUBCLASS != 0 {
            ValueKind::Int
        } else if type_flags & (flags::LIST_SUBCLASS | flags::TUPLE_SUBCLASS) != 0 {
            ValueKind::Size
        } else if type_flags & flags::DICT_SUBCLASS != 0 {
            ValueKind::DictLen
        } else if type_name == "builtins.float" {
            ValueKind::Float
        } else {
            ValueKind::None
        }
    }
}

/// The value of the object at `addr`, of a type of kind `kind`.
pub fn read<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64, kind: ValueKind) -> Option<Value> {
    match kind {
        ValueKind::None => None,
        ValueKind::Str => read_str_prefix(mem, l, addr, VALUE_PREFIX).ok().map(|(text, len)| Value::Str { text, len }),
        ValueKind::Bytes => {
            let len = mem.u64_at(addr + l.object.ob_size, "bytes size").ok()?;
            if len > 1 << 48 {
                return None;
            }
            let data =
                mem.bytes_at(addr + l.scalars.bytes_sval, len.min(VALUE_PREFIX as u64) as usize, "bytes").ok()?;
            Some(Value::Bytes { data, len })
        }
        ValueKind::Int => int_value(mem, l, addr).map(|value| Value::Int { value }),
        ValueKind::Float => {
            mem.u64_at(addr + l.scalars.float_fval, "float").ok().map(|b| Value::Float { value: f64::from_bits(b) })
        }
        ValueKind::Size => {
            let len = mem.u64_at(addr + l.object.ob_size, "size").ok()?;
            (len < 1 << 48).then_some(Value::Len { len })
        }
        ValueKind::DictLen => {
            let len = mem.u64_at(addr + l.dict.used, "ma_used").ok()?;
            (len < 1 << 48).then_some(Value::Len { len })
        }
    }
}

/// The value of an `int` when it fits 64 bits.
pub fn int_value<M: Memory + ?Sized>(mem: &M, l: &Layout, addr: u64) -> Option<i64> {
    let head = l.object.ob_size;
    let b = mem.bytes_at(addr + head, 8 + 4 * MAX_DIGITS as usize, "int").ok()?;
    let w = le_u64(&b, 0)?;
    let (n, negative) = match l.long {
        LongLayout::ObSize { .. } => {
            let s = w as i64;
            (s.unsigned_abs(), s < 0)
        }
        LongLayout::LvTag => (w >> 3, w & 3 == 2),
    };
    if n > MAX_DIGITS {
        return None;
    }
    let mut v: u128 = 0;
    for i in (0..n).rev() {
        let d = u32::from_le_bytes(b[8 + 4 * i as usize..12 + 4 * i as usize].try_into().ok()?) as u128;
        if d >= 1 << 30 {
            return None;
        }
        v = (v << 30) | d;
    }
    if negative {
        if v > i64::MAX as u128 + 1 {
            return None;
        }
        Some((v as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::FakeMemory;

    fn long_at(mem: &mut FakeMemory, addr: u64, tag: u64, digits: &[u32]) {
        let mut b = vec![0u8; 48];
        b[16..24].copy_from_slice(&tag.to_le_bytes());
        for (i, d) in digits.iter().enumerate() {
            b[24 + 4 * i..28 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        mem.add(addr, b);
    }

    #[test]
    fn ints_of_both_layouts() {
        let l312 = python_bindings::versions::V3_12;
        let l311 = python_bindings::versions::V3_11;
        let mut m = FakeMemory::new();
        // 3.12+: lv_tag = digits << 3 | sign (0 positive, 1 zero, 2 negative).
        long_at(&mut m, 0x1000, 2 << 3 | 2, &[5, 1]);
        assert_eq!(int_value(&m, &l312, 0x1000), Some(-((1 << 30) + 5)));
        long_at(&mut m, 0x2000, 1, &[]);
        assert_eq!(int_value(&m, &l312, 0x2000), Some(0));
        // i64::MAX = 2^63 - 1: digits 0x3fffffff, 0x3fffffff, 7.
        long_at(&mut m, 0x3000, 3 << 3, &[0x3fff_ffff, 0x3fff_ffff, 7]);
        assert_eq!(int_value(&m, &l312, 0x3000), Some(i64::MAX));
        long_at(&mut m, 0x4000, 3 << 3, &[0, 0, 8]);
        assert_eq!(int_value(&m, &l312, 0x4000), None, "2^63 does not fit");
        long_at(&mut m, 0x5000, 3 << 3 | 2, &[0, 0, 8]);
        assert_eq!(int_value(&m, &l312, 0x5000), Some(i64::MIN));
        // ≤3.11: ob_size is the signed digit count.
        long_at(&mut m, 0x6000, (-1i64) as u64, &[42]);
        assert_eq!(int_value(&m, &l311, 0x6000), Some(-42));
        long_at(&mut m, 0x7000, 4, &[1, 1, 1, 1]);
        assert_eq!(int_value(&m, &l311, 0x7000), None);
    }
}
