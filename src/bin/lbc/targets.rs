//! Which controllers a run judges: target files and `--set`, `--controller-cmd`, and what
//! the machine must have for them (`lbc doctor`'s checks).

use std::path::PathBuf;

use anyhow::{Result, bail};
use logbackup_conformance::programs::workspace::{self, Program};

use crate::args::*;

/// The run configurations of `args` (one per target), with their image map entries, CRD
/// directories and whether suites may run side by side.
pub(crate) struct Targets {
    pub(crate) configs: Vec<logbackup_conformance::run::RunConfig>,
    pub(crate) image_map: Vec<(String, PathBuf)>,
    pub(crate) crds: Vec<Option<PathBuf>>,
    pub(crate) parallel: bool,
}

pub(crate) fn target_configs(args: &RunArgs, root: &std::path::Path) -> Result<Targets> {
    use logbackup_conformance::run::{ControllerSpec, RunConfig};
    let mut configs: Vec<RunConfig> = Vec::new();
    let mut image_map: Vec<(String, PathBuf)> = Vec::new();
    let mut crds: Vec<Option<PathBuf>> = Vec::new();
    let mut parallel = true;
    if let Some(t) = &args.controller_cmd {
        check_machine(args, false)?;
        prepare_control_plane(args);
        let mut cfg = RunConfig::new(ControllerSpec::template(t).map_err(anyhow::Error::msg)?);
        cfg.controller
            .args
            .extend(args.controller_flags.iter().cloned());
        configs.push(cfg);
        crds.push(None);
    } else {
        let names = if args.targets.is_empty() {
            vec!["reference".to_owned()]
        } else {
            args.targets.clone()
        };
        let resolved = resolve_targets(&names, &args.sets, root)?;
        for t in &resolved {
            if let Some(m) = logbackup_conformance::target::missing_paths(t).first() {
                bail!("target {} ({}): {m}", t.label, t.file);
            }
        }
        // Before anything is built or started: what this machine lacks, in one line.
        check_machine(args, resolved.iter().any(|t| t.isolate))?;
        prepare_control_plane(args);
        for mut t in resolved {
            if let Some(install) = args.install {
                t.install = install;
            }
            let mut cfg = RunConfig::from_target(&t).map_err(anyhow::Error::msg)?;
            cfg.controller
                .args
                .extend(args.controller_flags.iter().cloned());
            // Another build of the reference (e.g. a planted bug) is not "the reference".
            if t.program.starts_with("builtin:") && std::env::var_os("LBC_CONTROLLER_BIN").is_some()
            {
                cfg.controller.label = "override".into();
            }
            for (image, program) in &t.image_map {
                let path = match program.as_str() {
                    "builtin:fake-br" => workspace::locate(Program::FakeBr)?,
                    p => PathBuf::from(p),
                };
                image_map.push((image.clone(), path));
            }
            parallel &= t.parallel;
            crds.push(t.crds.clone());
            configs.push(cfg);
        }
    }
    for cfg in &mut configs {
        cfg.api_proxy = !args.direct_api;
        cfg.shared_kernel = args.kernel == KernelKind::Shared;
        // k3s's Pods reach no kernel of this machine's: theirs is in the cluster.
        let k3s_default = args.provider == ProviderKind::K3s && args.kernel == KernelKind::Shared;
        cfg.kernel_in_cluster = (args.kernel == KernelKind::InCluster || k3s_default)
            .then(|| logbackup_conformance::container::images::Image::Etcd.tag());
        cfg.shared_kernel &= !k3s_default;
        // What --keep keeps is for reading afterwards: every suite's bundle, passed or not.
        cfg.keep_bundles = args.local.keep;
        if let Some(ms) = args.stress {
            cfg.api_latency = logbackup_conformance::proxy::Latency {
                base: std::time::Duration::from_millis(ms),
            };
        }
    }
    Ok(Targets {
        configs,
        image_map,
        crds,
        parallel,
    })
}

/// What `lbc run` and `lbc explore` need of the machine for these arguments (`lbc doctor`'s
/// checks, only those).
pub(crate) fn check_machine(args: &RunArgs, isolate: bool) -> Result<()> {
    use logbackup_conformance::doctor::{Need, require};
    let mut needs = vec![Need::Resources];
    match args.provider {
        ProviderKind::Local => needs.push(Need::ControlPlane),
        ProviderKind::Container => needs.extend([Need::ControlPlane, Need::Docker]),
        ProviderKind::K3s => needs.push(Need::Docker),
        ProviderKind::Kubeconfig => {}
    }
    if args.runtime == RuntimeKind::Docker && !needs.contains(&Need::Docker) {
        needs.push(Need::Docker);
    }
    if isolate {
        needs.push(Need::Root);
    }
    for c in require(&needs)? {
        if c.status == logbackup_conformance::doctor::Status::Warn {
            eprintln!("lbc: note: {}", c.line());
        }
    }
    Ok(())
}

/// A first run's Go build of the control plane, started now so that it overlaps the cargo
/// build of the workspace's programs (the provider waits for it on the cache's lock).
pub(crate) fn prepare_control_plane(args: &RunArgs) {
    if matches!(args.provider, ProviderKind::Local | ProviderKind::Container) {
        let lookup = logbackup_conformance::programs::k8s::BinaryLookup::from_env();
        // Detached: the thread ends with the build; the provider reports the outcome.
        drop(logbackup_conformance::programs::k8s::build_in_background(
            lookup,
        ));
    }
}

/// Find and resolve `names` (`[INSTANCE=]TARGET`), giving each the `--set`s that are its
/// own (`LABEL:KEY=V`, the label being the instance name or else the target's) or that it
/// has (`KEY=V`); a key no target has is an error, and so is one label given twice.
pub(crate) fn resolve_targets(
    names: &[String],
    sets: &[String],
    root: &std::path::Path,
) -> Result<Vec<logbackup_conformance::target::Resolved>> {
    use logbackup_conformance::target;
    let mut loaded: Vec<(String, target::Loaded)> = Vec::new();
    for n in names {
        let (instance, spec) = target::instance(n)?;
        let l = target::find(spec, root)?;
        let label = instance.map_or_else(|| l.target.name.clone(), str::to_owned);
        if loaded.iter().any(|(other, _)| *other == label) {
            bail!(
                "--target {n}: {label:?} is already a target of this run; name the instances to \
                 run two builds side by side (--target old={spec} --target new={spec}, then \
                 --set old:KEY=… and --set new:KEY=…)"
            );
        }
        loaded.push((label, l));
    }
    let pairs = target::parse_sets(sets)?;
    let mut out = Vec::new();
    for (label, l) in &loaded {
        let mine: Vec<(String, String)> = pairs
            .iter()
            .filter_map(|(k, v)| match k.split_once(':') {
                Some((t, key)) if t == label => Some((key.to_owned(), v.clone())),
                Some(_) => None,
                None if l.target.settings.contains_key(k) || loaded.len() == 1 => {
                    Some((k.clone(), v.clone()))
                }
                None => None,
            })
            .collect();
        let mut r = target::resolve(l, &mine)?;
        r.label.clone_from(label);
        out.push(r);
    }
    for (k, _) in &pairs {
        let known = match k.split_once(':') {
            Some((t, key)) => loaded
                .iter()
                .any(|(label, l)| label == t && l.target.settings.contains_key(key)),
            None => loaded
                .iter()
                .any(|(_, l)| l.target.settings.contains_key(k)),
        };
        if !known && loaded.len() > 1 {
            bail!("--set {k}=…: no target of this run has the setting {k:?}");
        }
    }
    Ok(out)
}

/// What `run` and `explore` start from: the selected suites, the checkout (the current
/// directory) and the targets' run configurations.
pub(crate) struct Selection {
    pub(crate) suites: Vec<(PathBuf, logbackup_conformance::suite::Suite)>,
    pub(crate) root: PathBuf,
    pub(crate) targets: Targets,
}

/// The suites `args` select and the targets they name.
pub(crate) fn selection(args: &RunArgs) -> Result<Selection> {
    let suites = crate::run::selected_suites(args)?;
    let root = std::env::current_dir()?;
    let targets = target_configs(args, &root)?;
    Ok(Selection {
        suites,
        root,
        targets,
    })
}
