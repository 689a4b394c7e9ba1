//! Benchmarks that print figures: warm boot ([`boot`]), retry punctuality at scale
//! ([`retry`]), and the whole run against its longest suite ([`run`]). No test times anything.

pub mod audit;
pub mod boot;
pub mod proxy;
pub mod retry;
pub mod run;
