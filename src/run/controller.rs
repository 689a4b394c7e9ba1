//! The controller under test as a local process: started from a command template,
//! stopped, SIGKILLed and restarted by the harness.
//!
//! Naming: "the controller under test" is whatever a run judges; the *reference*
//! controller (`lbc-controller`) is only the default one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::process::{ProcessError, Spec, Supervised};

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
#[derive(Debug, Clone, Copy)]
pub struct SuiteEndpoints<'a> {
    pub kubeconfig: &'a Path,
    /// The suite's namespace (the controller's scope).
    pub namespace: &'a str,
    /// The suite's kernel, `http://host:port`.
    pub kernel: &'a str,
    pub job_image: &'a str,
    /// Where it should serve `/metrics`.
    pub metrics_addr: std::net::SocketAddr,
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

/// Which controller a run judges.
#[derive(Debug, Clone)]
pub enum ControllerSpec {
    /// `lbc-controller`, scoped to the suite's namespace, with extra flags.
    Reference { binary: PathBuf, extra: Vec<String> },
    /// Any program: `{kubeconfig}`, `{namespace}`, `{kernel}`, `{job_image}` and
    /// `{metrics_addr}` are substituted; words are split on whitespace.
    Template(String),
}

impl ControllerSpec {
    /// A short name for reports (`reference` or `custom`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Reference { .. } => "reference",
            Self::Template(_) => "custom",
        }
    }

    /// Whether the controller serves metrics where the runner says (`{metrics_addr}`).
    pub fn serves_metrics(&self) -> bool {
        match self {
            Self::Reference { extra, .. } => !extra.iter().any(|a| a.starts_with("--metrics-addr")),
            Self::Template(t) => t.contains("{metrics_addr}"),
        }
    }

    /// The command for a suite at `at`.
    ///
    /// # Errors
    /// An empty template.
    pub fn command(
        &self,
        at: &SuiteEndpoints<'_>,
        log: PathBuf,
        run_id: &str,
    ) -> Result<ControllerCommand, String> {
        let SuiteEndpoints {
            kubeconfig,
            namespace,
            kernel,
            job_image,
            metrics_addr,
        } = *at;
        match self {
            Self::Reference { binary, extra } => {
                // Suites' kernel windows are seconds long.
                let mut flags = vec!["--kernel-sync-period=1s".to_owned()];
                flags.extend(extra.iter().cloned());
                Ok(ControllerCommand::reference(
                    binary,
                    &ReferenceFlags {
                        kubeconfig: kubeconfig.to_owned(),
                        namespace: namespace.into(),
                        kernel: kernel.into(),
                        job_image: job_image.into(),
                        metrics_addr: Some(metrics_addr),
                        extra: flags,
                    },
                    log,
                    run_id,
                ))
            }
            Self::Template(t) => {
                let cmd = t
                    .replace("{kubeconfig}", &kubeconfig.display().to_string())
                    .replace("{namespace}", namespace)
                    .replace("{kernel}", kernel)
                    .replace("{job_image}", job_image)
                    .replace("{metrics_addr}", &metrics_addr.to_string());
                let mut words = cmd.split_whitespace().map(String::from);
                let program = words.next().ok_or("--controller-cmd is empty")?;
                Ok(ControllerCommand {
                    program: program.into(),
                    args: words.collect(),
                    env: vec![],
                    log,
                    run_id: run_id.to_owned(),
                })
            }
        }
    }
}
