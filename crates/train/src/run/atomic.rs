use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::{io_err, RunError};

/// Writes `bytes` to `path` so that a reader (or a rerun after a crash) sees either the old
/// file or the whole new one: write a temporary file beside it, flush it to disk, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).map_err(io_err("write", &tmp))?;
    f.sync_all().map_err(io_err("sync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
    sync_dir(dir)
}

/// Makes a rename inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), RunError> {
    // Opening a directory for fsync works on Linux and macOS; elsewhere a rename is as durable
    // as the platform makes it.
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
