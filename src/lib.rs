//! logbackup-conformance: an end-to-end conformance harness for TiDB Operator's log backup
//! retry behaviour.
//!
//! Dependencies flow one way: suite model → runner → cluster / controller / kernel →
//! recorder → oracle → snapshot / report; [`api`] is shared by all.

pub mod api;
pub mod bench;
pub mod bench_retry;
pub mod cluster;
pub mod controller;
pub mod controller_process;
pub mod fake_br;
pub mod kernel;
pub mod oracle;
pub mod recorder;
pub mod report;
pub mod retry;
pub mod runner;
pub mod smoke;
pub mod snapshot;
pub mod status_write;
pub mod subcommand;
pub mod suite;
