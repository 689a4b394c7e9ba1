//! The environment a Pod's containers start with: the node's, the Pod's identity, and its
//! `valueFrom` references resolved once.

use std::ffi::OsString;

use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::{Api, ResourceExt};

use super::Agent;

impl Agent {
    /// The environment every container of `pod` starts with.
    pub(super) async fn pod_env(&self, pod: &Pod) -> Vec<(OsString, OsString)> {
        let ns = pod.namespace().unwrap_or_default();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOSTNAME".into(), pod.name_any()),
            (
                "KUBECONFIG".into(),
                self.config.pod_kubeconfig.display().to_string(),
            ),
            ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
            (
                "KUBERNETES_SERVICE_PORT".into(),
                self.config.apiserver_port.to_string(),
            ),
            ("LBC_POD_NAMESPACE".into(), ns.clone()),
            ("LBC_POD_NAME".into(), pod.name_any()),
            ("LBC_POD_UID".into(), pod.uid().unwrap_or_default()),
        ];
        if let Ok(home) = std::env::var("HOME") {
            env.push(("HOME".into(), home));
        }
        env.extend(self.config.extra_env.iter().cloned());
        // Resolve valueFrom references once per pod (containers add literal values).
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            for var in c.env.iter().flatten() {
                if let Some(value) = self.value_from(pod, &ns, var).await {
                    env.push((var.name.clone(), value));
                }
            }
        }
        env.into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    async fn value_from(&self, pod: &Pod, ns: &str, var: &EnvVar) -> Option<String> {
        let from = var.value_from.as_ref()?;
        if let Some(f) = &from.field_ref {
            return match f.field_path.as_str() {
                "metadata.name" => Some(pod.name_any()),
                "metadata.namespace" => Some(ns.to_owned()),
                "metadata.uid" => pod.uid(),
                "spec.nodeName" => Some(self.config.node_name.clone()),
                "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
                other => {
                    tracing::warn!(field = other, "node agent: unsupported fieldRef");
                    None
                }
            };
        }
        if let Some(s) = &from.secret_key_ref {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(self.client.clone(), ns);
            let secret = api.get(&s.name).await.ok()?;
            let bytes = secret.data?.get(&s.key)?.0.clone();
            return String::from_utf8(bytes).ok();
        }
        if let Some(c) = &from.config_map_key_ref {
            let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
                Api::namespaced(self.client.clone(), ns);
            return api.get(&c.name).await.ok()?.data?.get(&c.key).cloned();
        }
        None
    }
}

pub(super) fn literal_env(vars: &[EnvVar]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .filter_map(|v| Some((OsString::from(&v.name), OsString::from(v.value.as_ref()?))))
        .collect()
}
