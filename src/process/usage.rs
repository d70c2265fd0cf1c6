//! What the kernel says about a target's memory: `/proc/PID/smaps_rollup` (RSS, PSS, USS, anonymous vs
//! file-backed), its cgroup's memory limit and usage (v2 `memory.max`/`memory.current`, v1 fallback),
//! and its `RLIMIT_AS` / `RLIMIT_DATA` (`/proc/PID/limits`) against `VmSize` / `VmData`.
//!
//! Only procfs and cgroupfs text files are read; nothing here touches target memory.

use serde::Serialize;

/// Deepest cgroup path memspy walks up from (bounds the ancestor loop).
const MAX_CGROUP_DEPTH: usize = 64;

/// `/proc/PID/smaps_rollup`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rollup {
    pub rss: u64,
    pub pss: u64,
    /// Private_Clean + Private_Dirty: what would be freed if the process exited.
    pub uss: u64,
    /// Anonymous memory (heap, mmap'd arenas, stacks).
    pub anonymous: u64,
    /// RSS − anonymous: file-backed pages (binaries, libraries, mapped files) and shmem.
    pub file_backed: u64,
    pub swap: u64,
}

/// Parses the text of `smaps_rollup` (values in kB).
pub fn parse_rollup(text: &str) -> Rollup {
    let mut r = Rollup::default();
    let (mut pc, mut pd) = (0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let Some(kb) = rest.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) else { continue };
        let b = kb * 1024;
        match key.trim() {
            "Rss" => r.rss = b,
            "Pss" => r.pss = b,
            "Private_Clean" => pc = b,
            "Private_Dirty" => pd = b,
            "Anonymous" => r.anonymous = b,
            "Swap" => r.swap = b,
            _ => {}
        }
    }
    r.uss = pc + pd;
    r.file_backed = r.rss.saturating_sub(r.anonymous);
    r
}

pub fn rollup(pid: i32) -> std::io::Result<Rollup> {
    Ok(parse_rollup(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?))
}

/// The memory limit of the target's cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CgroupMemory {
    /// "v2" or "v1".
    pub version: String,
    /// The cgroup path (as `/proc/PID/cgroup` shows it).
    pub path: String,
    /// The tightest limit on the way to the root, None when unlimited.
    pub limit: Option<u64>,
    /// The cgroup whose limit that is.
    pub limit_from: Option<String>,
    /// Memory charged to the target's own cgroup.
    pub usage: Option<u64>,
    pub headroom: Option<u64>,
}

fn read_num(path: &str) -> Option<Option<u64>> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    if s == "max" {
        return Some(None);
    }
    let v: u64 = s.parse().ok()?;
    // cgroup v1 reports "unlimited" as a huge page-rounded number.
    Some(if v >= (1 << 62) { None } else { Some(v) })
}

/// The cgroup filesystem roots to try: the target's own view first (containers), then ours.
fn roots(pid: i32, sub: &str) -> Vec<String> {
    vec![format!("/proc/{pid}/root/sys/fs/cgroup{sub}"), format!("/sys/fs/cgroup{sub}")]
}

/// Walks from the cgroup up to the root, taking the smallest `limit_file`.
fn walk_limits(
    root: &str,
    path: &str,
    limit_file: &str,
    usage_file: &str,
) -> Option<(Option<u64>, Option<String>, Option<u64>)> {
    let path = path.trim_end_matches('/');
    let usage = read_num(&format!("{root}{path}/{usage_file}")).flatten();
    let mut limit: Option<(u64, String)> = None;
    let mut at = path.to_string();
    let mut seen_any = usage.is_some();
    for _ in 0..MAX_CGROUP_DEPTH {
        if let Some(v) = read_num(&format!("{root}{at}/{limit_file}")) {
            seen_any = true;
            if let Some(v) = v {
                if limit.as_ref().is_none_or(|(l, _)| v < *l) {
                    limit = Some((v, if at.is_empty() { "/".into() } else { at.clone() }));
                }
            }
        }
        match at.rfind('/') {
            Some(i) => at.truncate(i),
            None => break,
        }
    }
    if !seen_any {
        return None;
    }
    let (l, from) = limit.map(|(l, f)| (Some(l), Some(f))).unwrap_or((None, None));
    Some((l, from, usage))
}

/// The target's cgroup memory figures, or None when no cgroup memory controller is readable.
pub fn cgroup_memory(pid: i32) -> Option<CgroupMemory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    // v2: "0::/path"
    if let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) {
        for root in roots(pid, "") {
            if let Some((limit, from, usage)) = walk_limits(&root, path, "memory.max", "memory.current") {
                return Some(finish("v2", path, limit, from, usage));
            }
        }
    }
    // v1: "N:memory:/path" (or a combined controller list containing memory).
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
        if ctrl.split(',').any(|c| c == "memory") {
            for root in roots(pid, "/memory") {
                if let Some((limit, from, usage)) =
                    walk_limits(&root, path, "memory.limit_in_bytes", "memory.usage_in_bytes")
                {
                    return Some(finish("v1", path, limit, from, usage));
                }
            }
        }
    }
    None
}

fn finish(version: &str, path: &str, limit: Option<u64>, from: Option<String>, usage: Option<u64>) -> CgroupMemory {
    let headroom = match (limit, usage) {
        (Some(l), Some(u)) => Some(l.saturating_sub(u)),
        _ => None,
    };
    CgroupMemory { version: version.into(), path: path.into(), limit, limit_from: from, usage, headroom }
}

/// One resource limit and how much of it is used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    /// Soft limit in bytes, None when unlimited.
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    /// What counts against it now (VmSize for RLIMIT_AS, VmData for RLIMIT_DATA).
    pub used: Option<u64>,
    pub headroom: Option<u64>,
}

/// `RLIMIT_AS` and `RLIMIT_DATA` of the target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub address_space: Rlimit,
    pub data: Rlimit,
}

fn limit_value(s: &str) -> Option<u64> {
    if s == "unlimited" {
        None
    } else {
        s.parse().ok()
    }
}

/// Parses `/proc/PID/limits` and `/proc/PID/status` texts.
pub fn parse_limits(limits: &str, status: &str) -> Limits {
    let status_kb = |key: &str| {
        status.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok().map(|kb| kb * 1024)
        })
    };
    let row = |name: &str, used: Option<u64>| {
        let mut r = Rlimit { used, ..Default::default() };
        if let Some(line) = limits.lines().find(|l| l.starts_with(name)) {
            let cols: Vec<&str> = line[name.len()..].split_whitespace().collect();
            if cols.len() >= 2 {
                r.soft = limit_value(cols[0]);
                r.hard = limit_value(cols[1]);
            }
        }
        r.headroom = match (r.soft, used) {
            (Some(l), Some(u)) => Some(l.saturating_sub(u)),
            _ => None,
        };
        r
    };
    Limits {
        address_space: row("Max address space", status_kb("VmSize")),
        data: row("Max data size", status_kb("VmData")),
    }
}

pub fn limits(pid: i32) -> std::io::Result<Limits> {
    let l = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_limits(&l, &s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_text() {
        let r = parse_rollup(
            "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  1000 kB\nPss:  800 kB\nPrivate_Clean: 100 kB\n\
             Private_Dirty: 500 kB\nAnonymous: 600 kB\nSwap: 0 kB\n",
        );
        assert_eq!(r.rss, 1000 * 1024);
        assert_eq!(r.uss, 600 * 1024);
        assert_eq!(r.file_backed, 400 * 1024);
    }

    #[test]
    fn limits_text() {
        let l = parse_limits(
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max data size             unlimited            unlimited            bytes     \n\
             Max address space         1073741824           unlimited            bytes     \n",
            "Name:\tpython3\nVmSize:\t  20000 kB\nVmData:\t 5000 kB\n",
        );
        assert_eq!(l.address_space.soft, Some(1 << 30));
        assert_eq!(l.address_space.hard, None);
        assert_eq!(l.address_space.headroom, Some((1 << 30) - 20000 * 1024));
        assert_eq!(l.data.soft, None);
        assert_eq!(l.data.used, Some(5000 * 1024));
    }
}
