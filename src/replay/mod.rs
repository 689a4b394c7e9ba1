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
}

/// Read `files`, infer, write the suite to `out` (checked by the suite loader first).
///
/// # Errors
/// A malformed report, nothing to replay, or a write failure.
pub fn replay(files: &[PathBuf], out: &Path, root: &Path) -> Result<Replayed, ReplayError> {
    let report = input::read(files)?;
    let situation = infer::situation(&report)?;
    let name = out.file_stem().map_or_else(
        || format!("replay-{}", situation.backup),
        |s| s.to_string_lossy().into_owned(),
    );
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
    })
}
