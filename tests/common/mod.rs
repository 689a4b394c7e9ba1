//! Shared by the e2e test binaries: one control plane per test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::sync::OnceLock;

use logbackup_conformance::cluster::local::image_map::ImageMap;
use logbackup_conformance::cluster::local::{LocalConfig, LocalProvider};
use logbackup_conformance::cluster::{ClusterProvider, RunningCluster};
use logbackup_conformance::run::binaries::{self, Program};

/// A cluster living on its own runtime, so the node agent keeps running between tests.
pub struct Shared {
    _rt: tokio::runtime::Runtime,
    pub cluster: RunningCluster,
}

/// Boot the binary's cluster once with `config()`; later calls return the same one.
/// `LBC_KEEP=1` keeps its run directory (logs) after the tests.
pub fn shared_cluster(
    cell: &'static OnceLock<Shared>,
    config: fn() -> LocalConfig,
) -> &'static RunningCluster {
    &cell
        .get_or_init(|| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let mut config = config();
                config.keep_run_dir |= std::env::var_os("LBC_KEEP").is_some();
                let cluster = rt
                    .block_on(LocalProvider { config }.start())
                    .unwrap_or_else(|e| panic!("local control plane failed to boot: {e}"));
                Shared { _rt: rt, cluster }
            })
            .join()
            .unwrap()
        })
        .cluster
}

/// A local cluster whose job image (`pingcap/tidb-backup-manager`) runs fake-br.
#[allow(dead_code)] // not every test binary uses it
pub fn fake_br_config() -> LocalConfig {
    let fake_br = binaries::locate(Program::FakeBr).unwrap_or_else(|e| panic!("{e}"));
    let mut image_map = ImageMap::default();
    image_map.insert("pingcap/tidb-backup-manager", fake_br);
    LocalConfig {
        image_map,
        ..LocalConfig::default()
    }
}

/// The reference controller's binary, built fresh (see `run::binaries`).
#[allow(dead_code)] // not every test binary uses it
pub fn reference_controller() -> std::path::PathBuf {
    binaries::locate(Program::ReferenceController).unwrap_or_else(|e| panic!("{e}"))
}
