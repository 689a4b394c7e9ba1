//! Cluster providers: where the controller under test and its Jobs run.
//!
//! `local` (the default) starts a real control plane on this machine; `container` starts the
//! same inside a container, `k3s` starts k3s in one (both through testcontainers);
//! `kubeconfig` uses any existing cluster. Each yields a [`RunningCluster`]:
//! a kubeconfig, the kernel's endpoints, and a guard that tears everything down on drop.

pub mod in_container;
pub mod kubeconfig;
pub mod local;
pub mod port_forward;
#[cfg(feature = "containers")]
mod testcontainers;

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

/// Why a cluster could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    #[error(transparent)]
    Container(#[from] in_container::ContainerError),
}

/// Something that can start (or connect to) a cluster.
pub trait ClusterProvider: Send + Sync {
    /// Short name for reports: `local`, `kubeconfig`, `k3s`.
    fn name(&self) -> &'static str;

    /// Start or connect. The returned handle owns whatever was started.
    fn start(&self) -> BoxFuture<'_, Result<RunningCluster, ClusterError>>;
}

/// What the harness can do on a cluster beyond the Kubernetes API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Pods run as local processes with images chosen through an image map.
    pub local_processes: bool,
    /// Pods reach this host at this address (a real node started here): a suite's kernel
    /// listens there.
    pub pod_host: Option<std::net::Ipv4Addr>,
    /// The node's containerd socket when the harness started the node: images it makes
    /// (a controller's, `install: deployment`) are imported there.
    pub containerd: Option<std::path::PathBuf>,
}

/// What a provider keeps alive for a [`RunningCluster`]; dropping it tears down.
pub trait ClusterGuard: Send + Sync {
    /// Components that have died since start, each with its exit and log location.
    fn dead_components(&self) -> Vec<String>;
}

/// Where a provider's start-up time went: each milestone with its time since the start, in
/// the order reached (`lbc bench boot` prints them).
#[derive(Debug, Clone, Default)]
pub struct BootPhases(pub Vec<(String, std::time::Duration)>);

impl BootPhases {
    /// The time `name` was reached, if it was.
    pub fn at(&self, name: &str) -> Option<std::time::Duration> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }
}

/// A cluster ready for use. Dropping it stops everything the provider started.
pub struct RunningCluster {
    pub provider: &'static str,
    pub kubeconfig: PathBuf,
    pub config: kube::Config,
    /// The kernel (PD etcd) endpoints, `http://host:port`.
    pub kernel_endpoints: Vec<String>,
    pub capabilities: Capabilities,
    /// Directory holding logs and state of this cluster, if the provider keeps one.
    pub run_dir: Option<PathBuf>,
    pub run_id: String,
    /// Start-up milestones (empty for providers that start nothing).
    pub boot: BootPhases,
    guard: Option<Box<dyn ClusterGuard>>,
}

impl std::fmt::Debug for RunningCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCluster")
            .field("provider", &self.provider)
            .field("kubeconfig", &self.kubeconfig)
            .field("kernel_endpoints", &self.kernel_endpoints)
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl RunningCluster {
    /// A fresh client for the cluster.
    ///
    /// # Errors
    /// The config cannot build a client (TLS setup).
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        kube::Client::try_from(self.config.clone())
    }

    /// Components of the cluster that have died (empty when healthy or not ours to watch).
    pub fn dead_components(&self) -> Vec<String> {
        self.guard
            .as_ref()
            .map(|g| g.dead_components())
            .unwrap_or_default()
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Stop everything now (the same as dropping the handle).
    pub fn shutdown(mut self) {
        self.guard.take();
    }
}

impl Drop for RunningCluster {
    fn drop(&mut self) {
        self.guard.take();
    }
}
