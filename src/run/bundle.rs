//! The debug bundle a failing suite leaves: what failed, the whole trace, the final
//! objects, the kernel's keys, the controller's and the Jobs' logs.

use std::path::Path;

use serde_json::json;

use super::SuiteResult;
use super::reporter::{Reporter, SuiteEvent};
use super::story::Story;

/// Writes the bundle of each finished suite that keeps one (`SuiteResult::bundle`). The
/// runner always hands it the story, whatever other reporters a run has.
#[derive(Debug, Default, Clone, Copy)]
pub struct BundleWriter;

impl Reporter for BundleWriter {
    fn report(&self, event: &SuiteEvent) {
        if let SuiteEvent::Finished { result, story } = event
            && let Some(dir) = &result.bundle
        {
            write_bundle(dir, result, story);
        }
    }
}

/// Write the bundle of a finished suite into `dir`. Best effort: a bundle that cannot be
/// written must not change the verdict.
fn write_bundle(dir: &Path, result: &SuiteResult, story: &Story) {
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join("failure.txt"), result.failures.join("\n\n"));
    if let Some(s) = &result.snapshot {
        let _ = std::fs::write(dir.join("snapshot.yaml"), s);
    }
    let _ = std::fs::write(
        dir.join("trace.yaml"),
        serde_yaml::to_string(&story.entries).unwrap_or_default(),
    );
    let state = &story.state;
    let objects = json!({"backups": state.backups, "jobs": state.jobs, "events": state.events});
    let _ = std::fs::write(
        dir.join("objects.yaml"),
        serde_yaml::to_string(&objects).unwrap_or_default(),
    );
    if let Some(kernel) = &story.kernel_tasks {
        let _ = std::fs::write(dir.join("kernel.txt"), kernel);
    }
    if !result.api_calls.is_empty() {
        let calls = &result.api_calls;
        let _ = std::fs::write(
            dir.join("api.yaml"),
            serde_yaml::to_string(calls).unwrap_or_default(),
        );
        let _ = std::fs::write(dir.join("timeline.txt"), timeline(&story.entries, calls));
    }
    if let Some(pods) = &story.pod_logs {
        copy_pod_logs(pods, &story.namespace, dir);
    }
}

/// The logs of the suite's Pods (`<namespace>_*` under the node agent's directory).
fn copy_pod_logs(pods: &Path, namespace: &str, dir: &Path) {
    let Ok(pods) = std::fs::read_dir(pods) else {
        return;
    };
    for p in pods.filter_map(Result::ok) {
        let name = p.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{namespace}_")) {
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

/// The kernel's keys of this suite's tasks, one `key = "value"` line each. A shared kernel
/// holds other suites' tasks too; a task is the suite's when its name is exactly one of the
/// suite's Backups' (`lb1` is not `lb10`).
pub(super) fn own_tasks(kv: Vec<(String, Vec<u8>)>, names: &crate::judge::BackupNames) -> String {
    kv.into_iter()
        .filter(|(k, _)| {
            let task = k.rsplit('/').next().unwrap_or_default();
            names.0.values().any(|n| n == task)
        })
        .map(|(k, v)| format!("{k} = {:?}\n", String::from_utf8_lossy(&v)))
        .collect()
}

/// The watch trace and the controller's API calls on one time line, one line each.
fn timeline(entries: &[crate::recorder::Entry], calls: &[crate::proxy::ApiCall]) -> String {
    let mut lines: Vec<(k8s_openapi::jiff::Timestamp, String)> = entries
        .iter()
        .map(|e| {
            let what = if e.deleted { "deleted" } else { "changed" };
            let rv = e.object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("");
            (
                e.at,
                format!("watch  {:?} {} {what} rv={rv}", e.kind, e.name),
            )
        })
        .collect();
    lines.extend(calls.iter().map(|c| {
        let mut l = format!("api    {} -> {}", c.request.describe(), c.status);
        if let Some(n) = &c.created {
            l.push_str(&format!(" created {n}"));
        }
        if let Some(rv) = &c.rv_sent {
            l.push_str(&format!(" rv-sent={rv}"));
        }
        if let Some(rv) = &c.rv_returned {
            l.push_str(&format!(" rv={rv}"));
        }
        if let Some(f) = &c.fault {
            l.push_str(&format!(" FAULT {f}"));
        }
        (c.start, l)
    }));
    lines.sort_by_key(|(t, _)| *t);
    lines
        .into_iter()
        .map(|(t, l)| format!("{t}  {l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::BackupNames;

    fn kv(keys: &[&str]) -> Vec<(String, Vec<u8>)> {
        keys.iter()
            .map(|k| ((*k).to_owned(), b"v".to_vec()))
            .collect()
    }

    #[rstest::rstest]
    #[case::only_the_suites_tasks(
        &["/tidb/br-stream/info/a1-lb1", "/tidb/br-stream/info/b2-lb1", "/tidb/br-stream/pause/a1-lb1"],
        "/tidb/br-stream/info/a1-lb1 = \"v\"\n/tidb/br-stream/pause/a1-lb1 = \"v\"\n"
    )]
    #[case::a_prefix_is_not_the_name(&["/tidb/br-stream/info/a1-lb10"], "")]
    #[case::nothing_in_the_kernel(&[], "")]
    fn kernel_txt_shows_the_suites_tasks_only(#[case] keys: &[&str], #[case] want: &str) {
        let names = BackupNames([("lb1".to_owned(), "a1-lb1".to_owned())].into());
        assert_eq!(own_tasks(kv(keys), &names), want);
    }
}
