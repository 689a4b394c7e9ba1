//! The `kubeconfig` provider: any existing cluster, reached by a kubeconfig file.
//! Nothing is started, so nothing is stopped; the kernel endpoints are given by the user.

use std::path::PathBuf;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::{Capabilities, ClusterError, ClusterProvider, RunningCluster};

/// Errors reaching an existing cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig {path} is unusable: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cluster of kubeconfig {path} is unreachable: {source}")]
    Unreachable {
        path: PathBuf,
        #[source]
        source: kube::Error,
    },
}

/// An existing cluster.
#[derive(Debug, Clone)]
pub struct KubeconfigProvider {
    pub path: PathBuf,
    pub context: Option<String>,
    /// Where the kernel (PD etcd) is reachable from this machine.
    pub kernel_endpoints: Vec<String>,
    /// Where the cluster's Pods reach this machine (a controller installed as a Deployment
    /// reaches the harness's API proxy there).
    pub pod_host: Option<std::net::Ipv4Addr>,
}

impl ClusterProvider for KubeconfigProvider {
    fn name(&self) -> &'static str {
        "kubeconfig"
    }

    fn start(&self) -> BoxFuture<'_, Result<RunningCluster, ClusterError>> {
        async move {
            let path = self.path.clone();
            let kc = Kubeconfig::read_from(&path).map_err(|source| KubeconfigError::Read {
                path: path.clone(),
                source,
            })?;
            let options = KubeConfigOptions {
                context: self.context.clone(),
                ..KubeConfigOptions::default()
            };
            let config = kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|source| KubeconfigError::Config {
                    path: path.clone(),
                    source,
                })?;
            let client = kube::Client::try_from(config.clone()).map_err(|source| {
                KubeconfigError::Unreachable {
                    path: path.clone(),
                    source,
                }
            })?;
            client
                .apiserver_version()
                .await
                .map_err(|source| KubeconfigError::Unreachable {
                    path: path.clone(),
                    source,
                })?;
            Ok(RunningCluster {
                provider: "kubeconfig",
                kubeconfig: path,
                config,
                kernel_endpoints: self.kernel_endpoints.clone(),
                capabilities: Capabilities {
                    pod_host: self.pod_host,
                    ..Capabilities::default()
                },
                run_dir: None,
                // Unique among runs sharing the cluster: a suite namespace is labelled with it.
                run_id: format!(
                    "kubeconfig-{}-{}",
                    std::process::id(),
                    jiff::Timestamp::now().as_millisecond()
                ),
                boot: super::BootPhases::default(),
                guard: None,
            })
        }
        .boxed()
    }
}
