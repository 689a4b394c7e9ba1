//! Benchmarks that print figures: warm boot ([`boot`]), retry punctuality at scale
//! ([`retry`]), the whole run against its longest suite ([`run`]), and the node agent's
//! process and Docker runtimes ([`runtime`]). No test times anything.

pub mod audit;
pub mod boot;
pub mod proxy;
pub mod retry;
pub mod run;
pub mod runtime;
