//! The debug bundle a failing suite leaves: what failed, the whole trace, the final
//! objects, the kernel's keys, the controller's and the Jobs' logs.

use std::path::Path;

use serde_json::json;

use super::SuiteResult;
use super::scope::Scope;
use crate::cluster::RunningCluster;
use crate::recorder::State;

/// Write the bundle of a finished suite into `dir`. Best effort: a bundle that cannot be
/// written must not change the verdict.
pub async fn write_bundle(
    dir: &Path,
    cx: &Scope<'_>,
    entries: &[crate::recorder::Entry],
    state: &State,
    cluster: &RunningCluster,
    result: &SuiteResult,
) {
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join("failure.txt"), result.failures.join("\n\n"));
    if let Some(s) = &result.snapshot {
        let _ = std::fs::write(dir.join("snapshot.yaml"), s);
    }
    let _ = std::fs::write(
        dir.join("trace.yaml"),
        serde_yaml::to_string(entries).unwrap_or_default(),
    );
    let objects = json!({"backups": state.backups, "jobs": state.jobs, "events": state.events});
    let _ = std::fs::write(
        dir.join("objects.yaml"),
        serde_yaml::to_string(&objects).unwrap_or_default(),
    );
    let kernel = cx
        .kernel
        .list_prefix("/tidb/br-stream/")
        .await
        .map(|kv| {
            kv.into_iter()
                .map(|(k, v)| format!("{k} = {:?}\n", String::from_utf8_lossy(&v)))
                .collect::<String>()
        })
        .unwrap_or_else(|e| e.to_string());
    let _ = std::fs::write(dir.join("kernel.txt"), kernel);
    if let Some(run_dir) = &cluster.run_dir
        && let Ok(pods) = std::fs::read_dir(run_dir.join("pods"))
    {
        for p in pods.filter_map(Result::ok) {
            let name = p.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}_", cx.namespace)) {
                let _ = std::fs::create_dir_all(dir.join("pods"));
                for f in std::fs::read_dir(p.path())
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                {
                    let _ = std::fs::copy(
                        f.path(),
                        dir.join("pods")
                            .join(format!("{name}-{}", f.file_name().to_string_lossy())),
                    );
                }
            }
        }
    }
}
