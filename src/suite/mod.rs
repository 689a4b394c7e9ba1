//! The suite model: what a suite file says, how it is read and checked, and its JSON Schema.
//! Pure: no cluster, no I/O beyond reading the file.

pub mod duration;
pub mod load;
pub mod locate;
pub mod model;
pub mod validate;

pub use duration::GoDuration;
pub use load::{SuiteError, SuiteErrors, load_file, load_str};
pub use model::Suite;

/// The JSON Schema of suite files, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Suite)).unwrap_or_default()
}

/// Suite files in `dir` (`*.yaml`, `*.yml`), sorted.
///
/// # Errors
/// The directory cannot be read.
pub fn discover(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}
