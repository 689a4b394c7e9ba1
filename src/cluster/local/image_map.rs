//! Image name → local executable, the node agent's stand-in for a container runtime.

use crate::programs::process::is_executable;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An image every node knows whose entrypoint is missing (see its definition).
pub use crate::container::images::NO_ENTRYPOINT;
/// Where [`NO_ENTRYPOINT`]'s program would be: nowhere.
const MISSING_ENTRYPOINT: &str = "/nonexistent/lbc-no-entrypoint";

/// A bad `--image-map` entry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageMapError {
    #[error("image map entry {entry:?}: expected IMAGE=/path/to/executable (or IMAGE=host)")]
    Syntax { entry: String },
    #[error("image map entry {entry:?}: {path} is not an executable file")]
    NotExecutable { entry: String, path: PathBuf },
}

/// Which local program stands in for which image. The program is the image's entrypoint
/// and its whole filesystem: a container runs it with the container's `args`, and a
/// `command` (which names a program *inside* the image) is passed to it as leading
/// arguments — never run on the host. Only an image mapped to `host` (`IMAGE=host`) runs
/// its `command` as a host program.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageMap {
    entries: BTreeMap<String, PathBuf>,
    /// Images whose `command` runs on the host.
    host: std::collections::BTreeSet<String>,
}

impl ImageMap {
    /// Map `image` (with or without a tag) to `program`.
    pub fn insert(&mut self, image: impl Into<String>, program: impl Into<PathBuf>) {
        self.entries.insert(image.into(), program.into());
    }

    /// Map `image` to `program` unless an entry already resolves it (a user's `--image-map`
    /// wins over a default).
    pub fn insert_missing(&mut self, image: &str, program: impl Into<PathBuf>) {
        if self.resolve(image).is_none() {
            self.insert(image, program);
        }
    }

    /// `image`'s `command` runs as a host program (and without one, `/bin/sh`).
    pub fn insert_host(&mut self, image: impl Into<String>) {
        let image = image.into();
        self.entries.insert(image.clone(), PathBuf::from("/bin/sh"));
        self.host.insert(image);
    }

    /// Whether `image`'s `command` runs on the host (an explicit `IMAGE=host` entry).
    pub fn runs_host_commands(&self, image: &str) -> bool {
        self.host.contains(image) || self.host.contains(repository(image))
    }

    /// Parse `IMAGE=PATH` (or `IMAGE=host`) entries, checking that each path is executable.
    ///
    /// # Errors
    /// The first malformed entry or non-executable path, named.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, ImageMapError> {
        let mut map = Self::default();
        for entry in entries {
            let (image, path) = entry
                .split_once('=')
                .filter(|(i, p)| !i.is_empty() && !p.is_empty())
                .ok_or_else(|| ImageMapError::Syntax {
                    entry: entry.to_owned(),
                })?;
            if path == "host" {
                map.insert_host(image);
                continue;
            }
            let path = PathBuf::from(path);
            if !is_executable(&path) {
                return Err(ImageMapError::NotExecutable {
                    entry: entry.to_owned(),
                    path,
                });
            }
            map.insert(image, path);
        }
        Ok(map)
    }

    /// The program for `image`: an exact match first, then the image without its tag or
    /// digest (`pingcap/br:v8.1.0` → `pingcap/br`).
    pub fn resolve(&self, image: &str) -> Option<&Path> {
        if image == NO_ENTRYPOINT {
            return Some(Path::new(MISSING_ENTRYPOINT));
        }
        if let Some(p) = self.entries.get(image) {
            return Some(p);
        }
        self.entries.get(repository(image)).map(PathBuf::as_path)
    }

    /// The mapped image names, for error messages.
    pub fn images(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }
}

/// `registry/repo:tag@digest` → `registry/repo` (a `:` after the last `/` is a tag).
pub(crate) fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[slash..].find(':') {
        Some(colon) => &no_digest[..slash + colon],
        None => no_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("pingcap/br:v8.1.0", "pingcap/br")]
    #[case("pingcap/br", "pingcap/br")]
    #[case("localhost:5000/br:v1", "localhost:5000/br")]
    #[case("localhost:5000/br", "localhost:5000/br")]
    #[case("busybox@sha256:abc", "busybox")]
    fn repository_strips_tag_and_digest(#[case] image: &str, #[case] repo: &str) {
        assert_eq!(repository(image), repo);
    }

    #[test]
    fn exact_then_untagged_match() {
        let mut m = ImageMap::default();
        m.insert("pingcap/br", "/bin/true");
        m.insert("pingcap/br:special", "/bin/false");
        assert_eq!(m.resolve("pingcap/br:v1"), Some(Path::new("/bin/true")));
        assert_eq!(
            m.resolve("pingcap/br:special"),
            Some(Path::new("/bin/false"))
        );
        assert_eq!(m.resolve("other"), None);
    }

    #[test]
    fn host_entries_are_explicit() {
        let m = ImageMap::parse(["busybox=host", "pingcap/br=/bin/true"]).unwrap();
        assert!(m.runs_host_commands("busybox:1.36"));
        assert!(!m.runs_host_commands("pingcap/br:v8.1.0"));
        assert_eq!(m.resolve("busybox"), Some(Path::new("/bin/sh")));
    }

    #[rstest]
    #[case("noequals", "expected IMAGE=/path/to/executable")]
    #[case("=/bin/sh", "expected IMAGE=/path/to/executable")]
    #[case("img=/nonexistent/prog", "/nonexistent/prog is not an executable file")]
    fn bad_entries_are_named(#[case] entry: &str, #[case] message: &str) {
        let err = ImageMap::parse([entry]).unwrap_err().to_string();
        assert!(err.contains(message), "{err}");
        assert!(err.contains(entry), "{err}");
    }
}
