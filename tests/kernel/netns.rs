//! Test topologies: network namespaces joined by veth, removed on drop (even when the test
//! panics), the root check every kernel test starts with, and the datagram sender the tests
//! share.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether the test may run: true as root. Otherwise prints a skip line, or fails under CI=true.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: kernel tests need root, and CI=true forbids skipping them");
    }
    // Straight to fd 2: libtest would hide an eprintln! of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root (set CI=true to fail instead)"
    );
    false
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two namespaces A and B joined by veth `va` (in A, 192.0.2.1, 2001:db8::1) and `vb` (in B,
/// 192.0.2.2, 2001:db8::2). Deleted on drop.
pub struct Pair {
    pub a: String,
    pub b: String,
}

impl Pair {
    pub fn new(test: &str) -> Pair {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect();
        let pair = Pair {
            a: format!("trl-{tag}-{}-{n}-a", std::process::id()),
            b: format!("trl-{tag}-{}-{n}-b", std::process::id()),
        };
        // The guard exists before the first namespace does: a failure below still cleans up.
        sh(&format!("ip netns add {}", pair.a));
        sh(&format!("ip netns add {}", pair.b));
        sh(&format!(
            "ip link add va netns {a} type veth peer name vb netns {b} && \
             ip -n {a} link set lo up && ip -n {b} link set lo up && \
             ip -n {a} addr add 192.0.2.1/24 dev va && ip -n {b} addr add 192.0.2.2/24 dev vb && \
             ip -n {a} addr add 2001:db8::1/64 dev va nodad && ip -n {b} addr add 2001:db8::2/64 dev vb nodad && \
             ip -n {a} link set va up && ip -n {b} link set vb up",
            a = pair.a,
            b = pair.b
        ));
        pair
    }

    /// Inode number of a namespace (what events carry in `netns.inum`).
    pub fn inum(name: &str) -> u32 {
        let out = sh(&format!("stat -L -c %i /run/netns/{name}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("inode number")
    }

    pub fn ifindex(ns: &str, dev: &str) -> u32 {
        let out = sh(&format!(
            "ip netns exec {ns} cat /sys/class/net/{dev}/ifindex"
        ));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("ifindex")
    }

    /// `ip netns exec NS` prefix for shell commands.
    pub fn exec(ns: &str) -> String {
        format!("ip netns exec {ns}")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A shell command that sends one UDP datagram per (source port, destination, port, payload)
/// from namespace `ns`, each from its own socket bound to that source port (0: any), with
/// python (bash's /dev/udp picks no source port). IPv6 when the destination has a colon. A send
/// that fails (EPERM when an output hook drops it) does not stop the others.
pub fn send_udp<P: AsRef<[u8]>>(ns: &str, datagrams: &[(u16, &str, u16, P)]) -> String {
    let mut script = String::from("import socket,time\n");
    for (sport, dst, dport, payload) in datagrams {
        let (family, any) = if dst.contains(':') {
            ("AF_INET6", "::")
        } else {
            ("AF_INET", "0.0.0.0")
        };
        let hex = hex(payload.as_ref());
        script.push_str(&format!(
            "s=socket.socket(socket.{family},socket.SOCK_DGRAM)\n\
             s.bind(('{any}',{sport}))\n\
             try: s.sendto(bytes.fromhex('{hex}'),('{dst}',{dport}))\n\
             except OSError: pass\n\
             s.close()\ntime.sleep(0.01)\n"
        ));
    }
    format!("{} python3 -c \"{script}\"", Pair::exec(ns))
}

/// Bytes as hex digits, for python's `bytes.fromhex` (any byte survives the shell quoting).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
