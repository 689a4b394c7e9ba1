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
    }
    Ok(())
}
