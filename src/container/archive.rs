//! Image archives written without Docker: one layer (the recipe's root filesystem) in the
//! layout `docker save` writes, which containerd (`ctr images import`), kind (`kind load
//! image-archive`) and k3s import. Deterministic: the same inputs give the same bytes, so the
//! same image id on every machine.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::images::{Image, ImageError, Inputs, io};
use super::recipe::{Recipe, fingerprint, recipe};

/// Write `image`'s archive into `dir` (`<name>-<version>.tar`) unless one made from the same
/// inputs is there already. Returns its path.
///
/// # Errors
/// A missing input, or a file that cannot be written.
pub fn write(image: Image, inputs: &Inputs, dir: &Path) -> Result<PathBuf, ImageError> {
    write_recipe(&recipe(image, inputs)?, &image.archive_name(), dir)
}

/// A controller's image from its program (`/usr/local/bin/<name>` and its C libraries), tagged
/// `lbc.local/<name>:<fingerprint of its inputs>` so a new build is a new image on every
/// node; written into `dir` as `<name>.tar` (kept when its inputs did not change).
///
/// # Errors
/// The program cannot be read, or a file cannot be written.
pub fn write_program(
    program: &Path,
    name: &str,
    strip: bool,
    dir: &Path,
) -> Result<ProgramImage, ImageError> {
    if !crate::programs::process::is_executable(program) {
        return Err(ImageError::Io {
            what: "reading the program",
            path: program.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not an executable file"),
        });
    }
    let name = image_name(name);
    let r = super::recipe::program_recipe(program, &name, strip, |r| {
        format!("{PROGRAM_REPOSITORY}/{name}:{}", fingerprint(r))
    })?;
    let archive = write_recipe(&r, &format!("{name}.tar"), dir)?;
    Ok(ProgramImage {
        tag: r.tag,
        archive,
    })
}

/// Where [`write_program`]'s images are named: nothing any registry serves, so a node never
/// tries to pull one.
pub const PROGRAM_REPOSITORY: &str = "lbc.local";

/// A controller's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramImage {
    pub tag: String,
    pub archive: PathBuf,
}

/// `name` as an image name component: lowercase letters, digits, `-`, `_`, `.`.
pub fn image_name(name: &str) -> String {
    let n: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let n = n
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    if n.is_empty() {
        "controller".to_owned()
    } else {
        n
    }
}

fn write_recipe(r: &Recipe, file_name: &str, dir: &Path) -> Result<PathBuf, ImageError> {
    let print = format!("{FORMAT}-{}", fingerprint(r));
    let path = dir.join(file_name);
    let stamp = dir.join(format!("{file_name}.inputs"));
    if path.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == print) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let scratch = tempfile::Builder::new()
        .prefix(".lbc-archive-")
        .tempdir_in(dir)
        .map_err(io("creating a scratch directory in", dir))?;
    let root = scratch.path().join("rootfs");
    std::fs::create_dir_all(&root).map_err(io("creating", &root))?;
    r.assemble(&root)?;
    let layer = scratch.path().join("layer.tar");
    let layer_sha = write_layer(&root, &layer)?;
    let tmp = scratch.path().join("image.tar");
    write_image(r, &layer, &layer_sha, &print, &tmp)?;
    std::fs::rename(&tmp, &path).map_err(io("moving the archive to", &path))?;
    std::fs::write(&stamp, &print).map_err(io("writing", &stamp))?;
    Ok(path)
}

/// Write the archives of `images` into `<cache_root>/images/<version>/` (once per inputs).
///
/// # Errors
/// A missing input, or a file that cannot be written.
pub fn write_all(images: &[Image], cache_root: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let inputs = Inputs::locate_for(images)?;
    let dir = cache_root.join("images").join(super::images::VERSION);
    images
        .iter()
        .map(|&image| write(image, &inputs, &dir))
        .collect()
}

/// Changes whenever the archive's layout does, so a cached archive of an older layout is
/// written again.
const FORMAT: &str = "2";

/// The root filesystem as a tar with fixed owners and times, its entries sorted and their
/// permission bits kept (`/tmp` stays 1777); its SHA-256 (the diff id).
fn write_layer(root: &Path, out: &Path) -> Result<String, ImageError> {
    let file = std::fs::File::create(out).map_err(io("creating", out))?;
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(false);
    let mut paths = Vec::new();
    collect(root, &mut paths).map_err(io("listing", root))?;
    paths.sort();
    for path in paths {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        {
            use std::os::unix::fs::PermissionsExt;
            h.set_mode(meta.permissions().mode() & 0o7777);
        }
        let name = if meta.is_dir() {
            format!("{}/", rel.display())
        } else {
            rel.display().to_string()
        };
        let added = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io("reading", &path))?;
            tar.append_link(&mut h, &name, &target)
        } else if meta.is_dir() {
            h.set_size(0);
            tar.append_data(&mut h, &name, std::io::empty())
        } else {
            let f = std::fs::File::open(&path).map_err(io("reading", &path))?;
            tar.append_data(&mut h, &name, f)
        };
        added.map_err(io("archiving", &path))?;
    }
    tar.into_inner()
        .and_then(|mut f| f.flush())
        .map_err(io("writing", out))?;
    sha256_file(out)
}

/// Every path under `dir` (not `dir` itself), not following links.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        let is_dir = e.file_type()?.is_dir();
        out.push(path.clone());
        if is_dir {
            collect(&path, out)?;
        }
    }
    Ok(())
}

/// Go's name for this machine's architecture, as image configurations give it.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The image's configuration: what `docker inspect` calls `Config` and the layer's diff id.
fn config_json(r: &Recipe, layer_sha: &str, inputs_print: &str) -> serde_json::Value {
    serde_json::json!({
        "architecture": architecture(),
        "os": "linux",
        "config": {
            "Entrypoint": r.entrypoint,
            "Env": r.env,
            "Labels": { super::INPUTS_LABEL: inputs_print },
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_sha}")] },
        "history": [{ "created_by": "logbackup-conformance" }],
    })
}

fn write_image(
    r: &Recipe,
    layer: &Path,
    layer_sha: &str,
    print: &str,
    out: &Path,
) -> Result<(), ImageError> {
    let config = serde_json::to_vec(&config_json(r, layer_sha, print)).unwrap_or_default();
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_name = format!("{layer_sha}/layer.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [r.tag],
        "Layers": [layer_name],
    }]))
    .unwrap_or_default();
    let file = std::fs::File::create(out).map_err(io("creating", out))?;
    let mut tar = tar::Builder::new(file);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes)
    };
    add(&config_name, &config).map_err(io("writing", out))?;
    add("manifest.json", &manifest).map_err(io("writing", out))?;
    tar.append_path_with_name(layer, &layer_name)
        .map_err(io("writing", out))?;
    tar.into_inner()
        .and_then(|mut f| f.flush())
        .map_err(io("writing", out))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(path).map_err(io("reading", path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io("reading", path))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_has_a_manifest_a_config_and_one_layer_and_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("prog");
        std::fs::write(&prog, "#!/bin/true\n").unwrap();
        let inputs = Inputs {
            fake_br_static: prog.clone(),
            busybox: prog.clone(),
            etcd: prog,
            lbc: None,
            apiserver: None,
            controller_manager: None,
        };
        // The no-entrypoint image needs no input at all.
        let out = dir.path().join("out");
        let path = write(Image::NoEntrypoint, &inputs, &out).unwrap();
        let first = std::fs::read(&path).unwrap();
        let mut names = Vec::new();
        let mut manifest = None;
        let mut ar = tar::Archive::new(first.as_slice());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "manifest.json" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
                manifest = Some(s);
            }
            names.push(name);
        }
        assert_eq!(names.len(), 3, "{names:?}");
        let manifest: serde_json::Value = serde_json::from_str(&manifest.unwrap()).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"][0],
            crate::container::images::NO_ENTRYPOINT
        );
        assert!(names.contains(&manifest[0]["Config"].as_str().unwrap().to_owned()));
        // Written again from scratch: the same bytes.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            std::fs::read(write(Image::NoEntrypoint, &inputs, &out).unwrap()).unwrap(),
            first
        );
    }

    #[test]
    fn a_layer_keeps_modes_and_links_in_a_fixed_order() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/b"), "x").unwrap();
        std::os::unix::fs::symlink("b", root.join("bin/a")).unwrap();
        let out = dir.path().join("layer.tar");
        let sha = write_layer(&root, &out).unwrap();
        assert_eq!(
            sha,
            write_layer(&root, &dir.path().join("again.tar")).unwrap()
        );
        let bytes = std::fs::read(&out).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let entries: Vec<(String, u32, Option<String>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.link_name().unwrap().map(|l| l.display().to_string()),
                )
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        // Sorted, whatever order the directory lists them in.
        assert_eq!(names, ["bin/", "bin/a", "bin/b", "tmp/"]);
        assert_eq!(
            entries[3].1, 0o1777,
            "/tmp keeps its sticky, world-writable mode"
        );
        assert_eq!(entries[1].2.as_deref(), Some("b"));
    }
}
