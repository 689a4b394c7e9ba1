//! `lbc replay`: a field bug report in, a suite out. [`input`] reads what `kubectl` and
//! `etcdctl` printed; [`infer`] turns it into the situation (policy, failed attempts,
//! kernel state) and the contract's expectations; the written suite is linted like any
//! other before it is kept.

pub mod infer;
pub mod input;

use std::path::{Path, PathBuf};

/// Why a report could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error(transparent)]
    Infer(#[from] infer::InferError),
    #[error("the written suite does not lint (a bug of `lbc replay`): {0}")]
    Lint(crate::suite::load::SuiteErrors),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub suite: crate::suite::model::Suite,
    pub yaml: String,
    pub situation: infer::Situation,
    pub sources: Vec<String>,
    /// Files that gave nothing, each with why.
    pub skipped: Vec<String>,
}

/// A suite name (it becomes a namespace: a DNS label) from the output file's stem:
/// lowercase, other characters as `-`, at most 50 characters; `replay-<backup>` if nothing
/// is left.
pub fn suite_name(stem: &str, backup: &str) -> String {
    let clean = |s: &str| -> String {
        let mapped: String = s
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let trimmed: String = mapped.trim_matches('-').chars().take(50).collect();
        trimmed.trim_end_matches('-').to_owned()
    };
    let name = clean(stem);
    if name.is_empty() {
        clean(&format!("replay-{backup}"))
    } else {
        name
    }
}

/// Read `files`, infer, write the suite to `out` (checked by the suite loader first).
///
/// # Errors
/// A malformed report, nothing to replay, or a write failure.
pub fn replay(files: &[PathBuf], out: &Path, root: &Path) -> Result<Replayed, ReplayError> {
    let report = input::read(files)?;
    let situation = infer::situation(&report)?;
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = suite_name(&stem, &situation.backup);
    let yaml = infer::suite_yaml(&situation, &name);
    let suite = crate::suite::load::load_str(out, &yaml, root).map_err(ReplayError::Lint)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ReplayError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(out, &yaml).map_err(|source| ReplayError::Write {
        path: out.to_owned(),
        source,
    })?;
    Ok(Replayed {
        suite,
        yaml,
        situation,
        sources: report.sources,
        skipped: report.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names_are_dns_labels() {
        assert_eq!(suite_name("lb1.v2", "lb1"), "lb1-v2");
        assert_eq!(suite_name("Replay_LB1", "lb1"), "replay-lb1");
        assert_eq!(suite_name("...", "db.prod"), "replay-db-prod");
        assert_eq!(suite_name(&"x".repeat(80), "b").len(), 50);
    }
}
