//! What a target needs in the cluster: its CRDs (a directory of manifests replacing the
//! harness's Backup CRD, plus a minimal CRD for any kind its per-suite objects use that has
//! none), and those objects in each suite's namespace.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Apply every CRD in `dir` (server-side, so re-running replaces) and wait until each is
/// established; then a minimal CRD for each kind of `objects` that still has none.
///
/// # Errors
/// An unreadable file, a manifest that is not a CRD, or a CRD not established in time.
pub async fn install_crds(
    client: &Client,
    dir: Option<&Path>,
    objects: &[serde_json::Value],
) -> Result<(), String> {
    let mut crds: Vec<CustomResourceDefinition> = Vec::new();
    if let Some(dir) = dir {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("the CRD directory {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!(
                "the CRD directory {} has no .yaml file",
                dir.display()
            ));
        }
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let v: serde_json::Value = serde::Deserialize::deserialize(doc)
                    .map_err(|e| format!("{}: {e}", f.display()))?;
                if v.is_null() {
                    continue;
                }
                if v.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
                    return Err(format!(
                        "{}: a manifest of kind {} is not a CustomResourceDefinition",
                        f.display(),
                        v.get("kind").and_then(|k| k.as_str()).unwrap_or("(none)")
                    ));
                }
                crds.push(serde_json::from_value(v).map_err(|e| format!("{}: {e}", f.display()))?);
            }
        }
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for o in objects {
        let Some((av, kind)) = type_of(o) else {
            continue;
        };
        let (group, version) = av.split_once('/').unwrap_or(("", av));
        let plural = plural_of(kind);
        let name = format!("{plural}.{group}");
        let listed = crds.iter().any(|c| c.name_any() == name);
        if !listed && api.get_opt(&name).await.ok().flatten().is_none() {
            crds.push(minimal_crd(group, version, kind, &plural));
        }
    }
    for crd in &crds {
        let name = crd.name_any();
        let mut crd = crd.clone();
        crd.metadata.resource_version = None;
        api.patch(
            &name,
            &PatchParams::apply("logbackup-conformance").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| format!("installing CRD {name}: {e}"))?;
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        match tokio::time::timeout(Duration::from_secs(30), established).await {
            Ok(Ok(_)) => {}
            _ => return Err(format!("CRD {name} was not established within 30s")),
        }
    }
    Ok(())
}

/// How long the API server holds a create of a custom resource after its CRD became
/// Established (apiextensions-apiserver's `customresource_handler.go`: a create within 2 s of
/// the condition's `lastTransitionTime` sleeps 2 s, so that HA peers see the CRD first).
pub const CRD_CREATE_HOLD: Duration = Duration::from_secs(2);

/// An object's `apiVersion` and `kind`, when it has both.
fn type_of(o: &serde_json::Value) -> Option<(&str, &str)> {
    Some((o.get("apiVersion")?.as_str()?, o.get("kind")?.as_str()?))
}

/// The plural a minimal CRD gives `kind` (and the name under which its CRD is looked up).
fn plural_of(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// The names of the CRDs a suite creates custom resources of: the Backup's, and those of
/// the kinds of `objects` (a target's per-suite objects, e.g. a `TidbCluster`).
pub fn crds_created_in_a_suite(objects: &[serde_json::Value]) -> Vec<String> {
    use kube::Resource as _;
    let mut names = vec![format!(
        "{}.{}",
        lbc_api::Backup::plural(&()),
        lbc_api::Backup::group(&())
    )];
    for (av, kind) in objects.iter().filter_map(type_of) {
        // Built-in kinds (`v1`, `apps/v1`) have no CRD and no hold.
        if let Some((group, _)) = av.split_once('/')
            && group.contains('.')
        {
            names.push(format!("{}.{group}", plural_of(kind)));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// When the API server stops holding creates of the custom resources of `crds` (CRD names):
/// the latest Established time among them plus [`CRD_CREATE_HOLD`]; `None` when none can be
/// read or is Established.
pub async fn creates_held_until(client: &Client, crds: &[String]) -> Option<jiff::Timestamp> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let mut until = None;
    for name in crds {
        if let Ok(crd) = api.get(name).await {
            until = until.max(held_until(&crd));
        }
    }
    until
}

/// How long to wait before a create that the hold ending at `until` would otherwise delay
/// by [`CRD_CREATE_HOLD`]: the rest of the window and `margin`, never more than the hold
/// itself (a remote API server's clock may be ahead of ours), nothing once it has passed.
pub fn hold_left(until: jiff::Timestamp, now: jiff::Timestamp, margin: Duration) -> Duration {
    match Duration::try_from(until.duration_since(now)) {
        Ok(left) if !left.is_zero() => (left + margin).min(CRD_CREATE_HOLD),
        _ => Duration::ZERO,
    }
}

/// The end of the create hold of `crd` (pure: [`creates_held_until`]).
pub fn held_until(crd: &CustomResourceDefinition) -> Option<jiff::Timestamp> {
    let since = crd
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Established" && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    since.checked_add(CRD_CREATE_HOLD).ok()
}

/// A namespaced CRD that keeps any fields, for kinds a target only needs to exist.
fn minimal_crd(group: &str, version: &str, kind: &str, plural: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                      "listKind": format!("{kind}List")},
            "scope": "Namespaced",
            "versions": [{"name": version, "served": true, "storage": true,
                          "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap_or_default()
}

/// Create `objects` in `ns` (`{namespace}` filled).
///
/// # Errors
/// A kind the API server does not know, or a rejected object, named.
pub async fn create_objects(
    client: &Client,
    ns: &str,
    objects: &[serde_json::Value],
) -> Result<(), String> {
    for o in objects {
        let text = o.to_string().replace("{namespace}", ns);
        let mut obj: DynamicObject =
            serde_json::from_str(&text).map_err(|e| format!("a target object: {e}"))?;
        let types = obj.types.clone().unwrap_or_default();
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|e| format!("the target's {} object: kind not served: {e}", types.kind))?;
        obj.metadata.namespace = Some(ns.to_owned());
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        api.create(&PostParams::default(), &obj)
            .await
            .map_err(|e| {
                format!(
                    "creating the target's {} {}: {e}",
                    types.kind,
                    obj.name_any()
                )
            })?;
        // A create ignores `status` where the status subresource exists: write it there
        // (a CRD without one kept it, and answers 404 on `/status`).
        if let Some(status) = o.get("status") {
            let patch = json!({"status": status});
            let name = obj.name_any();
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Err(kube::Error::Api(e)) if e.code == 404 => api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ()),
                other => other.map(|_| ()),
            }
            .map_err(|e| {
                format!(
                    "writing the status of the target's {} {}: {e}",
                    types.kind,
                    obj.name_any()
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(conditions: serde_json::Value) -> CustomResourceDefinition {
        serde_json::from_value(json!({
            "metadata": {"name": "backups.pingcap.com"},
            "spec": {"group": "pingcap.com", "scope": "Namespaced",
                     "names": {"plural": "backups", "kind": "Backup"}, "versions": []},
            "status": {"conditions": conditions},
        }))
        .expect("a CRD")
    }

    #[test]
    fn creates_are_held_until_two_seconds_after_the_crd_was_established() {
        let c = crd(json!([
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": "2026-11-29T10:00:00Z"},
            {"type": "Established", "status": "True", "lastTransitionTime": "2026-11-29T10:00:05Z"},
        ]));
        let until: jiff::Timestamp = "2026-11-29T10:00:07Z".parse().expect("a time");
        assert_eq!(held_until(&c), Some(until));
    }

    #[test]
    fn the_rest_of_the_hold_is_waited_with_a_margin_and_never_more_than_the_hold() {
        let t = |s: &str| -> jiff::Timestamp { s.parse().expect("a time") };
        let m = Duration::from_millis(100);
        let until = t("2026-11-29T10:00:07Z");
        assert_eq!(
            hold_left(until, t("2026-11-29T10:00:06.5Z"), m),
            Duration::from_millis(600)
        );
        assert_eq!(
            hold_left(until, t("2026-11-29T10:00:07Z"), m),
            Duration::ZERO
        );
        assert_eq!(
            hold_left(until, t("2026-11-29T10:00:09Z"), m),
            Duration::ZERO
        );
        // Our clock behind the server's: at most the hold.
        assert_eq!(
            hold_left(until, t("2026-11-29T09:59:00Z"), m),
            CRD_CREATE_HOLD
        );
    }

    #[test]
    fn a_suite_creates_backups_and_its_targets_custom_objects() {
        let objects = [
            json!({"apiVersion": "pingcap.com/v1alpha1", "kind": "TidbCluster"}),
            json!({"apiVersion": "v1", "kind": "Service"}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
        ];
        assert_eq!(
            crds_created_in_a_suite(&objects),
            ["backups.pingcap.com", "tidbclusters.pingcap.com"]
        );
    }

    #[test]
    fn a_crd_not_established_gives_no_hold_to_wait_out() {
        let c = crd(json!([
            {"type": "Established", "status": "False", "lastTransitionTime": "2026-11-29T10:00:05Z"},
        ]));
        assert_eq!(held_until(&c), None);
        assert_eq!(held_until(&crd(json!([]))), None);
    }
}
