//! What goes into each of the project's images: a root filesystem (files, links, directories)
//! and the little configuration an image `FROM scratch` has (entrypoint, environment). The
//! same recipe becomes a Docker image (`docker import`, [`super::images`]) or an archive a
//! node's containerd imports ([`super::archive`]).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::images::{Image, ImageError, Inputs, io, is_static};

/// One file of an image's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// Copy `from` to the path (stripped of debug info when `strip`).
    File {
        from: PathBuf,
        strip: bool,
    },
    Symlink(String),
    Dir,
    /// A small file written from this text.
    Text(String),
}

/// An image's root filesystem and configuration, before it exists.
#[derive(Debug, Clone)]
pub(super) struct Recipe {
    /// `repository:tag` the archive names.
    pub(super) tag: String,
    pub(super) entries: Vec<(String, Entry)>,
    pub(super) entrypoint: Vec<String>,
    /// `NAME=value`.
    pub(super) env: Vec<String>,
}

impl Recipe {
    /// `docker import --change` instructions for the configuration.
    pub(super) fn docker_changes(&self) -> Vec<String> {
        let mut changes = Vec::new();
        if !self.entrypoint.is_empty() {
            changes.push(format!(
                "ENTRYPOINT {}",
                serde_json::to_string(&self.entrypoint).unwrap_or_default()
            ));
        }
        changes.extend(self.env.iter().map(|e| format!("ENV {e}")));
        changes
    }

    /// Write the root filesystem under `root`.
    ///
    /// # Errors
    /// A file that cannot be created or copied.
    pub(super) fn assemble(&self, root: &Path) -> Result<(), ImageError> {
        for (inside, entry) in &self.entries {
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
                Entry::Text(text) => std::fs::write(&dest, text).map_err(io("writing", &dest))?,
            }
        }
        if root.join("tmp").is_dir() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
                .map_err(io("setting the mode of", &root.join("tmp")))?;
        }
        Ok(())
    }
}

/// The recipe of `image` from `inputs`.
///
/// # Errors
/// An input the image needs is missing or not static.
pub(super) fn recipe(image: Image, inputs: &Inputs) -> Result<Recipe, ImageError> {
    let file = |p: &Path| Entry::File {
        from: p.to_owned(),
        strip: false,
    };
    // Our debug builds carry ~200 MB of debug info; images do not need it.
    let ours = |p: &Path| Entry::File {
        from: p.to_owned(),
        strip: true,
    };
    let strs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut entries = vec![("tmp".into(), Entry::Dir)];
    let (entrypoint, env) = match image {
        Image::FakeBr => {
            require_static(&inputs.fake_br_static)?;
            entries.push(("usr/local/bin/fake-br".into(), ours(&inputs.fake_br_static)));
            (
                strs(&["/usr/local/bin/fake-br"]),
                strs(&["PATH=/usr/local/bin"]),
            )
        }
        Image::Br => {
            require_static(&inputs.fake_br_static)?;
            require_static(&inputs.busybox)?;
            entries.push(("br".into(), ours(&inputs.fake_br_static)));
            busybox(&mut entries, &inputs.busybox);
            (strs(&["/br"]), strs(&["PATH=/bin"]))
        }
        // A sandbox's first process: fake-br named `pause` only waits to be stopped.
        Image::Pause => {
            require_static(&inputs.fake_br_static)?;
            entries.push(("pause".into(), ours(&inputs.fake_br_static)));
            (strs(&["/pause"]), Vec::new())
        }
        // The kernel in a cluster: PD's etcd.
        Image::Etcd => {
            require_static(&inputs.etcd)?;
            entries.push(("usr/local/bin/etcd".into(), file(&inputs.etcd)));
            entries.push(("var/lib/etcd".into(), Entry::Dir));
            (
                strs(&["/usr/local/bin/etcd"]),
                strs(&["PATH=/usr/local/bin"]),
            )
        }
        // A container of it fails to start, as one whose image lacks its program does.
        Image::NoEntrypoint => (strs(&["/nonexistent/lbc-no-entrypoint"]), Vec::new()),
        Image::Cluster => cluster(&mut entries, inputs)?,
    };
    Ok(Recipe {
        tag: image.tag(),
        entries,
        entrypoint,
        env,
    })
}

/// A controller's image: its program as `/usr/local/bin/<name>` (the entrypoint), with the C
/// libraries it links, and `/tmp`.
///
/// # Errors
/// `ldd` cannot list a dynamic program's libraries.
pub(super) fn program_recipe(
    program: &Path,
    name: &str,
    strip: bool,
    tag: impl FnOnce(&Recipe) -> String,
) -> Result<Recipe, ImageError> {
    let inside = format!("usr/local/bin/{name}");
    let mut entries = vec![
        ("tmp".to_owned(), Entry::Dir),
        (
            inside.clone(),
            Entry::File {
                from: program.to_owned(),
                strip,
            },
        ),
    ];
    // glibc without it asks DNS before /etc/hosts, where a Pod finds PD's names (seen: each
    // lookup of `basic-pd.<ns>` waited 2.5 s for a nameserver first).
    entries.push((
        "etc/nsswitch.conf".to_owned(),
        Entry::Text("hosts: files dns\n".to_owned()),
    ));
    if !is_static(program) {
        for lib in shared_libraries(program)? {
            let inside = lib.to_string_lossy().trim_start_matches('/').to_owned();
            let from = std::fs::canonicalize(&lib).unwrap_or(lib);
            entries.push((inside, Entry::File { from, strip: false }));
        }
    }
    let mut r = Recipe {
        tag: String::new(),
        entries,
        entrypoint: vec![format!("/{inside}")],
        env: vec!["PATH=/usr/local/bin".to_owned()],
    };
    r.tag = tag(&r);
    Ok(r)
}

/// `lbc serve-cluster` and the control plane's programs, with `lbc`'s C libraries.
fn cluster(
    entries: &mut Vec<(String, Entry)>,
    inputs: &Inputs,
) -> Result<(Vec<String>, Vec<String>), ImageError> {
    let (Some(lbc), Some(apiserver), Some(controller_manager)) =
        (&inputs.lbc, &inputs.apiserver, &inputs.controller_manager)
    else {
        return Err(ImageError::Missing(
            "the cluster image needs lbc and the control plane",
        ));
    };
    require_static(&inputs.fake_br_static)?;
    require_static(&inputs.busybox)?;
    for (name, from, strip) in [
        ("lbc", lbc, true),
        ("fake-br", &inputs.fake_br_static, true),
        ("etcd", &inputs.etcd, false),
        ("kube-apiserver", apiserver, false),
        ("kube-controller-manager", controller_manager, false),
    ] {
        entries.push((
            format!("usr/local/bin/{name}"),
            Entry::File {
                from: from.clone(),
                strip,
            },
        ));
    }
    for lib in shared_libraries(lbc)? {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_owned();
        let from = std::fs::canonicalize(&lib).unwrap_or(lib);
        entries.push((inside, Entry::File { from, strip: false }));
    }
    busybox(entries, &inputs.busybox);
    entries.push(("root".into(), Entry::Dir));
    let env = [
        "PATH=/usr/local/bin:/bin",
        "HOME=/root",
        "KUBEBUILDER_ASSETS=/usr/local/bin",
        "LBC_ETCD_BIN=/usr/local/bin/etcd",
        "LBC_FAKE_BR_BIN=/usr/local/bin/fake-br",
    ];
    Ok((
        vec!["/usr/local/bin/lbc".into(), "serve-cluster".into()],
        env.iter().map(|s| (*s).to_owned()).collect(),
    ))
}

fn busybox(entries: &mut Vec<(String, Entry)>, busybox: &Path) {
    entries.push((
        "bin/busybox".into(),
        Entry::File {
            from: busybox.to_owned(),
            strip: false,
        },
    ));
    for applet in BUSYBOX_APPLETS {
        entries.push((format!("bin/{applet}"), Entry::Symlink("busybox".into())));
    }
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
pub(super) fn shared_libraries(path: &Path) -> Result<Vec<PathBuf>, ImageError> {
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

/// A fingerprint of a recipe: its configuration and each input's path, size and mtime (a
/// rebuild of an input changes its mtime; hashing 300 MB each time would not pay).
pub(super) fn fingerprint(r: &Recipe) -> String {
    let mut h = Sha256::new();
    for c in r.entrypoint.iter().chain(r.env.iter()) {
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
            Entry::Text(t) => h.update(format!("text {t}")),
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
    fn fingerprints_follow_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "one").unwrap();
        let r = Recipe {
            tag: Image::FakeBr.tag(),
            entries: vec![(
                "bin/a".into(),
                Entry::File {
                    from: a.clone(),
                    strip: false,
                },
            )],
            entrypoint: vec!["/bin/a".into()],
            env: vec![],
        };
        let before = fingerprint(&r);
        assert_eq!(before, fingerprint(&r));
        std::fs::write(&a, "three").unwrap();
        assert_ne!(before, fingerprint(&r));
    }

    #[test]
    fn docker_changes_render_the_configuration() {
        let r = Recipe {
            tag: Image::FakeBr.tag(),
            entries: vec![],
            entrypoint: vec!["/br".into(), "x".into()],
            env: vec!["PATH=/bin".into()],
        };
        assert_eq!(
            r.docker_changes(),
            vec![
                r#"ENTRYPOINT ["/br","x"]"#.to_owned(),
                "ENV PATH=/bin".to_owned()
            ]
        );
    }
}
