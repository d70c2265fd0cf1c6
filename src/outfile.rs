//! Files memspy writes whole (dumps, exports): written under a temporary name and renamed into place
//! once complete; the temporary one is removed on every other way out.

use std::path::{Path, PathBuf};

/// The temporary file of a write in progress; removed when dropped unless [`Partial::done`] was set
/// (renamed into place, or never named).
pub struct Partial {
    pub tmp: PathBuf,
    pub done: bool,
}

impl Partial {
    /// The temporary name for `path`: hidden, beside it, marked with memspy's PID.
    pub fn beside(path: &Path) -> Option<Partial> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name()?;
        let tmp = dir.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
        Some(Partial { tmp, done: false })
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
