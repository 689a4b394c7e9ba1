//! What the harness creates for a suite: Backup manifests and their names in the cluster.

use std::path::Path;

use lbc_api::Backup;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::steps::StepError;
use crate::suite::model::{BackupDecl, Suite};

/// `<6 hex of the suite name>-<decl>`: unique per suite, because suites share one kernel
/// and the kernel's task name is the Backup's name. The hash goes first so that declared
/// names sharing a prefix still share one (`lb1`, `lb10`): a controller that reads a task
/// by prefix is then caught on a shared kernel too (`exact-task-keys`).
pub fn actual_name(suite: &str, decl: &str) -> String {
    let h = Sha256::digest(suite.as_bytes());
    format!("{:02x}{:02x}{:02x}-{decl}", h[0], h[1], h[2])
}

/// The Backup the suite declares as `decl`, named `name` in the cluster; with `tool_image`,
/// its `spec.toolImage` unless the declaration (a fixture) sets one.
pub fn backup_manifest(
    suite: &Suite,
    decl: &BackupDecl,
    name: &str,
    root: &Path,
    tool_image: Option<&str>,
) -> Result<Backup, StepError> {
    let mut value = match &decl.fixture {
        Some(f) => {
            let text = std::fs::read_to_string(root.join(f))
                .map_err(|e| StepError::Manifest(format!("fixture {f}: {e}")))?;
            serde_yaml::from_str::<serde_json::Value>(&text)
                .map_err(|e| StepError::Manifest(format!("fixture {f}: {e}")))?
        }
        None => {
            let mode = decl.mode.clone().unwrap_or_else(|| "log".into());
            let mut spec = json!({"backupMode": mode, "br": {"cluster": "basic"},
                                  "s3": {"provider": "ceph", "endpoint": "http://minio:9000", "bucket": "backups", "prefix": format!("{}/{}", suite.name, decl.name)}});
            if mode == "log" {
                spec["logSubcommand"] = json!(
                    decl.subcommand
                        .clone()
                        .unwrap_or_else(|| "log-start".into())
                );
            }
            if let Some(p) = &decl.policy {
                spec["backoffRetryPolicy"] = json!(p);
            }
            json!({"apiVersion": "pingcap.com/v1alpha1", "kind": "Backup", "spec": spec})
        }
    };
    if let Some(image) = tool_image
        && value["spec"]["toolImage"].is_null()
    {
        value["spec"]["toolImage"] = json!(image);
    }
    value["metadata"] = json!({"name": name, "labels": {"logbackup-conformance/suite": suite.name},
                               "finalizers": decl.finalizers});
    serde_json::from_value(value)
        .map_err(|e| StepError::Manifest(format!("Backup {}: {e}", decl.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actual_names_are_stable_and_distinct_per_suite() {
        assert_eq!(actual_name("a", "lb1"), actual_name("a", "lb1"));
        assert_ne!(actual_name("a", "lb1"), actual_name("b", "lb1"));
        assert!(actual_name("a", "lb1").ends_with("-lb1"));
    }

    #[test]
    fn a_tool_image_goes_into_the_spec_unless_the_fixture_has_one() {
        let suite: Suite = serde_json::from_value(json!({
            "name": "s", "clauses": ["LBR-1"], "backups": [{"name": "lb1"}], "steps": []
        }))
        .unwrap();
        let d = &suite.backups[0];
        let b = backup_manifest(&suite, d, "x-lb1", Path::new("."), Some("lbc/br:1")).unwrap();
        assert_eq!(b.spec.tool_image.as_deref(), Some("lbc/br:1"));
        let b = backup_manifest(&suite, d, "x-lb1", Path::new("."), None).unwrap();
        assert_eq!(b.spec.tool_image, None);
    }

    #[test]
    fn declared_names_that_share_a_prefix_still_do() {
        assert!(actual_name("s", "lb10").starts_with(&actual_name("s", "lb1")));
        assert!(!actual_name("s", "lb1").starts_with(&actual_name("s", "lb10")));
    }
}
