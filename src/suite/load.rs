//! Reading a suite file: parse errors and validation errors name the file, line, column
//! and field, and suggest the closest valid key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::closest;
use super::model::Suite;
use super::validate::validate;

/// One problem in a suite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Path of the field, e.g. `steps[2].plan.steps[0]` (empty for the document).
    pub field: String,
    pub message: String,
    /// "did you mean …?"
    pub hint: Option<String>,
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (did you mean `{h}`?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for SuiteError {}

impl SuiteError {
    /// A problem of the file as a whole (unreadable, …).
    pub fn whole_file(file: &Path, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            field: String::new(),
            message,
            hint: None,
        }
    }
}

/// All problems of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteErrors(pub Vec<SuiteError>);

impl fmt::Display for SuiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SuiteErrors {}

/// Read and validate `path`. `root` is where fixture paths are resolved (the repository).
///
/// # Errors
/// Every problem found, each located.
pub fn load_file(path: &Path, root: &Path) -> Result<Suite, SuiteErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SuiteErrors(vec![SuiteError {
            file: path.to_owned(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
            hint: None,
        }])
    })?;
    load_str(path, &text, root)
}

/// Parse and validate `text` (named `path` in errors).
///
/// # Errors
/// Every problem found, each located.
pub fn load_str(path: &Path, text: &str, root: &Path) -> Result<Suite, SuiteErrors> {
    // Steps and predicates are enums written as single-key maps (`- create: {…}`), not
    // serde_yaml's default `!tags`.
    let suite: Suite = parse_yaml(path, text)?;
    let problems = validate(&suite, text, root);
    if problems.is_empty() {
        Ok(suite)
    } else {
        Err(SuiteErrors(
            problems
                .into_iter()
                .map(|p| SuiteError {
                    file: path.to_owned(),
                    line: p.line,
                    column: p.column,
                    field: p.field,
                    message: p.message,
                    hint: p.hint,
                })
                .collect(),
        ))
    }
}

/// Deserialize a YAML file of the harness (suite or target), enums written as single-key
/// maps; the error names the file, line, column and field.
///
/// # Errors
/// The first problem, located.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, SuiteErrors> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(
        serde_yaml::Deserializer::from_str(text),
        &mut track,
    );
    serde_yaml::with::singleton_map_recursive::deserialize(de)
        .map_err(|e| SuiteErrors(vec![parse_error(path, &track.path().to_string(), &e)]))
}

fn parse_error(path: &Path, field: &str, inner: &serde_yaml::Error) -> SuiteError {
    let field = if field == "." {
        String::new()
    } else {
        field.to_owned()
    };
    let location = inner.location();
    let mut message = inner.to_string();
    // serde_yaml appends " at line L column C" and may prefix the path: keep the cause.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    // serde_yaml may prefix its own (shorter) path: drop it, ours names the failing key.
    if let Some((prefix, rest)) = message.split_once(": ")
        && !prefix.contains(' ')
        && (prefix == "." || field.starts_with(prefix))
    {
        message = rest.to_owned();
    }
    // Two keys where one names a kind (a step, a predicate, a fault's `inject`).
    if message == "invalid value: map, expected map with a single key" {
        message = "exactly one key expected here: it names the kind (one step, one predicate, \
                   one fault to inject per entry)"
            .into();
    }
    let hint = suggestion(&message);
    SuiteError {
        file: path.to_owned(),
        line: location.as_ref().map(serde_yaml::Location::line),
        column: location.as_ref().map(serde_yaml::Location::column),
        field,
        message,
        hint,
    }
}

/// For "unknown field `x`, expected one of `a`, `b`" (or variant): the closest candidate.
fn suggestion(message: &str) -> Option<String> {
    let unknown = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (word, rest) = unknown.split_once('`')?;
    let candidates: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    closest(word, &candidates)
}
