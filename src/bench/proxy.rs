//! The API proxy's cost and faithfulness: the same requests direct and through the proxy
//! (added latency per request, median and p99), and the same watch seen both ways (every
//! event, in the same order).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};

use super::run::quantile;
use crate::cluster::RunningCluster;
use crate::proxy::{ApiProxy, Latency};

/// What the bench measured.
#[derive(Debug, Clone)]
pub struct ProxyReport {
    pub requests: usize,
    /// Per-request wall, ms: (median, p99), direct and through the proxy.
    pub direct_ms: (f64, f64),
    pub proxied_ms: (f64, f64),
    /// Median of the paired differences (proxy − direct), ms.
    pub added_median_ms: f64,
    /// Watch events seen direct / through the proxy, and whether the sequences agree.
    pub watch_events: (usize, usize),
    pub watch_same: bool,
}

/// Run it on `cluster` with `requests` GETs each way and `objects` ConfigMaps watched.
///
/// # Errors
/// The cluster or the proxy cannot be reached.
pub async fn proxy_bench(
    cluster: &RunningCluster,
    requests: usize,
    objects: usize,
) -> anyhow::Result<ProxyReport> {
    let direct = cluster.client()?;
    let proxy = ApiProxy::start(&cluster.config, None, Latency::default()).await?;
    let kc = kube::config::Kubeconfig::from_yaml(&proxy.kubeconfig_yaml())?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let proxied = Client::try_from(config)?;
    let ns = "lbc-bench-proxy";
    let _ = crate::smoke::ensure_namespace(&direct, ns).await;

    // Warm both paths (connections, TLS).
    let namespaces: Api<Namespace> = Api::all(direct.clone());
    let namespaces_p: Api<Namespace> = Api::all(proxied.clone());
    for _ in 0..20 {
        namespaces.get(ns).await?;
        namespaces_p.get(ns).await?;
    }
    let (mut d, mut p, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..requests {
        // Interleaved, so drift in the machine's load hits both alike.
        let t = Instant::now();
        namespaces.get(ns).await?;
        let a = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        namespaces_p.get(ns).await?;
        let b = t.elapsed().as_secs_f64() * 1e3;
        d.push(a);
        p.push(b);
        diff.push(b - a);
    }
    for v in [&mut d, &mut p, &mut diff] {
        v.sort_by(f64::total_cmp);
    }
    let q = |v: &[f64], x| quantile(v, x).unwrap_or_default();

    // One watch each way over the same changes.
    let cms: Api<ConfigMap> = Api::namespaced(direct.clone(), ns);
    let cms_p: Api<ConfigMap> = Api::namespaced(proxied.clone(), ns);
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let wp = WatchParams::default().timeout(290);
    let mut sd = cms.watch(&wp, &rv).await?.boxed();
    let mut sp = cms_p.watch(&wp, &rv).await?.boxed();
    let collect =
        |mut s: futures::stream::BoxStream<'static, kube::Result<WatchEvent<ConfigMap>>>,
         want: usize| async move {
            let mut seen = Vec::new();
            while seen.len() < want {
                match tokio::time::timeout(Duration::from_secs(30), s.next()).await {
                    Ok(Some(Ok(e))) => seen.push(describe(&e)),
                    Ok(Some(Err(_))) => {}
                    _ => break,
                }
            }
            seen
        };
    // Each object: create, update, delete.
    let want = objects * 3;
    let hd = tokio::spawn(collect(sd, want));
    let hp = tokio::spawn(collect(sp, want));
    for i in 0..objects {
        let name = format!("cm-{i}");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.clone());
        cm.data = Some(BTreeMap::from([("n".to_owned(), "0".to_owned())]));
        let mut made = cms.create(&PostParams::default(), &cm).await?;
        made.data = Some(BTreeMap::from([("n".to_owned(), "1".to_owned())]));
        cms.replace(&name, &PostParams::default(), &made).await?;
        cms.delete(&name, &DeleteParams::default()).await?;
    }
    let (seen_d, seen_p) = (hd.await?, hp.await?);
    sd = futures::stream::empty().boxed();
    sp = futures::stream::empty().boxed();
    drop((sd, sp));
    let _ = Api::<Namespace>::all(direct.clone())
        .delete(ns, &DeleteParams::default())
        .await;
    Ok(ProxyReport {
        requests,
        direct_ms: (q(&d, 0.5), q(&d, 0.99)),
        proxied_ms: (q(&p, 0.5), q(&p, 0.99)),
        added_median_ms: q(&diff, 0.5),
        watch_events: (seen_d.len(), seen_p.len()),
        watch_same: seen_d == seen_p && seen_d.len() == want,
    })
}

fn describe(e: &WatchEvent<ConfigMap>) -> String {
    match e {
        WatchEvent::Added(o) => format!(
            "ADDED {} {}",
            o.name_any(),
            o.resource_version().unwrap_or_default()
        ),
        WatchEvent::Modified(o) => format!(
            "MODIFIED {} {}",
            o.name_any(),
            o.resource_version().unwrap_or_default()
        ),
        WatchEvent::Deleted(o) => format!(
            "DELETED {} {}",
            o.name_any(),
            o.resource_version().unwrap_or_default()
        ),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}
