//! The kernel in the cluster: PD's etcd as a Pod in the suite's namespace behind PD's
//! Service (`<cluster>-pd`, port 2379), as TiDB Operator's Jobs expect to find it. The Pod
//! and the Service go with the namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use super::kernel::KernelStartError;

/// The kernel Pod's name.
pub const POD: &str = "lbc-kernel";
const LABEL: &str = "app.kubernetes.io/name";

/// The Pod: one etcd member, its data in an emptyDir, ready when `/health` answers.
pub fn pod_manifest(service: &str, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "labels": {
            LABEL: POD,
            "app.kubernetes.io/managed-by": "logbackup-conformance",
        }},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "etcd",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "args": [
                    "--name=kernel",
                    "--data-dir=/var/lib/etcd/data",
                    "--listen-client-urls=http://0.0.0.0:2379",
                    format!("--advertise-client-urls=http://{service}:2379"),
                    "--listen-peer-urls=http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                    "--initial-cluster=kernel=http://127.0.0.1:2380",
                    "--unsafe-no-fsync=true",
                    "--heartbeat-interval=25",
                    "--election-timeout=125",
                    "--log-level=warn",
                ],
                "ports": [{"name": "client", "containerPort": 2379}],
                "readinessProbe": {
                    "httpGet": {"path": "/health", "port": 2379},
                    "periodSeconds": 1,
                },
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}],
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    })
}

/// PD's Service, selecting the kernel Pod.
pub fn service_manifest(service: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service, "labels": {
            "app.kubernetes.io/managed-by": "logbackup-conformance",
        }},
        "spec": {
            "selector": {LABEL: POD},
            "ports": [{"name": "client", "port": 2379, "targetPort": 2379}],
        },
    })
}

fn kube_err(what: &str) -> impl FnOnce(kube::Error) -> KernelStartError + '_ {
    move |source| KernelStartError::Kube {
        what: what.to_owned(),
        source,
    }
}

/// Create the Service and the Pod and wait until the Pod is ready. Returns the Service's
/// ClusterIP and the Pod's IP.
///
/// # Errors
/// The API refuses them, or the Pod is not ready in `timeout`.
pub async fn create(
    client: &Client,
    ns: &str,
    service: &str,
    image: &str,
    timeout: Duration,
) -> Result<(String, String), KernelStartError> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc: Service = serde_json::from_value(service_manifest(service)).unwrap_or_default();
    let svc = services
        .create(&PostParams::default(), &svc)
        .await
        .map_err(kube_err("creating PD's Service"))?;
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(pod_manifest(service, image)).unwrap_or_default();
    let started = tokio::time::Instant::now();
    // A new namespace's `default` ServiceAccount comes a moment after it: until then
    // ServiceAccount admission refuses the Pod.
    loop {
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => break,
            Err(kube::Error::Api(e))
                if e.code == 403
                    && e.message.contains("serviceaccount")
                    && started.elapsed() < timeout =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(kube_err("creating the kernel Pod")(e)),
        }
    }
    loop {
        let p = pods
            .get(POD)
            .await
            .map_err(kube_err("reading the kernel Pod"))?;
        if ready(&p) {
            let pod_ip = p.status.and_then(|s| s.pod_ip).unwrap_or_default();
            return Ok((cluster_ip, pod_ip));
        }
        if started.elapsed() > timeout {
            return Err(KernelStartError::PodNotReady {
                secs: started.elapsed().as_secs_f64(),
                detail: why_not_ready(&p, image),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the Pod's status says, with the fix for an image the nodes do not hold.
pub fn why_not_ready(p: &Pod, image: &str) -> String {
    let status = p.status.clone().unwrap_or_default();
    let waiting = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.state?.waiting)
        .map(|w| {
            format!(
                "{}: {}",
                w.reason.unwrap_or_default(),
                w.message.unwrap_or_default()
            )
        })
        .next();
    match waiting {
        Some(w) if w.contains("Image") || w.contains("image") => format!(
            "{w} — the cluster's nodes need the image {image}: `lbc image save etcd` writes it \
             (then `kind load image-archive …` / `k3s ctr images import …`)"
        ),
        Some(w) => w,
        None => format!("phase {}", status.phase.unwrap_or_else(|| "Pending".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_selects_the_pod_and_names_pds_port() {
        let pod = pod_manifest("basic-pd", "e:1");
        let svc = service_manifest("basic-pd");
        assert_eq!(
            svc["spec"]["selector"][LABEL],
            pod["metadata"]["labels"][LABEL]
        );
        assert_eq!(svc["spec"]["ports"][0]["port"], 2379);
        assert_eq!(pod["spec"]["containers"][0]["image"], "e:1");
        let _: Pod = serde_json::from_value(pod).unwrap();
        let _: Service = serde_json::from_value(svc).unwrap();
    }

    #[test]
    fn a_missing_image_says_how_to_load_it() {
        let p: Pod = serde_json::from_value(json!({"status": {"containerStatuses": [{
            "name": "etcd", "image": "e:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}},
        }]}}))
        .unwrap();
        let why = why_not_ready(&p, "e:1");
        assert!(
            why.starts_with("ErrImagePull") && why.contains("lbc image save etcd"),
            "{why}"
        );
    }
}
