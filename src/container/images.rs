//! The project's images, built locally `FROM scratch` (no registry is needed):
//!
//! - `logbackup-conformance/fake-br:<version>`: fake-br, linked statically, as the
//!   entrypoint — the stand-in for TiDB Operator's backup-manager image;
//! - `logbackup-conformance/br:<version>`: `/br` (fake-br again) and a static busybox for
//!   `/bin/sh` and `cp`, so the operator's BR init container (`/bin/sh -c "cp /br
//!   /var/lib/br-bin/br; …"`) runs unmodified;
//! - `logbackup-conformance/cluster:<version>`: etcd, kube-apiserver,
//!   kube-controller-manager, fake-br and `lbc` itself (with the C libraries it links), whose
//!   `serve-cluster` runs the local control plane inside the container;
//! - for a real node (`--node kubelet`) also `logbackup-conformance/pause`, `…/etcd` (the
//!   kernel in a cluster) and `lbc.invalid/no-entrypoint` (a container that cannot start).
//!
//! Each is a root filesystem assembled from its recipe (`container/recipe.rs`) and brought
//! in with `docker import`: no build cache, and a rebuild removes the image it replaces. An
//! image is rebuilt only when what went into it changed (a label holds the inputs'
//! fingerprint). Without Docker the same recipes become archives ([`super::archive`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::recipe::{Recipe, fingerprint, recipe};
use super::{Docker, DockerError, INPUTS_LABEL};

/// An image every node knows whose entrypoint is missing: its containers fail to start
/// (`StartError`, exit code 128), as a kubelet reports for an image without the program it
/// names. Suites give it to Jobs through admission (`unstartableJobs`). The node agent maps
/// it to nowhere; a real node has it loaded ([`Image::NoEntrypoint`]).
pub const NO_ENTRYPOINT: &str = "lbc.invalid/no-entrypoint:none";

/// The version every image is tagged with: this crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    FakeBr,
    Br,
    Cluster,
    Pause,
    Etcd,
    NoEntrypoint,
}

impl Image {
    /// What `lbc image build` makes by default.
    pub const ALL: [Self; 3] = [Self::FakeBr, Self::Br, Self::Cluster];
    /// What a real node's Pods run: Jobs, the BR init container, sandboxes, the kernel, a
    /// container that cannot start.
    pub const NODE: [Self; 5] = [
        Self::FakeBr,
        Self::Br,
        Self::Pause,
        Self::Etcd,
        Self::NoEntrypoint,
    ];

    pub fn repository(self) -> &'static str {
        match self {
            Self::FakeBr => "logbackup-conformance/fake-br",
            Self::Br => "logbackup-conformance/br",
            Self::Cluster => "logbackup-conformance/cluster",
            Self::Pause => "logbackup-conformance/pause",
            Self::Etcd => "logbackup-conformance/etcd",
            Self::NoEntrypoint => "lbc.invalid/no-entrypoint",
        }
    }

    /// `repository:VERSION` (never `latest`: a node would always try to pull that).
    pub fn tag(self) -> String {
        match self {
            Self::NoEntrypoint => NO_ENTRYPOINT.to_owned(),
            _ => format!("{}:{VERSION}", self.repository()),
        }
    }

    /// The file name `lbc image save` writes.
    pub fn archive_name(self) -> String {
        format!(
            "{}-{VERSION}.tar",
            self.repository()
                .trim_start_matches("logbackup-conformance/")
                .trim_start_matches("lbc.invalid/")
        )
    }
}

/// Why an image could not be built or saved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Binary(#[from] crate::programs::workspace::ProgramError),
    #[error(transparent)]
    K8s(#[from] crate::programs::k8s::ControlPlaneError),
    #[error(
        "no static busybox for the BR image's /bin/sh: install Debian's busybox-static \
         (`apt-get install busybox-static`) or set $LBC_BUSYBOX"
    )]
    NoBusybox,
    #[error("{path} is linked dynamically; an image FROM scratch needs a static binary")]
    NotStatic { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`ldd {path}` gave no libraries: {detail}")]
    Ldd { path: PathBuf, detail: String },
    #[error("{0}")]
    Missing(&'static str),
}

pub(super) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io { what, path, source }
}

/// The programs that go into the images.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub fake_br_static: PathBuf,
    pub busybox: PathBuf,
    pub etcd: PathBuf,
    /// Only the cluster image needs these three.
    pub lbc: Option<PathBuf>,
    pub apiserver: Option<PathBuf>,
    pub controller_manager: Option<PathBuf>,
}

impl Inputs {
    /// Find (and build where needed) everything: static fake-br, busybox, this `lbc`, the
    /// control-plane binaries from the cache.
    ///
    /// # Errors
    /// Whichever input is missing, with how to get it.
    pub fn locate() -> Result<Self, ImageError> {
        Self::locate_for(&Image::ALL)
    }

    /// Find what `images` need: the control plane is built only for the cluster image.
    ///
    /// # Errors
    /// Whichever input is missing, with how to get it.
    pub fn locate_for(images: &[Image]) -> Result<Self, ImageError> {
        let fake_br_static = crate::programs::workspace::locate_static_fake_br()?;
        let busybox = static_busybox().ok_or(ImageError::NoBusybox)?;
        let mut inputs = Self {
            fake_br_static,
            busybox,
            etcd: crate::programs::etcd_binary(),
            lbc: None,
            apiserver: None,
            controller_manager: None,
        };
        if images.contains(&Image::Cluster) {
            let k8s = crate::programs::k8s::BinaryLookup::from_env().resolve()?;
            inputs.lbc = Some(lbc_executable()?);
            inputs.apiserver = Some(k8s.apiserver);
            inputs.controller_manager = Some(k8s.controller_manager);
        }
        Ok(inputs)
    }
}

/// The BR image's shell: `$LBC_BUSYBOX`, else Debian's static busybox.
pub fn static_busybox() -> Option<PathBuf> {
    std::env::var_os("LBC_BUSYBOX")
        .map(PathBuf::from)
        .or_else(|| {
            ["/bin/busybox", "/usr/bin/busybox"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| is_static(p))
        })
}

/// The `lbc` executable to put in the cluster image: this process when it is `lbc`, else
/// the `lbc` beside it (a test binary runs from `target/debug/deps`).
fn lbc_executable() -> Result<PathBuf, ImageError> {
    let exe = std::env::current_exe().map_err(io("locating", Path::new("the executable")))?;
    if exe.file_name().is_some_and(|n| n == "lbc") {
        return Ok(exe);
    }
    let dir = exe.parent().unwrap_or(Path::new("."));
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let lbc = dir.join("lbc");
    if crate::programs::process::is_executable(&lbc) {
        Ok(lbc)
    } else {
        Err(ImageError::Io {
            what: "the cluster image needs lbc at",
            path: lbc,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}

/// Whether `path` is an ELF without a program interpreter (static or static-pie).
pub fn is_static(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    elf_is_static(&bytes)
}

/// ELF64 little-endian: no `PT_INTERP` among the program headers.
fn elf_is_static(b: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u16::from_le_bytes)
    };
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    (0..usize::from(phnum)).all(|i| {
        let o = phoff + i * phentsize;
        b.get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
            != Some(PT_INTERP)
    })
}

/// What building one image did.
#[derive(Debug, Clone)]
pub struct Built {
    pub image: Image,
    pub tag: String,
    pub id: String,
    /// False when the existing image already had these inputs.
    pub rebuilt: bool,
    pub seconds: f64,
}

/// Build `images` (skipping those already built from the same inputs).
///
/// # Errors
/// A missing input or a failing `docker import`.
pub fn build(docker: &Docker, inputs: &Inputs, images: &[Image]) -> Result<Vec<Built>, ImageError> {
    images
        .iter()
        .map(|&image| {
            let started = std::time::Instant::now();
            let r = recipe(image, inputs)?;
            let print = fingerprint(&r);
            let tag = image.tag();
            if docker.image_label(&tag, INPUTS_LABEL).as_deref() == Some(print.as_str())
                && let Some(id) = docker.image_id(&tag)
            {
                return Ok(Built {
                    image,
                    tag,
                    id,
                    rebuilt: false,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            let id = import(docker, &r, &print)?;
            Ok(Built {
                image,
                tag,
                id,
                rebuilt: true,
                seconds: started.elapsed().as_secs_f64(),
            })
        })
        .collect()
}

/// Assemble the root filesystem and `docker import` it; remove the image it replaces.
fn import(docker: &Docker, r: &Recipe, print: &str) -> Result<String, ImageError> {
    let tag = r.tag.clone();
    let previous = docker.image_id(&tag);
    let scratch = tempfile::Builder::new()
        .prefix("lbc-image-")
        .tempdir()
        .map_err(io("creating a scratch directory in", &std::env::temp_dir()))?;
    let root = scratch.path().join("rootfs");
    r.assemble(&root)?;
    let mut changes = r.docker_changes();
    changes.push(format!("LABEL {INPUTS_LABEL}={print}"));
    let mut tar = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(io("running tar on", &root))?;
    let mut import = docker.command(["import"]);
    for c in &changes {
        import.arg("--change").arg(c);
    }
    import.args(["-", &tag]);
    let stdin = tar
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null);
    let out = import
        .stdin(stdin)
        .stderr(Stdio::piped())
        .output()
        .map_err(io("running docker import for", Path::new(&tag)))?;
    let _ = tar.wait();
    if !out.status.success() {
        return Err(DockerError::Command {
            args: format!("import - {tag}"),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }
        .into());
    }
    let id = docker.image_id(&tag).unwrap_or_default();
    if let Some(old) = previous.filter(|old| *old != id) {
        // The replaced image is now untagged: remove it so rebuilds do not pile up.
        let _ = docker.output(["rmi", &old]);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_not_static() {
        // The test binary itself is linked dynamically (the host's default).
        let exe = std::env::current_exe().unwrap();
        assert!(!is_static(&exe));
        assert!(!elf_is_static(
            b"not an elf at all, long enough to have a header.........."
        ));
    }

    #[test]
    fn tags_carry_the_crate_version() {
        assert_eq!(
            Image::FakeBr.tag(),
            format!("logbackup-conformance/fake-br:{VERSION}")
        );
        assert_eq!(Image::Br.archive_name(), format!("br-{VERSION}.tar"));
        // No image of a node is `latest`, which a kubelet would try to pull.
        for image in Image::NODE {
            assert!(!image.tag().ends_with(":latest") && image.tag().contains(':'));
        }
    }
}
