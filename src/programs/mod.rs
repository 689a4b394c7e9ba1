//! The programs the harness starts, and where they come from: supervised processes and
//! their teardown ([`process`]), kube-apiserver and kube-controller-manager ([`k8s`]: found or
//! built once with Go), and the workspace's own programs ([`workspace`]: lbc-controller,
//! fake-br, lbc-sandbox). Below every other module: the cluster, the images and the runner
//! all start programs. And etcd's binary ([`etcd_binary`]), from a crate.

use std::path::PathBuf;

pub mod k8s;
pub mod process;
pub mod workspace;

/// The etcd binary: `$LBC_ETCD_BIN` (the cluster image sets it), else the one the crate
/// `etcd-bin-vendored` unpacked.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("LBC_ETCD_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            etcd_bin_vendored_linux_amd64::etcd_bin_path()
                .unwrap_or_else(|never| match never {})
                .to_owned()
        })
}
