//! `lbc build-k8s [--node]`: the Kubernetes programs the local provider runs.

use anyhow::Result;
use logbackup_conformance::programs::k8s::{self as k8s_binaries, BinaryLookup};

/// Build (or find) kubelet, kube-proxy and kube-scheduler and say where they are.
pub(crate) async fn build_node(force: bool) -> Result<()> {
    let lookup = BinaryLookup {
        force_build: force,
        ..BinaryLookup::from_env()
    };
    let found = tokio::task::spawn_blocking(move || lookup.resolve_node()).await??;
    println!("kubelet:                 {}", found.kubelet.display());
    println!("kube-proxy:              {}", found.kube_proxy.display());
    println!("kube-scheduler:          {}", found.scheduler.display());
    Ok(())
}

/// `lbc build-k8s`: build (or find) the control-plane binaries and say where they are.
pub(crate) async fn build_k8s(force: bool, verify: bool) -> Result<()> {
    let lookup = BinaryLookup {
        force_build: force,
        ..BinaryLookup::from_env()
    };
    let dir = lookup.version_dir();
    let found = tokio::task::spawn_blocking(move || lookup.resolve()).await??;
    if verify {
        k8s_binaries::verify_hashes(&dir)?;
        println!("verified SHA-256 of the cached binaries");
    }
    println!("kube-apiserver:          {}", found.apiserver.display());
    println!(
        "kube-controller-manager: {}",
        found.controller_manager.display()
    );
    println!("source:                  {:?}", found.source);
    Ok(())
}
