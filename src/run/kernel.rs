//! A suite's own kernel: a real etcd playing PD's, started for one suite and stopped with it.
//!
//! With its own kernel a suite keeps its declared Backup names, so exact task keys can be
//! tested (`lb1` beside `lb10`: a prefix read of one must not see the other). Possible when
//! the cluster runs Pods as local processes (they reach loopback) or on a real node started
//! here (they reach the host on the node's link); otherwise the suite uses the cluster's
//! shared kernel and the runner makes names unique instead.

use std::path::Path;
use std::time::Duration;

use lbc_api::kernel::KernelClient;

use crate::programs::process::{ProcessError, Spec, Supervised, describe_exit};

/// Why a suite's kernel did not start.
#[derive(Debug, thiserror::Error)]
pub enum KernelStartError {
    #[error("no free port for the suite's kernel: {0}")]
    Port(std::io::Error),
    #[error("the suite's kernel directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the suite's kernel exited before it was ready ({exit}); log {log}")]
    Exited { exit: String, log: String },
    #[error("the suite's kernel was not healthy within {0:?}; log {1}")]
    NotReady(Duration, String),
}

/// A running kernel; dropping it stops the etcd (its data directory goes with the run's).
#[derive(Debug)]
pub struct SuiteKernel {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    process: Supervised,
}

impl SuiteKernel {
    /// Start an etcd with its data and log under `dir` and wait until it answers.
    ///
    /// # Errors
    /// No port, no directory, the binary does not run, or it is not healthy in `timeout`.
    pub async fn start(
        dir: &Path,
        run_id: &str,
        host: std::net::Ipv4Addr,
        timeout: Duration,
    ) -> Result<Self, KernelStartError> {
        // A port picked free can be taken before etcd binds it (another suite's kernel,
        // an outgoing connection): an early exit is retried on fresh ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(dir, run_id, host, timeout).await {
                Err(KernelStartError::Exited { log, .. }) if attempt < 3 => {
                    tracing::debug!(%log, attempt, "suite kernel exited early; retrying on new ports");
                }
                other => return other,
            }
        }
    }

    async fn start_once(
        dir: &Path,
        run_id: &str,
        host: std::net::Ipv4Addr,
        timeout: Duration,
    ) -> Result<Self, KernelStartError> {
        // Keep the failed attempt's log for the error; start afresh otherwise.
        let _ = std::fs::remove_dir_all(dir.join("data"));
        std::fs::create_dir_all(dir).map_err(|source| KernelStartError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let (client, peer) = (free_port()?, free_port()?);
        let etcd = crate::programs::etcd_binary();
        use crate::cluster::local::{EtcdTick, etcd_args_on, go_runtime_env};
        let args = etcd_args_on(
            host,
            "kernel",
            &dir.join("data"),
            client,
            peer,
            EtcdTick::Idle,
        );
        let mut process = Supervised::spawn(&Spec {
            name: "kernel-etcd".into(),
            program: etcd,
            args: args.iter().map(Into::into).collect(),
            env: go_runtime_env(std::env::var_os("GOGC").is_some()),
            clear_env: false,
            cwd: None,
            log: dir.join("kernel.log"),
            run_id: run_id.to_owned(),
        })?;
        let endpoint = format!("http://{host}:{client}");
        let kernel = KernelClient::new(&endpoint);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(exit) = process.try_exited() {
                return Err(KernelStartError::Exited {
                    exit: describe_exit(exit),
                    log: process.log_path().display().to_string(),
                });
            }
            if kernel.healthy().await {
                return Ok(Self { endpoint, process });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KernelStartError::NotReady(
                    timeout,
                    process.log_path().display().to_string(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Whether it died under the suite (then every kernel read of the controller fails).
    pub fn died(&mut self) -> Option<String> {
        self.process.try_exited().map(describe_exit)
    }
}

fn free_port() -> Result<u16, KernelStartError> {
    crate::programs::process::free_loopback_port().map_err(KernelStartError::Port)
}
