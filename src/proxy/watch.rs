//! Relaying a watch stream event by event: in order, each event held for the stream's
//! current delay, the stream ended when a fault closes it. A JSON stream is cut at
//! newlines (one event per line, as the apiserver writes it); any other stream is relayed
//! chunk by chunk.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fault::{FaultBoard, WatchCtl};
use super::log::ApiLog;
use super::request::RequestInfo;
use super::{BoxError, ProxyBody};

/// The body to give the controller for the upstream watch `upstream`.
pub(super) fn relay(
    upstream: kube::client::Body,
    json: bool,
    info: RequestInfo,
    board: FaultBoard,
    log: ApiLog,
    seq: u64,
) -> ProxyBody {
    let (id, ctl) = board.open_watch(info);
    // Reader → (release time, event) → writer → the controller.
    let (queue_tx, queue_rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let (out_tx, out_rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(64);
    tokio::spawn(read(upstream, json, ctl.clone(), queue_tx));
    tokio::spawn(write(queue_rx, out_tx, board, id, log, seq));
    let stream = futures::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

async fn read(
    mut upstream: kube::client::Body,
    json: bool,
    ctl: Arc<WatchCtl>,
    queue: mpsc::UnboundedSender<(Instant, Bytes)>,
) {
    let mut partial = BytesMut::new();
    loop {
        if ctl.closed.load(Ordering::SeqCst) {
            return;
        }
        let frame = tokio::select! {
            f = upstream.frame() => f,
            () = ctl.close.notified() => return,
            // The controller went away (its connection, or the proxy, closed): let the
            // apiserver's watch go now, not at its timeout.
            () = queue.closed() => return,
        };
        let Some(Ok(frame)) = frame else {
            break;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let release = Instant::now() + ctl.delay();
        if !json {
            if queue.send((release, data)).is_err() {
                return;
            }
            continue;
        }
        partial.extend_from_slice(&data);
        while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
            let event = partial.split_to(nl + 1).freeze();
            if queue.send((release, event)).is_err() {
                return;
            }
        }
    }
    if !partial.is_empty() {
        let _ = queue.send((Instant::now() + ctl.delay(), partial.freeze()));
    }
}

async fn write(
    mut queue: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    out: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    board: FaultBoard,
    id: u64,
    log: ApiLog,
    seq: u64,
) {
    let mut n = 0u64;
    while let Some((release, event)) = queue.recv().await {
        tokio::time::sleep_until(release).await;
        if out.send(Ok(Frame::data(event))).await.is_err() {
            break;
        }
        n += 1;
        log.update(seq, |c| c.watch_events = Some(n));
    }
    board.close_watch(id);
}
