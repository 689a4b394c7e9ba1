//! The project's images, built locally `FROM scratch` (no registry is needed):
//!
//! - `logbackup-conformance/fake-br:<version>`: fake-br, linked statically, as the
//!   entrypoint — the stand-in for TiDB Operator's backup-manager image;
//! - `logbackup-conformance/br:<version>`: `/br` (fake-br again) and a static busybox for
//!   `/bin/sh` and `cp`, so the operator's BR init container (`/bin/sh -c "cp /br
//!   /var/lib/br-bin/br; …"`) runs unmodified;
//! - `logbackup-conformance/cluster:<version>`: etcd, kube-apiserver,
//!   kube-controller-manager, fake-br and `lbc` itself (with the C libraries it links), whose
//!   `serve-cluster` runs the local control plane inside the container.
//!
//! Each is a root filesystem assembled here and brought in with `docker import`: no build
//! cache, and a rebuild removes the image it replaces. An image is rebuilt only when what
//! went into it changed (a label holds the inputs' fingerprint).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::{Docker, DockerError, INPUTS_LABEL};

/// The version every image is tagged with: this crate's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    FakeBr,
    Br,
    Cluster,
}

impl Image {
    pub const ALL: [Self; 3] = [Self::FakeBr, Self::Br, Self::Cluster];

    pub fn repository(self) -> &'static str {
        match self {
            Self::FakeBr => "logbackup-conformance/fake-br",
            Self::Br => "logbackup-conformance/br",
            Self::Cluster => "logbackup-conformance/cluster",
        }
    }

    /// `repository:VERSION`.
    pub fn tag(self) -> String {
        format!("{}:{VERSION}", self.repository())
    }

    /// The file name `lbc image save` writes.
    pub fn archive_name(self) -> String {
        format!(
            "{}-{VERSION}.tar",
            self.repository()
                .trim_start_matches("logbackup-conformance/")
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
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io { what, path, source }
}

/// The programs that go into the images.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub fake_br_static: PathBuf,
    pub busybox: PathBuf,
    pub lbc: PathBuf,
    pub etcd: PathBuf,
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
}

impl Inputs {
    /// Find (and build where needed) everything: static fake-br, busybox, this `lbc`, the
    /// control-plane binaries from the cache.
    ///
    /// # Errors
    /// Whichever input is missing, with how to get it.
    pub fn locate() -> Result<Self, ImageError> {
        let fake_br_static = crate::programs::workspace::locate_static_fake_br()?;
        let busybox = static_busybox().ok_or(ImageError::NoBusybox)?;
        let lbc = lbc_executable()?;
        let k8s = crate::programs::k8s::BinaryLookup::from_env().resolve()?;
        Ok(Self {
            fake_br_static,
            busybox,
            lbc,
            etcd: crate::programs::etcd_binary(),
            apiserver: k8s.apiserver,
            controller_manager: k8s.controller_manager,
        })
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

/// One file of an image's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// Copy `from` to the path (stripped of debug info when `strip`).
    File {
        from: PathBuf,
        strip: bool,
    },
    Symlink(String),
    Dir,
}

/// An image's root filesystem and configuration, before it exists.
#[derive(Debug, Clone)]
struct Recipe {
    image: Image,
    entries: Vec<(String, Entry)>,
    /// `docker import --change` instructions.
    changes: Vec<String>,
}

fn recipe(image: Image, inputs: &Inputs) -> Result<Recipe, ImageError> {
    let file = |p: &Path| Entry::File {
        from: p.to_owned(),
        strip: false,
    };
    // Our debug builds carry ~200 MB of debug info; images do not need it.
    let ours = |p: &Path| Entry::File {
        from: p.to_owned(),
        strip: true,
    };
    let mut entries = vec![("tmp".into(), Entry::Dir)];
    let mut changes = vec![];
    match image {
        Image::FakeBr => {
            require_static(&inputs.fake_br_static)?;
            entries.push(("usr/local/bin/fake-br".into(), ours(&inputs.fake_br_static)));
            changes.push(r#"ENTRYPOINT ["/usr/local/bin/fake-br"]"#.into());
            changes.push("ENV PATH=/usr/local/bin".into());
        }
        Image::Br => {
            require_static(&inputs.fake_br_static)?;
            require_static(&inputs.busybox)?;
            entries.push(("br".into(), ours(&inputs.fake_br_static)));
            entries.push(("bin/busybox".into(), file(&inputs.busybox)));
            for applet in BUSYBOX_APPLETS {
                entries.push((format!("bin/{applet}"), Entry::Symlink("busybox".into())));
            }
            changes.push(r#"ENTRYPOINT ["/br"]"#.into());
            changes.push("ENV PATH=/bin".into());
        }
        Image::Cluster => {
            require_static(&inputs.fake_br_static)?;
            require_static(&inputs.busybox)?;
            for (name, from, strip) in [
                ("lbc", &inputs.lbc, true),
                ("fake-br", &inputs.fake_br_static, true),
                ("etcd", &inputs.etcd, false),
                ("kube-apiserver", &inputs.apiserver, false),
                ("kube-controller-manager", &inputs.controller_manager, false),
            ] {
                entries.push((
                    format!("usr/local/bin/{name}"),
                    Entry::File {
                        from: from.clone(),
                        strip,
                    },
                ));
            }
            for lib in shared_libraries(&inputs.lbc)? {
                let inside = lib.to_string_lossy().trim_start_matches('/').to_owned();
                entries.push((inside, file(&std::fs::canonicalize(&lib).unwrap_or(lib))));
            }
            entries.push(("bin/busybox".into(), file(&inputs.busybox)));
            for applet in BUSYBOX_APPLETS {
                entries.push((format!("bin/{applet}"), Entry::Symlink("busybox".into())));
            }
            entries.push(("root".into(), Entry::Dir));
            changes.push(r#"ENTRYPOINT ["/usr/local/bin/lbc", "serve-cluster"]"#.into());
            changes.push("ENV PATH=/usr/local/bin:/bin".into());
            changes.push("ENV HOME=/root".into());
            changes.push("ENV KUBEBUILDER_ASSETS=/usr/local/bin".into());
            changes.push("ENV LBC_ETCD_BIN=/usr/local/bin/etcd".into());
            changes.push("ENV LBC_FAKE_BR_BIN=/usr/local/bin/fake-br".into());
        }
    }
    Ok(Recipe {
        image,
        entries,
        changes,
    })
}

/// What the BR image's shell offers (the operator's init container uses `sh` and `cp`).
const BUSYBOX_APPLETS: [&str; 9] = [
    "sh", "cp", "cat", "cmp", "echo", "ls", "test", "sleep", "true",
];

fn require_static(path: &Path) -> Result<(), ImageError> {
    if is_static(path) {
        Ok(())
    } else {
        Err(ImageError::NotStatic {
            path: path.to_owned(),
        })
    }
}

/// The shared libraries `path` loads, with the loader, from `ldd`.
fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = std::process::Command::new("ldd")
        .arg(path)
        .output()
        .map_err(io("running ldd on", path))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let libs = parse_ldd(&text);
    if libs.is_empty() {
        return Err(ImageError::Ldd {
            path: path.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(libs)
}

/// `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and `/lib64/ld-linux-x86-64.so.2
/// (0x…)` lines → the absolute paths (the vDSO has none).
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A fingerprint of a recipe: its configuration and each input's path, size and mtime (a
/// rebuild of an input changes its mtime; hashing 300 MB each time would not pay).
fn fingerprint(r: &Recipe) -> String {
    let mut h = Sha256::new();
    for c in &r.changes {
        h.update(c.as_bytes());
        h.update([0]);
    }
    for (inside, e) in &r.entries {
        h.update(inside.as_bytes());
        match e {
            Entry::File { from, strip } => {
                let meta = std::fs::metadata(from).ok();
                let mtime = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                h.update(format!(
                    "file {} {} {mtime} {strip}",
                    from.display(),
                    meta.map_or(0, |m| m.len())
                ));
            }
            Entry::Symlink(t) => h.update(format!("link {t}")),
            Entry::Dir => h.update("dir"),
        }
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
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
    let tag = r.image.tag();
    let previous = docker.image_id(&tag);
    let scratch = tempfile::Builder::new()
        .prefix("lbc-image-")
        .tempdir()
        .map_err(io("creating a scratch directory in", &std::env::temp_dir()))?;
    let root = scratch.path().join("rootfs");
    for (inside, entry) in &r.entries {
        let dest = root.join(inside);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        match entry {
            Entry::Dir => std::fs::create_dir_all(&dest).map_err(io("creating", &dest))?,
            Entry::Symlink(target) => {
                std::os::unix::fs::symlink(target, &dest).map_err(io("linking", &dest))?
            }
            Entry::File { from, strip } => copy_file(from, &dest, *strip)?,
        }
    }
    if root.join("tmp").is_dir() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777));
    }
    let mut changes: Vec<String> = r.changes.clone();
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

fn copy_file(from: &Path, dest: &Path, strip: bool) -> Result<(), ImageError> {
    if strip {
        let stripped = std::process::Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(dest)
            .arg(from)
            .status()
            .is_ok_and(|s| s.success());
        if stripped {
            return Ok(());
        }
    }
    std::fs::copy(from, dest).map_err(io("copying", from))?;
    Ok(())
}

/// `docker save` each image into `dir` (archives that `kind load image-archive` and `k3s
/// ctr images import` accept). Returns the files written.
///
/// # Errors
/// The directory cannot be created, or an image is missing (build it first).
pub fn save(docker: &Docker, images: &[Image], dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    images
        .iter()
        .map(|image| {
            let path = dir.join(image.archive_name());
            let out = path.to_string_lossy().into_owned();
            docker.output(["save", "-o", &out, &image.tag()])?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_absolute_paths_only() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n\tlibmissing.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

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
    fn fingerprints_follow_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let r = Recipe {
            image: Image::FakeBr,
            entries: vec![(
                "bin/a".into(),
                Entry::File {
                    from: a.clone(),
                    strip: false,
                },
            )],
            changes: vec![],
        };
        let before = fingerprint(&r);
        assert_eq!(before, fingerprint(&r));
        std::fs::write(&a, "three").unwrap();
        assert_ne!(before, fingerprint(&r));
    }

    #[test]
    fn tags_carry_the_crate_version() {
        assert_eq!(
            Image::FakeBr.tag(),
            format!("logbackup-conformance/fake-br:{VERSION}")
        );
        assert_eq!(Image::Br.archive_name(), format!("br-{VERSION}.tar"));
    }
}
