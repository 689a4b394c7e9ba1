use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use super::args::CONTROL_PLANE_GOGC;
use super::processes::address_in_use;
use super::readiness::passed_checks;
use super::*;

#[test]
fn port_in_use_is_named_with_the_fix() {
    let held = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let err = claim_port("kube-apiserver", port).unwrap_err().to_string();
    assert!(
        err.contains(&format!("port {port} for kube-apiserver is already in use")),
        "{err}"
    );
    assert!(err.contains("choose another port"), "{err}");
    assert!(claim_port("etcd", 0).unwrap() > 0);
}

#[test]
fn the_control_plane_gets_a_lazier_collector_unless_the_user_chose_one() {
    assert_eq!(
        go_runtime_env(false),
        [(OsString::from("GOGC"), OsString::from(CONTROL_PLANE_GOGC))]
    );
    assert!(go_runtime_env(true).is_empty());
}

#[test]
fn a_kernel_ticks_slower_than_the_api_servers_etcd() {
    let args = |tick| etcd_args("e", Path::new("/d"), 1, 2, tick).join(" ");
    assert!(args(EtcdTick::Fast).contains("--heartbeat-interval=10 --election-timeout=100"));
    assert!(args(EtcdTick::Idle).contains("--heartbeat-interval=25 --election-timeout=125"));
    // etcd refuses an election timeout under 5 heartbeats.
    for tick in [EtcdTick::Fast, EtcdTick::Idle] {
        let ms = |flag: &str| -> u32 {
            let a = args(tick);
            let v = a.split(flag).nth(1).and_then(|r| r.split(' ').next());
            v.and_then(|v| v.parse().ok()).expect("the flag")
        };
        assert!(ms("--election-timeout=") >= 5 * ms("--heartbeat-interval="));
    }
}

#[test]
fn passed_readyz_checks_are_read() {
    let body = "[+]ping ok\n[+]etcd ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[+]poststarthook/crd-informer-synced ok\nreadyz check failed\n";
    assert_eq!(
        passed_checks(body).collect::<Vec<_>>(),
        ["ping", "etcd", "poststarthook/crd-informer-synced"]
    );
}

#[test]
fn address_in_use_is_found_in_go_logs() {
    let log = "E1129 error: failed to create listener: failed to listen on 127.0.0.1:6443: \
               listen tcp 127.0.0.1:6443: bind: address already in use\n";
    assert_eq!(address_in_use(log), Some(6443));
    assert_eq!(address_in_use("all good"), None);
}
