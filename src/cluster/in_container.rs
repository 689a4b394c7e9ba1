//! The `container` provider: the local control plane (etcd, kube-apiserver,
//! kube-controller-manager, the node agent and the cluster's kernel) inside one container of
//! the image `logbackup-conformance/cluster` (built by `lbc image build`), started through
//! testcontainers; and the `k3s` provider (testcontainers-modules' K3s), which shares its
//! code path — only the image, the readiness line and the kubeconfig's path differ.
//!
//! Containers share the host's network (`--network host`, every port on 127.0.0.1), so the
//! controller under test, the per-suite kernels and the harness reach the cluster as they
//! reach the local one, and several clusters run side by side on ports of their own. A
//! host directory is bind-mounted at the same path inside: the cluster's run directory (Pod
//! logs for the bundles) lives there. testcontainers-rs starts no Ryuk reaper; each
//! container carries the run-id label and is removed by this provider's guard with the
//! Docker CLI (`rm -f -v`), and [`crate::container::sweep`] finds whatever a killed run left.

use std::path::PathBuf;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{ClusterError, ClusterProvider, RunningCluster};
use crate::container::{DockerError, api_bridge};

/// What `lbc serve-cluster` prints once the control plane is ready (its readiness line).
pub const READY_LINE: &str = "lbc-cluster: ready";
/// What `lbc serve-cluster` writes into the shared directory: where things are.
pub const DESCRIPTION_FILE: &str = "cluster.json";

/// Where fake-br sits inside the cluster image.
pub const FAKE_BR_INSIDE: &str = "/usr/local/bin/fake-br";

/// What `serve-cluster` tells the host.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Description {
    pub kubeconfig: PathBuf,
    pub kernel_endpoints: Vec<String>,
    pub run_dir: PathBuf,
    pub run_id: String,
    pub boot: Vec<(String, f64)>,
}

/// Why a cluster in a container did not start.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Bridge(#[from] api_bridge::BridgeError),
    #[error(
        "the {provider} provider is not in this build of lbc (it needs testcontainers): \
         rebuild with the `containers` feature, e.g. `cargo run --features containers --bin lbc -- run --provider {provider}`"
    )]
    NotBuilt { provider: &'static str },
    #[error("the image {tag} is missing: build it with `lbc image build`")]
    NoImage { tag: String },
    #[error("starting the {provider} container ({image}): {detail}{hint}")]
    Start {
        provider: &'static str,
        image: String,
        detail: String,
        hint: &'static str,
    },
    #[error("the {provider} container started but {what}: {detail}")]
    After {
        provider: &'static str,
        what: &'static str,
        detail: String,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which cluster runs in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Our control plane, from `logbackup-conformance/cluster:<version>`.
    Lbc,
    /// k3s from `rancher/k3s` (needs a registry that serves it and privileged containers).
    K3s,
}

/// A cluster in a container.
#[derive(Debug, Clone)]
pub struct ContainerProvider {
    pub kind: Kind,
    /// Images the node agent inside maps to programs, beyond fake-br's job image: each
    /// host program is mounted read-only at its own path.
    pub image_map: Vec<(String, PathBuf)>,
    pub startup_timeout: Duration,
    /// Keep the shared directory (logs) after teardown.
    pub keep: bool,
}

impl ContainerProvider {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            image_map: Vec::new(),
            startup_timeout: Duration::from_secs(120),
            keep: false,
        }
    }
}

impl ClusterProvider for ContainerProvider {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Lbc => "container",
            Kind::K3s => "k3s",
        }
    }

    fn start(&self) -> BoxFuture<'_, Result<RunningCluster, ClusterError>> {
        #[cfg(feature = "containers")]
        let started = async move { Ok(super::testcontainers::start(self).await?) }.boxed();
        #[cfg(not(feature = "containers"))]
        let started = async move {
            Err(ContainerError::NotBuilt {
                provider: self.name(),
            }
            .into())
        }
        .boxed();
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_round_trips() {
        let d = Description {
            kubeconfig: "/tmp/x/run/kubeconfig".into(),
            kernel_endpoints: vec!["http://127.0.0.1:2379".into()],
            run_dir: "/tmp/x/run".into(),
            run_id: "lbc-container-1".into(),
            boot: vec![("etcd healthy".into(), 0.5)],
        };
        let back: Description = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
