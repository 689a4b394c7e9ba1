//! Shared by the e2e test binaries: one control plane per test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

use std::sync::OnceLock;

use logbackup_conformance::cluster::local::image_map::ImageMap;
use logbackup_conformance::cluster::local::{LocalConfig, LocalProvider};
use logbackup_conformance::cluster::{ClusterProvider, RunningCluster};
pub use logbackup_conformance::doctor::Need;
use logbackup_conformance::programs::workspace::{self, Program};

/// A cluster living on its own runtime, so the node agent keeps running between tests.
#[allow(dead_code)] // not every test binary uses it
pub struct Shared {
    _rt: tokio::runtime::Runtime,
    pub cluster: RunningCluster,
}

/// What this test binary needs of the machine (`lbc doctor`'s checks), asked once: when
/// something is missing, one line with the fix, past libtest's capture, and the binary stops
/// before any test starts its work (no panic deep in a test, no backtrace).
#[allow(dead_code)] // not every test binary uses it
pub fn require(needs: &[Need]) {
    static ASKED: std::sync::Mutex<Vec<Need>> = std::sync::Mutex::new(Vec::new());
    let mut asked = ASKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let new: Vec<Need> = needs
        .iter()
        .copied()
        .filter(|n| !asked.contains(n))
        .collect();
    if new.is_empty() {
        return;
    }
    if let Err(e) = logbackup_conformance::doctor::require(&new) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "error: {e}");
        std::process::exit(2);
    }
    asked.extend(new);
}

/// Boot the binary's cluster once with `config()`; later calls return the same one.
/// `LBC_KEEP=1` keeps its run directory (logs) after the tests.
#[allow(dead_code)] // not every test binary uses it
pub fn shared_cluster(
    cell: &'static OnceLock<Shared>,
    config: fn() -> LocalConfig,
) -> &'static RunningCluster {
    &cell
        .get_or_init(|| {
            require(&[Need::ControlPlane, Need::Resources]);
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
    let fake_br = workspace::locate(Program::FakeBr).unwrap_or_else(|e| panic!("{e}"));
    let mut image_map = ImageMap::default();
    image_map.insert("pingcap/tidb-backup-manager", fake_br.clone());
    // The project's own image names (the job and tool images of `--provider kubeconfig`).
    image_map.insert("logbackup-conformance/fake-br", fake_br.clone());
    image_map.insert("logbackup-conformance/br", fake_br);
    LocalConfig {
        image_map,
        ..LocalConfig::default()
    }
}

/// The reference controller's binary, built fresh (see `programs::workspace`).
#[allow(dead_code)] // not every test binary uses it
pub fn reference_controller() -> std::path::PathBuf {
    workspace::locate(Program::ReferenceController).unwrap_or_else(|e| panic!("{e}"))
}
