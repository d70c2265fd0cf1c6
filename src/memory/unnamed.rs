//! Files without a name, for memspy's own scratch data (the copy of a target's memory, a decompressed
//! core): created with `O_TMPFILE` where the file system has it, else under a name unlinked at once.
//! Either way the data sits in reclaimable page cache, not in memspy's RSS, and goes away with the
//! file descriptor on every exit path, a kill included.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A new readable and writable file in `dir` that no directory names; `what` names it in the
/// fallback's short-lived name (`.memspy-WHAT-PID`).
pub fn unnamed_in(dir: &Path, what: &str) -> io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_TMPFILE).mode(0o600).open(dir).or_else(
        |_| {
            let path = dir.join(format!(".memspy-{what}-{}", std::process::id()));
            let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path);
            let _ = std::fs::remove_file(&path);
            f
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn leaves_no_name_behind() {
        let dir = std::env::temp_dir().join(format!("memspy-unnamed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = unnamed_in(&dir, "test").unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        let mut b = [0u8; 3];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"abc");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
