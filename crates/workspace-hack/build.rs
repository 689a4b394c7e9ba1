//! Empty: it exists so that Cargo resolves this crate's build-dependencies (syn's features
//! for every proc-macro of the workspace).
fn main() {}
