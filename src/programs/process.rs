//! Child processes that cannot outlive their owner.
//!
//! Each child runs in its own process group (so grandchildren die with it), gets
//! `PR_SET_PDEATHSIG(SIGKILL)` (so a harness killed with SIGKILL still takes it down), and is
//! killed — SIGTERM, a short grace, then SIGKILL to the whole group — when its handle drops.
//!
//! The parent-death signal fires when the *thread* that forked the child exits, not the
//! process; so every fork happens on one spawner thread that lives as long as the process.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// Environment variable set on every process the harness starts; its value is the run id,
/// so a leak check can find stragglers by scanning `/proc/*/environ`.
pub const RUN_ID_ENV: &str = "LBC_RUN_ID";

/// Process groups of live [`Supervised`] children. A cluster kept in a `static` (shared by
/// the tests of one binary) is never dropped; the `atexit` hook kills what it left.
static LIVE_GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
/// Run directories to remove at exit if their owner never dropped.
static LIVE_DIRS: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
static ATEXIT: Once = Once::new();

extern "C" fn kill_live_groups() {
    kill_all_live();
}

/// SIGKILL every process group the harness started and has not stopped yet.
pub fn kill_all_live() {
    let groups = match LIVE_GROUPS.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    for pgid in groups.into_iter().flatten() {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let dirs = match LIVE_DIRS.lock() {
        Ok(mut d) => d.take(),
        Err(p) => p.into_inner().take(),
    };
    for dir in dirs.into_iter().flatten() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Remove `dir` at exit unless [`forget_dir`] is called first (its owner cleaned up, or
/// wants to keep it).
pub fn remove_dir_at_exit(dir: &Path) {
    install_atexit();
    let mut guard = match LIVE_DIRS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    guard
        .get_or_insert_with(HashSet::new)
        .insert(dir.to_owned());
}

/// Undo [`remove_dir_at_exit`].
pub fn forget_dir(dir: &Path) {
    let mut guard = match LIVE_DIRS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(set) = guard.as_mut() {
        set.remove(dir);
    }
}

fn install_atexit() {
    ATEXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" fn.
        unsafe {
            libc::atexit(kill_live_groups);
        }
    });
}

fn register(pgid: i32, live: bool) {
    install_atexit();
    let mut guard = match LIVE_GROUPS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let set = guard.get_or_insert_with(HashSet::new);
    if live {
        set.insert(pgid);
    } else {
        set.remove(&pgid);
    }
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);

/// Fork `cmd` on the process-lifetime spawner thread (see the module doc).
fn spawn_on_spawner_thread(cmd: Command) -> std::io::Result<std::process::Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new()
            .name("lbc-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the spawner thread");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = match sender.lock() {
        Ok(s) => s.send((cmd, reply_tx)),
        Err(p) => p.into_inner().send((cmd, reply_tx)),
    };
    sent.map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread did not answer"))?
}

/// Errors starting or stopping a child.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Short name used in logs, e.g. `kube-apiserver`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Variables added to the inherited environment, or the whole environment if `clear_env`.
    pub env: Vec<(OsString, OsString)>,
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr both go here (appended).
    pub log: PathBuf,
    pub run_id: String,
}

/// A running child in its own process group; dropping it kills the group.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: std::process::Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Supervised {
    /// Start `spec`.
    ///
    /// # Errors
    /// The program cannot be executed, or its log file cannot be created.
    pub fn spawn(spec: &Spec) -> Result<Self, ProcessError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|source| ProcessError::Log {
                path: spec.log.clone(),
                source,
            })?;
        let log2 = log.try_clone().map_err(|source| ProcessError::Log {
            path: spec.log.clone(),
            source,
        })?;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if spec.clear_env {
            cmd.env_clear();
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd.env(RUN_ID_ENV, &spec.run_id);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        // SAFETY: only async-signal-safe calls (setpgid) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        die_with_parent(&mut cmd);
        let child = spawn_on_spawner_thread(cmd).map_err(|source| ProcessError::Spawn {
            program: spec.program.display().to_string(),
            source,
        })?;
        tracing::debug!(name = %spec.name, pid = child.id(), log = %spec.log.display(), "started");
        register(child.id() as i32, true);
        Ok(Self {
            name: spec.name.clone(),
            child,
            log: spec.log.clone(),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended (reaps it).
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Wait up to `timeout` for the process to end on its own (reaps it).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last `max` bytes of the log, for error messages.
    pub fn log_tail(&self, max: usize) -> String {
        log_tail(&self.log, max)
    }

    /// Send `signal` to the whole process group.
    pub fn signal_group(&self, signal: i32) {
        let pgid = self.child.id() as i32;
        // SAFETY: plain syscall; a stale pgid only yields ESRCH.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    /// SIGTERM the group, wait up to `grace`, then SIGKILL it; reaps the leader.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_exited().is_none() {
            self.signal_group(libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if self.try_exited().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Grandchildren may remain in the group even when the leader is gone.
        self.signal_group(libc::SIGKILL);
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
        register(self.child.id() as i32, false);
        self.exited
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(500));
    }
}

/// Run `f`, which blocks (e.g. waits for a [`Supervised`] to exit), on a blocking thread and
/// wait for it, so that the async runtime's few workers go on serving every suite's watches;
/// a panic in `f` goes on in the caller, as if it had run there.
/// `PR_SET_PDEATHSIG(SIGKILL)` for a child of `cmd`: it dies with the thread that spawns it
/// (a harness killed with SIGKILL still takes it down).
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // Compared after prctl (not with 1: as a container's init, the harness itself is pid 1).
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

pub async fn off_the_runtime(f: impl FnOnce() + Send + 'static) {
    if let Err(e) = tokio::task::spawn_blocking(f).await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Describe an exit status the way a shell user reads it.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown exit".to_owned(),
    }
}

/// The last `max` bytes of a file, lossily decoded.
pub fn log_tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Whether `path` is a regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Pids of live processes whose environment carries `LBC_RUN_ID=<run_id>`.
pub fn processes_with_run_id(run_id: &str) -> Vec<u32> {
    let needle = format!("{RUN_ID_ENV}={run_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            // Zombies have an empty environ; they hold no resources and their parent reaps them.
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|entry| entry == needle.as_bytes())
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Resident memory of a process now and at its peak (kB), from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A TCP port free on 127.0.0.1 right now, for a program that binds it next.
///
/// Taken *below* the kernel's ephemeral range, and never the same twice in this process
/// (until the range wraps): a port picked and released from the ephemeral range could be
/// handed straight back to someone binding port 0 or opening a connection (the API proxy,
/// every client) before its program binds it.
///
/// # Errors
/// No port can be bound.
pub fn free_loopback_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = picked_range();
    let span = u32::from(high - low) + 1;
    // A different start per process, so concurrent harness processes rarely meet.
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + u16::try_from((start + n) % span).unwrap_or(0);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().map(|a| a.port());
        }
    }
    std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr().map(|a| a.port()))
}

/// Ports to pick from: 20000 up to just below the ephemeral range (32768 by default).
fn picked_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 21_000 {
        (20_000, ephemeral_low - 1)
    } else {
        // An unusual range: stay above it instead.
        (61_000, 64_999)
    }
}

/// Resolves when this process is asked to stop: SIGINT (Ctrl-C), SIGTERM (a CI job being
/// cancelled, `timeout`) or SIGHUP (its terminal closed). Callers tear down what they
/// started, as on Ctrl-C, instead of dying with it left behind.
pub async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut streams: Vec<_> = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ]
    .into_iter()
    .filter_map(|k| signal(k).ok())
    .collect();
    if streams.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv()))).await;
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    #[should_panic(expected = "stopping went wrong")]
    async fn a_panic_off_the_runtime_goes_on_in_the_caller() {
        off_the_runtime(|| panic!("stopping went wrong")).await;
    }

    use super::*;

    #[test]
    fn picked_ports_are_outside_the_ephemeral_range_and_distinct() {
        let ports: Vec<u16> = (0..50).map(|_| free_loopback_port().unwrap()).collect();
        let (low, high) = picked_range();
        assert!(ports.iter().all(|p| (low..=high).contains(p)), "{ports:?}");
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }

    fn spec(dir: &Path, script: &str, run_id: &str) -> Spec {
        Spec {
            name: "sh".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            clear_env: false,
            cwd: None,
            log: dir.join("sh.log"),
            run_id: run_id.into(),
        }
    }

    #[test]
    fn drop_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let run_id = format!("unit-{}", std::process::id());
        // A grandchild that ignores nothing: `sleep` forked by sh.
        let p =
            Supervised::spawn(&spec(dir.path(), "sleep 300 & sleep 300; wait", &run_id)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(processes_with_run_id(&run_id).len() >= 2);
        drop(p);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(processes_with_run_id(&run_id), Vec::<u32>::new());
    }

    #[test]
    fn exit_status_and_log_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut p =
            Supervised::spawn(&spec(dir.path(), "echo boom >&2; exit 3", "unit-x")).unwrap();
        let status = p.wait_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(describe_exit(status), "exit code 3");
        assert!(p.log_tail(100).contains("boom"));
    }

    #[test]
    fn missing_program_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "", "unit-y");
        s.program = "/nonexistent/kube-apiserver".into();
        let err = Supervised::spawn(&s).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/kube-apiserver"), "{err}");
    }
}
