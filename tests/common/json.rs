//! Small JSON helpers: fields by dotted path, with errors naming the path.

use serde_json::Value;

/// `v[key]` as u64, or an error naming the path.
pub fn get_u64(v: &Value, path: &str) -> Result<u64, String> {
    lookup(v, path)?
        .as_u64()
        .ok_or_else(|| format!("`{}` is not an unsigned integer: {}", path, lookup(v, path).unwrap()))
}

pub fn get_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    let x = lookup(v, path)?;
    x.as_str().ok_or_else(|| format!("`{}` is not a string: {}", path, x))
}

pub fn get_bool(v: &Value, path: &str) -> Result<bool, String> {
    let x = lookup(v, path)?;
    x.as_bool().ok_or_else(|| format!("`{}` is not a boolean: {}", path, x))
}

pub fn get_u64_array(v: &Value, path: &str) -> Result<Vec<u64>, String> {
    let x = lookup(v, path)?;
    let arr = x.as_array().ok_or_else(|| format!("`{}` is not an array: {}", path, x))?;
    arr.iter().map(|e| e.as_u64().ok_or_else(|| format!("`{}` has a non-integer element: {}", path, e))).collect()
}

/// Follow a dotted path ("python.version", "gc.generations").
pub fn lookup<'a>(v: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).ok_or_else(|| format!("missing field `{}`", path))?;
    }
    Ok(cur)
}
