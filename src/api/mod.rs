//! The `pingcap.com/v1alpha1` `Backup` custom resource, spelled as TiDB Operator spells it.
//!
//! Shared by every other module; depends on nothing of ours.

mod backup;
mod crd;
mod status_update;

pub use backup::*;
pub use crd::{backup_crd, backup_crd_yaml};
pub use status_update::{condition, upsert_condition};
