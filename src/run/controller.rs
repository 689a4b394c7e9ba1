//! The controller under test as a local process: started from a command template,
//! stopped, SIGKILLed and restarted by the harness.
//!
//! Naming: "the controller under test" is whatever a run judges; the *reference*
//! controller (`lbc-controller`) is only the default one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::programs::process::{ProcessError, Spec, Supervised};
use crate::programs::workspace::{Program, locate};

/// How to start the controller under test.
#[derive(Debug, Clone)]
pub struct ControllerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Log file (appended across restarts).
    pub log: PathBuf,
    pub run_id: String,
}

impl ControllerCommand {
    /// The reference controller `lbc-controller` with `flags`.
    pub fn reference(binary: &Path, flags: &ReferenceFlags, log: PathBuf, run_id: &str) -> Self {
        let mut args = vec![
            format!("--kubeconfig={}", flags.kubeconfig.display()),
            format!("--namespace={}", flags.namespace),
            format!("--kernel-endpoints={}", flags.kernel),
            format!("--job-image={}", flags.job_image),
        ];
        if !flags.extra.iter().any(|a| a.starts_with("--metrics-addr")) {
            // Port 0 unless the runner chose one: several controllers run side by side.
            let addr = flags
                .metrics_addr
                .map_or_else(|| "127.0.0.1:0".to_owned(), |a| a.to_string());
            args.push(format!("--metrics-addr={addr}"));
        }
        args.extend(flags.extra.iter().cloned());
        Self {
            program: binary.to_owned(),
            args,
            env: vec![],
            log,
            run_id: run_id.to_owned(),
        }
    }
}

/// Flags of the reference controller under test.
#[derive(Debug, Clone)]
pub struct ReferenceFlags {
    pub kubeconfig: PathBuf,
    /// The namespace it is scoped to.
    pub namespace: String,
    /// The kernel endpoint for every cluster.
    pub kernel: String,
    pub job_image: String,
    /// Where to serve `/metrics` (`None`: any free port).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// More flags, e.g. `--retry-strategy=workqueue`.
    pub extra: Vec<String>,
}

/// Where a suite's controller finds what it needs.
#[derive(Debug, Clone)]
pub struct SuiteEndpoints<'a> {
    pub kubeconfig: &'a Path,
    /// The suite's namespace (the controller's scope).
    pub namespace: &'a str,
    /// The suite's kernel, `http://host:port`.
    pub kernel: &'a str,
    pub job_image: &'a str,
    /// Where it should serve `/metrics`.
    pub metrics_addr: std::net::SocketAddr,
    /// Set for an isolated controller.
    pub isolation: Option<Isolation>,
}

/// A running (or stopped) controller under test.
#[derive(Debug)]
pub struct ControllerProcess {
    command: ControllerCommand,
    process: Option<Supervised>,
    starts: u32,
}

impl ControllerProcess {
    /// Start it.
    ///
    /// # Errors
    /// The program cannot be executed.
    pub fn start(command: ControllerCommand) -> Result<Self, ProcessError> {
        let mut p = Self {
            command,
            process: None,
            starts: 0,
        };
        p.start_again()?;
        Ok(p)
    }

    /// Start it if it is not running.
    ///
    /// # Errors
    /// The program cannot be executed.
    pub fn start_again(&mut self) -> Result<(), ProcessError> {
        if self.is_running() {
            return Ok(());
        }
        let spec = Spec {
            name: "controller".into(),
            program: self.command.program.clone(),
            args: self.command.args.iter().map(OsString::from).collect(),
            env: self
                .command
                .env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            clear_env: false,
            cwd: None,
            log: self.command.log.clone(),
            run_id: self.command.run_id.clone(),
        };
        self.process = Some(Supervised::spawn(&spec)?);
        self.starts += 1;
        Ok(())
    }

    /// How it ended, if it ended without being stopped by the harness (a crash).
    pub fn crashed(&mut self) -> Option<std::process::ExitStatus> {
        self.process.as_mut().and_then(Supervised::try_exited)
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| p.try_exited().is_none())
    }

    /// SIGKILL it (no chance to clean up), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.signal_group(libc::SIGKILL);
            p.stop(Duration::ZERO);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut p) = self.process.take() {
            p.stop(grace);
        }
    }

    /// The running process, taken out to be stopped without holding whatever holds `self`.
    pub fn take_running(&mut self) -> Option<Supervised> {
        self.process.take()
    }

    /// SIGKILL and start again.
    ///
    /// # Errors
    /// The program cannot be executed.
    pub fn restart(&mut self) -> Result<(), ProcessError> {
        self.kill();
        self.start_again()
    }

    /// The pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Supervised::pid)
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn log_path(&self) -> &Path {
        &self.command.log
    }
}

/// Which controller a run judges, with the per-suite placeholders still to fill (see
/// [`crate::target`]).
#[derive(Debug, Clone)]
pub struct ControllerSpec {
    /// For reports: the target's name (`reference`, `tidb-operator`, `custom`, …).
    pub label: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where it serves `/metrics` (a template, e.g. `{metrics_addr}`); `None`: nowhere known.
    pub metrics_addr: Option<String>,
    /// `lbc-sandbox`, when each instance runs in its own network and mount namespace.
    pub sandbox: Option<PathBuf>,
}

/// Per-suite placeholders a command may use.
const PLACEHOLDERS: &str = "{kubeconfig}, {namespace}, {kernel}, {job_image}, {metrics_addr}";

impl ControllerSpec {
    /// A resolved target; `builtin:<program>` names a workspace program.
    ///
    /// # Errors
    /// A program that cannot be found or built.
    pub fn from_target(t: &crate::target::Resolved) -> Result<Self, String> {
        let program = match t.program.strip_prefix("builtin:") {
            Some("lbc-controller") => locate(Program::ReferenceController),
            Some(other) => {
                return Err(format!(
                    "target {} ({}): unknown program builtin:{other}; the built-in program is builtin:lbc-controller",
                    t.name, t.file
                ));
            }
            None => Ok(PathBuf::from(&t.program)),
        }
        .map_err(|e| e.to_string())?;
        let sandbox = if t.isolate {
            Some(locate(Program::Sandbox).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(Self {
            label: t.label.clone(),
            program,
            args: t.args.clone(),
            env: t.env.clone(),
            metrics_addr: t.metrics_addr.clone(),
            sandbox,
        })
    }

    /// `--controller-cmd`: a command line with per-suite placeholders, split on whitespace.
    ///
    /// # Errors
    /// An empty template.
    pub fn template(t: &str) -> Result<Self, String> {
        let mut words = t.split_whitespace().map(String::from);
        let program = words
            .next()
            .ok_or_else(|| format!("--controller-cmd is empty; it may use {PLACEHOLDERS}"))?;
        Ok(Self {
            label: "custom".into(),
            program: program.into(),
            args: words.collect(),
            env: Vec::new(),
            metrics_addr: t
                .contains("{metrics_addr}")
                .then(|| "{metrics_addr}".into()),
            sandbox: None,
        })
    }

    /// A short name for reports.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the harness knows where it serves metrics.
    pub fn serves_metrics(&self) -> bool {
        self.metrics_addr.is_some()
    }

    /// The command for a suite at `at`.
    pub fn command(
        &self,
        at: &SuiteEndpoints<'_>,
        log: PathBuf,
        run_id: &str,
    ) -> ControllerCommand {
        let kubeconfig = at.kubeconfig.display().to_string();
        let metrics = at.metrics_addr.to_string();
        let values = [
            ("kubeconfig", kubeconfig.as_str()),
            ("namespace", at.namespace),
            ("kernel", at.kernel),
            ("job_image", at.job_image),
            ("metrics_addr", metrics.as_str()),
        ];
        let fill = |s: &String| crate::target::fill(s, &values);
        let mut program = self.program.clone();
        let mut args: Vec<String> = self.args.iter().map(fill).collect();
        if let (Some(sandbox), Some(iso)) = (&self.sandbox, &at.isolation) {
            let mut wrapped = vec!["--hosts".to_owned(), iso.hosts.display().to_string()];
            for (addr, sock) in &iso.listen {
                wrapped.push("--listen".into());
                wrapped.push(format!("{addr}={}", sock.display()));
            }
            for (sock, addr) in &iso.expose {
                wrapped.push("--expose".into());
                wrapped.push(format!("{}={addr}", sock.display()));
            }
            wrapped.push("--".into());
            wrapped.push(program.display().to_string());
            wrapped.extend(args);
            args = wrapped;
            program = sandbox.clone();
        }
        ControllerCommand {
            program,
            args,
            env: self.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
            log,
            run_id: run_id.to_owned(),
        }
    }

    /// Its metrics address for a suite whose runner chose `chosen`.
    pub fn metrics_addr(&self, chosen: std::net::SocketAddr) -> Option<String> {
        self.metrics_addr
            .as_ref()
            .map(|m| m.replace("{metrics_addr}", &chosen.to_string()))
    }
}

/// How an isolated controller reaches the outside: a private hosts file, addresses inside
/// forwarded to the harness's Unix sockets, and sockets the harness uses to reach in.
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    pub hosts: PathBuf,
    /// `ADDR` inside → the harness's socket.
    pub listen: Vec<(String, PathBuf)>,
    /// The harness's socket → `ADDR` inside.
    pub expose: Vec<(PathBuf, String)>,
}

/// The controller under test, shared between the steps and the API proxy (whose `crash`
/// faults kill and restart it while a step waits).
#[derive(Debug)]
pub struct SharedController {
    inner: std::sync::Mutex<SharedInner>,
    me: std::sync::Weak<SharedController>,
}

#[derive(Debug)]
struct SharedInner {
    process: ControllerProcess,
    /// When it last started again after a stop or a kill.
    restarted_at: Option<tokio::time::Instant>,
    /// The suite is over: a pending restart must not start it again.
    closed: bool,
    /// When the harness stopped or killed it, and when it started again (`None`: still
    /// down): the judge excuses a retry's lateness by the time it overlaps these.
    down: Vec<(jiff::Timestamp, Option<jiff::Timestamp>)>,
}

impl SharedInner {
    fn went_down(&mut self) {
        if self.down.last().is_none_or(|(_, up)| up.is_some()) {
            self.down.push((jiff::Timestamp::now(), None));
        }
    }

    fn came_up(&mut self) {
        if let Some((_, up @ None)) = self.down.last_mut() {
            *up = Some(jiff::Timestamp::now());
        }
    }
}

impl SharedController {
    pub fn new(process: ControllerProcess) -> std::sync::Arc<Self> {
        std::sync::Arc::new_cyclic(|me| Self {
            inner: std::sync::Mutex::new(SharedInner {
                process,
                restarted_at: None,
                closed: false,
                down: Vec::new(),
            }),
            me: me.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`ControllerProcess::crashed`].
    pub fn crashed(&self) -> Option<std::process::ExitStatus> {
        self.lock().process.crashed()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&self, grace: Duration) {
        // Under the lock: a restart due meanwhile must find it stopped, not start a second
        // one beside it while it exits.
        let mut g = self.lock();
        g.went_down();
        g.process.stop(grace);
    }

    /// Start it if it is not running (and the suite is not over).
    ///
    /// # Errors
    /// The program cannot be executed.
    pub fn start_again(&self) -> Result<(), ProcessError> {
        let mut g = self.lock();
        if g.closed || g.process.is_running() {
            return Ok(());
        }
        g.process.start_again()?;
        g.restarted_at = Some(tokio::time::Instant::now());
        g.came_up();
        Ok(())
    }

    /// SIGKILL and start again.
    ///
    /// # Errors
    /// The program cannot be executed.
    pub fn restart(&self) -> Result<(), ProcessError> {
        {
            let mut g = self.lock();
            g.went_down();
            g.process.kill();
        }
        self.start_again()
    }

    /// When the harness had it down during the suite: (stopped, started again), an
    /// interval still open ending now.
    pub fn downtime(&self) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
        let now = jiff::Timestamp::now();
        self.lock()
            .down
            .iter()
            .map(|(from, to)| (*from, to.unwrap_or(now)))
            .collect()
    }

    /// When it last started again (after the first start).
    pub fn restarted_at(&self) -> Option<tokio::time::Instant> {
        self.lock().restarted_at
    }

    pub fn starts(&self) -> u32 {
        self.lock().process.starts()
    }

    /// Stop it for good: the suite is over.
    pub fn close(&self, grace: Duration) {
        // Closed under the lock (no restart after this), stopped outside it: a crash fault
        // that comes meanwhile must not wait for the grace on a runtime worker.
        let running = {
            let mut g = self.lock();
            g.closed = true;
            g.process.take_running()
        };
        if let Some(mut p) = running {
            p.stop(grace);
        }
    }
}

impl crate::proxy::ControllerHook for SharedController {
    fn crash(&self, restart_after: Option<Duration>) {
        {
            let mut g = self.lock();
            g.went_down();
            g.process.kill();
        }
        if let Some(d) = restart_after {
            // Weak: a restart due after the suite ended finds nothing to start.
            let me = self.me.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(me) = me.upgrade()
                    && let Err(e) = me.start_again()
                {
                    tracing::warn!("restarting the controller after a crash fault: {e}");
                }
            });
        }
    }
}

/// A [`crate::proxy::ControllerHook`] for a proxy started before the controller: it reaches
/// the controller once [`LateHook::set`] names it (until then a crash fault finds nothing).
#[derive(Debug, Clone, Default)]
pub struct LateHook(std::sync::Arc<std::sync::OnceLock<std::sync::Weak<SharedController>>>);

impl LateHook {
    pub fn set(&self, c: &std::sync::Arc<SharedController>) {
        let _ = self.0.set(std::sync::Arc::downgrade(c));
    }
}

impl crate::proxy::ControllerHook for LateHook {
    fn crash(&self, restart_after: Option<Duration>) {
        if let Some(c) = self.0.get().and_then(std::sync::Weak::upgrade) {
            crate::proxy::ControllerHook::crash(&*c, restart_after);
        }
    }
}
