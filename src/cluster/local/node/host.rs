//! What a real node changes on this machine, and how each change is undone: its network
//! namespace and the link to it, its cgroups, the mounts kubelet and containerd make, the
//! three global sysctls kubelet sets. Each node holds a slot (`/run/lbc-nodes/<k>.lock`,
//! flock'd for its life) and records what it made in `<k>.json`; a slot whose lock is free
//! but whose record is there belongs to a killed run, and the next start undoes it.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::config::NodeNet;

/// Where nodes record themselves.
pub const STATE_DIR: &str = "/run/lbc-nodes";
/// Slots tried; each is one node on this machine.
const SLOTS: u8 = 64;
/// The machine-wide settings kubelet changes (`protectKernelDefaults: false`; kubelet's
/// `setupKernelTunables`).
pub const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// Why the node's host side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "a real node needs root (network namespaces, cgroups, mounts): run as root, or use the \
         node agent (the default, without --node kubelet)"
    )]
    NotRoot,
    #[error("no free node slot: {SLOTS} nodes already run on this machine")]
    NoSlot,
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HostError {
    let path = path.to_owned();
    move |source| HostError::Io { what, path, source }
}

/// What a node made, written before it makes it so a sweep can undo a killed run's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub slot: u8,
    pub run_id: String,
    pub node_dir: PathBuf,
    pub cgroup_root: String,
}

/// A claimed slot: the lock is held until drop.
#[derive(Debug)]
pub struct Slot {
    pub net: NodeNet,
    lock: std::fs::File,
}

impl Slot {
    /// Claim the first free slot, undoing killed runs' nodes on the way.
    ///
    /// # Errors
    /// Not root, no slot, or the state directory cannot be written.
    pub fn claim() -> Result<Self, HostError> {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            return Err(HostError::NotRoot);
        }
        let dir = Path::new(STATE_DIR);
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        // A free slot with a record is a killed run's node: undo every one, then take the
        // first free slot. Lock files are made only for slots tried, and never removed
        // (removing a lock file races with its next user).
        let lock_of = |slot: u8| -> Result<Option<std::fs::File>, HostError> {
            let path = dir.join(format!("{slot}.lock"));
            let lock = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io("opening", &path))?;
            // SAFETY: flock on an fd we own.
            let free = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            Ok(free.then_some(lock))
        };
        for slot in (0..SLOTS).filter(|s| record_path(*s).exists()) {
            // Held while its node is undone; released for the claim below.
            let Some(_held) = lock_of(slot)? else {
                continue;
            };
            if let Some(record) = read_record(slot) {
                tracing::info!(slot, run = %record.run_id, "undoing a killed run's node");
                undo(&record);
                remove_run_dir(&record);
                remove_netns(&NodeNet::for_slot(slot));
                let _ = std::fs::remove_file(record_path(slot));
            }
        }
        for slot in 0..SLOTS {
            if let Some(lock) = lock_of(slot)? {
                // A namespace without a record: a start killed between the two.
                remove_netns(&NodeNet::for_slot(slot));
                return Ok(Self {
                    net: NodeNet::for_slot(slot),
                    lock,
                });
            }
        }
        Err(HostError::NoSlot)
    }

    /// Record what this node is about to make.
    ///
    /// # Errors
    /// The record cannot be written.
    pub fn record(&self, record: &Record) -> Result<(), HostError> {
        let path = record_path(self.net.slot);
        let text = serde_json::to_string_pretty(record).unwrap_or_default();
        let mut f = std::fs::File::create(&path).map_err(io("writing", &path))?;
        f.write_all(text.as_bytes()).map_err(io("writing", &path))
    }

    /// Undo everything recorded and release the slot.
    pub fn release(self, record: &Record) {
        undo(record);
        remove_netns(&self.net);
        let _ = std::fs::remove_file(record_path(self.net.slot));
        restore_sysctls_if_last(self.net.slot);
        drop(self.lock);
    }
}

fn record_path(slot: u8) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{slot}.json"))
}

fn read_record(slot: u8) -> Option<Record> {
    let text = std::fs::read_to_string(record_path(slot)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Run `ip` with `args`.
fn ip(args: &[&str]) -> Result<(), HostError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(io("running", Path::new("ip")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HostError::Command {
            command: format!("ip {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The node's namespace, the link to it (host `.1`, node `.2`), the route to its Pods, and
/// forwarding inside it (the host's own forwarding is not touched).
///
/// # Errors
/// An `ip` command fails.
pub fn create_netns(net: &NodeNet) -> Result<(), HostError> {
    let ns = net.netns.as_str();
    let host = format!("{}/30", net.host_ip);
    let node = format!("{}/30", net.node_ip);
    ip(&["netns", "add", ns])?;
    ip(&[
        "link",
        "add",
        &net.host_link,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
    ])?;
    ip(&["addr", "add", &host, "dev", &net.host_link])?;
    ip(&["link", "set", &net.host_link, "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "addr", "add", &node, "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &net.host_ip.to_string(),
    ])?;
    ip(&[
        "route",
        "add",
        &net.pod_cidr,
        "via",
        &net.node_ip.to_string(),
    ])?;
    let forward = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ])
        .output()
        .map_err(io("running", Path::new("ip netns exec")))?;
    if !forward.status.success() {
        return Err(HostError::Command {
            command: format!("ip netns exec {ns} sysctl -w net.ipv4.ip_forward=1"),
            detail: String::from_utf8_lossy(&forward.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Deleting the namespace deletes the link, and with it the route.
fn remove_netns(net: &NodeNet) {
    if Path::new("/run/netns").join(&net.netns).exists() {
        let _ = ip(&["netns", "del", &net.netns]);
    }
    if Path::new("/sys/class/net").join(&net.host_link).exists() {
        let _ = ip(&["link", "del", &net.host_link]);
    }
}

/// The cgroup v1 hierarchies mounted here (`/sys/fs/cgroup/<name>`), or the unified one.
fn cgroup_mounts() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| left.split(' ').nth(4).map(PathBuf::from))?
        })
        .collect()
}

/// Make `root` in every hierarchy (kubelet insists that its cgroup root exists); a new
/// cpuset gets its parent's CPUs and memory nodes, or no process could join it.
///
/// # Errors
/// A directory cannot be made.
pub fn create_cgroup_root(root: &str) -> Result<(), HostError> {
    let rel = root.trim_start_matches('/');
    for mount in cgroup_mounts() {
        let dir = mount.join(rel);
        std::fs::create_dir_all(&dir).map_err(io("creating the cgroup", &dir))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(mount.join(file)) {
                let _ = std::fs::write(dir.join(file), v.trim());
            }
        }
    }
    Ok(())
}

/// Every process in `root`'s cgroups (the node's containers).
pub fn cgroup_processes(root: &str) -> Vec<i32> {
    let rel = root.trim_start_matches('/');
    let mut pids = Vec::new();
    for mount in cgroup_mounts() {
        let top = mount.join(rel);
        if top.is_dir() {
            walk_dirs(&top, &mut |d| {
                if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            });
        }
    }
    // 0 is a task outside this PID namespace (cgroup v2); never signal ourselves or init.
    let own = std::process::id() as i32;
    pids.retain(|p| *p > 1 && *p != own);
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether `root` is a node's cgroup root (a record is read from disk: never trust it to
/// name `/` or another program's cgroup).
fn is_node_cgroup(root: &str) -> bool {
    root.strip_prefix("/lbc-node-")
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
}

/// Remove `root`'s cgroups, deepest first (a cgroup with processes stays).
fn remove_cgroup_root(root: &str) {
    let rel = root.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    for mount in cgroup_mounts() {
        let top = mount.join(rel);
        let mut dirs = Vec::new();
        if top.is_dir() {
            walk_dirs(&top, &mut |d| dirs.push(d.to_owned()));
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Visit `dir` and its subdirectories, parents first.
fn walk_dirs(dir: &Path, f: &mut dyn FnMut(&Path)) {
    f(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk_dirs(&e.path(), f);
            }
        }
    }
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> PathBuf {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    PathBuf::from(out)
}

/// Detach every mount under `dir`; returns those still there.
pub fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return mounts;
        }
        for m in &mounts {
            if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: a valid C string; MNT_DETACH never blocks.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
    mounts_under(dir)
}

/// Undo a node: its containers killed, its shims and mounts gone, its cgroups removed.
/// The node's own processes (kubelet, containerd, kube-proxy) are the caller's; a killed
/// run's died with it.
pub fn undo(record: &Record) {
    if !is_node_cgroup(&record.cgroup_root) {
        tracing::warn!(root = %record.cgroup_root, "a node record names no node cgroup; not undone");
        return;
    }
    for _ in 0..3 {
        let pids = cgroup_processes(&record.cgroup_root);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: plain syscall.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The shims name their containerd's socket (a run id alone could be a reused pid's).
    let socket = record.node_dir.join("cd.sock");
    for pid in shims_of(&socket) {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let left = unmount_under(&record.node_dir);
    if !left.is_empty() {
        tracing::warn!(?left, "mounts of the node that could not be detached");
    }
    remove_cgroup_root(&record.cgroup_root);
}

/// A killed run's directory (`<run id>-…`, the node's parent) once nothing is mounted in it.
fn remove_run_dir(record: &Record) {
    let Some(run_dir) = record.node_dir.parent() else {
        return;
    };
    let ours = run_dir.file_name().is_some_and(|n| {
        n.to_string_lossy()
            .starts_with(&format!("{}-", record.run_id))
    });
    if ours && mounts_under(run_dir).is_empty() {
        let _ = std::fs::remove_dir_all(run_dir);
    }
}

/// containerd shims started by the containerd listening on `socket`.
fn shims_of(socket: &Path) -> Vec<u32> {
    let needle = socket.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("containerd-shim"))
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == needle))
        })
        .collect()
}

/// Held while the machine's settings are saved or put back: a node starting while the
/// last one goes must not save the values kubelet set, nor find them put back under it.
fn sysctls_lock() -> Option<std::fs::File> {
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(STATE_DIR).join("sysctls.lock"))
        .ok()?;
    // SAFETY: flock on an fd we own (blocking: the holders are quick).
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(f)
}

/// Keep the machine's values of the settings kubelet changes, once for all nodes (the
/// first node's start saves them; the last node's teardown puts them back).
pub fn save_sysctls() {
    let _lock = sysctls_lock();
    let path = Path::new(STATE_DIR).join("sysctls.json");
    if path.exists() {
        return;
    }
    let values: Vec<(String, String)> = KUBELET_SYSCTLS
        .iter()
        .filter_map(|k| {
            let v = std::fs::read_to_string(Path::new("/proc/sys").join(k)).ok()?;
            Some(((*k).to_owned(), v.trim().to_owned()))
        })
        .collect();
    let _ = std::fs::write(&path, serde_json::to_string(&values).unwrap_or_default());
}

/// Put the machine's settings back when no other node is running: one whose slot is locked
/// and has a record (a start only sweeping holds a lock without a record for a moment).
fn restore_sysctls_if_last(own: u8) {
    let _lock = sysctls_lock();
    let dir = Path::new(STATE_DIR);
    let others = (0..SLOTS)
        .filter(|s| *s != own && record_path(*s).exists())
        .any(|s| {
            std::fs::File::open(dir.join(format!("{s}.lock"))).is_ok_and(|f| {
                // SAFETY: flock on an fd we own; a held lock refuses ours.
                let held = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
                held != 0
            })
        });
    if others {
        return;
    }
    let path = dir.join("sysctls.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let values: Vec<(String, String)> = serde_json::from_str(&text).unwrap_or_default();
    for (k, v) in values {
        let _ = std::fs::write(Path::new("/proc/sys").join(k), v);
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount(r"/a\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape_mount(r"/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape_mount(r"/odd\x"), PathBuf::from(r"/odd\x"));
    }

    #[test]
    fn only_a_node_cgroup_is_undone() {
        assert!(is_node_cgroup("/lbc-node-3"));
        for bad in [
            "/",
            "",
            "/lbc-node-",
            "/lbc-node-3/../x",
            "/user.slice",
            "lbc-node-3",
        ] {
            assert!(!is_node_cgroup(bad), "{bad}");
        }
    }

    #[test]
    fn a_record_round_trips() {
        let r = Record {
            slot: 2,
            run_id: "lbc-1-0".into(),
            node_dir: PathBuf::from("/tmp/x/node"),
            cgroup_root: "/lbc-node-2".into(),
        };
        let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
