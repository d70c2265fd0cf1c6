//! A target that is a core file: the process as it was when the core was written. Opening one checks
//! the file (ELF, a core, not truncated where its notes are), opens the binaries it maps
//! ([`crate::memory::core_memory`]) and refuses, in one line, a Python binary that is missing or is not
//! the build the process ran.

use std::path::Path;
use std::sync::Arc;

use super::{Kind, Target};
use crate::error::{Error, Result};
use crate::memory::core::CoreFile;
use crate::memory::core_memory::{Binaries, CoreMemory, FileState};

/// What memspy keeps of an opened core.
pub struct CoreTarget {
    pub mem: Arc<CoreMemory>,
    pub binaries: Binaries,
}

/// Whether the file the core names `path` is one discovery must read: the executable or a libpython.
fn needed(path: &str, exe: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    path == exe || base.starts_with("libpython")
}

impl Target {
    /// Opens the core file at `path`, its binaries found as `binaries` says.
    pub fn open_core(path: &Path, binaries: &Binaries) -> Result<Target> {
        let core = CoreFile::open(path)?;
        let shown = core.path.clone();
        if core.notes.files.is_empty() {
            return Err(Error::NotCore {
                path: shown,
                why: "it has no NT_FILE note (the files the process mapped)".into(),
            });
        }
        let missing = core.missing_bytes();
        if missing > 0 {
            // The walk goes on: what lies beyond the end is unreadable, and counted as such.
            eprintln!(
                "memspy: warning: the core file {shown} is truncated: {} MiB of its memory lie beyond its end",
                missing.div_ceil(1 << 20)
            );
        }
        let mem = CoreMemory::new(core, binaries);
        for (name, state) in mem.files() {
            match state {
                FileState::Found { disk, .. } => log::debug!("{name}: read from {}", disk.display()),
                FileState::Missing { disk, error } if needed(name, &mem.exe) => {
                    return Err(Error::CoreBinaryMissing {
                        path: name.to_string(),
                        disk: disk.display().to_string(),
                        error: error.clone(),
                    })
                }
                FileState::Mismatch { disk, core_id, file_id } if needed(name, &mem.exe) => {
                    return Err(Error::CoreBuildIdMismatch {
                        path: name.to_string(),
                        disk: disk.display().to_string(),
                        core_id: core_id.clone(),
                        file_id: file_id.clone(),
                    })
                }
                FileState::Missing { disk, error } => {
                    log::info!("{name} ({}): {error}; its read-only pages are unreadable", disk.display())
                }
                FileState::Mismatch { disk, core_id, file_id } => log::warn!(
                    "{name}: {} has build ID {file_id}, the core's {core_id}: not used; its read-only pages are \
                     unreadable",
                    disk.display()
                ),
            }
        }
        let n = &mem.core.notes;
        log::info!(
            "core file {shown}: PID {} ({}; {}), {} threads, {} segments ({} MiB mapped), {} file mappings; \
             executable {}",
            n.pid,
            n.command,
            n.args,
            n.threads.len(),
            mem.core.segments.len(),
            mem.mapped_bytes() >> 20,
            n.files.len(),
            mem.exe
        );
        Ok(Target {
            pid: n.pid,
            exe: mem.exe.clone(),
            maps: mem.maps.clone(),
            kind: Kind::Core(CoreTarget { mem: Arc::new(mem), binaries: binaries.clone() }),
        })
    }
}
