//! `lbc-api`: the vocabulary shared by the harness, the reference controller and fake-br —
//! and nothing else. The `pingcap.com/v1alpha1` `Backup` as TiDB Operator spells it, its
//! CRD, the operator's status-update model (what backup-manager and the controller both
//! write), the kernel's key layout and a client for it, fake-br's plan, the names of Jobs,
//! and Go duration strings.
//!
//! The harness's judge deliberately does **not** take the contract's arithmetic from here
//! (backoff, policy defaults): it writes it again from `CONTRACT.md`, so a bug in the system
//! under test cannot move the yardstick.

mod backup;
mod crd;
pub mod duration;
pub mod kernel;
pub mod names;
pub mod plan;
mod status_update;
pub mod status_write;

pub use backup::*;
pub use crd::{backup_crd, backup_crd_yaml};
pub use status_update::{condition, upsert_condition};
