//! A real node's programs: kubelet, kube-proxy and kube-scheduler, a second set built from
//! the same wrapper module into `<cache>/k8s/<version>/node/`, only when asked for.

use std::path::PathBuf;

use super::{
    BinaryLookup, ControlPlaneError, FileLock, K8S_VERSION, KUBE_PROXY, KUBELET, SCHEDULER, Set,
    build, cached, find_in_path, io,
};
use crate::programs::process::is_executable;

/// A real node's programs.
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    pub scheduler: PathBuf,
}

impl BinaryLookup {
    /// The directory holding this version's node programs.
    pub fn node_dir(&self) -> PathBuf {
        self.version_dir().join("node")
    }

    /// Find the node's programs (`$LBC_NODE_BIN_DIR`, else the cache), building them if
    /// needed. Blocking.
    ///
    /// # Errors
    /// As [`BinaryLookup::resolve`].
    pub fn resolve_node(&self) -> Result<NodeBinaries, ControlPlaneError> {
        let node = |bin: PathBuf| NodeBinaries {
            kubelet: bin.join(KUBELET),
            kube_proxy: bin.join(KUBE_PROXY),
            scheduler: bin.join(SCHEDULER),
        };
        if let Some(dir) = std::env::var_os("LBC_NODE_BIN_DIR").map(PathBuf::from) {
            for &name in Set::Node.names() {
                if !is_executable(&dir.join(name)) {
                    return Err(ControlPlaneError::AssetsIncomplete {
                        dir,
                        missing: name.into(),
                    });
                }
            }
            return Ok(node(dir));
        }
        let dir = self.node_dir();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let _lock = FileLock::acquire(&dir.join(".lock"))?;
        if self.force_build || !cached(&dir, Set::Node)? {
            let go = find_in_path("go", self.path.as_ref()).ok_or_else(|| {
                ControlPlaneError::GoMissing {
                    version: K8S_VERSION.into(),
                    cache: dir.clone(),
                }
            })?;
            build(&go, &dir, Set::Node)?;
        }
        Ok(node(dir.join("bin")))
    }
}
