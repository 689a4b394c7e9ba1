//! Benchmarks that print figures: warm boot ([`boot`]) and retry punctuality at scale
//! ([`retry`]). No test times anything.

pub mod audit;
pub mod boot;
pub mod retry;
