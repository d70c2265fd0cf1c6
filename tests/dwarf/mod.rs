//! A small DWARF reader for the layout check: finds named C structs (or typedefs of them) in the debug
//! information of ELF files and resolves their members, nested members and arrays into offsets and sizes.
//!
//! Only what the check needs: top-level type DIEs of each compilation unit (functions and variables are
//! skipped whole), same-unit type references, constant member locations.
#![allow(dead_code)]

pub mod check;
pub mod target;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{Object, ObjectSection};

/// A resolved C type: what the check compares against.
#[derive(Clone, Debug)]
pub enum Ty {
    /// A struct or union with its size and members (unnamed members are anonymous structs/unions).
    Record {
        size: u64,
        members: Vec<Member>,
    },
    Array {
        elem: Box<Ty>,
        count: Option<u64>,
    },
    /// Anything else (base types, pointers, enums): only its size.
    Scalar {
        size: Option<u64>,
    },
}

#[derive(Clone, Debug)]
pub struct Member {
    pub name: Option<String>,
    pub offset: u64,
    pub ty: Ty,
}

impl Ty {
    pub fn size(&self) -> Option<u64> {
        match self {
            Ty::Record { size, .. } => Some(*size),
            Ty::Array { elem, count } => Some(elem.size()? * (*count)?),
            Ty::Scalar { size } => *size,
        }
    }

    /// The member `name`, looking through anonymous structs and unions: (offset, type).
    fn member(&self, name: &str) -> Option<(u64, &Ty)> {
        let Ty::Record { members, .. } = self else { return None };
        for m in members {
            match &m.name {
                Some(n) if n == name => return Some((m.offset, &m.ty)),
                None => {
                    if let Some((off, ty)) = m.ty.member(name) {
                        return Some((m.offset + off, ty));
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Resolves a member path such as `threads.head`, `gc.generations[2]` or `old[0].index`:
    /// (offset from the start of this type, the member's type).
    pub fn path(&self, path: &str) -> Result<(u64, &Ty), String> {
        let mut at = 0;
        let mut ty = self;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, index) = match part.split_once('[') {
                Some((n, rest)) => {
                    let i: u64 = rest.trim_end_matches(']').parse().map_err(|_| format!("bad index in {part}"))?;
                    (n, Some(i))
                }
                None => (part, None),
            };
            let (off, t) = ty.member(name).ok_or_else(|| format!("no member `{name}`"))?;
            at += off;
            ty = t;
            if let Some(i) = index {
                let Ty::Array { elem, count } = ty else { return Err(format!("`{name}` is not an array")) };
                if count.is_some_and(|c| i >= c) {
                    return Err(format!("`{name}[{i}]` is out of bounds ({count:?})"));
                }
                at += i * elem.size().ok_or_else(|| format!("`{name}` elements have no size"))?;
                ty = elem;
            }
        }
        Ok((at, ty))
    }
}

/// What to look for: a type name in compilation units whose name ends with `cu` (any unit when empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Want {
    pub cu: &'static str,
    pub name: &'static str,
}

/// The DWARF of an ELF file: its own `.debug_info`, else the build-id debug file.
pub fn debug_file_for(path: &Path) -> Option<PathBuf> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    if file.section_by_name(".debug_info").is_some_and(|s| s.size() > 0) {
        return Some(path.to_path_buf());
    }
    let id = file.build_id().ok()??;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let debug = PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]));
    debug.exists().then_some(debug)
}

type R<'a> = EndianSlice<'a, LittleEndian>;

/// One type DIE of a unit, before resolution.
struct Raw {
    tag: gimli::DwTag,
    name: Option<String>,
    size: Option<u64>,
    ty: Option<usize>,
    location: Option<u64>,
    bit_offset: Option<u64>,
    count: Option<u64>,
    declaration: bool,
    children: Vec<usize>,
}

fn is_type_tag(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_structure_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_typedef
            | gimli::DW_TAG_array_type
            | gimli::DW_TAG_const_type
            | gimli::DW_TAG_volatile_type
            | gimli::DW_TAG_atomic_type
            | gimli::DW_TAG_restrict_type
            | gimli::DW_TAG_base_type
            | gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_enumeration_type
            | gimli::DW_TAG_subroutine_type
    )
}

/// Reads the types in `wants` from the DWARF of `path` into `found` (those already there are not looked
/// for again). Returns the number of units read.
pub fn load(path: &Path, wants: &[Want], found: &mut HashMap<Want, Ty>) -> Result<usize, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", path.display()))?;
    let sections = gimli::DwarfSections::load(|id| -> Result<Cow<[u8]>, String> {
        match file.section_by_name(id.name()) {
            Some(s) => s.uncompressed_data().map_err(|e| format!("{}: {}: {e}", path.display(), id.name())),
            None => Ok(Cow::Borrowed(&[][..])),
        }
    })?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    let err = |e: gimli::Error| format!("{}: DWARF: {e}", path.display());
    let mut units = dwarf.units();
    let mut read = 0;
    while let Some(header) = units.next().map_err(err)? {
        let missing: Vec<&Want> = wants.iter().filter(|w| !found.contains_key(w)).collect();
        if missing.is_empty() {
            break;
        }
        let unit = dwarf.unit(header).map_err(err)?;
        let cu_name = match &unit.name {
            Some(n) => n.to_string_lossy().into_owned(),
            None => String::new(),
        };
        let here: Vec<&Want> = missing.into_iter().filter(|w| w.cu.is_empty() || cu_name.ends_with(w.cu)).collect();
        if here.is_empty() {
            continue;
        }
        read += 1;
        let raws = unit_types(&dwarf, &unit).map_err(err)?;
        for w in here {
            if let Some(ty) = find(&raws, w.name) {
                found.insert(w.clone(), ty);
            }
        }
    }
    Ok(read)
}

fn unit_types(dwarf: &gimli::Dwarf<R<'_>>, unit: &gimli::Unit<R<'_>>) -> gimli::Result<HashMap<usize, Raw>> {
    let mut raws = HashMap::new();
    let mut tree = unit.entries_tree(None)?;
    let root = tree.root()?;
    let mut top = root.children();
    while let Some(node) = top.next()? {
        if is_type_tag(node.entry().tag()) {
            collect(dwarf, unit, node, &mut raws)?;
        }
    }
    Ok(raws)
}

fn collect(
    dwarf: &gimli::Dwarf<R<'_>>,
    unit: &gimli::Unit<R<'_>>,
    node: gimli::EntriesTreeNode<'_, '_, R<'_>>,
    raws: &mut HashMap<usize, Raw>,
) -> gimli::Result<usize> {
    let e = node.entry();
    let off = e.offset().0;
    let mut raw = Raw {
        tag: e.tag(),
        name: None,
        size: None,
        ty: None,
        location: None,
        bit_offset: None,
        count: None,
        declaration: false,
        children: Vec::new(),
    };
    if let Some(v) = e.attr_value(gimli::DW_AT_name) {
        raw.name = dwarf.attr_string(unit, v).ok().map(|s| s.to_string_lossy().into_owned());
    }
    raw.size = e.attr_value(gimli::DW_AT_byte_size).and_then(|v| v.udata_value());
    if let Some(AttributeValue::UnitRef(r)) = e.attr_value(gimli::DW_AT_type) {
        raw.ty = Some(r.0);
    }
    raw.location = match e.attr_value(gimli::DW_AT_data_member_location) {
        Some(AttributeValue::Exprloc(expr)) => {
            // `DW_OP_plus_uconst N` (older producers).
            let b = expr.0.slice();
            if b.first() == Some(&0x23) {
                let mut r = EndianSlice::new(&b[1..], LittleEndian);
                gimli::Reader::read_uleb128(&mut r).ok()
            } else {
                None
            }
        }
        Some(v) => v.udata_value(),
        None => None,
    };
    raw.bit_offset = e.attr_value(gimli::DW_AT_data_bit_offset).and_then(|v| v.udata_value());
    raw.declaration = matches!(e.attr_value(gimli::DW_AT_declaration), Some(AttributeValue::Flag(true)));
    if raw.tag == gimli::DW_TAG_subrange_type {
        raw.count = e
            .attr_value(gimli::DW_AT_count)
            .and_then(|v| v.udata_value())
            .or_else(|| e.attr_value(gimli::DW_AT_upper_bound).and_then(|v| v.udata_value()).map(|u| u + 1));
    }
    let mut children = node.children();
    while let Some(child) = children.next()? {
        let tag = child.entry().tag();
        if tag == gimli::DW_TAG_member || tag == gimli::DW_TAG_subrange_type || is_type_tag(tag) {
            let c = collect(dwarf, unit, child, raws)?;
            if tag == gimli::DW_TAG_member || tag == gimli::DW_TAG_subrange_type {
                raw.children.push(c);
            }
        }
    }
    raws.insert(off, raw);
    Ok(off)
}

/// The complete definition named `name` in this unit (a struct/union tag or a typedef), resolved.
fn find(raws: &HashMap<usize, Raw>, name: &str) -> Option<Ty> {
    let mut typedef = None;
    for (off, r) in raws {
        if r.name.as_deref() != Some(name) || r.declaration {
            continue;
        }
        match r.tag {
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type if r.size.is_some() => {
                return resolve(raws, *off, 0);
            }
            gimli::DW_TAG_typedef => typedef = Some(*off),
            _ => {}
        }
    }
    let ty = resolve(raws, typedef?, 0)?;
    matches!(ty, Ty::Record { .. }).then_some(ty)
}

fn resolve(raws: &HashMap<usize, Raw>, off: usize, depth: usize) -> Option<Ty> {
    if depth > 64 {
        return None;
    }
    let r = raws.get(&off)?;
    Some(match r.tag {
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
            if r.size.is_none() {
                // A declaration only: a complete definition with the same name may be elsewhere.
                let name = r.name.as_deref()?;
                let (def, _) = raws.iter().find(|(_, d)| {
                    d.name.as_deref() == Some(name) && d.tag == r.tag && d.size.is_some() && !d.declaration
                })?;
                return resolve(raws, *def, depth + 1);
            }
            let mut members = Vec::new();
            for c in &r.children {
                let m = raws.get(c)?;
                let ty = resolve(raws, m.ty?, depth + 1).unwrap_or(Ty::Scalar { size: None });
                let offset = m.location.or(m.bit_offset.map(|b| b / 8)).unwrap_or(0);
                members.push(Member { name: m.name.clone(), offset, ty });
            }
            Ty::Record { size: r.size?, members }
        }
        gimli::DW_TAG_typedef
        | gimli::DW_TAG_const_type
        | gimli::DW_TAG_volatile_type
        | gimli::DW_TAG_atomic_type
        | gimli::DW_TAG_restrict_type => match r.ty {
            Some(t) => resolve(raws, t, depth + 1)?,
            None => Ty::Scalar { size: None },
        },
        gimli::DW_TAG_array_type => {
            let elem = resolve(raws, r.ty?, depth + 1)?;
            let counts: Vec<Option<u64>> = r.children.iter().map(|c| raws.get(c).and_then(|s| s.count)).collect();
            // Multi-dimensional arrays: innermost dimension last.
            let mut ty = elem;
            for (i, c) in counts.iter().enumerate().rev() {
                ty = Ty::Array { elem: Box::new(ty), count: if i == 0 && c.is_none() { Some(0) } else { *c } };
            }
            ty
        }
        gimli::DW_TAG_pointer_type => Ty::Scalar { size: Some(r.size.unwrap_or(8)) },
        _ => Ty::Scalar { size: r.size },
    })
}
