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
    /// Installed from its image instead (`install: deployment`).
    pub pod: Option<PodInstall>,
}

/// The Deployment form of a controller (see [`super::controller_pod`]).
#[derive(Debug, Clone)]
pub struct PodInstall {
    /// An image the nodes hold; `None` until the run makes one of `program`.
    pub image: Option<String>,
    pub rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    /// Its file name in the image (`/usr/local/bin/<name>`, where the operator's image keeps
    /// `tidb-controller-manager` too).
    pub name: String,
    /// Strip debug info when putting the program in an image (the workspace's builds).
    pub strip: bool,
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
        let pod = pod_install(t, &program)?;
        let sandbox = if t.isolate && pod.is_none() {
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
            pod,
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
            pod: None,
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

/// A target's Deployment form, when it is installed so.
fn pod_install(t: &crate::target::Resolved, program: &Path) -> Result<Option<PodInstall>, String> {
    if t.install != crate::target::Install::Deployment {
        return Ok(None);
    }
    let Some(d) = &t.deployment else {
        return Err(format!(
            "target {} ({}) has no `deployment:` section (its rules at least): it cannot be installed as a Deployment",
            t.name, t.file
        ));
    };
    let rules = d
        .rules
        .iter()
        .map(|r| {
            serde_json::from_value(r.clone())
                .map_err(|e| format!("target {}: deployment.rules: {e}", t.name))
        })
        .collect::<Result<_, _>>()?;
    let name = t
        .program
        .strip_prefix("builtin:")
        .map(str::to_owned)
        .or_else(|| {
            program
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "controller".into());
    Ok(Some(PodInstall {
        image: d.image.clone(),
        rules,
        name: crate::container::archive::image_name(&name),
        strip: t.program.starts_with("builtin:"),
    }))
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

pub use super::shared_controller::{ControllerError, LateHook, Runner, SharedController};
