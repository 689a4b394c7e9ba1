use super::*;
use std::io::{Read, Write};

/// A kernel whose first connection is dropped unanswered (a kept connection gone stale
/// looks the same to the client): the read succeeds on a new connection.
#[tokio::test]
async fn a_kernel_read_is_tried_again_on_a_new_connection_after_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            if i == 0 {
                continue; // dropped: closed before any answer
            }
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let ctx = Ctx::new(
        Client::try_from(config).unwrap(),
        ControllerConfig {
            kernel: KernelResolver {
                default: Some(format!("127.0.0.1:{port}")),
                by_cluster: HashMap::new(),
            },
            ..ControllerConfig::default()
        },
        Metrics::new().unwrap(),
        Arc::new(SystemClock),
    );
    let backup: Backup = serde_json::from_value(serde_json::json!({
        "apiVersion": "pingcap.com/v1alpha1", "kind": "Backup",
        "metadata": {"name": "lb1", "namespace": "ns"},
        "spec": {"backupMode": "log", "br": {"cluster": "basic"}},
    }))
    .unwrap();
    let task = ctx.read_kernel_task(&backup, "lb1").await;
    assert!(task.is_ok(), "{task:?}");
    assert!(task.unwrap().info.is_none(), "an empty answer: no task");
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 4);
}
