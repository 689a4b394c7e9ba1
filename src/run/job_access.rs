//! What the Jobs of a suite need to reach the API on a real node: a Pod talks to the API
//! server with its ServiceAccount's token, so each suite namespace gets the ServiceAccount
//! TiDB Operator's Jobs run as (`tidb-backup-manager`) and a Role for what fake-br (and the
//! operator's backup-manager) read and write, bound to it and to `default` (the reference
//! controller's Jobs). The harness's own node runs Pods with the cluster's credentials and
//! needs none of it; one code path for every cluster all the same.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// The ServiceAccount TiDB Operator's backup Jobs run as.
pub const BACKUP_MANAGER_SA: &str = "tidb-backup-manager";
/// The Role (and binding) the harness makes in each suite namespace.
pub const ROLE: &str = "lbc-backup-job";

/// The Role's rules: the plan ConfigMaps and the kernel's, the Backups and their status,
/// events; what backup-manager also reads (Secrets for storage, the TidbCluster).
pub fn role() -> serde_json::Value {
    json!({
        "metadata": {"name": ROLE},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["pingcap.com"], "resources": ["backups"], "verbs": ["get", "list", "watch", "update", "patch"]},
            {"apiGroups": ["pingcap.com"], "resources": ["backups/status"], "verbs": ["get", "update", "patch"]},
            {"apiGroups": ["pingcap.com"], "resources": ["tidbclusters"], "verbs": ["get", "list", "watch"]},
        ],
    })
}

/// Make the ServiceAccount, the Role and its binding in `ns` (a fresh suite namespace).
///
/// # Errors
/// The API refused one (no rights to make Roles in the namespace, say), naming which.
pub async fn grant(client: &Client, ns: &str) -> Result<(), String> {
    let refused = |what: &str| {
        let what = what.to_owned();
        move |e: kube::Error| {
            format!(
                "making the Jobs' {what} in namespace {ns}: {e} (the harness needs rights to create ServiceAccounts, Roles and RoleBindings in its suite namespaces)"
            )
        }
    };
    let pp = PostParams::default();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": BACKUP_MANAGER_SA}}))
            .map_err(|e| e.to_string())?;
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&pp, &sa)
        .await
        .map_err(refused("ServiceAccount"))?;
    let role: Role = serde_json::from_value(role()).map_err(|e| e.to_string())?;
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&pp, &role)
        .await
        .map_err(refused("Role"))?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
        "subjects": [
            {"kind": "ServiceAccount", "name": BACKUP_MANAGER_SA, "namespace": ns},
            {"kind": "ServiceAccount", "name": "default", "namespace": ns},
        ],
    }))
    .map_err(|e| e.to_string())?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&pp, &binding)
        .await
        .map_err(refused("RoleBinding"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_parses_and_lets_fake_br_pop_its_plan_and_write_the_status() {
        let r: Role = serde_json::from_value(role()).unwrap();
        let rules = r.rules.unwrap();
        let allows = |res: &str, verb: &str| {
            rules.iter().any(|x| {
                x.resources
                    .as_ref()
                    .is_some_and(|v| v.iter().any(|r| r == res))
                    && x.verbs.iter().any(|v| v == verb)
            })
        };
        assert!(allows("configmaps", "update"));
        assert!(allows("backups/status", "update"));
        assert!(allows("backups", "get"));
        assert!(!allows("configmaps", "delete"));
    }
}
