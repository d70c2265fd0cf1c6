//! `_Py_DebugOffsets` (3.13+): the table every 3.13+ interpreter keeps at the start of `_PyRuntime`, filled
//! at compile time with `offsetof`/`sizeof` of its own structs. Its own shape grows with each minor
//! version, so each minor version has a schema: where each field of interest sits inside the table.
//! All fields are little-endian `u64`; the table starts with the cookie `"xdebugpy"`.

use crate::Version;

pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// How many bytes of the table to read to decode every field of every known schema.
pub const READ_SIZE: usize = 0x400;

/// The values memspy takes from the table (each an offset or a size inside the target's structs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugOffsets {
    pub version_hex: u64,
    pub free_threaded: bool,
    pub runtime_size: u64,
    pub interpreters_head: u64,
    pub interp_size: u64,
    pub interp_next: u64,
    pub interp_threads_head: u64,
    pub interp_gc: u64,
    pub interp_modules: u64,
    pub interp_sysdict: u64,
    pub interp_builtins: u64,
    pub pyobject_size: u64,
    pub ob_type: u64,
    pub type_size: u64,
    pub tp_name: u64,
    pub tp_flags: u64,
    pub tuple_item: u64,
    pub list_item: u64,
    pub dict_keys: u64,
    pub dict_values: u64,
    pub unicode_state: u64,
    pub unicode_length: u64,
    pub unicode_ascii_size: u64,
    pub gc_size: u64,
    pub gc_collecting: u64,
    /// 3.15: `gc.frame` (non-NULL while a collection runs) and `gc.generation_stats`.
    pub gc_frame: Option<u64>,
    pub gc_generation_stats: Option<u64>,
}

/// Position (inside the table) of each field, for one minor version.
struct Schema {
    runtime_size: usize,
    interpreters_head: usize,
    interp_size: usize,
    interp_next: usize,
    interp_threads_head: usize,
    interp_gc: usize,
    interp_modules: usize,
    interp_sysdict: usize,
    interp_builtins: usize,
    pyobject_size: usize,
    ob_type: usize,
    type_size: usize,
    tp_name: usize,
    tp_flags: usize,
    tuple_item: usize,
    list_item: usize,
    dict_keys: usize,
    dict_values: usize,
    unicode_length: usize,
    unicode_state: usize,
    unicode_ascii_size: usize,
    gc_size: usize,
    gc_collecting: usize,
    gc_frame: Option<usize>,
    gc_generation_stats: Option<usize>,
}

const SCHEMA_313: Schema = Schema {
    runtime_size: 0x18,
    interpreters_head: 0x28,
    interp_size: 0x30,
    interp_next: 0x40,
    interp_threads_head: 0x48,
    interp_gc: 0x50,
    interp_modules: 0x58,
    interp_sysdict: 0x60,
    interp_builtins: 0x68,
    pyobject_size: 0x160,
    ob_type: 0x168,
    type_size: 0x170,
    tp_name: 0x178,
    tp_flags: 0x188,
    tuple_item: 0x198,
    list_item: 0x1b0,
    dict_keys: 0x1c8,
    dict_values: 0x1d0,
    unicode_state: 0x220,
    unicode_length: 0x228,
    unicode_ascii_size: 0x230,
    gc_size: 0x238,
    gc_collecting: 0x240,
    gc_frame: None,
    gc_generation_stats: None,
};

const SCHEMA_314: Schema = Schema {
    runtime_size: 0x18,
    interpreters_head: 0x28,
    interp_size: 0x30,
    interp_next: 0x40,
    interp_threads_head: 0x48,
    interp_gc: 0x58,
    interp_modules: 0x60,
    interp_sysdict: 0x68,
    interp_builtins: 0x70,
    pyobject_size: 0x190,
    ob_type: 0x198,
    type_size: 0x1a0,
    tp_name: 0x1a8,
    tp_flags: 0x1b8,
    tuple_item: 0x1c8,
    list_item: 0x1e0,
    dict_keys: 0x218,
    dict_values: 0x220,
    unicode_state: 0x270,
    unicode_length: 0x278,
    unicode_ascii_size: 0x280,
    gc_size: 0x288,
    gc_collecting: 0x290,
    gc_frame: None,
    gc_generation_stats: None,
};

const SCHEMA_315: Schema = Schema {
    runtime_size: 0x18,
    interpreters_head: 0x28,
    interp_size: 0x30,
    interp_next: 0x40,
    interp_threads_head: 0x48,
    interp_gc: 0x58,
    interp_modules: 0x60,
    interp_sysdict: 0x68,
    interp_builtins: 0x70,
    pyobject_size: 0x1d0,
    ob_type: 0x1d8,
    type_size: 0x1e0,
    tp_name: 0x1e8,
    tp_flags: 0x1f8,
    tuple_item: 0x228,
    list_item: 0x240,
    dict_keys: 0x278,
    dict_values: 0x280,
    unicode_state: 0x2d0,
    unicode_length: 0x2d8,
    unicode_ascii_size: 0x2e0,
    gc_size: 0x2f0,
    gc_collecting: 0x2f8,
    gc_frame: Some(0x300),
    gc_generation_stats: Some(0x310),
};

#[derive(Debug, PartialEq, Eq)]
pub enum DebugOffsetsError {
    /// No cookie: the build predates 3.13 (or this is not `_PyRuntime`).
    NoCookie,
    /// The cookie is there but the version field is not a CPython version.
    BadVersion(u64),
    /// A minor version memspy has no schema for.
    UnknownSchema(Version),
    /// The table is there but its values are not plausible for a 64-bit build.
    Implausible(String),
    /// Fewer bytes than the schema needs.
    Short,
}

impl std::fmt::Display for DebugOffsetsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DebugOffsetsError::NoCookie => write!(f, "no _Py_DebugOffsets cookie"),
            DebugOffsetsError::BadVersion(v) => write!(f, "_Py_DebugOffsets has an invalid version {v:#x}"),
            DebugOffsetsError::UnknownSchema(v) => write!(f, "no _Py_DebugOffsets schema for Python {v}"),
            DebugOffsetsError::Implausible(s) => write!(f, "implausible _Py_DebugOffsets: {s}"),
            DebugOffsetsError::Short => write!(f, "_Py_DebugOffsets truncated"),
        }
    }
}

impl std::error::Error for DebugOffsetsError {}

/// Whether these bytes (read at `_PyRuntime`) start with the cookie.
pub fn has_cookie(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..8] == COOKIE
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, DebugOffsetsError> {
    let b = bytes.get(at..at + 8).ok_or(DebugOffsetsError::Short)?;
    Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Decodes the table from bytes read at `_PyRuntime` (at least [`READ_SIZE`] of them when available).
pub fn parse(bytes: &[u8]) -> Result<DebugOffsets, DebugOffsetsError> {
    if !has_cookie(bytes) {
        return Err(DebugOffsetsError::NoCookie);
    }
    let version_hex = u64_at(bytes, 8)?;
    let version = Version::from_hex(version_hex).ok_or(DebugOffsetsError::BadVersion(version_hex))?;
    let schema = match version.minor {
        13 => &SCHEMA_313,
        14 => &SCHEMA_314,
        15 => &SCHEMA_315,
        _ => return Err(DebugOffsetsError::UnknownSchema(version)),
    };
    let g = |at: usize| u64_at(bytes, at);
    let d = DebugOffsets {
        version_hex,
        free_threaded: g(0x10)? != 0,
        runtime_size: g(schema.runtime_size)?,
        interpreters_head: g(schema.interpreters_head)?,
        interp_size: g(schema.interp_size)?,
        interp_next: g(schema.interp_next)?,
        interp_threads_head: g(schema.interp_threads_head)?,
        interp_gc: g(schema.interp_gc)?,
        interp_modules: g(schema.interp_modules)?,
        interp_sysdict: g(schema.interp_sysdict)?,
        interp_builtins: g(schema.interp_builtins)?,
        pyobject_size: g(schema.pyobject_size)?,
        ob_type: g(schema.ob_type)?,
        type_size: g(schema.type_size)?,
        tp_name: g(schema.tp_name)?,
        tp_flags: g(schema.tp_flags)?,
        tuple_item: g(schema.tuple_item)?,
        list_item: g(schema.list_item)?,
        dict_keys: g(schema.dict_keys)?,
        dict_values: g(schema.dict_values)?,
        unicode_state: g(schema.unicode_state)?,
        unicode_length: g(schema.unicode_length)?,
        unicode_ascii_size: g(schema.unicode_ascii_size)?,
        gc_size: g(schema.gc_size)?,
        gc_collecting: g(schema.gc_collecting)?,
        gc_frame: schema.gc_frame.map(g).transpose()?,
        gc_generation_stats: schema.gc_generation_stats.map(g).transpose()?,
    };
    d.validate()?;
    Ok(d)
}

impl DebugOffsets {
    pub fn version(&self) -> Version {
        Version::from_hex(self.version_hex).expect("validated in parse")
    }

    /// Rejects tables whose values cannot describe a 64-bit CPython (a wrong schema reads garbage).
    fn validate(&self) -> Result<(), DebugOffsetsError> {
        let bad = |what: &str, v: u64| Err(DebugOffsetsError::Implausible(format!("{what} = {v}")));
        let header = if self.free_threaded { 32 } else { 16 };
        if self.pyobject_size != header {
            return bad("pyobject.size", self.pyobject_size);
        }
        if self.ob_type != header - 8 {
            return bad("pyobject.ob_type", self.ob_type);
        }
        if !(1000..=10_000_000).contains(&self.runtime_size) || self.interpreters_head >= self.runtime_size {
            return bad("runtime_state", self.runtime_size);
        }
        if !(1000..=10_000_000).contains(&self.interp_size) {
            return bad("interpreter_state.size", self.interp_size);
        }
        for (what, v) in [
            ("interp.next", self.interp_next),
            ("interp.threads_head", self.interp_threads_head),
            ("interp.gc", self.interp_gc),
            ("interp.modules", self.interp_modules),
            ("interp.sysdict", self.interp_sysdict),
            ("interp.builtins", self.interp_builtins),
        ] {
            if v >= self.interp_size {
                return bad(what, v);
            }
        }
        if self.interp_gc.saturating_add(self.gc_size) > self.interp_size || !(64..=4096).contains(&self.gc_size) {
            return bad("gc.size", self.gc_size);
        }
        if !(256..=1024).contains(&self.type_size) || self.tp_flags >= self.type_size {
            return bad("type_object.size", self.type_size);
        }
        if self.tuple_item > 64 || self.list_item > 64 || self.dict_keys > 64 || self.dict_values > 64 {
            return bad("container offsets", self.tuple_item);
        }
        Ok(())
    }
}

/// A plausible `_Py_DebugOffsets` table (values of a 3.13/3.14 x86_64 build) for tests of memspy that
/// need one in a synthetic memory image, e.g. to check that free-threaded builds are refused.
#[doc(hidden)]
pub fn synthetic_table(version_hex: u64, free_threaded: bool) -> Option<Vec<u8>> {
    let schema = match Version::from_hex(version_hex)?.minor {
        13 => &SCHEMA_313,
        14 => &SCHEMA_314,
        15 => &SCHEMA_315,
        _ => return None,
    };
    let header: u64 = if free_threaded { 32 } else { 16 };
    let mut b = vec![0u8; READ_SIZE];
    b[..8].copy_from_slice(COOKIE);
    let mut put = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(8, version_hex);
    put(0x10, free_threaded as u64);
    for (at, v) in [
        (schema.runtime_size, 316616),
        (schema.interpreters_head, 808),
        (schema.interp_size, 225864),
        (schema.interp_next, 7272),
        (schema.interp_threads_head, 7344),
        (schema.interp_gc, 7408),
        (schema.interp_modules, 7688),
        (schema.interp_sysdict, 7672),
        (schema.interp_builtins, 7680),
        (schema.pyobject_size, header),
        (schema.ob_type, header - 8),
        (schema.type_size, 416),
        (schema.tp_name, 24),
        (schema.tp_flags, 168),
        (schema.tuple_item, 32),
        (schema.list_item, 24),
        (schema.dict_keys, 32),
        (schema.dict_values, 40),
        (schema.gc_size, 264),
        (schema.gc_collecting, 192),
    ] {
        put(at, v);
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(version: u64, schema: &Schema, values: &[(usize, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; READ_SIZE];
        b[..8].copy_from_slice(COOKIE);
        let mut put = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(8, version);
        put(schema.runtime_size, 316616);
        put(schema.interpreters_head, 808);
        put(schema.interp_size, 225864);
        put(schema.interp_next, 7272);
        put(schema.interp_threads_head, 7344);
        put(schema.interp_gc, 7408);
        put(schema.interp_modules, 7688);
        put(schema.interp_sysdict, 7672);
        put(schema.interp_builtins, 7680);
        put(schema.pyobject_size, 16);
        put(schema.ob_type, 8);
        put(schema.type_size, 416);
        put(schema.tp_name, 24);
        put(schema.tp_flags, 168);
        put(schema.tuple_item, 32);
        put(schema.list_item, 24);
        put(schema.dict_keys, 32);
        put(schema.dict_values, 40);
        put(schema.gc_size, 264);
        put(schema.gc_collecting, 192);
        for (at, v) in values {
            put(*at, *v);
        }
        b
    }

    #[test]
    fn parses_314() {
        let b = table(0x30e0af0, &SCHEMA_314, &[]);
        let d = parse(&b).unwrap();
        assert_eq!(d.version().to_string(), "3.14.10");
        assert_eq!(d.interp_gc, 7408);
        assert_eq!(d.gc_size, 264);
        assert!(!d.free_threaded);
    }

    #[test]
    fn synthetic_tables_parse() {
        let d = parse(&synthetic_table(0x30d00f0, true).unwrap()).unwrap();
        assert!(d.free_threaded);
        assert_eq!(d.ob_type, 24);
        let d = parse(&synthetic_table(0x30e0af0, false).unwrap()).unwrap();
        assert!(!d.free_threaded);
        assert!(synthetic_table(0x30c01f0, false).is_none());
        // A huge gc.size from garbage is refused, not an overflow.
        let mut b = synthetic_table(0x30e0af0, false).unwrap();
        b[SCHEMA_314.gc_size..SCHEMA_314.gc_size + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(parse(&b), Err(DebugOffsetsError::Implausible(_))));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(&[0u8; 64]), Err(DebugOffsetsError::NoCookie));
        let b = table(0x30e0af0, &SCHEMA_314, &[(SCHEMA_314.pyobject_size, 24)]);
        assert!(matches!(parse(&b), Err(DebugOffsetsError::Implausible(_))));
        let b = table(0x3100000 | 0xf0, &SCHEMA_314, &[]);
        assert!(matches!(parse(&b), Err(DebugOffsetsError::UnknownSchema(_))));
        let b = table(0x30e0af0, &SCHEMA_314, &[]);
        assert_eq!(parse(&b[..0x100]), Err(DebugOffsetsError::Short));
    }
}
