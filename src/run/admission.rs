//! Jobs changed by the API server itself as the controller creates them: a
//! `MutatingAdmissionPolicy` (admissionregistration.k8s.io/v1beta1, with its binding to the
//! suite's namespace) adds a Pod failure policy (the Job controller then fails a Job whose
//! container exits with one of the codes: `PodFailurePolicy`), or gives the Job an image
//! without its entrypoint (its container cannot start: `StartError`). Real failure kinds the
//! harness never fakes. Both objects are cluster-scoped, named after the namespace and
//! labelled with it; set-up removes any left by a killed run for its namespace, teardown
//! removes the suite's, and each run first sweeps those whose namespace is gone.

use k8s_openapi::api::admissionregistration::v1beta1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding,
};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::namespace::MANAGED_BY;
use crate::cluster::local::image_map::NO_ENTRYPOINT;

/// What a policy does to the suite's Jobs (each kind has its own policy and binding, so a
/// suite may use both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PodFailurePolicy,
    NoEntrypoint,
}

const KINDS: [Kind; 2] = [Kind::PodFailurePolicy, Kind::NoEntrypoint];

/// The name of the suite's policy and binding of `kind`.
pub fn name(namespace: &str, kind: Kind) -> String {
    match kind {
        Kind::PodFailurePolicy => format!("lbc-{namespace}-pod-failure-policy"),
        Kind::NoEntrypoint => format!("lbc-{namespace}-no-entrypoint"),
    }
}

/// Install the policy: Jobs created in `namespace` from now on fail through a Pod failure
/// policy (`FailJob`) when a container exits with one of `codes`.
///
/// # Errors
/// The API server refused it, or does not serve the API (say which, with the fix).
pub async fn fail_job_on_exit_codes(
    client: &Client,
    namespace: &str,
    codes: &[i32],
) -> Result<(), String> {
    let values = codes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // JSON patches: an apply configuration may not set the atomic list `rules`; and a Job
    // with a Pod failure policy must replace only failed Pods (the default was set before
    // this mutation runs).
    let expression = format!(
        "[JSONPatch{{op: \"add\", path: \"/spec/podFailurePolicy\", value: \
         Object.spec.podFailurePolicy{{rules: [Object.spec.podFailurePolicy.rules{{\
         action: \"FailJob\", onExitCodes: Object.spec.podFailurePolicy.rules.onExitCodes{{\
         operator: \"In\", values: [{values}]}}}}]}}}}, \
         JSONPatch{{op: \"add\", path: \"/spec/podReplacementPolicy\", value: \"Failed\"}}]"
    );
    let applied = |j: &Job| {
        j.spec
            .as_ref()
            .is_some_and(|s| s.pod_failure_policy.is_some())
    };
    install(
        client,
        namespace,
        Kind::PodFailurePolicy,
        &expression,
        applied,
    )
    .await
}

/// From now on the suite's Jobs run an image whose entrypoint is missing
/// ([`NO_ENTRYPOINT`]): their containers fail to start.
///
/// # Errors
/// As [`fail_job_on_exit_codes`].
pub async fn jobs_cannot_start(client: &Client, namespace: &str) -> Result<(), String> {
    // A real node has the image loaded and must not try a registry for it.
    let expression = format!(
        "[JSONPatch{{op: \"replace\", path: \"/spec/template/spec/containers/0/image\", \
         value: \"{NO_ENTRYPOINT}\"}}, \
         JSONPatch{{op: \"add\", path: \"/spec/template/spec/containers/0/imagePullPolicy\", \
         value: \"IfNotPresent\"}}]"
    );
    let applied = |j: &Job| {
        j.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .is_some_and(|c| c.image.as_deref() == Some(NO_ENTRYPOINT))
    };
    install(client, namespace, Kind::NoEntrypoint, &expression, applied).await
}

/// Install the policy (`expression`: its JSON patches) for Jobs created in `namespace`,
/// and wait until the API server `applied` it.
async fn install(
    client: &Client,
    namespace: &str,
    kind: Kind,
    expression: &str,
    applied: fn(&Job) -> bool,
) -> Result<(), String> {
    let name = name(namespace, kind);
    // Labelled, so a killed run's objects are found once their namespace is gone.
    let labels = json!({MANAGED_BY.0: MANAGED_BY.1, NAMESPACE_LABEL: namespace});
    let policy: MutatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["batch"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["jobs"],
            }]},
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [{"patchType": "JSONPatch",
                           "jsonPatch": {"expression": expression}}],
        },
    }))
    .map_err(|e| e.to_string())?;
    let binding: MutatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "policyName": name,
            "matchResources": {"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace},
            }},
        },
    }))
    .map_err(|e| e.to_string())?;
    let unserved = |e: kube::Error| match &e {
        kube::Error::Api(s) if s.code == 404 => format!(
            "the API server does not serve admissionregistration.k8s.io/v1beta1 \
             MutatingAdmissionPolicy (Kubernetes ≥ 1.34 with --feature-gates=MutatingAdmissionPolicy=true \
             --runtime-config=admissionregistration.k8s.io/v1beta1=true; the local provider sets both): {e}"
        ),
        _ => format!("installing the admission policy {name}: {e}"),
    };
    Api::<MutatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .map_err(unserved)?;
    Api::<MutatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .map_err(unserved)?;
    effective(client, namespace, &name, applied).await
}

/// How long the API server may take to load a new policy.
const LOAD: Duration = Duration::from_secs(15);

/// Wait until the API server applies the policy: a dry-run Job in `namespace` comes back
/// `applied` (the server loads policies a moment after they are made).
async fn effective(
    client: &Client,
    namespace: &str,
    name: &str,
    applied: fn(&Job) -> bool,
) -> Result<(), String> {
    let probe: Job = serde_json::from_value(json!({
        "metadata": {"name": "lbc-admission-probe"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "probe", "image": "lbc.invalid/probe"}]}}},
    }))
    .map_err(|e| e.to_string())?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let until = tokio::time::Instant::now() + LOAD;
    loop {
        if jobs.create(&dry, &probe).await.is_ok_and(|j| applied(&j)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!(
                "the API server did not apply the admission policy {name} to a dry-run Job within {}s",
                LOAD.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The label naming the suite namespace a policy is for.
pub const NAMESPACE_LABEL: &str = "logbackup-conformance/namespace";

/// Remove the policies (and bindings) the harness made for namespaces that no longer exist:
/// what a killed run left on a cluster that outlives it. Best effort, once per run; returns
/// how many namespaces' objects went.
pub async fn sweep_orphans(client: &Client) -> usize {
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let lp = kube::api::ListParams::default().labels(&selector);
    let labels = |m: &kube::api::ObjectMeta| m.labels.as_ref()?.get(NAMESPACE_LABEL).cloned();
    let mut namespaces = std::collections::BTreeSet::new();
    // Bindings too: one whose policy is already gone still selects the namespace.
    if let Ok(list) = Api::<MutatingAdmissionPolicy>::all(client.clone())
        .list(&lp)
        .await
    {
        namespaces.extend(list.items.iter().filter_map(|p| labels(&p.metadata)));
    }
    if let Ok(list) = Api::<MutatingAdmissionPolicyBinding>::all(client.clone())
        .list(&lp)
        .await
    {
        namespaces.extend(list.items.iter().filter_map(|b| labels(&b.metadata)));
    }
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut swept = 0;
    for ns in namespaces {
        if matches!(api.get_opt(&ns).await, Ok(None)) {
            remove(client, &ns).await;
            swept += 1;
        }
    }
    swept
}

/// Remove the suite's policy and binding if present (best effort: an API server without
/// the API has none).
pub async fn remove(client: &Client, namespace: &str) {
    for kind in KINDS {
        let name = name(namespace, kind);
        let _ = Api::<MutatingAdmissionPolicyBinding>::all(client.clone())
            .delete(&name, &DeleteParams::default())
            .await;
        let _ = Api::<MutatingAdmissionPolicy>::all(client.clone())
            .delete(&name, &DeleteParams::default())
            .await;
    }
}
