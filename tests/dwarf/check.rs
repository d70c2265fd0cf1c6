//! What a Layout field is compared with in the DWARF, and how the DWARF's value is computed.

use std::collections::HashMap;

use super::{Ty, Want};

/// What a Layout value is compared with.
#[derive(Clone, Copy, Debug)]
pub enum What {
    /// The offset of a member path (alternatives separated by `|`: members renamed between versions).
    Offset(&'static str),
    /// The offset of `path` relative to `base`.
    OffsetFrom(&'static str, &'static str),
    /// The size of the struct (empty path) or of a member.
    Size(&'static str),
    /// The size rounded up to a multiple.
    SizeRoundedUp(&'static str, u64),
    /// The number of elements of an array member.
    Count(&'static str),
    /// At least the size: the Layout keeps the largest size among the builds (the walk scans the whole
    /// struct for object pointers).
    LargestSize(&'static str),
    /// The offset plus a constant (a size defined as `offsetof(...) + k`).
    OffsetPlus(&'static str, u64),
}

#[derive(Clone, Debug)]
pub struct Check {
    pub field: String,
    pub value: u64,
    /// Compilation unit (suffix) of an extension module's struct; empty for the core.
    pub cu: &'static str,
    /// The C struct (struct tag or typedef name; alternatives separated by `|`).
    pub ty: &'static str,
    pub what: What,
}

/// The mapping of every Layout field: checks, and the fields that are not C members.
#[derive(Default)]
pub struct Mapping {
    pub checks: Vec<Check>,
    pub not_members: Vec<(String, &'static str)>,
}

impl Mapping {
    pub fn check(&mut self, field: impl Into<String>, value: u64, cu: &'static str, ty: &'static str, what: What) {
        self.checks.push(Check { field: field.into(), value, cu, ty, what });
    }
    pub fn off(&mut self, field: impl Into<String>, value: u64, ty: &'static str, path: &'static str) {
        self.check(field, value, "", ty, What::Offset(path));
    }
    pub fn size(&mut self, field: impl Into<String>, value: u64, ty: &'static str) {
        self.check(field, value, "", ty, What::Size(""));
    }
    pub fn not_member(&mut self, field: impl Into<String>, why: &'static str) {
        self.not_members.push((field.into(), why));
    }
}

/// The DWARF's value for a check, or why there is none.
pub fn dwarf_value(c: &Check, found: &HashMap<Want, Ty>) -> Result<u64, String> {
    let ty =
        c.ty.split('|')
            .find_map(|name| found.get(&Want { cu: c.cu, name }))
            .ok_or_else(|| format!("struct {} not found", c.ty))?;
    let first = |paths: &str, f: &dyn Fn(&str) -> Result<u64, String>| -> Result<u64, String> {
        let mut errors = Vec::new();
        for p in paths.split('|') {
            match f(p) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    };
    let size_of = |p: &str| -> Result<u64, String> { ty.path(p)?.1.size().ok_or_else(|| format!("`{p}` has no size")) };
    match c.what {
        What::Offset(paths) => first(paths, &|p| Ok(ty.path(p)?.0)),
        What::OffsetPlus(paths, k) => first(paths, &|p| Ok(ty.path(p)?.0 + k)),
        What::OffsetFrom(base, p) => Ok(ty.path(p)?.0 - ty.path(base)?.0),
        What::Size(p) | What::LargestSize(p) => size_of(p),
        What::SizeRoundedUp(p, to) => Ok(size_of(p)?.div_ceil(to) * to),
        What::Count(p) => match ty.path(p)?.1 {
            Ty::Array { count: Some(n), .. } => Ok(*n),
            _ => Err(format!("`{p}` is not an array of known length")),
        },
    }
}

pub fn describe(c: &Check) -> String {
    let path = match c.what {
        What::Offset(p) => format!("offsetof {p}"),
        What::OffsetPlus(p, k) => format!("offsetof {p} + {k}"),
        What::OffsetFrom(b, p) => format!("offsetof {p} - offsetof {b}"),
        What::Size("") | What::LargestSize("") => "sizeof".to_string(),
        What::Size(p) | What::LargestSize(p) => format!("sizeof {p}"),
        What::SizeRoundedUp(p, k) => format!("sizeof {p} rounded up to {k}"),
        What::Count(p) => format!("elements of {p}"),
    };
    let cu = if c.cu.is_empty() { String::new() } else { format!(" (in {})", c.cu) };
    format!("{}: {} {}{cu}", c.field, c.ty, path)
}
