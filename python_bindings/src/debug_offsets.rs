//! `_Py_DebugOffsets` (3.13+): the table every 3.13+ interpreter keeps at the start of `_PyRuntime`, filled
//! at compile time with `offsetof`/`sizeof` of its own structs. Its own shape grows with each minor
//! version, so each minor version has a schema: where each field of interest sits inside the table.
//! All fields are little-endian `u64`; the table starts with the cookie `"xdebugpy"`.
//!
//! The fields memspy takes are listed once, in [`FIELDS`]' table below: their C name in
//! `_Py_DebugOffsets`, their position in each schema, and the [`Layout`] member they set. Parsing,
//! validation, applying onto a Layout and the synthetic tables for tests all derive from it.

use crate::{Layout, Version};

pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// How many bytes of the table to read to decode every field of every known schema.
pub const READ_SIZE: usize = 0x400;

/// The minor versions that have a schema, in the order of the position columns below.
pub const SCHEMA_MINORS: [u8; 3] = [13, 14, 15];

/// One field of `_Py_DebugOffsets` that memspy reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The [`DebugOffsets`] member.
    pub name: &'static str,
    /// Its path in the C struct `_Py_DebugOffsets`.
    pub c_name: &'static str,
    /// Its position in the table for each of [`SCHEMA_MINORS`] (None: not in that version's table).
    pub at: [Option<usize>; 3],
    /// The [`Layout`] member it sets, if any ("" for fields that only select or validate, and for those
    /// [`Layout::apply_debug_offsets`] sets itself).
    pub sets: &'static str,
}

macro_rules! position {
    (-) => {
        None
    };
    ($at:literal) => {
        Some($at)
    };
}

macro_rules! debug_offsets_table {
    (
        in every schema {
            $( $(#[doc = $rdoc:literal])* $rname:ident $rc:literal [$($rat:literal),+] $rsyn:literal
               $(=> $rs0:ident $(. $rset:ident)*)? ; )*
        }
        in some schemas {
            $( $(#[doc = $odoc:literal])* $oname:ident $oc:literal [$($oat:tt),+]
               $(=> $os0:ident $(. $oset:ident)*)? ; )*
        }
    ) => {
        /// The values memspy takes from the table (each an offset or a size inside the target's structs).
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct DebugOffsets {
            pub version_hex: u64,
            pub free_threaded: bool,
            $( $(#[doc = $rdoc])* pub $rname: u64, )*
            $( $(#[doc = $odoc])* pub $oname: Option<u64>, )*
        }

        /// Every field memspy reads, in table order.
        pub const FIELDS: &[Field] = &[
            $( Field {
                name: stringify!($rname),
                c_name: $rc,
                at: [$(Some($rat)),+],
                sets: concat!("" $(, stringify!($rs0) $(, ".", stringify!($rset))*)?),
            }, )*
            $( Field {
                name: stringify!($oname),
                c_name: $oc,
                at: [$(position!($oat)),+],
                sets: concat!("" $(, stringify!($os0) $(, ".", stringify!($oset))*)?),
            }, )*
        ];

        fn decode(bytes: &[u8], schema: usize, version_hex: u64) -> Result<DebugOffsets, DebugOffsetsError> {
            let at = |pos: [Option<usize>; 3]| pos[schema].map(|p| u64_at(bytes, p)).transpose();
            Ok(DebugOffsets {
                version_hex,
                free_threaded: u64_at(bytes, 0x10)? != 0,
                $( $rname: at([$(Some($rat)),+])?.expect("in every schema"), )*
                $( $oname: at([$(position!($oat)),+])?, )*
            })
        }

        /// The values a synthetic table carries (the free-threaded header aside).
        const SYNTHETIC: DebugOffsets = DebugOffsets {
            version_hex: 0,
            free_threaded: false,
            $( $rname: $rsyn, )*
            $( $oname: None, )*
        };

        impl DebugOffsets {
            /// (the Layout member a field sets, its value) for every field that sets one.
            pub fn layout_values(&self) -> Vec<(&'static str, u64)> {
                let every: Vec<Option<(&'static str, u64)>> = vec![
                    $( None $( .or(Some((concat!(stringify!($rs0) $(, ".", stringify!($rset))*), self.$rname))) )?, )*
                    $( None $( .or(self.$oname.map(|v| (concat!(stringify!($os0) $(, ".", stringify!($oset))*), v))) )?, )*
                ];
                every.into_iter().flatten().collect()
            }

            /// Writes every value that sets a Layout member into `l`.
            fn set_members(&self, l: &mut Layout) {
                $( $( l.$rs0 $(.$rset)* = self.$rname; )? )*
                $( $( if let Some(v) = self.$oname { l.$os0 $(.$oset)* = Some(v); } )? )*
            }

            /// The values in table order with their positions in this schema (for synthetic tables).
            fn positioned(&self, schema: usize) -> Vec<(usize, u64)> {
                let every: Vec<(Option<usize>, Option<u64>)> = vec![
                    $( (Some([$($rat),+][schema]), Some(self.$rname)), )*
                    $( ([$(position!($oat)),+][schema], self.$oname), )*
                ];
                every.into_iter().filter_map(|(at, v)| Some((at?, v?))).collect()
            }
        }
    };
}

debug_offsets_table! {
    in every schema {
        // field            C name                              3.13, 3.14, 3.15      synth. => Layout member
        /// `sizeof(_PyRuntimeState)`, `sizeof(PyInterpreterState)`: the exact sizes the walk scans for roots.
        runtime_size        "runtime_state.size"                [0x18, 0x18, 0x18]    316616 => runtime.size;
        interpreters_head   "runtime_state.interpreters_head"   [0x28, 0x28, 0x28]    808
                                                                                          => runtime.interpreters_head;
        interp_size         "interpreter_state.size"            [0x30, 0x30, 0x30]    225864 => interp.size;
        interp_next         "interpreter_state.next"            [0x40, 0x40, 0x40]    7272   => interp.next;
        interp_threads_head "interpreter_state.threads_head"    [0x48, 0x48, 0x48]    7344   => interp.threads_head;
        interp_gc           "interpreter_state.gc"              [0x50, 0x58, 0x58]    7408   => interp.gc;
        interp_modules      "interpreter_state.imports_modules" [0x58, 0x60, 0x60]    7688   => interp.modules;
        interp_sysdict      "interpreter_state.sysdict"         [0x60, 0x68, 0x68]    7672   => interp.sysdict;
        interp_builtins     "interpreter_state.builtins"        [0x68, 0x70, 0x70]    7680   => interp.builtins;
        /// `sizeof(PyObject)`: 16, or 32 in a free-threaded build (validated).
        pyobject_size       "pyobject.size"                     [0x160, 0x190, 0x1d0] 16;
        ob_type             "pyobject.ob_type"                  [0x168, 0x198, 0x1d8] 8      => object.ob_type;
        type_size           "type_object.size"                  [0x170, 0x1a0, 0x1e0] 416    => type_.size;
        tp_name             "type_object.tp_name"               [0x178, 0x1a8, 0x1e8] 24     => type_.tp_name;
        tp_flags            "type_object.tp_flags"              [0x188, 0x1b8, 0x1f8] 168    => type_.tp_flags;
        tuple_item          "tuple_object.ob_item"              [0x198, 0x1c8, 0x228] 32     => tuple.item;
        list_item           "list_object.ob_item"               [0x1b0, 0x1e0, 0x240] 24     => list.item;
        dict_keys           "dict_object.ma_keys"               [0x1c8, 0x218, 0x278] 32     => dict.keys;
        dict_values         "dict_object.ma_values"             [0x1d0, 0x220, 0x280] 40     => dict.values;
        unicode_state       "unicode_object.state"              [0x220, 0x270, 0x2d0] 32     => unicode.state;
        unicode_length      "unicode_object.length"             [0x228, 0x278, 0x2d8] 16     => unicode.length;
        unicode_ascii_size  "unicode_object.asciiobject_size"   [0x230, 0x280, 0x2e0] 40     => unicode.ascii_size;
        /// `sizeof(struct _gc_runtime_state)`: selects the GC layout ([`Layout::gc_layout_for_size`]).
        gc_size             "gc.size"                           [0x238, 0x288, 0x2f0] 264;
        gc_collecting       "gc.collecting"                     [0x240, 0x290, 0x2f8] 192    => gc.collecting;
        /// Where a frame's instruction and a code object's line table and bytecode are (set by
        /// [`Layout::apply_debug_offsets`] itself: `iframe` is optional).
        frame_instr_ptr     "interpreter_frame.instr_ptr"       [0xf8, 0x110, 0x150]  56;
        code_linetable      "code_object.linetable"             [0x130, 0x158, 0x198] 136;
        code_firstlineno    "code_object.firstlineno"           [0x138, 0x160, 0x1a0] 68;
        code_adaptive       "code_object.co_code_adaptive"      [0x158, 0x180, 0x1c0] 208;
    }
    in some schemas {
        /// 3.15: `gc.frame` (non-NULL while a collection runs) and `gc.generation_stats`.
        gc_frame            "gc.frame"                          [-, -, 0x300]                => gc.frame;
        gc_generation_stats "gc.generation_stats"               [-, -, 0x310]                => gc.stats_ptr;
        /// 3.14+: the thread-local bytecode of free-threaded builds (0 in GIL builds: none).
        frame_tlbc_index    "interpreter_frame.tlbc_index"      [-, 0x130, 0x170];
        code_tlbc           "code_object.co_tlbc"               [-, 0x188, 0x1c8];
    }
}

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

/// The column of [`FIELDS`]' positions for a version, if it has a schema.
pub fn schema_index(version: Version) -> Option<usize> {
    SCHEMA_MINORS.iter().position(|m| *m == version.minor)
}

/// Decodes the table from bytes read at `_PyRuntime` (at least [`READ_SIZE`] of them when available).
pub fn parse(bytes: &[u8]) -> Result<DebugOffsets, DebugOffsetsError> {
    if !has_cookie(bytes) {
        return Err(DebugOffsetsError::NoCookie);
    }
    let version_hex = u64_at(bytes, 8)?;
    let version = Version::from_hex(version_hex).ok_or(DebugOffsetsError::BadVersion(version_hex))?;
    let schema = schema_index(version).ok_or(DebugOffsetsError::UnknownSchema(version))?;
    let d = decode(bytes, schema, version_hex)?;
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
        // Every member of PyInterpreterState the table gives lies inside it.
        for (what, v) in self.layout_values() {
            if what.starts_with("interp.") && what != "interp.size" && v >= self.interp_size {
                return bad(what, v);
            }
        }
        if self.interp_gc.saturating_add(self.gc_size) > self.interp_size || !(64..=4096).contains(&self.gc_size) {
            return bad("gc.size", self.gc_size);
        }
        if !(256..=1024).contains(&self.type_size) || self.tp_flags >= self.type_size {
            return bad("type_object.size", self.type_size);
        }
        // Every offset and size the table sets stays below the largest structure's bound, so that adding
        // one to an address can never overflow (found by fuzzing: a tp_name offset near 2^64).
        for (what, v) in self.layout_values() {
            if v > 10_000_000 {
                return bad(what, v);
            }
        }
        if self.frame_instr_ptr > 512 || self.frame_tlbc_index.is_some_and(|v| v > 512) {
            return bad("interpreter_frame.instr_ptr", self.frame_instr_ptr);
        }
        let code = [self.code_linetable, self.code_firstlineno, self.code_adaptive, self.code_tlbc.unwrap_or(0)];
        if code.iter().any(|v| *v > 1024) {
            return bad("code_object", self.code_adaptive);
        }
        if self.tuple_item > 64 || self.list_item > 64 || self.dict_keys > 64 || self.dict_values > 64 {
            return bad("container offsets", self.tuple_item);
        }
        Ok(())
    }
}

impl Layout {
    /// Takes every offset the target's debug table offers: the GC layout its `gc.size` selects, then
    /// each field of [`FIELDS`] that sets a member.
    pub fn apply_debug_offsets(&mut self, d: &DebugOffsets) -> Result<(), String> {
        self.gc = self
            .gc_layout_for_size(d.gc_size)
            .ok_or_else(|| format!("unknown GC state layout for Python {} (gc.size = {})", self.version, d.gc_size))?;
        d.set_members(self);
        if let Some(f) = self.iframe.as_mut() {
            f.instr = d.frame_instr_ptr;
            if let Some(v) = d.frame_tlbc_index {
                f.tlbc_index = (v != 0).then_some(v);
            }
        }
        self.code.linetable = d.code_linetable;
        self.code.firstlineno = d.code_firstlineno;
        self.code.code_adaptive = Some(d.code_adaptive);
        if let Some(v) = d.code_tlbc {
            self.code.tlbc = (v != 0).then_some(v);
        }
        Ok(())
    }
}

/// A plausible `_Py_DebugOffsets` table (values of a 3.13/3.14 x86_64 build) for tests of memspy that
/// need one in a synthetic memory image, e.g. to check that free-threaded builds are refused.
#[doc(hidden)]
pub fn synthetic_table(version_hex: u64, free_threaded: bool) -> Option<Vec<u8>> {
    let schema = schema_index(Version::from_hex(version_hex)?)?;
    let header: u64 = if free_threaded { 32 } else { 16 };
    let values = DebugOffsets { pyobject_size: header, ob_type: header - 8, ..SYNTHETIC };
    let mut b = vec![0u8; READ_SIZE];
    b[..8].copy_from_slice(COOKIE);
    let mut put = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(8, version_hex);
    put(0x10, free_threaded as u64);
    for (at, v) in values.positioned(schema) {
        put(at, v);
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position of field `name` in the 3.14 schema.
    fn at_314(name: &str) -> usize {
        FIELDS.iter().find(|f| f.name == name).unwrap().at[1].unwrap()
    }

    fn table_314(version: u64, values: &[(&str, u64)]) -> Vec<u8> {
        let mut b = synthetic_table(0x30e0af0, false).unwrap();
        b[8..16].copy_from_slice(&version.to_le_bytes());
        for (name, v) in values {
            let at = at_314(name);
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_314() {
        let b = table_314(0x30e0af0, &[]);
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
        let b = table_314(0x30e0af0, &[("gc_size", u64::MAX)]);
        assert!(matches!(parse(&b), Err(DebugOffsetsError::Implausible(_))));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(&[0u8; 64]), Err(DebugOffsetsError::NoCookie));
        let b = table_314(0x30e0af0, &[("pyobject_size", 24)]);
        assert!(matches!(parse(&b), Err(DebugOffsetsError::Implausible(_))));
        let b = table_314(0x30e0af0, &[("interp_sysdict", 300_000)]);
        assert_eq!(parse(&b), Err(DebugOffsetsError::Implausible("interp.sysdict = 300000".into())));
        let b = table_314(0x30e0af0, &[("tp_name", u64::MAX - 8)]);
        assert!(matches!(parse(&b), Err(DebugOffsetsError::Implausible(_))));
        let b = table_314(0x3100000 | 0xf0, &[]);
        assert!(matches!(parse(&b), Err(DebugOffsetsError::UnknownSchema(_))));
        let b = table_314(0x30e0af0, &[]);
        assert_eq!(parse(&b[..0x100]), Err(DebugOffsetsError::Short));
    }

    #[test]
    fn the_table_is_consistent() {
        for f in FIELDS {
            // Positions inside the bytes read, 8-aligned, after the header (cookie, version, free-threaded).
            for at in f.at.iter().flatten() {
                assert!(*at >= 0x18 && at % 8 == 0 && at + 8 <= READ_SIZE, "{}", f.name);
            }
        }
        let d = parse(&synthetic_table(0x30f02f0, false).unwrap()).unwrap();
        assert_eq!(d.gc_frame, Some(0));
        let mut l = Layout::builtin(d.version()).unwrap();
        let d = DebugOffsets { gc_size: 176, gc_frame: Some(0x78), gc_generation_stats: Some(0x70), ..d };
        l.apply_debug_offsets(&d).unwrap();
        assert_eq!((l.interp.gc, l.gc.collecting, l.gc.frame, l.gc.stats_ptr), (7408, 192, Some(0x78), Some(0x70)));
        assert_eq!(l.unicode.ascii_size, 40);
        assert_eq!((l.iframe.unwrap().instr, l.code.code_adaptive, l.code.tlbc), (56, Some(208), None));
        // A free-threaded 3.14 table names the bytecode copies; a GIL one has 0 there.
        let mut l = crate::free_threaded::builtin(Version::new(3, 14, 6)).unwrap();
        let t = DebugOffsets {
            gc_size: 288,
            code_tlbc: Some(224),
            frame_tlbc_index: Some(72),
            code_adaptive: 232,
            ..d.clone()
        };
        l.apply_debug_offsets(&t).unwrap();
        assert_eq!((l.code.tlbc, l.iframe.unwrap().tlbc_index), (Some(224), Some(72)));
        let t = DebugOffsets { code_tlbc: Some(0), frame_tlbc_index: Some(0), ..t };
        l.apply_debug_offsets(&t).unwrap();
        assert_eq!((l.code.tlbc, l.iframe.unwrap().tlbc_index), (None, None));
        let sets: Vec<&str> = FIELDS.iter().map(|f| f.sets).filter(|s| !s.is_empty()).collect();
        assert_eq!(sets.len(), d.layout_values().len());
        assert!(sets.contains(&"runtime.interpreters_head") && sets.contains(&"gc.stats_ptr"));
    }
}
