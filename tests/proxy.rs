//! The API proxy against a real apiserver: a watch through it sees every event a direct
//! watch sees, in the same order (the bench prints the latency figures; nothing is timed
//! here).
#![cfg(feature = "e2e")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up panics by design

mod common;

use std::sync::OnceLock;

#[tokio::test]
async fn a_watch_through_the_proxy_loses_and_reorders_nothing() {
    static SHARED: OnceLock<common::Shared> = OnceLock::new();
    let cluster = common::shared_cluster(
        &SHARED,
        logbackup_conformance::cluster::local::LocalConfig::default,
    );
    let r = logbackup_conformance::bench::proxy::proxy_bench(cluster, 50, 40)
        .await
        .unwrap();
    assert_eq!(r.watch_events, (120, 120), "{r:?}");
    assert!(r.watch_same, "{r:?}");
}
