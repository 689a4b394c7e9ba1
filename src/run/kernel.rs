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
    #[error("the suite's kernel in the cluster: {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the suite's kernel Pod was not ready within {secs:.0}s: {detail}")]
    PodNotReady { secs: f64, detail: String },
}

/// A running kernel; dropping it stops the etcd (its data directory goes with the run's),
/// or for a kernel in the cluster the port-forward (the Pod goes with the namespace).
#[derive(Debug)]
pub struct SuiteKernel {
    /// Where the harness and a controller on this machine reach it (`http://host:port`).
    pub endpoint: String,
    /// Where the suite's Pods reach it, when that differs (the Service's ClusterIP).
    pub pod_endpoint: Option<String>,
    inner: Inner,
}

/// What keeps the kernel reachable: its process, or the port-forward to its Pod (held, not
/// read: dropping it stops forwarding).
#[derive(Debug)]
enum Inner {
    Process(Supervised),
    Pod(#[allow(dead_code)] Option<crate::cluster::port_forward::PortForward>),
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
                return Ok(Self {
                    endpoint,
                    pod_endpoint: None,
                    inner: Inner::Process(process),
                });
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
        match &mut self.inner {
            Inner::Process(p) => p.try_exited().map(describe_exit),
            // A Pod that dies is restarted by kubelet; its readiness is the suite's to see.
            Inner::Pod(_) => None,
        }
    }

    /// An etcd Pod and the Service `service` (PD's, `<cluster>-pd`, port 2379) in the
    /// suite's namespace, reached from here by a port-forward through the API server: the
    /// same on any cluster whose nodes hold `image`. With `direct` (this machine routes to
    /// the cluster's Pods: a real node started here) the Pod's own address is used instead,
    /// which costs no stream through the API server per connection.
    ///
    /// # Errors
    /// The API refuses the objects, or the Pod is not ready in `timeout` (the error says why,
    /// e.g. the image is not on the nodes).
    pub async fn in_cluster(
        client: &kube::Client,
        namespace: &str,
        service: &str,
        image: &str,
        direct: bool,
        timeout: Duration,
    ) -> Result<Self, KernelStartError> {
        let (cluster_ip, pod_ip) =
            super::kernel_pod::create(client, namespace, service, image, timeout).await?;
        let (endpoint, forward) = if direct {
            (format!("http://{pod_ip}:2379"), None)
        } else {
            let f = crate::cluster::port_forward::PortForward::start(
                client.clone(),
                namespace,
                super::kernel_pod::POD,
                2379,
            )
            .await
            .map_err(KernelStartError::Port)?;
            (format!("http://{}", f.local), Some(f))
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let kernel = KernelClient::new(&endpoint);
        while !kernel.healthy().await {
            if tokio::time::Instant::now() >= deadline {
                return Err(KernelStartError::PodNotReady {
                    secs: timeout.as_secs_f64(),
                    detail: format!("no answer at {endpoint}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            endpoint,
            pod_endpoint: Some(format!("http://{cluster_ip}:2379")),
            inner: Inner::Pod(forward),
        })
    }
}

fn free_port() -> Result<u16, KernelStartError> {
    crate::programs::process::free_loopback_port().map_err(KernelStartError::Port)
}
