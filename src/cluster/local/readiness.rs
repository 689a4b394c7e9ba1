//! Knowing when the control plane is up: boot milestones, etcd's `/health`, the API
//! server's `/readyz` and `default` namespace, the CRDs Established.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};

use super::LocalError;
use super::processes::Ctx;
use crate::cluster::BootPhases;
use lbc_api::kernel::KernelClient;

/// Boot milestones, shared with readiness probes.
#[derive(Clone)]
pub(super) struct Phases {
    t0: Instant,
    marks: std::sync::Arc<std::sync::Mutex<Vec<(String, Duration)>>>,
}

impl Phases {
    pub(super) fn new(t0: Instant) -> Self {
        Self {
            t0,
            marks: Default::default(),
        }
    }

    /// Note `name` now, unless it was noted before.
    pub(super) fn mark(&self, name: &str) {
        let at = self.t0.elapsed();
        if let Ok(mut m) = self.marks.lock()
            && !m.iter().any(|(n, _)| n == name)
        {
            m.push((name.to_owned(), at));
        }
    }

    pub(super) fn take(&self) -> BootPhases {
        BootPhases(
            self.marks
                .lock()
                .map(|mut m| std::mem::take(&mut *m))
                .unwrap_or_default(),
        )
    }
}

pub(super) async fn wait_etcd(
    ctx: &mut Ctx<'_>,
    idx: usize,
    (host, port): (std::net::Ipv4Addr, u16),
    timeout: Duration,
) -> Result<(), LocalError> {
    let client = KernelClient::new(&format!("{host}:{port}"));
    ctx.wait_ready(idx, timeout, || {
        let client = client.clone();
        async move {
            if client.healthy().await {
                Ok(())
            } else {
                Err("/health is not true".into())
            }
        }
    })
    .await
}

/// `/readyz`, verbose, without the two bootstrap hooks nothing here waits for: every client
/// of this cluster is `system:masters` (RBAC's default roles are not consulted) and no Pod
/// names a priority class. They finish in the background ~1 s later.
const READYZ: &str = "/readyz?verbose\
    &exclude=poststarthook/rbac/bootstrap-roles\
    &exclude=poststarthook/scheduling/bootstrap-system-priority-classes";

/// One poll of `/readyz?verbose`: notes when the API server first answered and when each
/// check (post-start hooks, informers) first passed; `Ok` once all pass.
async fn readyz_verbose(client: &Client, phases: &Phases) -> Result<(), String> {
    let req = http::Request::get(READYZ)
        .body(kube::client::Body::empty())
        .map_err(|e| e.to_string())?;
    let resp = client
        .send(req)
        .await
        .map_err(|e| format!("/readyz: {e}"))?;
    phases.mark("apiserver serving");
    let ok = resp.status().is_success();
    let body = resp
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| format!("/readyz: {e}"))?;
    for check in passed_checks(&String::from_utf8_lossy(&body)) {
        phases.mark(&format!("readyz {check}"));
    }
    if ok {
        Ok(())
    } else {
        Err("/readyz: not ready".into())
    }
}

/// The checks a verbose `/readyz` reports as passed (`[+]name ok`).
pub(super) fn passed_checks(body: &str) -> impl Iterator<Item = &str> {
    body.lines()
        .filter_map(|l| l.strip_prefix("[+]")?.strip_suffix(" ok"))
}

/// Wait until the API server is ready (noting each `/readyz` check as it passes) and
/// serves the `default` namespace.
pub(super) async fn wait_apiserver(
    ctx: &mut Ctx<'_>,
    api_idx: usize,
    client: &Client,
    phases: &Phases,
    timeout: Duration,
) -> Result<(), LocalError> {
    ctx.wait_ready(api_idx, timeout, || {
        let (client, phases) = (client.clone(), phases.clone());
        async move { readyz_verbose(&client, &phases).await }
    })
    .await?;
    phases.mark("apiserver ready");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    ctx.wait_ready(api_idx, timeout, || {
        let namespaces = namespaces.clone();
        async move {
            namespaces
                .get("default")
                .await
                .map(|_| ())
                .map_err(|e| format!("namespace default: {e}"))
        }
    })
    .await?;
    phases.mark("namespace default");
    Ok(())
}

/// Create each CRD and wait until it is Established.
pub(super) async fn install_crds(
    client: &Client,
    crds: &[CustomResourceDefinition],
    timeout: Duration,
) -> Result<(), LocalError> {
    use kube::runtime::wait::{await_condition, conditions};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => {
                return Err(LocalError::Kube {
                    what: format!("installing CRD {name}"),
                    source,
                });
            }
        }
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(LocalError::NotReady {
                    component: format!("CRD {name}"),
                    secs: timeout.as_secs_f64(),
                    detail: e.to_string(),
                    log: PathBuf::new(),
                });
            }
            Err(_) => {
                return Err(LocalError::NotReady {
                    component: format!("CRD {name}"),
                    secs: timeout.as_secs_f64(),
                    detail: "not Established".into(),
                    log: PathBuf::new(),
                });
            }
        }
    }
    Ok(())
}
