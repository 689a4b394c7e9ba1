//! The node agent's second runtime: a Pod's containers as Docker containers from local
//! images (`--runtime docker`).
//!
//! Each container is one `docker run` whose client the agent supervises like a process:
//! its output is the container's log, its exit code the container's, and SIGTERM reaches
//! the container through the client (signals are proxied); a container that outlives its
//! client is removed by name. Containers share the host network (`--network host`), so the
//! apiserver and the kernels stay on loopback. What kubelet gives a container is mounted:
//! the Pod's `emptyDir` volumes (one directory per Pod, shared by its containers), the
//! service-account token, the kubeconfig, and a termination-message file.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Volume};

use super::image_map::repository;

/// Where kubelet mounts the service-account token.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Image → local image; images not listed fall back to the process runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerRuntime {
    /// The `docker` CLI.
    pub docker: PathBuf,
    images: BTreeMap<String, String>,
}

impl DockerRuntime {
    pub fn new(docker: PathBuf) -> Self {
        Self {
            docker,
            images: BTreeMap::new(),
        }
    }

    /// Run `image` (with or without a tag) from the local image `local`.
    pub fn insert(&mut self, image: impl Into<String>, local: impl Into<String>) {
        self.images.insert(image.into(), local.into());
    }

    /// The local image for `image`: exact match first, then without tag or digest.
    pub fn resolve(&self, image: &str) -> Option<&str> {
        self.images
            .get(image)
            .or_else(|| self.images.get(repository(image)))
            .map(String::as_str)
    }
}

/// What `docker run` needs besides the container spec.
#[derive(Debug, Clone)]
pub struct RunContext<'a> {
    /// Unique container name.
    pub name: &'a str,
    pub run_id: &'a str,
    pub local_image: &'a str,
    /// The Pod's directory on the host (volumes, termination messages).
    pub pod_dir: &'a Path,
    pub volumes: &'a [Volume],
    /// Variables for the container (the Pod's, then the container's literals).
    pub env: &'a [(OsString, OsString)],
    /// Host files mounted read-only at the same path (the kubeconfig).
    pub same_path_files: &'a [PathBuf],
    /// The Pod's service-account directory on the host, when a token was issued.
    pub service_account: Option<&'a Path>,
}

/// The host directory of an `emptyDir` volume.
pub fn empty_dir(pod_dir: &Path, volume: &str) -> PathBuf {
    pod_dir.join("volumes").join(volume)
}

/// The host file a container's termination message goes to.
pub fn termination_log(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.termination-log"))
}

/// Variables a container must not inherit from the agent's host view (the image sets them;
/// the container's own `env` may still set them).
const HOST_ONLY_ENV: [&str; 2] = ["PATH", "HOME"];

/// The Pod-level variables without the agent's host-side `PATH` and `HOME`.
pub fn without_host_env(env: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    env.iter()
        .filter(|(k, _)| !k.to_str().is_some_and(|k| HOST_ONLY_ENV.contains(&k)))
        .cloned()
        .collect()
}

/// Directories `subPath` mounts of `emptyDir` volumes need before Docker mounts them.
pub fn sub_path_dirs(c: &Container, volumes: &[Volume], pod_dir: &Path) -> Vec<PathBuf> {
    c.volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let sub = m.sub_path.as_deref().filter(|p| !p.is_empty())?;
            let v = volumes.iter().find(|v| v.name == m.name)?;
            v.empty_dir.as_ref()?;
            Some(empty_dir(pod_dir, &v.name).join(sub))
        })
        .collect()
}

/// The arguments of `docker` that run `c` as kubelet would: `command` replaces the image's
/// entrypoint (its first word as `--entrypoint`, the rest before `args`), `args` its command.
pub fn run_args(c: &Container, cx: &RunContext<'_>) -> Vec<OsString> {
    // `--init`: the program is not pid 1, which ignores signals it sends itself (fake-br's
    // SIGKILL to self stands for the OOM killer's) and has no default SIGTERM action.
    // No `--rm`: the client would return only once the container is removed (seconds under
    // load, and the Pod's outcome with it); the agent removes it after the exit.
    // `--pull=never`: only local images; a missing one is a StartError, not a registry call.
    let mut a: Vec<OsString> = [
        "run",
        "--init",
        "--pull=never",
        "--network",
        "host",
        "--name",
    ]
    .map(OsString::from)
    .to_vec();
    a.push(cx.name.into());
    a.push("--label".into());
    a.push(format!("{}={}", crate::container::RUN_LABEL, cx.run_id).into());
    for (k, v) in cx.env {
        let mut kv = k.clone();
        kv.push("=");
        kv.push(v);
        a.push("--env".into());
        a.push(kv);
    }
    for m in c.volume_mounts.iter().flatten() {
        let Some(v) = cx.volumes.iter().find(|v| v.name == m.name) else {
            continue;
        };
        let host = if v.empty_dir.is_some() {
            empty_dir(cx.pod_dir, &v.name)
        } else if let Some(h) = &v.host_path {
            PathBuf::from(&h.path)
        } else {
            // configMap, secret, PVC…: not served by this runtime.
            continue;
        };
        let host = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) => host.join(sub),
            None => host,
        };
        let ro = if m.read_only == Some(true) { ":ro" } else { "" };
        a.push("--volume".into());
        a.push(format!("{}:{}{ro}", host.display(), m.mount_path).into());
    }
    for f in cx.same_path_files {
        a.push("--volume".into());
        a.push(format!("{0}:{0}:ro", f.display()).into());
    }
    if let Some(sa) = cx.service_account {
        a.push("--volume".into());
        a.push(format!("{}:{SERVICE_ACCOUNT_DIR}:ro", sa.display()).into());
    }
    let message_path = c
        .termination_message_path
        .as_deref()
        .unwrap_or("/dev/termination-log");
    a.push("--volume".into());
    a.push(
        format!(
            "{}:{message_path}",
            termination_log(cx.pod_dir, &c.name).display()
        )
        .into(),
    );
    if let Some(dir) = &c.working_dir {
        a.push("--workdir".into());
        a.push(dir.into());
    }
    let mut rest: Vec<OsString> = Vec::new();
    if let Some([first, more @ ..]) = c.command.as_deref() {
        a.push("--entrypoint".into());
        a.push(first.into());
        rest.extend(more.iter().map(OsString::from));
    }
    a.push(cx.local_image.into());
    a.extend(rest);
    a.extend(c.args.iter().flatten().map(OsString::from));
    a
}

/// Whether the container `name` ever started (Docker keeps `StartedAt` zero otherwise).
pub fn started(name: &str) -> bool {
    crate::container::Docker::find()
        .and_then(|d| d.output(["inspect", "--format", "{{.State.StartedAt}}", name]))
        .is_ok_and(|t| !t.is_empty() && !t.starts_with("0001-01-01"))
}

/// A container name Docker accepts, unique per run, Pod and container.
pub fn container_name(run_id: &str, pod_uid: &str, container: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!(
        "{}-{}-{}",
        clean(run_id),
        clean(&pod_uid[..pod_uid.len().min(8)]),
        clean(container)
    )
}

/// The termination message kubelet would report: the file's content (at most 4096 bytes),
/// else, for a failed container with `FallbackToLogsOnError`, the log's last 2048 bytes.
pub fn termination_message(
    file: &Path,
    policy: Option<&str>,
    failed: bool,
    log_tail: impl FnOnce(usize) -> String,
) -> Option<String> {
    let text = std::fs::read(file).ok().map(|mut b| {
        b.truncate(4096);
        String::from_utf8_lossy(&b).trim_end().to_owned()
    });
    match text {
        Some(t) if !t.is_empty() => Some(t),
        _ if failed && policy == Some("FallbackToLogsOnError") => {
            let tail = log_tail(2048);
            let tail = tail.trim_end();
            (!tail.is_empty()).then(|| tail.to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    fn args_of(c: &Container, volumes: &[Volume]) -> Vec<String> {
        let env = without_host_env(&[
            ("PATH".into(), "/host/bin".into()),
            ("KUBECONFIG".into(), "/run/k".into()),
        ]);
        let cx = RunContext {
            name: "lbc-1-abcd-main",
            run_id: "lbc-1",
            local_image: "logbackup-conformance/br:0.1.0",
            pod_dir: Path::new("/pods/p1"),
            volumes,
            env: &env,
            same_path_files: &[PathBuf::from("/run/k")],
            service_account: Some(Path::new("/pods/p1/sa")),
        };
        run_args(c, &cx)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn command_replaces_the_entrypoint_and_args_follow() {
        let c = container(serde_json::json!({
            "name": "br", "command": ["/bin/sh", "-c"], "args": ["cp /br /x/br"]
        }));
        let a = args_of(&c, &[]);
        let image = a.iter().position(|x| x.starts_with("logbackup")).unwrap();
        assert_eq!(a[image - 2..image], ["--entrypoint", "/bin/sh"]);
        assert_eq!(a[image + 1..], ["-c", "cp /br /x/br"]);
    }

    #[test]
    fn without_command_the_image_entrypoint_gets_the_args() {
        let c = container(serde_json::json!({"name": "b", "args": ["backup", "--mode=log"]}));
        let a = args_of(&c, &[]);
        assert!(!a.contains(&"--entrypoint".to_owned()));
        assert_eq!(
            a[a.len() - 3..],
            ["logbackup-conformance/br:0.1.0", "backup", "--mode=log"]
        );
    }

    #[test]
    fn empty_dirs_and_kubelet_files_are_mounted_and_host_path_is_not_passed() {
        let c = container(serde_json::json!({
            "name": "main",
            "volumeMounts": [{"name": "br-bin", "mountPath": "/var/lib/br-bin"},
                             {"name": "br-bin", "mountPath": "/opt/one", "subPath": "one"},
                             {"name": "cfg", "mountPath": "/etc/cfg"}],
            "terminationMessagePath": "/tmp/msg"
        }));
        let volumes: Vec<Volume> = serde_json::from_value(serde_json::json!([
            {"name": "br-bin", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "x"}}
        ]))
        .unwrap();
        let a = args_of(&c, &volumes).join(" ");
        assert!(
            a.contains("--volume /pods/p1/volumes/br-bin:/var/lib/br-bin"),
            "{a}"
        );
        assert!(!a.contains("/etc/cfg"), "{a}");
        assert!(
            a.contains("--volume /pods/p1/volumes/br-bin/one:/opt/one"),
            "{a}"
        );
        assert!(a.contains("--pull=never"), "{a}");
        assert!(a.contains("--volume /run/k:/run/k:ro"), "{a}");
        assert!(
            a.contains(&format!("--volume /pods/p1/sa:{SERVICE_ACCOUNT_DIR}:ro")),
            "{a}"
        );
        assert!(
            a.contains("--volume /pods/p1/main.termination-log:/tmp/msg"),
            "{a}"
        );
        assert!(a.contains("--env KUBECONFIG=/run/k"), "{a}");
        assert!(!a.contains("/host/bin"), "the host PATH leaked: {a}");
        assert!(
            a.contains("--label io.logbackup-conformance.run=lbc-1"),
            "{a}"
        );
    }

    #[test]
    fn termination_message_prefers_the_file_then_logs_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m");
        let tail = |_| "last line\n".to_owned();
        assert_eq!(termination_message(&f, None, true, tail), None);
        assert_eq!(
            termination_message(&f, Some("FallbackToLogsOnError"), true, tail).as_deref(),
            Some("last line")
        );
        assert_eq!(
            termination_message(&f, Some("FallbackToLogsOnError"), false, tail),
            None
        );
        std::fs::write(&f, "written by the container\n").unwrap();
        assert_eq!(
            termination_message(&f, Some("FallbackToLogsOnError"), true, tail).as_deref(),
            Some("written by the container")
        );
    }

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(
            container_name("lbc-12-3", "0123456789", "br/x"),
            "lbc-12-3-01234567-br-x"
        );
    }

    #[test]
    fn resolution_falls_back_to_the_repository() {
        let mut r = DockerRuntime::new("docker".into());
        r.insert("pingcap/br", "logbackup-conformance/br:0.1.0");
        assert_eq!(
            r.resolve("pingcap/br:v8.1.0"),
            Some("logbackup-conformance/br:0.1.0")
        );
        assert_eq!(r.resolve("other"), None);
    }
}
