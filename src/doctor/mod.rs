//! `lbc doctor`: what this machine has of what the harness needs, and for whatever is
//! missing the command that fixes it. `lbc run` and the tests ask the same questions for
//! what they need ([`require`]), so a missing prerequisite is one line at the start, not a
//! failure deep in a run.
//!
//! [`Facts::probe`] is the only I/O; [`evaluate`] is a plain function over the facts.

use std::path::{Path, PathBuf};

use crate::programs::k8s::{BinaryLookup, K8S_VERSION, find_in_path};

/// The oldest Go that builds the control plane (`ci/k8s/go.mod` says `go 1.24.0`).
pub const MIN_GO: (u32, u32) = (1, 24);
/// Free disk the one-time Go build needs at the cache (module and build cache ≈ 3.3 GB).
const BUILD_DISK: u64 = 4 << 30;
/// Free disk a run needs once everything is built (run directories, reports).
const RUN_DISK: u64 = 1 << 30;
/// The control plane (≈ 0.5 GiB) and a few suites at 256 MiB each.
const MIN_MEMORY: u64 = 1536 << 20;
/// Below this the run picks fewer suites at once (256 MiB each, half the memory).
const FULL_SPEED_MEMORY: u64 = 8 << 30;
/// The oldest Docker Engine API the harness uses (`docker import`, `--init`, labels).
const MIN_DOCKER_API: (u32, u32) = (1, 25);

/// What a command needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// kube-apiserver and kube-controller-manager: `$KUBEBUILDER_ASSETS`, the cache, or Go
    /// to build them once (the local and container providers).
    ControlPlane,
    /// A Docker daemon and a static busybox (images, `--runtime docker`, the container and
    /// k3s providers).
    Docker,
    /// Chromium, for the HTML report's browser test.
    Chromium,
    /// Root, for isolated targets (`lbc-sandbox`: own network and mount namespaces).
    Root,
    /// Disk and memory for a run.
    Resources,
    /// A real node (`--node kubelet`): root and Debian's containerd, runc, CNI plugins,
    /// iptables, conntrack (kubelet and kube-proxy are built like the control plane).
    RealNode,
}

impl Need {
    /// Everything, as `lbc doctor` checks it.
    pub const ALL: [Need; 6] = [
        Need::ControlPlane,
        Need::Docker,
        Need::Chromium,
        Need::Root,
        Need::Resources,
        Need::RealNode,
    ];

    fn purpose(self) -> &'static str {
        match self {
            Need::ControlPlane => "the local control plane (every run and the e2e tests)",
            Need::Docker => {
                "images, --runtime docker, --provider container|k3s (cargo test --features docker)"
            }
            Need::Chromium => "the HTML report's browser test (cargo test --features browser)",
            Need::Root => "isolated targets (reference-operator, tidb-operator)",
            Need::Resources => "every run",
            Need::RealNode => "--node kubelet (cargo test --features node)",
        }
    }
}

/// Where the control-plane binaries stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPlane {
    /// `$KUBEBUILDER_ASSETS` holds both.
    Assets(PathBuf),
    /// The harness's cache holds a good build.
    Cached(PathBuf),
    /// Not built yet: the first run builds them into this directory.
    NotBuilt(PathBuf),
    /// Incomplete assets or a corrupt cache: the message names the fix.
    Broken(String),
}

/// What `docker` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerFact {
    /// No `docker` on PATH.
    NoCli,
    /// The CLI is there; the daemon did not answer.
    NoDaemon(String),
    /// The daemon's version and its API version (`1.41`).
    Daemon { version: String, api: String },
}

/// What this machine has, as probed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// `go version`'s output, `None` when there is no `go` on PATH.
    pub go: Option<String>,
    pub control_plane: ControlPlane,
    pub docker: DockerFact,
    /// A static busybox (the BR stand-in image's shell).
    pub busybox: Option<PathBuf>,
    pub chromium: Option<PathBuf>,
    pub root: bool,
    /// Free bytes where the cache lives.
    pub disk_free: Option<u64>,
    /// `MemAvailable`, bytes.
    pub mem_available: Option<u64>,
    /// What a real node needs and this machine lacks (programs, CNI plugins).
    pub node_missing: Vec<String>,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, with a cost or a limit worth knowing.
    Warn,
    /// What needs it cannot run.
    Missing,
}

/// One line of `lbc doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub need: Need,
    pub what: &'static str,
    pub status: Status,
    pub detail: String,
    /// The command (or setting) that fixes it.
    pub fix: Option<String>,
}

impl Check {
    fn new(need: Need, what: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            need,
            what,
            status,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// `what: detail (fix: …)`, one line.
    pub fn line(&self) -> String {
        match &self.fix {
            Some(f) => format!("{}: {} (fix: {f})", self.what, self.detail),
            None => format!("{}: {}", self.what, self.detail),
        }
    }
}

/// `go version go1.26.8 linux/amd64` → (1, 26).
pub fn go_version(output: &str) -> Option<(u32, u32)> {
    let v = output.split_whitespace().find_map(|w| {
        w.strip_prefix("go")
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    })?;
    let mut parts = v.split(['.', '-', 'r', 'b']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `1.41` → (1, 41).
fn api_version(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Every check for `needs`, in order (pure).
pub fn evaluate(facts: &Facts, needs: &[Need]) -> Vec<Check> {
    let mut out = Vec::new();
    for &need in needs {
        match need {
            Need::ControlPlane => out.extend(control_plane(facts)),
            Need::Docker => out.extend(docker(facts)),
            Need::Chromium => out.push(match &facts.chromium {
                Some(p) => Check::new(need, "chromium", Status::Ok, p.display().to_string()),
                None => Check::new(need, "chromium", Status::Missing, "not on PATH")
                    .fix("apt-get install chromium"),
            }),
            Need::Root => out.push(if facts.root {
                Check::new(need, "root", Status::Ok, "running as root")
            } else {
                Check::new(
                    need,
                    "root",
                    Status::Missing,
                    "not root: isolated targets cannot get their own network namespace",
                )
                .fix("run as root (sudo -E), or use targets without `isolate`")
            }),
            Need::Resources => out.extend(resources(facts, needs.contains(&Need::ControlPlane))),
            Need::RealNode => out.push(real_node(facts)),
        }
    }
    out
}

fn real_node(f: &Facts) -> Check {
    let need = Need::RealNode;
    if !f.root {
        return Check::new(
            need,
            "real node",
            Status::Missing,
            "not root: a node needs network namespaces, cgroups and mounts",
        )
        .fix("run as root (sudo -E)");
    }
    if f.node_missing.is_empty() {
        return Check::new(
            need,
            "real node",
            Status::Ok,
            "containerd, runc, CNI plugins, iptables, conntrack",
        );
    }
    Check::new(
        need,
        "real node",
        Status::Missing,
        format!("missing: {}", f.node_missing.join(", ")),
    )
    .fix("apt-get install containerd runc containernetworking-plugins conntrack iptables")
}

fn control_plane(f: &Facts) -> Vec<Check> {
    let need = Need::ControlPlane;
    let go = f.go.as_deref().and_then(go_version);
    let go_ok = go.is_some_and(|v| v >= MIN_GO);
    let install_go = "install Go >= 1.24 (go.dev/dl, or a distribution package of that version), \
                      or set KUBEBUILDER_ASSETS to a directory holding both binaries";
    let mut out = Vec::new();
    let needs_build = match &f.control_plane {
        ControlPlane::Assets(dir) => {
            out.push(Check::new(
                need,
                "control plane",
                Status::Ok,
                format!("KUBEBUILDER_ASSETS={}", dir.display()),
            ));
            false
        }
        ControlPlane::Cached(dir) => {
            out.push(Check::new(
                need,
                "control plane",
                Status::Ok,
                format!("{K8S_VERSION} cached in {}", dir.display()),
            ));
            false
        }
        ControlPlane::NotBuilt(dir) => {
            let (status, detail) = if go_ok {
                (
                    Status::Warn,
                    format!(
                        "{K8S_VERSION} not built yet: this run builds it first, into {} \
                         (≈ 5 min on 2 cores; `lbc build-k8s` does only that)",
                        dir.display()
                    ),
                )
            } else {
                let why = match &f.go {
                    None => "there is no `go` on PATH".to_owned(),
                    Some(v) => format!("{} is older than go1.{}", v.trim(), MIN_GO.1),
                };
                (
                    Status::Missing,
                    format!("{K8S_VERSION} not built, and Go cannot build it: {why}"),
                )
            };
            let c = Check::new(need, "control plane", status, detail);
            out.push(if go_ok { c } else { c.fix(install_go) });
            true
        }
        ControlPlane::Broken(msg) => {
            out.push(
                Check::new(need, "control plane", Status::Missing, msg.clone()).fix(
                    "point KUBEBUILDER_ASSETS at both binaries (or unset it), or rebuild the cache: lbc build-k8s --force",
                ),
            );
            // A rebuild needs Go.
            true
        }
    };
    out.push(match (&f.go, go) {
        (None, _) if needs_build => {
            Check::new(need, "go", Status::Missing, "no `go` on PATH").fix(install_go)
        }
        (None, _) => Check::new(need, "go", Status::Ok, "not needed (control plane present)"),
        (Some(out), Some(v)) if v >= MIN_GO => Check::new(need, "go", Status::Ok, out.trim()),
        (Some(out), _) if needs_build => Check::new(
            need,
            "go",
            Status::Missing,
            format!("{} is older than go1.{}", out.trim(), MIN_GO.1),
        )
        .fix(install_go),
        (Some(out), _) => Check::new(
            need,
            "go",
            Status::Ok,
            format!("{} (too old to build, not needed now)", out.trim()),
        ),
    });
    out
}

fn docker(f: &Facts) -> Vec<Check> {
    let need = Need::Docker;
    let start = "dockerd --iptables=false --ip6tables=false &  (as root)";
    let daemon = match &f.docker {
        DockerFact::NoCli => Check::new(need, "docker", Status::Missing, "no `docker` on PATH")
            .fix(format!("apt-get install docker.io && {start}")),
        DockerFact::NoDaemon(why) => Check::new(
            need,
            "docker",
            Status::Missing,
            format!("the daemon does not answer ({})", why.trim()),
        )
        .fix(start),
        DockerFact::Daemon { version, api } => match api_version(api) {
            Some(v) if v >= MIN_DOCKER_API => Check::new(
                need,
                "docker",
                Status::Ok,
                format!("daemon {version}, API {api}"),
            ),
            _ => Check::new(
                need,
                "docker",
                Status::Missing,
                format!(
                    "daemon {version} speaks API {api}; the harness needs >= {}.{}",
                    MIN_DOCKER_API.0, MIN_DOCKER_API.1
                ),
            )
            .fix("apt-get install docker.io (Debian's 20.10 or later)"),
        },
    };
    let busybox = match &f.busybox {
        Some(p) => Check::new(
            need,
            "busybox (static)",
            Status::Ok,
            p.display().to_string(),
        ),
        None => Check::new(
            need,
            "busybox (static)",
            Status::Missing,
            "none: the BR stand-in image needs a static /bin/sh",
        )
        .fix("apt-get install busybox-static, or set LBC_BUSYBOX"),
    };
    vec![daemon, busybox]
}

/// Disk and memory; `local_cluster`: the command boots the local control plane (and so may
/// build it first).
fn resources(f: &Facts, local_cluster: bool) -> Vec<Check> {
    let need = Need::Resources;
    let building = local_cluster && matches!(f.control_plane, ControlPlane::NotBuilt(_));
    let disk_needed = if building { BUILD_DISK } else { RUN_DISK };
    let disk = match f.disk_free {
        None => Check::new(need, "disk", Status::Warn, "free space unknown"),
        Some(free) if free >= disk_needed => {
            Check::new(need, "disk", Status::Ok, format!("{} free", gib(free)))
        }
        Some(free) => Check::new(
            need,
            "disk",
            Status::Missing,
            format!(
                "{} free at the cache, {} needed{}",
                gib(free),
                gib(disk_needed),
                if building {
                    " (the Go build's module and build cache)"
                } else {
                    ""
                }
            ),
        )
        .fix("free space there (Go's module and build caches, `go env GOMODCACHE GOCACHE`, are usually on it too), or point LBC_CACHE_DIR elsewhere"),
    };
    let memory = match f.mem_available {
        None => Check::new(need, "memory", Status::Warn, "MemAvailable unknown"),
        Some(m) if m < MIN_MEMORY => Check::new(
            need,
            "memory",
            Status::Missing,
            format!("{} available, {} needed", gib(m), gib(MIN_MEMORY)),
        )
        .fix("stop other work, or run fewer suites (--concurrency 2)"),
        Some(m) if m < FULL_SPEED_MEMORY => Check::new(
            need,
            "memory",
            Status::Warn,
            format!(
                "{} available: fewer suites run at once (256 MiB each)",
                gib(m)
            ),
        ),
        Some(m) => Check::new(need, "memory", Status::Ok, format!("{} available", gib(m))),
    };
    vec![disk, memory]
}

/// Why a command cannot start.
#[derive(Debug, thiserror::Error)]
#[error("{0} (lbc doctor lists everything)")]
pub struct Unmet(pub String);

/// The checks for `needs` on this machine; the first missing one as an error line.
///
/// # Errors
/// [`Unmet`]: what is missing, for what, and the fix, in one line.
pub fn require(needs: &[Need]) -> Result<Vec<Check>, Unmet> {
    let checks = evaluate(&Facts::probe(needs), needs);
    match first_missing(&checks) {
        Some(line) => Err(Unmet(line)),
        None => Ok(checks),
    }
}

/// The first missing check as one line naming what needs it (pure).
pub fn first_missing(checks: &[Check]) -> Option<String> {
    checks
        .iter()
        .find(|c| c.status == Status::Missing)
        .map(|c| format!("{} — needed for {}", c.line(), c.need.purpose()))
}

/// `lbc doctor`'s table (pure).
pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let mark = match c.status {
            Status::Ok => "ok     ",
            Status::Warn => "note   ",
            Status::Missing => "MISSING",
        };
        s.push_str(&format!("{mark} {:<17} {}\n", c.what, c.detail));
        if let Some(f) = &c.fix {
            s.push_str(&format!("        {:<17} fix: {f}\n", ""));
        }
        if c.status == Status::Missing {
            s.push_str(&format!(
                "        {:<17} needed for {}\n",
                "",
                c.need.purpose()
            ));
        }
    }
    s
}

impl Facts {
    /// Ask the machine, only what `needs` asks about (a daemon that hangs is not waited on
    /// by a run that does not need it).
    pub fn probe(needs: &[Need]) -> Self {
        let has = |n: Need| needs.contains(&n);
        let path = std::env::var_os("PATH");
        let lookup = BinaryLookup::from_env();
        let go = if has(Need::ControlPlane) {
            find_in_path("go", path.as_ref()).and_then(|go| {
                std::process::Command::new(go)
                    .arg("version")
                    .env("GOTOOLCHAIN", "local")
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            })
        } else {
            None
        };
        let control_plane = match lookup.existing() {
            Ok(Some(_)) if lookup.kubebuilder_assets.is_some() => {
                ControlPlane::Assets(lookup.kubebuilder_assets.clone().unwrap_or_default())
            }
            Ok(Some(_)) => ControlPlane::Cached(lookup.version_dir()),
            Ok(None) => ControlPlane::NotBuilt(lookup.version_dir()),
            Err(e) => ControlPlane::Broken(e.to_string()),
        };
        let docker = if has(Need::Docker) {
            probe_docker()
        } else {
            DockerFact::NoCli
        };
        let busybox = crate::container::images::static_busybox();
        let chromium = ["chromium", "chromium-browser"]
            .into_iter()
            .find_map(|c| find_in_path(c, path.as_ref()));
        Self {
            go,
            control_plane,
            docker,
            busybox,
            chromium,
            // SAFETY: a plain getter.
            root: unsafe { libc::geteuid() } == 0,
            disk_free: disk_free(&lookup.cache_root),
            mem_available: crate::run::all::mem_available_kib().map(|k| k * 1024),
            node_missing: if has(Need::RealNode) {
                crate::cluster::local::node::missing_programs()
            } else {
                Vec::new()
            },
        }
    }
}

fn probe_docker() -> DockerFact {
    let Ok(docker) = crate::container::Docker::find() else {
        return DockerFact::NoCli;
    };
    match docker.output([
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}}",
    ]) {
        Ok(out) => {
            let mut w = out.split_whitespace();
            DockerFact::Daemon {
                version: w.next().unwrap_or_default().to_owned(),
                api: w.next().unwrap_or_default().to_owned(),
            }
        }
        Err(e) => {
            let said = match e {
                crate::container::DockerError::Command { stderr, .. } => stderr,
                other => other.to_string(),
            };
            // The CLI's last line says why ("Cannot connect to the Docker daemon at …").
            let last = said.lines().rev().find(|l| !l.trim().is_empty());
            DockerFact::NoDaemon(last.unwrap_or_default().trim().to_owned())
        }
    }
}

/// Free bytes on the filesystem that holds `dir` (or its nearest existing ancestor).
fn disk_free(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed out-parameter of the right type.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail * st.f_frsize)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
