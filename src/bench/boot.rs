//! Boot benchmark of the local control plane: wall time to a usable cluster, and the
//! resident memory of all its processes together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::{ClusterError, ClusterProvider};
use crate::programs::process::{processes_with_run_id, rss_kib};

/// One boot's figures.
#[derive(Debug, Clone)]
pub struct BootSample {
    pub boot: Duration,
    /// Peak of the sampled sum of VmRSS over the cluster's processes (and this one), kB.
    pub peak_rss_kib: u64,
    /// Sum of each process's own VmHWM at teardown, kB (an upper bound: peaks need not
    /// coincide).
    pub sum_hwm_kib: u64,
    pub processes: usize,
    pub phases: crate::cluster::BootPhases,
}

/// Summary over several boots.
#[derive(Debug, Clone)]
pub struct BootReport {
    pub samples: Vec<BootSample>,
}

impl BootReport {
    pub fn median_boot(&self) -> Duration {
        let mut v: Vec<Duration> = self.samples.iter().map(|s| s.boot).collect();
        v.sort();
        median(&v).unwrap_or_default()
    }

    /// Each milestone's median time since the start, in the order of those medians; readyz
    /// checks that passed by the API server's first answer are left out (they cost nothing
    /// of their own).
    pub fn median_phases(&self) -> Vec<(String, Duration)> {
        let mut names: Vec<String> = Vec::new();
        for s in &self.samples {
            for (n, _) in &s.phases.0 {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        let mut out: Vec<(String, Duration)> = names
            .into_iter()
            .filter_map(|n| {
                let mut v: Vec<Duration> = self
                    .samples
                    .iter()
                    .filter_map(|s| s.phases.at(&n))
                    .collect();
                v.sort();
                Some((n, median(&v)?))
            })
            .collect();
        let serving = out
            .iter()
            .find(|(n, _)| n == "apiserver serving")
            .map(|(_, d)| *d);
        out.retain(|(n, d)| {
            !(n.starts_with("readyz ")
                && serving.is_some_and(|s| *d <= s + Duration::from_millis(50)))
        });
        out.sort_by_key(|(_, d)| *d);
        out
    }

    pub fn max_peak_rss_kib(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.peak_rss_kib)
            .max()
            .unwrap_or(0)
    }
}

fn median<T: Copy>(sorted: &[T]) -> Option<T> {
    sorted.get(sorted.len() / 2).copied()
}

fn sum_rss(run_id: &str) -> (u64, u64, usize) {
    let mut pids = processes_with_run_id(run_id);
    pids.push(std::process::id());
    let mut rss = 0;
    let mut hwm = 0;
    for pid in &pids {
        if let Some((r, h)) = rss_kib(*pid) {
            rss += r;
            hwm += h;
        }
    }
    (rss, hwm, pids.len())
}

/// Boot the provider `boots` times; after each boot run `after_boot` (e.g. a smoke Job) while
/// memory is sampled, then tear down.
///
/// # Errors
/// A boot fails.
pub async fn boot_bench<F, Fut>(
    provider: &dyn ClusterProvider,
    boots: usize,
    mut after_boot: F,
) -> Result<BootReport, ClusterError>
where
    F: FnMut(kube::Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::new();
    for i in 0..boots {
        let started = Instant::now();
        let cluster = provider.start().await?;
        let boot = started.elapsed();
        let run_id = cluster.run_id.clone();
        let phases = cluster.boot.clone();
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop, run_id) = (peak.clone(), stop.clone(), run_id.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (rss, _, _) = sum_rss(&run_id);
                    peak.fetch_max(rss, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        if let Ok(client) = cluster.client() {
            after_boot(client).await;
        }
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        let (rss, sum_hwm_kib, processes) = sum_rss(&run_id);
        peak.fetch_max(rss, Ordering::Relaxed);
        drop(cluster);
        let s = BootSample {
            boot,
            peak_rss_kib: peak.load(Ordering::Relaxed),
            sum_hwm_kib,
            processes,
            phases,
        };
        eprintln!(
            "boot {}/{boots}: {:.2}s, peak RSS {} MiB ({} processes, sum of per-process peaks {} MiB)",
            i + 1,
            s.boot.as_secs_f64(),
            s.peak_rss_kib / 1024,
            s.processes,
            s.sum_hwm_kib / 1024
        );
        samples.push(s);
    }
    Ok(BootReport { samples })
}
