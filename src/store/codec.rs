//! The encodings of a dump's sections: LEB128 varints, zigzag for signed deltas, length-prefixed
//! strings, and a bounded reader that names what it was reading when the bytes ran out.

use crate::error::{Error, Result};

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads a section's bytes front to back; every read is bounded by what is left.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    section: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], section: &'static str) -> Self {
        Reader { buf, at: 0, section }
    }

    fn short(&self, what: &str) -> Error {
        Error::BadDump(format!("section {} ends inside {what} (byte {} of {})", self.section, self.at, self.buf.len()))
    }

    pub fn varint(&mut self, what: &str) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let &b = self.buf.get(self.at).ok_or_else(|| self.short(what))?;
            self.at += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::BadDump(format!("section {}: a varint of {what} longer than 64 bits", self.section)))
    }

    /// A varint that must fit `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        let v = self.varint(what)?;
        u32::try_from(v).map_err(|_| Error::BadDump(format!("section {}: {what} {v} out of range", self.section)))
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.buf.len() - self.at
    }

    /// A count of items, each at least `min_bytes` long: it cannot exceed what is left.
    pub fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let n = self.varint(what)?;
        let left = (self.buf.len() - self.at) as u64;
        if n.saturating_mul(min_bytes.max(1) as u64) > left {
            return Err(Error::BadDump(format!("section {}: {n} {what} in {left} bytes", self.section)));
        }
        Ok(n as usize)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        let &b = self.buf.get(self.at).ok_or_else(|| self.short(what))?;
        self.at += 1;
        Ok(b)
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| self.short(what))?;
        let b = &self.buf[self.at..end];
        self.at = end;
        Ok(b)
    }

    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.varint(what)?;
        let n = usize::try_from(n).map_err(|_| self.short(what))?;
        self.take(n, what)
    }

    pub fn string(&mut self, what: &str) -> Result<String> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::BadDump(format!("section {}: {what} is not UTF-8", self.section)))
    }

    pub fn position(&self) -> usize {
        self.at
    }

    pub fn done(&self) -> bool {
        self.at == self.buf.len()
    }
}

/// A section's tag as text, for errors.
pub fn tag_name(t: &[u8; 4]) -> String {
    String::from_utf8_lossy(t).into_owned()
}

/// The payload of section `tag`, or what is missing.
pub fn need<'a>(
    s: &'a std::collections::HashMap<[u8; 4], Vec<u8>>,
    tag: &[u8; 4],
) -> std::result::Result<&'a [u8], String> {
    s.get(tag).map(|v| v.as_slice()).ok_or_else(|| format!("no section {}", tag_name(tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        let mut b = Vec::new();
        let vals = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        for &v in &vals {
            put_varint(&mut b, v);
        }
        let mut r = Reader::new(&b, "test");
        for &v in &vals {
            assert_eq!(r.varint("v").unwrap(), v);
        }
        assert!(r.done());
        assert!(r.varint("past the end").is_err());
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -123456] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left() {
        let mut b = Vec::new();
        put_varint(&mut b, 1 << 40);
        assert!(Reader::new(&b, "test").count("items", 1).is_err());
        let mut r = Reader::new(&[0xff; 11], "test");
        assert!(r.varint("long").is_err());
    }
}
