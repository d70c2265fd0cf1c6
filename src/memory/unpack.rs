//! Compressed core files. systemd-coredump keeps the cores it catches compressed (`Compress=yes`: zstd
//! where systemd was built with it, lz4 or xz on older builds), and a core copied off a machine often
//! travels compressed. A zstd core is decompressed into a file without a name — beside it when that
//! directory is writable, else in the temporary directory — and read like any other; lz4 and xz are
//! recognised and refused with the command that decompresses them.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

/// How a file's first bytes say it is packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// Not compressed (or not in a format memspy knows: the ELF checks say what it is).
    Plain,
    Zstd,
    /// Compressed in a format memspy does not decompress: its name, and the command that does.
    Other {
        format: &'static str,
        command: &'static str,
    },
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// What the first bytes of a file (at least 6 of them, or all there are) say.
pub fn packing(head: &[u8]) -> Packing {
    if head.starts_with(&ZSTD_MAGIC) {
        Packing::Zstd
    } else if head.starts_with(&LZ4_MAGIC) {
        Packing::Other { format: "lz4", command: "lz4 -d" }
    } else if head.starts_with(&XZ_MAGIC) {
        Packing::Other { format: "xz", command: "xz -dk" }
    } else {
        Packing::Plain
    }
}

/// How `path` is packed (reads its first bytes).
pub fn packing_of(path: &Path) -> io::Result<Packing> {
    let mut head = [0u8; 6];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(packing(&head[..n]))
}

/// Why a zstd core could not be decompressed.
#[derive(Debug)]
pub enum UnpackError {
    /// No directory to decompress into (neither beside the core nor the temporary one).
    NoRoom(io::Error),
    /// Reading the compressed stream failed: a corrupt or truncated file.
    Corrupt(io::Error),
    /// Writing the decompressed bytes failed (a full disk).
    Write(io::Error),
}

/// Decompresses the zstd file at `path` into a file without a name: the file, and its size.
pub fn unzstd(path: &Path) -> Result<(File, u64), UnpackError> {
    let t = Instant::now();
    let beside = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let out = super::unnamed::unnamed_in(beside, "core")
        .or_else(|_| super::unnamed::unnamed_in(&std::env::temp_dir(), "core"))
        .map_err(UnpackError::NoRoom)?;
    let input = File::open(path).map_err(UnpackError::Corrupt)?;
    let mut decoder = zstd::stream::read::Decoder::new(BufReader::new(input)).map_err(UnpackError::Corrupt)?;
    let mut writer = BufWriter::with_capacity(1 << 20, &out);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UnpackError::Corrupt(e)),
        };
        writer.write_all(&buf[..n]).map_err(UnpackError::Write)?;
        total += n as u64;
    }
    writer.flush().map_err(UnpackError::Write)?;
    drop(writer);
    log::info!("{}: zstd, {} MiB decompressed in {:?}", path.display(), total >> 20, t.elapsed());
    Ok((out, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_formats_by_their_magic() {
        assert_eq!(packing(b"\x7fELF\x02\x01"), Packing::Plain);
        assert_eq!(packing(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]), Packing::Zstd);
        assert!(matches!(packing(&[0x04, 0x22, 0x4d, 0x18, 0, 0]), Packing::Other { format: "lz4", .. }));
        assert!(matches!(packing(b"\xfd7zXZ\0"), Packing::Other { format: "xz", .. }));
        assert_eq!(packing(b""), Packing::Plain);
    }

    #[test]
    fn decompresses_zstd_and_refuses_a_cut_stream() {
        let dir = std::env::temp_dir().join(format!("memspy-unpack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let packed = zstd::encode_all(&data[..], 3).unwrap();
        let path = dir.join("core.zst");
        std::fs::write(&path, &packed).unwrap();
        assert_eq!(packing_of(&path).unwrap(), Packing::Zstd);
        let (f, n) = unzstd(&path).unwrap();
        assert_eq!(n, data.len() as u64);
        let mut back = vec![0u8; data.len()];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut back, 0).unwrap();
        assert!(back == data, "decompressed bytes differ");
        // Only the compressed file is in the directory: the decompressed one has no name.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::write(&path, &packed[..packed.len() / 2]).unwrap();
        assert!(matches!(unzstd(&path), Err(UnpackError::Corrupt(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
