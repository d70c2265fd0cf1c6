//! `/proc/PID/maps`, parsed.

use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub offset: u64,
    pub inode: u64,
    /// Shared by the entries of one file (a core's rebuilt map names one file in thousands of them).
    pub path: Option<Arc<str>>,
}

/// A mapping's permissions as the maps file spells them (`r-xp`): four ASCII characters, no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Perms([u8; 4]);

impl Perms {
    /// The first four characters of `s`, '-' for what is missing, '?' for what is not ASCII.
    pub fn new(s: &str) -> Perms {
        let mut p = [b'-'; 4];
        for (out, b) in p.iter_mut().zip(s.bytes()) {
            *out = if b.is_ascii_graphic() { b } else { b'?' };
        }
        Perms(p)
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("????")
    }
    pub fn writable(&self) -> bool {
        self.0[1] == b'w'
    }
    pub fn readable_writable(&self) -> bool {
        self.0[..2] == *b"rw"
    }
}

impl std::fmt::Debug for Perms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl MapEntry {
    pub fn readable(&self) -> bool {
        self.perms.0[0] == b'r'
    }
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

#[derive(Clone, Debug, Default)]
pub struct Maps {
    pub entries: Vec<MapEntry>,
}

impl Maps {
    pub fn read(pid: i32) -> std::io::Result<Maps> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
        Ok(Maps::parse(&text))
    }

    pub fn parse(text: &str) -> Maps {
        let mut entries = Vec::new();
        for line in text.lines() {
            let mut it = line.splitn(6, ' ');
            let (Some(range), Some(perms), Some(offset), Some(_dev), Some(inode)) =
                (it.next(), it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            let Some((s, e)) = range.split_once('-') else { continue };
            let (Ok(start), Ok(end), Ok(offset)) =
                (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16), u64::from_str_radix(offset, 16))
            else {
                continue;
            };
            let path = it.next().map(str::trim_start).filter(|p| !p.is_empty()).map(Arc::from);
            entries.push(MapEntry {
                start,
                end,
                perms: Perms::new(perms),
                offset,
                inode: inode.parse().unwrap_or(0),
                path,
            });
        }
        Maps { entries }
    }

    /// The mapping that holds `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<&MapEntry> {
        self.entries.iter().find(|m| m.contains(addr))
    }

    /// Whether [addr, addr+len) lies in readable mappings.
    pub fn readable(&self, addr: u64, len: u64) -> bool {
        let mut at = addr;
        let end = addr.saturating_add(len);
        while at < end {
            match self.find(at) {
                Some(m) if m.readable() => at = m.end,
                _ => return false,
            }
        }
        true
    }

    /// Distinct file paths that are mapped.
    pub fn files(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for m in &self.entries {
            if let Some(p) = m.path.as_deref() {
                if p.starts_with('/') && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// The mappings of one file.
    pub fn of_file<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a MapEntry> + 'a {
        self.entries.iter().filter(move |m| m.path.as_deref() == Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let m = Maps::parse(
            "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/python3.11\n\
             7ffd1000-7ffd2000 rw-p 00000000 00:00 0 \n\
             7f00-7f10 r--p 00001000 08:02 99   /lib/libpython3.12.so.1.0 (deleted)\n",
        );
        assert_eq!(m.entries.len(), 3);
        assert_eq!(m.entries[0].path.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(m.entries[1].path, None);
        assert_eq!(m.entries[2].offset, 0x1000);
        assert_eq!((m.entries[0].perms.as_str(), m.entries[1].perms.writable()), ("r-xp", true));
        assert!(m.entries[0].readable() && !m.entries[0].perms.writable());
        assert!(m.readable(0x400000, 0x10));
        assert!(!m.readable(0x452000, 1));
        assert_eq!(m.files(), vec!["/usr/bin/python3.11", "/lib/libpython3.12.so.1.0 (deleted)"]);
    }
}
