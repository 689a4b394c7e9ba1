//! Finding — or building once — kube-apiserver and kube-controller-manager, and for a real
//! node (`--node kubelet`) kubelet, kube-proxy and kube-scheduler (a second set, in
//! `<cache>/k8s/<version>/node/`, built only when asked for).
//!
//! Order: `$KUBEBUILDER_ASSETS` (the ecosystem's convention), then the cache
//! (`<cache>/k8s/<version>/bin`), else a build with the Go toolchain from the wrapper module
//! embedded below (`ci/k8s/`), into the cache. A finished build writes `manifest.json` last,
//! so an interrupted build is simply redone; a manifest whose files do not match is reported
//! as a corrupt cache.

use crate::programs::process::is_executable;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The Kubernetes release the harness builds and tests against.
pub const K8S_VERSION: &str = "v1.34.4";
const GO_MOD: &str = include_str!("../../../ci/k8s/go.mod");
const GO_SUM: &str = include_str!("../../../ci/k8s/go.sum");
const APISERVER: &str = "kube-apiserver";
const CONTROLLER_MANAGER: &str = "kube-controller-manager";
const MANIFEST: &str = "manifest.json";
const KUBELET: &str = "kubelet";
const KUBE_PROXY: &str = "kube-proxy";
const SCHEDULER: &str = "kube-scheduler";

/// A set of binaries built together from the wrapper module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    ControlPlane,
    Node,
}

impl Set {
    fn names(self) -> &'static [&'static str] {
        match self {
            Self::ControlPlane => &[APISERVER, CONTROLLER_MANAGER],
            Self::Node => &[KUBELET, KUBE_PROXY, SCHEDULER],
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::ControlPlane => "kube-apiserver and kube-controller-manager",
            Self::Node => "kubelet, kube-proxy and kube-scheduler",
        }
    }
}

/// Why the control-plane binaries are not available.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(
        "KUBEBUILDER_ASSETS={dir} has no executable {missing}; point KUBEBUILDER_ASSETS at a \
         directory holding kube-apiserver and kube-controller-manager, or unset it to use the \
         harness's own build"
    )]
    AssetsIncomplete { dir: PathBuf, missing: String },
    #[error(
        "the Go toolchain (`go`) is not on PATH, and kube-apiserver/kube-controller-manager \
         {version} are not in the cache {cache}. Install Go >= 1.24 (from go.dev/dl, \
         or a distribution package of that version) and run again: the harness builds them \
         once (about 5 min on 2 cores). Or set KUBEBUILDER_ASSETS to a directory that \
         already holds both binaries."
    )]
    GoMissing { version: String, cache: PathBuf },
    #[error(
        "the binary cache {dir} is corrupt: {detail}. Delete that directory \
         (`rm -rf {dir}`) and run again to rebuild, or run `lbc build-k8s --force`"
    )]
    CorruptCache { dir: PathBuf, detail: String },
    #[error(
        "building the control plane with Go failed ({status}); last output:\n{tail}\nfull log: {log}"
    )]
    BuildFailed {
        status: String,
        tail: String,
        log: PathBuf,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ControlPlaneError + '_ {
    move |source| ControlPlaneError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where the binaries came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinarySource {
    KubebuilderAssets,
    Cache,
    Built,
}

/// Paths of the two control-plane binaries.
#[derive(Debug, Clone)]
pub struct K8sBinaries {
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
    pub source: BinarySource,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Manifest {
    version: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct ManifestFile {
    name: String,
    size: u64,
    sha256: String,
}

/// How to find the binaries. Built from the environment by [`BinaryLookup::from_env`];
/// tests set the fields directly instead of mutating the process environment.
#[derive(Debug, Clone)]
pub struct BinaryLookup {
    pub kubebuilder_assets: Option<PathBuf>,
    /// Root of the harness cache (binaries go under `k8s/<version>/`).
    pub cache_root: PathBuf,
    /// The PATH searched for `go`.
    pub path: Option<OsString>,
    /// Rebuild even if the cache holds a good build.
    pub force_build: bool,
}

impl BinaryLookup {
    /// `$KUBEBUILDER_ASSETS`, `$LBC_CACHE_DIR` (default `$XDG_CACHE_HOME` or
    /// `~/.cache`, then `/logbackup-conformance`) and `$PATH`.
    pub fn from_env() -> Self {
        Self {
            kubebuilder_assets: std::env::var_os("KUBEBUILDER_ASSETS")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            cache_root: default_cache_root(),
            path: std::env::var_os("PATH"),
            force_build: false,
        }
    }

    /// The directory holding this version's build.
    pub fn version_dir(&self) -> PathBuf {
        self.cache_root.join("k8s").join(K8S_VERSION)
    }

    /// The binaries if they are already here (`$KUBEBUILDER_ASSETS` or a good cache), without
    /// building anything: `Ok(None)` means a build is still to come.
    ///
    /// # Errors
    /// Incomplete assets or a corrupt cache.
    pub fn existing(&self) -> Result<Option<K8sBinaries>, ControlPlaneError> {
        if let Some(dir) = &self.kubebuilder_assets {
            return from_assets(dir).map(Some);
        }
        from_cache(&self.version_dir())
    }

    /// Find the binaries, building them if needed. Blocking (a build takes minutes).
    ///
    /// # Errors
    /// See [`ControlPlaneError`]: each variant names the cause and the fix.
    pub fn resolve(&self) -> Result<K8sBinaries, ControlPlaneError> {
        if let Some(dir) = &self.kubebuilder_assets {
            return from_assets(dir);
        }
        let dir = self.version_dir();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // One builder at a time (parallel test binaries share the cache).
        let _lock = FileLock::acquire(&dir.join(".lock"))?;
        if !self.force_build
            && let Some(found) = from_cache(&dir)?
        {
            return Ok(found);
        }
        let go =
            find_in_path("go", self.path.as_ref()).ok_or_else(|| ControlPlaneError::GoMissing {
                version: K8S_VERSION.into(),
                cache: dir.clone(),
            })?;
        build(&go, &dir, Set::ControlPlane)?;
        let mut built = from_cache(&dir)?.ok_or_else(|| ControlPlaneError::CorruptCache {
            dir: dir.clone(),
            detail: "the build finished but wrote no manifest".into(),
        })?;
        built.source = BinarySource::Built;
        Ok(built)
    }
}

/// Start the one-time Go build on a thread of its own when the binaries are neither in
/// `$KUBEBUILDER_ASSETS` nor cached and `go` is there, so that it overlaps what the caller
/// does next (`lbc run`: the cargo build of the workspace's programs, loading suites). The
/// provider's own [`BinaryLookup::resolve`] then waits on the cache's lock and finds the
/// build, or reports its failure. `None`: nothing to build.
pub fn build_in_background(lookup: BinaryLookup) -> Option<std::thread::JoinHandle<()>> {
    if !matches!(lookup.existing(), Ok(None)) || find_in_path("go", lookup.path.as_ref()).is_none()
    {
        return None;
    }
    std::thread::Builder::new()
        .name("go-build".into())
        .spawn(move || {
            // Its error is the provider's to report, when it resolves the same cache.
            let _ = lookup.resolve();
        })
        .ok()
}

/// `$LBC_CACHE_DIR`, else `$XDG_CACHE_HOME/logbackup-conformance`, else
/// `~/.cache/logbackup-conformance`.
pub fn default_cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("LBC_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("logbackup-conformance")
}

/// The first executable `program` in `path` (a PATH-like list).
pub fn find_in_path(program: &str, path: Option<&OsString>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn from_assets(dir: &Path) -> Result<K8sBinaries, ControlPlaneError> {
    let apiserver = dir.join(APISERVER);
    let controller_manager = dir.join(CONTROLLER_MANAGER);
    for p in [&apiserver, &controller_manager] {
        if !is_executable(p) {
            return Err(ControlPlaneError::AssetsIncomplete {
                dir: dir.to_owned(),
                missing: p.file_name().unwrap_or_default().to_string_lossy().into(),
            });
        }
    }
    Ok(K8sBinaries {
        apiserver,
        controller_manager,
        source: BinarySource::KubebuilderAssets,
    })
}

/// The cached build, `None` if there is none (or only an interrupted one).
fn from_cache(dir: &Path) -> Result<Option<K8sBinaries>, ControlPlaneError> {
    if !cached(dir, Set::ControlPlane)? {
        return Ok(None);
    }
    let bin = dir.join("bin");
    Ok(Some(K8sBinaries {
        apiserver: bin.join(APISERVER),
        controller_manager: bin.join(CONTROLLER_MANAGER),
        source: BinarySource::Cache,
    }))
}

/// Whether `dir` holds a finished build of `set` (false: none, or an interrupted one).
fn cached(dir: &Path, set: Set) -> Result<bool, ControlPlaneError> {
    let manifest_path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(&manifest_path)(e)),
    };
    let corrupt = |detail: String| ControlPlaneError::CorruptCache {
        dir: dir.to_owned(),
        detail,
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| corrupt(format!("{} does not parse ({e})", manifest_path.display())))?;
    if manifest.version != K8S_VERSION {
        return Err(corrupt(format!(
            "its manifest is for {}, expected {K8S_VERSION}",
            manifest.version
        )));
    }
    let bin = dir.join("bin");
    for &name in set.names() {
        let entry = manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| corrupt(format!("the manifest lists no {name}")))?;
        let path = bin.join(name);
        // Size, not hash, on every boot: hashing 200 MB would cost the boot-time budget.
        let size = path
            .metadata()
            .map(|m| m.len())
            .map_err(|e| corrupt(format!("{} is unreadable ({e})", path.display())))?;
        if size != entry.size || !is_executable(&path) {
            return Err(corrupt(format!(
                "{} has {size} bytes, the manifest says {} (truncated or replaced)",
                path.display(),
                entry.size
            )));
        }
    }
    Ok(true)
}

/// Check every cached file against its recorded SHA-256 (slow; `lbc doctor`).
///
/// # Errors
/// [`ControlPlaneError::CorruptCache`] on a mismatch.
pub fn verify_hashes(dir: &Path) -> Result<(), ControlPlaneError> {
    let manifest_path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| ControlPlaneError::CorruptCache {
            dir: dir.to_owned(),
            detail: format!("manifest does not parse ({e})"),
        })?;
    for f in &manifest.files {
        let path = dir.join("bin").join(&f.name);
        let (_, sha) = hash_file(&path)?;
        if sha != f.sha256 {
            return Err(ControlPlaneError::CorruptCache {
                dir: dir.to_owned(),
                detail: format!(
                    "{} has SHA-256 {sha}, the manifest says {}",
                    f.name, f.sha256
                ),
            });
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<(u64, String), ControlPlaneError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let sha = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha))
}

/// The `-ldflags` that stamp the version (clients reject `v0.0.0`).
fn version_ldflags() -> String {
    let minor = K8S_VERSION.split('.').nth(1).unwrap_or("0");
    let mut ld = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        ld.push_str(&format!(
            " -X {pkg}.gitVersion={K8S_VERSION} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor} \
             -X {pkg}.gitTreeState=clean -X {pkg}.gitCommit=unknown \
             -X {pkg}.buildDate=1970-01-01T00:00:00Z"
        ));
    }
    ld
}

fn build(go: &Path, dir: &Path, set: Set) -> Result<(), ControlPlaneError> {
    let started = Instant::now();
    let work = dir.join("build");
    let src = work.join("src");
    let out = work.join("bin");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&src).map_err(io(&src))?;
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    std::fs::write(src.join("go.mod"), GO_MOD).map_err(io(&src))?;
    std::fs::write(src.join("go.sum"), GO_SUM).map_err(io(&src))?;
    let log_path = work.join("build.log");
    let mut log = std::fs::File::create(&log_path).map_err(io(&log_path))?;
    eprintln!(
        "lbc: building {} {K8S_VERSION} with {} into {} \
         (once: about 5 min on 2 cores, and 3 GB of Go module and build cache)",
        set.what(),
        go.display(),
        dir.display()
    );
    let mut cmd = Command::new(go);
    cmd.current_dir(&src)
        .args([
            "build",
            "-v",
            "-trimpath",
            // `-s -w` strips DWARF at link time; not generating it saves compile time.
            "-gcflags=all=-dwarf=false",
            "-ldflags",
            &version_ldflags(),
            "-o",
        ])
        .arg(&out)
        .args(
            set.names()
                .iter()
                .map(|n| format!("k8s.io/kubernetes/cmd/{n}")),
        )
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=readonly")
        // Never let `go` fetch another toolchain: only the module proxy is reachable.
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The build dies with the thread that waits for it: a killed `lbc` leaves no `go`
    // writing the cache.
    super::process::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(io(go))?;
    // `go build -v` names each package as it compiles: count them for progress.
    let stdout = child.stdout.take();
    let stdout_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = stdout {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let mut packages = 0usize;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            use std::io::Write;
            let _ = writeln!(log, "{line}");
            packages += 1;
            if packages.is_multiple_of(250) {
                eprintln!(
                    "lbc:   go build: {packages} packages, {:.0}s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    let status = child.wait().map_err(io(go))?;
    let stdout = stdout_thread.join().unwrap_or_default();
    if !status.success() {
        use std::io::Write;
        let _ = writeln!(log, "{stdout}");
        return Err(ControlPlaneError::BuildFailed {
            status: super::process::describe_exit(status),
            tail: super::process::log_tail(&log_path, 3000),
            log: log_path,
        });
    }
    let mut files = Vec::new();
    for &name in set.names() {
        let (size, sha256) = hash_file(&out.join(name))?;
        files.push(ManifestFile {
            name: name.into(),
            size,
            sha256,
        });
    }
    let bin = dir.join("bin");
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::rename(&out, &bin).map_err(io(&bin))?;
    let manifest = Manifest {
        version: K8S_VERSION.into(),
        files,
    };
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(io(dir))?;
    let _ = std::fs::rename(&log_path, dir.join("build.log"));
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "lbc: go build finished in {:.0}s ({packages} packages compiled)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Record an existing pair of binaries (e.g. from a manual build) as this version's cache.
///
/// # Errors
/// I/O errors while copying or hashing.
pub fn adopt_into_cache(
    lookup: &BinaryLookup,
    from: &Path,
) -> Result<K8sBinaries, ControlPlaneError> {
    let found = from_assets(from)?;
    let dir = lookup.version_dir();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io(&bin))?;
    let mut files = Vec::new();
    for (name, src) in [
        (APISERVER, &found.apiserver),
        (CONTROLLER_MANAGER, &found.controller_manager),
    ] {
        let dst = bin.join(name);
        if src != &dst {
            std::fs::copy(src, &dst).map_err(io(&dst))?;
        }
        let (size, sha256) = hash_file(&dst)?;
        files.push(ManifestFile {
            name: name.into(),
            size,
            sha256,
        });
    }
    let text = serde_json::to_string_pretty(&Manifest {
        version: K8S_VERSION.into(),
        files,
    })
    .unwrap_or_default();
    std::fs::write(dir.join(MANIFEST), text).map_err(io(&dir))?;
    from_cache(&dir)?.ok_or_else(|| ControlPlaneError::CorruptCache {
        dir,
        detail: "manifest vanished".into(),
    })
}

/// An exclusive `flock` held until drop.
struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    fn acquire(path: &Path) -> Result<Self, ControlPlaneError> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(path)(std::io::Error::last_os_error()));
        }
        Ok(Self { _file: file })
    }
}

mod node;
#[cfg(test)]
mod tests;

pub use self::node::NodeBinaries;
