//! The files a live target maps, opened as the target sees them (containers, chroots, deleted files).

use crate::memory::maps::Maps;

/// Opens a file the target maps (`path` as its `/proc/PID/maps` names it), trying in turn:
///
/// 1. `/proc/PID/map_files/START-END` of one of its mappings: the very file mapped, whatever the mount
///    namespace, chroot, or a later replacement or deletion of the path. Opening it needs CAP_SYS_ADMIN
///    (or CAP_CHECKPOINT_RESTORE) in the initial user namespace: root on the host, not a container.
/// 2. The path under `/proc/PID/root` (the target's root: a container's own files). The kernel names
///    mapped files from the root of the target's mount namespace, which is the target's root unless the
///    target is chrooted inside that namespace; then `/proc/PID/root` reads as the chroot's path from that
///    same root, and the path is taken relative to it.
/// 3. The path as this process sees it (no namespace of its own, or an old kernel).
pub fn read_target_file(pid: i32, maps: &Maps, path: &str) -> std::io::Result<Vec<u8>> {
    if let Some(m) = maps.of_file(path).next() {
        let link = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        match std::fs::read(&link) {
            Ok(bytes) => {
                log::debug!("{path}: read through {link}");
                return Ok(bytes);
            }
            Err(e) => log::debug!("cannot open {link} ({path}): {e}"),
        }
    }
    let clean = path.trim_end_matches(" (deleted)");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).ok();
    let mut tried = Vec::new();
    if let Some(inner) = root.as_deref().and_then(|r| r.to_str()).and_then(|r| relative_to_root(clean, r)) {
        tried.push(format!("/proc/{pid}/root{inner}"));
    }
    tried.push(format!("/proc/{pid}/root{clean}"));
    tried.push(clean.to_string());
    let mut last = None;
    for candidate in &tried {
        match std::fs::read(candidate) {
            Ok(bytes) => {
                log::debug!("{path}: read through {candidate}");
                return Ok(bytes);
            }
            Err(e) => {
                log::debug!("cannot open {candidate}: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("at least one candidate"))
}

/// `path` (absolute, from the mount namespace's root) relative to `root` (the target's root, as its
/// `/proc/PID/root` link reads), when `root` is not `/` and holds `path`.
fn relative_to_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return None;
    }
    path.strip_prefix(root).filter(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_relative_to_a_chroot() {
        let path = "/srv/jail/opt/py/bin/python3.13";
        assert_eq!(relative_to_root(path, "/srv/jail"), Some("/opt/py/bin/python3.13"));
        assert_eq!(relative_to_root(path, "/srv/jail/"), Some("/opt/py/bin/python3.13"));
        assert_eq!(relative_to_root(path, "/"), None);
        assert_eq!(relative_to_root(path, "/srv/ja"), None);
        assert_eq!(relative_to_root(path, "/other"), None);
    }
}
