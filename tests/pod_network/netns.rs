//! The pod model's plumbing: network namespaces joined by a veth pair, the
//! app and podgate started inside one, threads moved into a namespace, and
//! the guard that removes it all. The test itself is in tests/pod_network.rs.

use super::*;

pub mod sys {
    use std::os::raw::c_int;
    pub const CLONE_NEWNET: c_int = 0x4000_0000;
    pub const SIGTERM: c_int = 15;
    extern "C" {
        pub fn setns(fd: c_int, nstype: c_int) -> c_int;
        pub fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn geteuid() -> u32;
    }
}

// ---------------------------------------------------------------------------
// Skipping

/// Prints the skip line straight to the process's stderr (past libtest's
/// capture, so a skip is never silent), or fails when skipping is not allowed.
pub fn skip(reason: &str) {
    if std::env::var_os(REQUIRE_ENV).is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("pod-network test cannot run and {REQUIRE_ENV} is set: {reason}");
    }
    let _ = writeln!(
        io::stderr(),
        "SKIPPED: pod-network test needs root and ip netns ({reason})"
    );
}

pub fn run_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn netns_path(ns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(ns)
}

// ---------------------------------------------------------------------------
// The pod: namespaces and processes, removed on drop

pub struct Pod {
    pub pod_ns: String,
    pub cli_ns: String,
    pub pod_ip: Ipv4Addr,
    pub cli_ip: Ipv4Addr,
    pub dir: PathBuf,
    /// Namespaces this test created, in creation order.
    pub created: Vec<String>,
    pub app: Option<Child>,
    pub podgate: Option<Child>,
}

impl Pod {
    pub fn new() -> Self {
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!("{pid}-{:04x}", nanos & 0xffff);
        let octet = ((pid ^ (nanos >> 10)) % 254 + 1) as u8;
        Pod {
            pod_ns: format!("pg-pod-{tag}"),
            cli_ns: format!("pg-cli-{tag}"),
            pod_ip: Ipv4Addr::new(10, 213, octet, 2),
            cli_ip: Ipv4Addr::new(10, 213, octet, 1),
            dir: std::env::temp_dir().join(format!("podgate-pod-network-{tag}")),
            created: Vec::new(),
            app: None,
            podgate: None,
        }
    }

    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.pod_ip, port))
    }

    /// Creates both namespaces and the veth pair. The interfaces are created
    /// inside the namespaces and never appear in the host's.
    pub fn build_network(&mut self) -> Result<(), String> {
        for ns in [self.pod_ns.clone(), self.cli_ns.clone()] {
            run_ip(&["netns", "add", &ns])?;
            self.created.push(ns);
        }
        let (pod, cli) = (self.pod_ns.as_str(), self.cli_ns.as_str());
        let pod_cidr = format!("{}/30", self.pod_ip);
        let cli_cidr = format!("{}/30", self.cli_ip);
        run_ip(&["-n", pod, "link", "set", "lo", "up"])?;
        run_ip(&["-n", cli, "link", "set", "lo", "up"])?;
        run_ip(&[
            "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", cli,
        ])?;
        run_ip(&["-n", pod, "addr", "add", &pod_cidr, "dev", "eth0"])?;
        run_ip(&["-n", cli, "addr", "add", &cli_cidr, "dev", "eth0"])?;
        run_ip(&["-n", pod, "link", "set", "eth0", "up"])?;
        run_ip(&["-n", cli, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// Starts a process in the pod namespace (`ip netns exec` execs it in
    /// place, so the child's pid is the process itself).
    pub fn spawn_in_pod(
        &self,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Child {
        let out = File::create(self.dir.join(format!("{name}.log"))).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.pod_ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Only the configuration the test sets reaches podgate.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PODGATE_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} in {}: {e}", self.pod_ns))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        format!(
            "--- podgate log ---\n{}--- app log ---\n{}",
            self.log("podgate"),
            self.log("app")
        )
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for child in [self.podgate.take(), self.app.take()].into_iter().flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.created.drain(..).rev() {
            if let Err(e) = run_ip(&["netns", "del", &ns]) {
                eprintln!("pod-network cleanup: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `/proc/<pid>/exe` is `exe` (the exec of `ip netns exec` done)
/// and checks that the process is in the namespace `ns`.
pub fn check_process_in_netns(pid: u32, exe: &Path, ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let want = exe.canonicalize().unwrap_or_else(|_| exe.to_path_buf());
    loop {
        let got = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if got.as_deref() == Some(want.as_path()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not become {} (is {got:?})",
            want.display()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let proc_ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).expect("stat /proc/pid/ns/net");
    let pod_ns = std::fs::metadata(netns_path(ns)).expect("stat netns file");
    assert_eq!(
        (proc_ns.dev(), proc_ns.ino()),
        (pod_ns.dev(), pod_ns.ino()),
        "pid {pid} ({}) is not in network namespace {ns}",
        want.display()
    );
}

// ---------------------------------------------------------------------------
// Threads in a namespace

/// Runs `f` on a new thread that has moved into network namespace `ns`; its
/// sockets are created there. Other threads are not affected.
pub fn spawn_in_netns<T, F>(ns: &str, name: &str, f: F) -> JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = netns_path(ns);
    thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            // SAFETY: setns(2) with a valid namespace fd; it only changes the
            // network namespace of the calling thread.
            let rc = unsafe { sys::setns(file.as_raw_fd(), sys::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns({}): {}",
                path.display(),
                io::Error::last_os_error()
            );
            f()
        })
        .expect("spawn thread")
}

pub fn join<T>(name: &str, h: JoinHandle<T>) -> T {
    h.join()
        .unwrap_or_else(|_| panic!("{name} thread panicked"))
}

pub fn run_in_netns<T, F>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match spawn_in_netns(ns, "pod-network-oneshot", f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}
