//! A suite's set-up for a controller installed from its image ([`super::controller_pod`]):
//! where its Pod reaches the API proxy, PD's service names for it, and its start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::controller::{ControllerCommand, PodInstall, Runner, SharedController};
use super::controller_pod::{self, ControllerPod, PodTemplate};
use crate::cluster::RunningCluster;

/// Where the suite's Pod form serves metrics when the target lets the harness choose.
pub const METRICS_ADDR: &str = "0.0.0.0:9090";

/// The proxy for the controller's Pod: on the address Pods reach this host at, acting as
/// the controller's ServiceAccount.
///
/// # Errors
/// The cluster's Pods cannot reach this host, or the run has no proxy.
pub fn proxy_listen(
    cluster: &RunningCluster,
    api_proxy: bool,
    ns: &str,
) -> Result<crate::proxy::Listen, String> {
    let Some(ip) = cluster.capabilities.pod_host else {
        return Err(format!(
            "install: deployment needs a cluster whose Pods reach this machine (the {} \
             provider's do not): --node kubelet, or --provider kubeconfig with --pod-host ADDR",
            cluster.provider
        ));
    };
    if !api_proxy {
        return Err(
            "install: deployment reaches the API server through the harness's proxy: drop --direct-api"
                .into(),
        );
    }
    Ok(crate::proxy::Listen::service_account(
        ip,
        ns,
        controller_pod::NAME,
    ))
}

/// `/etc/hosts` entries that resolve PD's names (`<cluster>-pd`, `…​.<ns>`, `….svc`, …) to a
/// Service of port 2379 in front of the suite's kernel: the kernel's own Service in the
/// cluster, else one made here for a kernel on this machine (`http://host:port`).
///
/// # Errors
/// The Service cannot be made or read.
pub async fn pd_aliases(
    client: &kube::Client,
    ns: &str,
    service: &str,
    for_pods: &str,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let existing = api
        .get_opt(service)
        .await
        .map_err(|e| format!("reading Service {service}: {e}"))?;
    let svc = match existing {
        Some(s) => s,
        None => {
            let (host, port) = super::isolate::host_port(for_pods)
                .as_deref()
                .and_then(|hp| hp.rsplit_once(':'))
                .map(|(h, p)| (h.to_owned(), p.to_owned()))
                .ok_or_else(|| format!("the suite's kernel {for_pods:?} has no host:port"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("the suite's kernel {for_pods:?} has no port"))?;
            host_service(client, ns, service, &host, port).await?
        }
    };
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| format!("Service {service} has no ClusterIP"))?;
    Ok(vec![(ip, controller_pod::pd_names(service, ns))])
}

/// A Service of port 2379 without a selector and its EndpointSlice: `host:port` on this
/// machine, as the cluster's Pods reach it.
async fn host_service(
    client: &kube::Client,
    ns: &str,
    service: &str,
    host: &str,
    port: u16,
) -> Result<Service, String> {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": service},
        "spec": {"ports": [{"name": "client", "port": 2379, "targetPort": port}]},
    }))
    .map_err(|e| e.to_string())?;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-lbc"),
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": true}}],
        "ports": [{"name": "client", "port": port, "protocol": "TCP"}],
    }))
    .map_err(|e| e.to_string())?;
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &slice)
        .await
        .map_err(|e| format!("creating the EndpointSlice of {service}: {e}"))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .map_err(|e| format!("creating Service {service}: {e}"))
}

/// Install the controller from `pod`'s image and wait for it to run.
///
/// # Errors
/// No image, an object refused, or its container not running within a minute.
pub async fn start(
    cluster: &RunningCluster,
    ns: &str,
    pod: &PodInstall,
    mut command: ControllerCommand,
    proxy: crate::proxy::Access,
    host_aliases: Vec<(String, Vec<String>)>,
) -> Result<Arc<SharedController>, String> {
    let image = pod.image.clone().ok_or_else(|| {
        "install: deployment: no image (the run makes one before the suites)".to_owned()
    })?;
    command.program = PathBuf::from(format!("{}/{}", controller_pod::PROGRAM_DIR, pod.name));
    let template = PodTemplate {
        namespace: ns.to_owned(),
        image,
        command,
        proxy,
        rules: pod.rules.clone(),
        host_aliases,
    };
    let config = cluster.config.clone();
    // Its own thread waits for the Pod: off the runtime's workers.
    let started = tokio::task::spawn_blocking(move || {
        ControllerPod::start(config, &template, Duration::from_secs(60))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("starting the controller's Pod: {e}"))?;
    Ok(SharedController::new(Runner::Pod(started)))
}

/// The image of the controller's `program`, made here (`lbc image build-target`) and
/// imported into the node's containerd when the harness started the node; on another
/// cluster it must have been loaded (its Pod then says so).
///
/// # Errors
/// The image cannot be written or imported.
pub async fn image_of(
    cluster: &RunningCluster,
    program: &std::path::Path,
    pod: &PodInstall,
) -> Result<String, String> {
    let dir = crate::programs::k8s::default_cache_root()
        .join("images")
        .join("targets");
    let (program, name, strip) = (program.to_owned(), pod.name.clone(), pod.strip);
    let image = tokio::task::spawn_blocking(move || {
        crate::container::archive::write_program(&program, &name, strip, &dir)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("the controller's image: {e}"))?;
    if let Some(socket) = &cluster.capabilities.containerd {
        let out = tokio::process::Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(&image.archive)
            .output()
            .await
            .map_err(|e| format!("running ctr: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "importing {} into the node: {}",
                image.archive.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(image.tag)
}
