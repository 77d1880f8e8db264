use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{io_err, RunError};

/// Reads the complete lines of a JSONL file that is only ever appended to, and cuts off a
/// torn last line (a process killed mid-write leaves one without its newline), so appends
/// continue from a clean end. A missing file reads as empty.
fn read_clean_lines(path: &Path) -> Result<Vec<String>, RunError> {
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < text.len() {
        tracing::warn!(path = %path.display(), bytes = text.len() - whole, "dropping a torn last line");
        let f = OpenOptions::new().write(true).open(path).map_err(io_err("open", path))?;
        f.set_len(whole as u64).map_err(io_err("truncate", path))?;
    }
    let text = String::from_utf8(text[..whole].to_vec()).map_err(|e| RunError::Corrupt {
        path: path.to_path_buf(),
        line: 0,
        message: format!("not UTF-8: {e}"),
    })?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect())
}

fn append_line(file: &mut File, path: &Path, value: &impl Serialize) -> Result<(), RunError> {
    let mut line = serde_json::to_string(value).map_err(|e| RunError::Serialise {
        what: format!("a line of {}", path.display()),
        message: e.to_string(),
    })?;
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(io_err("append to", path))?;
    file.sync_data().map_err(io_err("sync", path))
}

fn open_append(path: &Path) -> Result<File, RunError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(io_err("open", path))
}

/// `metrics.jsonl`: one JSON object per line, appended as training goes.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens the log for appending, cutting a torn last line.
    pub fn open(path: &Path) -> Result<Self, RunError> {
        read_clean_lines(path)?;
        Ok(MetricsLog { path: path.to_path_buf(), file: open_append(path)? })
    }

    /// Appends one record.
    pub fn log(&mut self, record: &impl Serialize) -> Result<(), RunError> {
        append_line(&mut self.file, &self.path, record)
    }

    /// Every record written so far.
    pub fn read_all(path: &Path) -> Result<Vec<serde_json::Value>, RunError> {
        read_clean_lines(path)?
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| RunError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct Unit<T> {
    unit: String,
    value: T,
}

/// The finished units of work of a stage, by key: a rerun reads them back and does only the
/// rest. Each unit is one line, flushed to disk before [`UnitLog::record`] returns.
#[derive(Debug)]
pub struct UnitLog<T> {
    path: PathBuf,
    file: File,
    done: BTreeMap<String, T>,
}

impl<T: Serialize + DeserializeOwned> UnitLog<T> {
    /// Opens the log at `path`, loading the units already finished.
    pub fn open(path: &Path) -> Result<Self, RunError> {
        let mut done = BTreeMap::new();
        for (i, line) in read_clean_lines(path)?.iter().enumerate() {
            let unit: Unit<T> = serde_json::from_str(line).map_err(|e| RunError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?;
            done.insert(unit.unit, unit.value);
        }
        Ok(UnitLog { path: path.to_path_buf(), file: open_append(path)?, done })
    }

    /// The stored result of unit `key`, if it finished.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.done.get(key)
    }

    /// Records unit `key` as finished with `value`.
    pub fn record(&mut self, key: &str, value: T) -> Result<(), RunError> {
        append_line(&mut self.file, &self.path, &Unit { unit: key.to_string(), value: &value })?;
        self.done.insert(key.to_string(), value);
        Ok(())
    }

    /// All finished units, in key order.
    pub fn finished(&self) -> &BTreeMap<String, T> {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_survive_a_torn_write_and_continue() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("units.jsonl");
        {
            let mut log = UnitLog::<Vec<u32>>::open(&p).unwrap();
            log.record("traj-0", vec![1, 2]).unwrap();
            log.record("traj-1", vec![3]).unwrap();
        }
        // A kill in the middle of the third append.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"unit":"traj-2","val"#).unwrap();
        drop(f);

        let mut log = UnitLog::<Vec<u32>>::open(&p).unwrap();
        assert_eq!(log.finished().len(), 2);
        assert_eq!(log.get("traj-1"), Some(&vec![3]));
        assert!(log.get("traj-2").is_none());
        log.record("traj-2", vec![4]).unwrap();
        let again = UnitLog::<Vec<u32>>::open(&p).unwrap();
        assert_eq!(again.finished().keys().collect::<Vec<_>>(), ["traj-0", "traj-1", "traj-2"]);
    }

    #[test]
    fn a_corrupt_middle_line_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("units.jsonl");
        fs::write(&p, "{\"unit\":\"a\",\"value\":1}\nnot json\n").unwrap();
        let err = UnitLog::<u32>::open(&p).unwrap_err().to_string();
        assert!(err.contains("units.jsonl, line 2"), "{err}");
    }

    #[test]
    fn metrics_append_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("metrics.jsonl");
        let mut m = MetricsLog::open(&p).unwrap();
        m.log(&serde_json::json!({"step": 1, "loss": 2.5})).unwrap();
        m.log(&serde_json::json!({"step": 2, "loss": 2.0})).unwrap();
        let all = MetricsLog::read_all(&p).unwrap();
        assert_eq!(all[1]["loss"], 2.0);
    }
}
