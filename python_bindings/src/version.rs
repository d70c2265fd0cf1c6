//! CPython versions as `PY_VERSION_HEX` encodes them, and the range memspy supports.

use std::fmt;

/// A CPython version as `PY_VERSION_HEX` encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub micro: u8,
    /// 0xA alpha, 0xB beta, 0xC release candidate, 0xF final.
    pub level: u8,
    pub serial: u8,
}

impl Version {
    pub const fn new(major: u8, minor: u8, micro: u8) -> Version {
        Version { major, minor, micro, level: 0xF, serial: 0 }
    }

    pub fn from_hex(hex: u64) -> Option<Version> {
        let v = Version {
            major: ((hex >> 24) & 0xff) as u8,
            minor: ((hex >> 16) & 0xff) as u8,
            micro: ((hex >> 8) & 0xff) as u8,
            level: ((hex >> 4) & 0xf) as u8,
            serial: (hex & 0xf) as u8,
        };
        if hex >> 32 != 0 || v.major != 3 || v.minor > 40 || !matches!(v.level, 0xA | 0xB | 0xC | 0xF) {
            return None;
        }
        Some(v)
    }

    pub fn hex(&self) -> u64 {
        (self.major as u64) << 24
            | (self.minor as u64) << 16
            | (self.micro as u64) << 8
            | (self.level as u64) << 4
            | self.serial as u64
    }

    /// Parses "3.12.1", "3.13.0rc2", "3.15.0b4"; trailing text after the version is ignored.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).unwrap_or(s.len());
        let s = &s[..end];
        let mut parts = s.splitn(3, '.');
        let major: u8 = parts.next()?.parse().ok()?;
        let minor: u8 = parts.next()?.parse().ok()?;
        let rest = parts.next().unwrap_or("0");
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let micro: u8 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (level, serial) = if tail.is_empty() {
            (0xF, 0)
        } else {
            let (lvl, num) = if let Some(n) = tail.strip_prefix("rc") {
                (0xC, n)
            } else if let Some(n) = tail.strip_prefix('a') {
                (0xA, n)
            } else if let Some(n) = tail.strip_prefix('b') {
                (0xB, n)
            } else if tail == "+" {
                (0xF, "0")
            } else {
                return None;
            };
            (lvl, num.parse().ok()?)
        };
        Some(Version { major, minor, micro, level, serial })
    }

    pub fn at_least(&self, minor: u8, micro: u8) -> bool {
        (self.minor, self.micro) >= (minor, micro)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        match self.level {
            0xA => write!(f, "a{}", self.serial),
            0xB => write!(f, "b{}", self.serial),
            0xC => write!(f, "rc{}", self.serial),
            _ => Ok(()),
        }
    }
}

/// The oldest and newest minor versions memspy has layouts for.
pub const OLDEST_MINOR: u8 = 9;
pub const NEWEST_MINOR: u8 = 15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trip() {
        let v = Version::from_hex(0x30c01f0).unwrap();
        assert_eq!(v.to_string(), "3.12.1");
        assert_eq!(v.hex(), 0x30c01f0);
        assert_eq!(Version::parse("3.13.0rc2").unwrap().hex(), 0x30d00c2);
        assert_eq!(Version::parse("3.15.2 (main, Oct 26 2026)").unwrap(), Version::new(3, 15, 2));
        assert!(Version::from_hex(0x20718f0).is_none());
        assert!(Version::parse("x.y").is_none());
    }
}
