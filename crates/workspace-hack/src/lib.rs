//! No code: this crate only unifies the workspace's dependency features (see its
//! Cargo.toml).
