//! `lbc image build|save`: the project's container images.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use logbackup_conformance::container::Docker;
use logbackup_conformance::container::archive;
use logbackup_conformance::container::images::{self, Image};

/// The project's images, by short name.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageName {
    FakeBr,
    Br,
    Cluster,
    Pause,
    Etcd,
    NoEntrypoint,
}

impl From<ImageName> for Image {
    fn from(n: ImageName) -> Self {
        match n {
            ImageName::FakeBr => Image::FakeBr,
            ImageName::Br => Image::Br,
            ImageName::Cluster => Image::Cluster,
            ImageName::Pause => Image::Pause,
            ImageName::Etcd => Image::Etcd,
            ImageName::NoEntrypoint => Image::NoEntrypoint,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum ImageCommand {
    /// Build the images FROM scratch (static fake-br, busybox, the control plane) with
    /// `docker import`; an image whose inputs did not change is kept.
    Build {
        /// Which (default: all).
        #[arg(value_enum)]
        images: Vec<ImageName>,
    },
    /// Write the images as archives for `kind load image-archive` / `k3s ctr images import`
    /// / `ctr -n k8s.io images import` (no Docker needed: the same bytes from the same inputs).
    Save {
        /// Which (default: fake-br, br and etcd: what a cluster's Jobs and an in-cluster
        /// kernel run).
        #[arg(value_enum)]
        images: Vec<ImageName>,
        /// Directory to write into.
        #[arg(long, default_value = "target/lbc-images")]
        dir: PathBuf,
    },
    /// Put a controller's program in an image FROM scratch (`/usr/local/bin/<name>`, its
    /// C libraries, `/tmp`), tagged `lbc.local/<name>:<fingerprint>`, as an archive; with
    /// --kind, --k3s-container or --containerd also load it. Prints the tag: give it as the
    /// target's `deployment.image` on a cluster the harness did not start.
    BuildTarget {
        /// The controller's program (a static Go binary, or one with its libraries found by
        /// `ldd`).
        #[arg(long, value_name = "PATH")]
        bin: PathBuf,
        /// The program's name in the image (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Directory to write into.
        #[arg(long, default_value = "target/lbc-images")]
        dir: PathBuf,
        /// Strip debug info from the program.
        #[arg(long)]
        strip: bool,
        #[command(flatten)]
        into: LoadInto,
    },
    /// Load the images into a cluster's nodes: a kind cluster (`kind load image-archive`),
    /// a k3s container (`k3s ctr images import` inside it), or any containerd by its socket
    /// (`ctr -n k8s.io images import`; a real node of `lbc up --node kubelet` has
    /// `<run dir>/node/cd.sock`).
    Load {
        /// Which (default: fake-br, br and etcd).
        #[arg(value_enum)]
        images: Vec<ImageName>,
        #[command(flatten)]
        into: LoadInto,
    },
}

/// Where `lbc image load` and `lbc image build-target` load images.
#[derive(clap::Args, Debug)]
pub(crate) struct LoadInto {
    /// The kind cluster's name.
    #[arg(long, value_name = "NAME", group = "into")]
    kind: Option<String>,
    /// The Docker container k3s runs in.
    #[arg(long, value_name = "CONTAINER", group = "into")]
    k3s_container: Option<String>,
    /// A containerd's socket.
    #[arg(long, value_name = "SOCKET", group = "into")]
    containerd: Option<PathBuf>,
}

impl LoadInto {
    fn any(&self) -> bool {
        self.kind.is_some() || self.k3s_container.is_some() || self.containerd.is_some()
    }

    /// Load `archive` (`tag`, for messages).
    fn load(&self, archive: &std::path::Path, tag: &str) -> Result<()> {
        for mut cmd in load_command(
            archive,
            self.kind.as_deref(),
            self.k3s_container.as_deref(),
            self.containerd.as_deref(),
        )? {
            let out = cmd
                .output()
                .map_err(|e| anyhow::anyhow!("running {:?}: {e}", cmd.get_program()))?;
            if !out.status.success() {
                anyhow::bail!(
                    "loading {tag} failed: {:?} said {}",
                    cmd.get_program(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }
}

/// Where `lbc image load` puts the images.
fn load_command(
    archive: &std::path::Path,
    kind: Option<&str>,
    k3s: Option<&str>,
    containerd: Option<&std::path::Path>,
) -> Result<Vec<std::process::Command>> {
    use std::process::Command;
    let file = archive.display().to_string();
    Ok(match (kind, k3s, containerd) {
        (Some(name), _, _) => {
            let mut c = Command::new("kind");
            c.args(["load", "image-archive", &file, "--name", name]);
            vec![c]
        }
        (_, Some(container), _) => {
            let inside = format!(
                "/tmp/{}",
                archive.file_name().unwrap_or_default().to_string_lossy()
            );
            let mut cp = Command::new("docker");
            cp.args(["cp", &file, &format!("{container}:{inside}")]);
            let mut import = Command::new("docker");
            import.args([
                "exec", container, "k3s", "ctr", "-n", "k8s.io", "images", "import", &inside,
            ]);
            vec![cp, import]
        }
        (_, _, Some(socket)) => {
            let mut c = Command::new("ctr");
            c.arg("--address").arg(socket);
            c.args(["-n", "k8s.io", "images", "import", &file]);
            vec![c]
        }
        _ => anyhow::bail!(
            "lbc image load needs --kind NAME, --k3s-container NAME or --containerd SOCKET"
        ),
    })
}

/// Build `images` (kept when up to date), printing one line each.
pub(crate) fn build_images(docker: &Docker, images: &[Image]) -> Result<()> {
    let inputs = images::Inputs::locate()?;
    for b in images::build(docker, &inputs, images)? {
        eprintln!(
            "image {}: {} ({:.1}s)",
            b.tag,
            if b.rebuilt { "built" } else { "up to date" },
            b.seconds
        );
    }
    Ok(())
}

pub(crate) fn image_command(what: ImageCommand) -> Result<()> {
    match what {
        ImageCommand::Build { images } => {
            let docker = Docker::connect()?;
            let images: Vec<Image> = if images.is_empty() {
                Image::ALL.to_vec()
            } else {
                images.into_iter().map(Image::from).collect()
            };
            let inputs = images::Inputs::locate()?;
            for b in images::build(&docker, &inputs, &images)? {
                let size = docker
                    .output(["image", "inspect", "--format", "{{.Size}}", &b.tag])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .map_or_else(String::new, |b| format!(", {:.1} MB", b as f64 / 1e6));
                println!(
                    "{} {} ({:.1}s{size}) {}",
                    b.tag,
                    if b.rebuilt { "built" } else { "up to date" },
                    b.seconds,
                    &b.id[..b.id.len().min(19)]
                );
            }
        }
        ImageCommand::Save { images, dir } => {
            let images: Vec<Image> = if images.is_empty() {
                vec![Image::FakeBr, Image::Br, Image::Etcd]
            } else {
                images.into_iter().map(Image::from).collect()
            };
            let inputs = images::Inputs::locate_for(&images)?;
            for image in images {
                let path = archive::write(image, &inputs, &dir)?;
                println!("{}", path.display());
            }
        }
        ImageCommand::Load { images, into } => {
            let images: Vec<Image> = if images.is_empty() {
                vec![Image::FakeBr, Image::Br, Image::Etcd]
            } else {
                images.into_iter().map(Image::from).collect()
            };
            let cache = logbackup_conformance::programs::k8s::default_cache_root();
            if !into.any() {
                anyhow::bail!(
                    "lbc image load needs --kind NAME, --k3s-container NAME or --containerd SOCKET"
                );
            }
            for (image, path) in images.iter().zip(archive::write_all(&images, &cache)?) {
                into.load(&path, &image.tag())?;
                println!("{} loaded", image.tag());
            }
        }
        ImageCommand::BuildTarget {
            bin,
            name,
            dir,
            strip,
            into,
        } => {
            let name = name.unwrap_or_else(|| {
                bin.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let image = archive::write_program(&bin, &name, strip, &dir)?;
            eprintln!("{}", image.archive.display());
            if into.any() {
                into.load(&image.archive, &image.tag)?;
                eprintln!("{} loaded", image.tag);
            }
            println!("{}", image.tag);
        }
    }
    Ok(())
}
