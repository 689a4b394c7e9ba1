//! Image name → local executable, the node agent's stand-in for a container runtime.

use crate::cluster::process::is_executable;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A bad `--image-map` entry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageMapError {
    #[error("image map entry {entry:?}: expected IMAGE=/path/to/executable")]
    Syntax { entry: String },
    #[error("image map entry {entry:?}: {path} is not an executable file")]
    NotExecutable { entry: String, path: PathBuf },
}

/// Which local program stands in for which image. The program is the image's entrypoint:
/// a container without `command` runs it with the container's `args`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageMap {
    entries: BTreeMap<String, PathBuf>,
}

impl ImageMap {
    /// Map `image` (with or without a tag) to `program`.
    pub fn insert(&mut self, image: impl Into<String>, program: impl Into<PathBuf>) {
        self.entries.insert(image.into(), program.into());
    }

    /// Parse `IMAGE=PATH` entries, checking that each path is executable.
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
fn repository(image: &str) -> &str {
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
