//! A suite's set-up: its namespace, the recorder, the kernel, the controller under test
//! (behind the API proxy, isolated where the target says), the plans, and the wait for the
//! API server's create hold after a CRD is installed.

use super::*;

/// Namespace, recorder, controller, plans. `None` (with the failure recorded) when the
/// suite cannot start.
pub(super) async fn set_up<'a>(
    cluster: &RunningCluster,
    suite: &'a Suite,
    root: &'a Path,
    cfg: &RunConfig,
    bundle_dir: &Path,
    result: &mut SuiteResult,
) -> Option<Scope<'a>> {
    let client = match cluster.client() {
        Ok(c) => c,
        Err(e) => {
            result.failures.push(format!("no client: {e}"));
            return None;
        }
    };
    let ns = suite.name.clone();
    // Another run's suite namespace is in use for at most the suite's time and teardown.
    let in_use_for = suite
        .timeout
        .as_ref()
        .map_or(cfg.suite_timeout, |d| d.get())
        + Duration::from_secs(60);
    if let Err(e) = namespace::fresh(
        &client,
        &ns,
        &cluster.run_id,
        in_use_for,
        Duration::from_secs(60),
    )
    .await
    {
        result.failures.push(e.to_string());
        return None;
    }
    // Its own kernel if asked for, where Pods can reach one on loopback; then declared names
    // are kept. Shared (the default), a suite saves an etcd's start and idle ticking.
    let own_kernel = match (&cluster.run_dir, cluster.capabilities.local_processes) {
        (Some(dir), true) if !cfg.shared_kernel => {
            match SuiteKernel::start(
                &dir.join("kernels").join(&suite.name),
                &cluster.run_id,
                Duration::from_secs(20),
            )
            .await
            {
                Ok(k) => Some(k),
                Err(e) => {
                    result.failures.push(e.to_string());
                    return None;
                }
            }
        }
        _ => None,
    };
    let names = BackupNames(
        suite
            .backups
            .iter()
            .map(|b| {
                let actual = if own_kernel.is_some() {
                    b.name.clone()
                } else {
                    manifest::actual_name(&suite.name, &b.name)
                };
                (b.name.clone(), actual)
            })
            .collect(),
    );
    let kernel = own_kernel.as_ref().map_or_else(
        || {
            cluster
                .kernel_endpoints
                .first()
                .cloned()
                .unwrap_or_default()
        },
        |k| k.endpoint.clone(),
    );
    if own_kernel.is_none() && !kernel.is_empty() {
        // A shared kernel outlives the run: an earlier run's tasks of the same names (the
        // names are the same on every run) would read as this run's. Exact keys only.
        let shared = KernelClient::new(&kernel);
        for actual in names.0.values() {
            let k = lbc_api::kernel::keys::task_keys(actual);
            for key in [&k.info, &k.checkpoint, &k.pause, &k.last_error] {
                if let Err(e) = shared.delete(key).await {
                    result
                        .failures
                        .push(format!("clearing {key} in the kernel {kernel}: {e}"));
                    return None;
                }
            }
        }
    }
    if !kernel.is_empty() {
        // fake-br looks here first, so this suite's Jobs use this suite's kernel (or the
        // one given for the cluster: nothing else tells a Pod on someone else's cluster).
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": lbc_api::plan::KERNEL_CONFIGMAP},
            "data": {lbc_api::plan::KERNEL_CONFIGMAP_KEY: kernel},
        }))
        .unwrap_or_default();
        if let Err(e) = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &cm)
            .await
        {
            result.failures.push(format!("the kernel ConfigMap: {e}"));
            return None;
        }
    }
    let recorder = Recorder::start(&client, &ns).await;
    let _ = std::fs::create_dir_all(bundle_dir);
    let log = bundle_dir.join("controller.log");
    let _ = std::fs::remove_file(&log);
    let metrics_addr = match crate::programs::process::free_loopback_port() {
        Ok(port) => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Err(e) => {
            result
                .failures
                .push(format!("no port for the controller's metrics: {e}"));
            return None;
        }
    };
    // The API proxy: the controller's kubeconfig points at it.
    let hook = controller::LateHook::default();
    let (proxy, controller_kubeconfig) = if cfg.api_proxy {
        let started = crate::proxy::ApiProxy::start(
            &cluster.config,
            Some(std::sync::Arc::new(hook.clone())),
            cfg.api_latency,
        )
        .await;
        let proxy = match started {
            Ok(p) => p,
            Err(e) => {
                result.failures.push(e.to_string());
                return None;
            }
        };
        let path = bundle_dir.join("kubeconfig");
        if let Err(e) = std::fs::write(&path, proxy.kubeconfig_yaml()) {
            result
                .failures
                .push(format!("writing {}: {e}", path.display()));
            return None;
        }
        (Some(proxy), path)
    } else {
        (None, cluster.kubeconfig.clone())
    };
    let api_url = proxy
        .as_ref()
        .map_or_else(|| cluster.config.cluster_url.to_string(), |p| p.url());
    // An isolated controller reaches the API server and the suite's kernel through the
    // harness, and finds the kernel by PD's service name.
    let (isolation, bridges, metrics_at, kernel_for_controller) = match &cfg.controller.sandbox {
        None => (
            None,
            None,
            cfg.controller
                .metrics_addr(metrics_addr)
                .map(scope::MetricsAt::Tcp),
            kernel.clone(),
        ),
        Some(_) => {
            let api = isolate::host_port(&api_url).unwrap_or_default();
            let kernel_hp = isolate::host_port(&kernel).unwrap_or_default();
            let dir = cluster
                .run_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join("isolation")
                .join(&suite.name);
            let inside_metrics = cfg.controller.metrics_addr(metrics_addr);
            match isolate::set_up(
                &dir,
                &api,
                &kernel_hp,
                &pd_names(suite, &ns),
                inside_metrics.as_deref(),
            ) {
                Ok((iso, b, sock)) => (
                    Some(iso),
                    Some(b),
                    sock.map(scope::MetricsAt::Unix),
                    format!("http://127.0.0.1:{}", isolate::PD_PORT),
                ),
                Err(e) => {
                    result
                        .failures
                        .push(format!("isolating the controller: {e}"));
                    return None;
                }
            }
        }
    };
    // A target's objects are custom resources too: the first of them waits out the hold.
    let held_waited = !cfg.objects.is_empty();
    if held_waited {
        wait_out_create_hold(&client, &install::crds_created_in_a_suite(&cfg.objects)).await;
    }
    if let Err(e) = install::create_objects(&client, &ns, &cfg.objects).await {
        result.failures.push(e);
        return None;
    }
    let endpoints = controller::SuiteEndpoints {
        kubeconfig: &controller_kubeconfig,
        namespace: &ns,
        kernel: &kernel_for_controller,
        job_image: &cfg.job_image,
        metrics_addr,
        isolation,
    };
    let controller =
        match ControllerProcess::start(cfg.controller.command(&endpoints, log, &cluster.run_id)) {
            Ok(c) => SharedController::new(c),
            Err(e) => {
                result
                    .failures
                    .push(format!("starting the controller: {e}"));
                return None;
            }
        };
    hook.set(&controller);
    let timeout = suite
        .timeout
        .as_ref()
        .map_or(cfg.suite_timeout, |d| d.get());
    // Plans first, so the first attempt already follows them.
    for (backup, subs) in &suite.plans {
        let name = plan_configmap(names.actual(backup));
        let data: BTreeMap<String, String> = subs
            .iter()
            .map(|(k, v)| (k.clone(), serde_yaml::to_string(v).unwrap_or_default()))
            .collect();
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))
                .unwrap_or_default();
        if let Err(e) = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &cm)
            .await
        {
            result.failures.push(format!("plans.{backup}: {e}"));
        }
    }
    if !held_waited {
        // After the controller's start, which the wait then overlaps.
        wait_out_create_hold(&client, &install::crds_created_in_a_suite(&[])).await;
    }
    Some(Scope {
        suite,
        step: 0,
        root,
        client,
        namespace: ns,
        names,
        recorder,
        cursor: Cursor::default(),
        controller,
        proxy,
        own_kernel,
        bridges,
        metrics_at,
        metric_names: cfg.metric_names.clone(),
        kernel: KernelClient::new(if kernel.is_empty() {
            "127.0.0.1:2379"
        } else {
            &kernel
        }),
        deadline: tokio::time::Instant::now() + timeout,
        snapshot: None,
        fingerprint: None,
        final_events: Vec::new(),
        acted_at: None,
    })
}

/// Right after a CRD is installed (a fresh cluster, a target's own CRDs) the API server holds
/// every create of its resources for 2 s: waiting out the rest of that window before the
/// suite's first such create costs less, and the suite's steps then run at the pace they
/// would later on.
async fn wait_out_create_hold(client: &kube::Client, crds: &[String]) {
    if let Some(until) = install::creates_held_until(client, crds).await {
        let left = install::hold_left(until, jiff::Timestamp::now(), Duration::from_millis(100));
        tokio::time::sleep(left).await;
    }
}
